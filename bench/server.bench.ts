// The WebSocket API under load (issue 5), on loopback, beside a bare `ws` echo
// server measured in the same run, with the same process layout and the same
// load generator (the echo server is the floor: framing and sockets without
// JSON-RPC, auth, zod or the supervisor).
//  1. Saturation: 1,000 connections in a closed loop (each sends its next
//     sandbox.get / sandbox.ping as soon as the previous one is answered);
//     calls/s of each server and the ratio. Latency here is only queueing
//     (Little's law: 1,000 in flight / throughput), printed for information.
//  2. Latency under load: the same connections in an open loop at fixed total
//     rates (10%, 25% and 50% of the echo server's saturation, the same rates
//     for both servers); p50/p99/max from send to reply.
//  3. Fan-out: 1,000 subscribers of one sandbox while it pauses and resumes.
// Each server runs in its own child process (bench/server-target.ts); the
// clients run in this process, one server under load at a time. Measurements
// alternate between the two servers in short slices, each after a warm-up, so
// background work on the machine falls on both alike.
// Run: node --import tsx bench/server.bench.ts [connections]
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import type { TargetKind, TargetReply, TargetRequest } from './server-target.ts';

const CONNECTIONS = Number(process.argv[2] ?? 1000);
// Each measurement alternates between the two servers in ROUNDS slices; each
// slice warms up first (longer the first time, for the JIT).
const ROUNDS = 3;
const FIRST_WARM_MS = 2000;
const WARM_MS = 700;
const SATURATION_SLICE_MS = 2000;
const OPEN_LOOP_SLICE_MS = 2500;
// Open-loop rates as shares of the echo server's saturation throughput: 50% is
// all the throughput goal asks of sandboxd, 25% half of it, 10% a light load.
const OPEN_LOOP_SHARES = [0.1, 0.25, 0.5];
const FANOUT_CYCLES = 3;
const TOKEN = 'sbxt-bench-token';
const GOAL_RATIO = 0.5;
const GOAL_P99_MS = 5;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const epochNow = (): number => performance.timeOrigin + performance.now();

/** A server under test in its own process, driven over the IPC channel. */
class Target {
  private stopping = false;

  private constructor(
    readonly kind: TargetKind,
    private readonly child: ChildProcess,
    readonly url: string,
    readonly sandboxId: string,
  ) {
    child.on('exit', (code) => {
      if (this.stopping) return;
      console.error(`server under test (${kind}) exited unexpectedly with ${code}`);
      process.exit(1);
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(kind: TargetKind): Promise<Target> {
    const script = fileURLToPath(new URL('./server-target.ts', import.meta.url));
    const child = fork(script, [kind, TOKEN], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const [msg] = (await once(child, 'message')) as [TargetReply];
    if (msg.type !== 'ready') throw new Error(`server under test said ${msg.type} before ready`);
    return new Target(kind, child, msg.url, msg.sandboxId);
  }

  async ask<T extends TargetReply['type']>(req: TargetRequest, type: T): Promise<Extract<TargetReply, { type: T }>> {
    this.child.send(req);
    const [msg] = (await once(this.child, 'message')) as [TargetReply];
    if (msg.type !== type) throw new Error(`asked ${req.type}, got ${msg.type}`);
    return msg as Extract<TargetReply, { type: T }>;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const exited = once(this.child, 'exit');
    this.child.send({ type: 'stop' } satisfies TargetRequest);
    await exited;
  }
}

// ---- CPU accounting: each process's CPU time over its own clock -------------

interface CpuMark {
  /** Busy CPU time of the whole machine (all processes), from /proc/stat. */
  machineUs: number;
  clientUs: number;
  clientAt: number;
  serverUs: number;
  serverAt: number;
}

/** Busy time of all CPUs since boot (user, nice, system, irq, softirq, steal), in µs; NaN off Linux. */
function machineBusyUs(): number {
  try {
    const fields = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
    return (user + nice + system + irq + softirq + steal) * 10_000; // USER_HZ = 100
  } catch {
    return NaN;
  }
}

async function cpuMark(t: Target): Promise<CpuMark> {
  const u = process.cpuUsage();
  const clientAt = performance.now();
  const machineUs = machineBusyUs();
  const s = await t.ask({ type: 'cpu' }, 'cpu');
  return { machineUs, clientUs: u.user + u.system, clientAt, serverUs: s.userUs + s.systemUs, serverAt: s.atMs };
}

/** CPU time and wall time each process spent over the measuring windows, summed. */
interface CpuSpent {
  machineUs: number;
  clientUs: number;
  clientMs: number;
  serverUs: number;
  serverMs: number;
}
const noCpu = (): CpuSpent => ({ machineUs: 0, clientUs: 0, clientMs: 0, serverUs: 0, serverMs: 0 });
function addCpu(sum: CpuSpent, a: CpuMark, b: CpuMark): void {
  sum.machineUs += b.machineUs - a.machineUs;
  sum.clientUs += b.clientUs - a.clientUs;
  sum.clientMs += b.clientAt - a.clientAt;
  sum.serverUs += b.serverUs - a.serverUs;
  sum.serverMs += b.serverAt - a.serverAt;
}
/** "server / client / everything else on the machine" in percent of one core. */
function cpuText(c: CpuSpent): string {
  const others = (c.machineUs - c.serverUs - c.clientUs) / 10 / c.clientMs;
  return `${(c.serverUs / 10 / c.serverMs).toFixed(0)} / ${(c.clientUs / 10 / c.clientMs).toFixed(0)} / ${Math.max(0, others).toFixed(0)}`;
}

// ---- the load generator ----------------------------------------------------

/** Opens `n` connections a hundred at a time (a burst of 1,000 SYNs overflows the loopback backlog). */
async function openSockets(t: Target, n: number): Promise<WebSocket[]> {
  const headers: Record<string, string> = t.kind === 'sandboxd' ? { authorization: `Bearer ${TOKEN}` } : {};
  const out: WebSocket[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = Array.from({ length: Math.min(100, n - i) }, async () => {
      const ws = new WebSocket(t.url, { headers, perMessageDeflate: false });
      await once(ws, 'open');
      return ws;
    });
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

type OnReply = (socket: number, sentAt: number, now: number, error: string | null) => void;

interface Link {
  send(socket: number): void;
  outstanding(): number;
  detach(): void;
}

const HEAD = '{"jsonrpc":"2.0","id":';

/**
 * The id of a reply and its error code, if any. Reads only the frame's head
 * (both servers put `jsonrpc`, then `id`, then `result`/`error`/`method`
 * first), so the generator's cost per reply stays small and the same for both.
 */
function replyHead(data: Buffer): { id: number; error: string | null } | null {
  const head = data.toString('latin1', 0, Math.min(data.length, 48));
  const comma = head.indexOf(',', HEAD.length);
  if (!head.startsWith(HEAD) || comma < 0) return null;
  const id = Number(head.slice(HEAD.length, comma));
  if (!Number.isInteger(id)) return null;
  if (!head.startsWith('"error"', comma + 1)) return { id, error: null };
  const { error } = JSON.parse(data.toString()) as { error: { message: string; data?: { code?: string } } };
  return { id, error: error.data?.code ?? error.message };
}

/**
 * Sends sandbox.get / sandbox.ping in turn and matches replies by id. Both
 * servers get the same frames and the client does the same work per reply
 * (one JSON.parse), so the client's cost does not favour either.
 */
function attach(socks: WebSocket[], sandboxId: string, onReply: OnReply): Link {
  let nextId = 1;
  let outstanding = 0;
  const sent = socks.map(() => new Map<number, number>());
  const handlers = socks.map((ws, i) => {
    const handler = (data: WebSocket.RawData) => {
      const now = performance.now();
      const head = replyHead(data as Buffer);
      if (head === null) return;
      const at = sent[i]!.get(head.id);
      if (at === undefined) return;
      sent[i]!.delete(head.id);
      outstanding--;
      onReply(i, at, now, head.error);
    };
    ws.on('message', handler);
    return handler;
  });
  return {
    send(i) {
      const id = nextId++;
      const frame = `{"jsonrpc":"2.0","id":${id},"method":"sandbox.${id % 2 === 0 ? 'get' : 'ping'}","params":{"id":"${sandboxId}"}}`;
      sent[i]!.set(id, performance.now());
      outstanding++;
      socks[i]!.send(frame);
    },
    outstanding: () => outstanding,
    detach: () => socks.forEach((ws, i) => ws.off('message', handlers[i]!)),
  };
}

async function drain(link: Link): Promise<void> {
  const deadline = performance.now() + 30_000;
  while (link.outstanding() > 0 && performance.now() < deadline) await sleep(5);
  if (link.outstanding() > 0) throw new Error(`${link.outstanding()} calls never answered`);
}

interface Errors {
  count: number;
  kinds: Map<string, number>;
}
const noErrors = (): Errors => ({ count: 0, kinds: new Map() });
function countError(e: Errors, kind: string): void {
  e.count++;
  e.kinds.set(kind, (e.kinds.get(kind) ?? 0) + 1);
}

/** What one server's slices added up to. */
interface Tally {
  calls: number;
  wallMs: number;
  latencies: number[];
  errors: Errors;
  cpu: CpuSpent;
  /** Open loop only: how late the generator sent each call against its plan. */
  lag: number[];
}
const noTally = (): Tally => ({ calls: 0, wallMs: 0, latencies: [], errors: noErrors(), cpu: noCpu(), lag: [] });

/** Closed loop for one slice: every connection keeps exactly one call in flight. */
async function saturateSlice(t: Target, socks: WebSocket[], warmMs: number, into: Tally): Promise<void> {
  let measuring = false;
  let stopping = false;
  const link: Link = attach(socks, t.sandboxId, (i, at, now, err) => {
    if (measuring) {
      into.calls++;
      into.latencies.push(now - at);
      if (err !== null) countError(into.errors, err);
    }
    if (!stopping) link.send(i);
  });
  socks.forEach((_, i) => link.send(i));
  await sleep(warmMs);
  const c0 = await cpuMark(t);
  measuring = true;
  const t0 = performance.now();
  await sleep(SATURATION_SLICE_MS);
  measuring = false;
  into.wallMs += performance.now() - t0;
  addCpu(into.cpu, c0, await cpuMark(t));
  stopping = true;
  await drain(link);
  link.detach();
}

/** Open loop for one slice: calls leave on a fixed schedule (round-robin over the connections) whatever the replies do. */
async function pacedSlice(t: Target, socks: WebSocket[], rate: number, warmMs: number, into: Tally): Promise<void> {
  const start = performance.now();
  const warmEnd = start + warmMs;
  const end = warmEnd + OPEN_LOOP_SLICE_MS;
  const link = attach(socks, t.sandboxId, (_i, at, now, err) => {
    if (at < warmEnd || at >= end) return;
    into.calls++;
    into.latencies.push(now - at);
    if (err !== null) countError(into.errors, err);
  });
  let sent = 0;
  let c0: Promise<CpuMark> | undefined;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      if (c0 === undefined && now >= warmEnd) c0 = cpuMark(t);
      const due = Math.floor(((Math.min(now, end) - start) * rate) / 1000);
      for (; sent < due; sent++) {
        const scheduled = start + (sent * 1000) / rate;
        if (scheduled >= warmEnd) into.lag.push(performance.now() - scheduled);
        link.send(sent % socks.length);
      }
      if (now >= end) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  into.wallMs += OPEN_LOOP_SLICE_MS;
  const c1 = await cpuMark(t);
  addCpu(into.cpu, await c0!, c1);
  await drain(link);
  link.detach();
}

interface Side {
  target: Target;
  socks: WebSocket[];
}

/**
 * Runs `slice` on echo and sandboxd in turn, ROUNDS times, so that whatever
 * else the machine does during the run falls on both alike.
 */
async function interleaved(sides: Side[], slice: (s: Side, warmMs: number, into: Tally) => Promise<void>): Promise<Tally[]> {
  const tallies = sides.map(noTally);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, side] of sides.entries()) await slice(side, r === 0 ? FIRST_WARM_MS : WARM_MS, tallies[k]!);
  }
  return tallies;
}

// ---- fan-out ---------------------------------------------------------------

/** Child clock minus this process's clock, from the IPC round trip with the smallest delay. */
async function clockOffset(t: Target): Promise<{ offset: number; uncertainty: number }> {
  let best = { offset: 0, uncertainty: Infinity };
  for (let i = 0; i < 50; i++) {
    const p0 = epochNow();
    const { epochMs } = await t.ask({ type: 'clock' }, 'clock');
    const p1 = epochNow();
    if ((p1 - p0) / 2 < best.uncertainty) best = { offset: epochMs - (p0 + p1) / 2, uncertainty: (p1 - p0) / 2 };
  }
  return best;
}

interface FanOut {
  changes: number;
  delivered: number;
  expected: number;
  opMs: number[];
  perNotification: Float64Array;
  lastSubscriber: Float64Array;
  clockUncertainty: number;
}

/** Subscribes every connection to the one sandbox; resolves once all have answered. */
async function subscribeAll(t: Target, socks: WebSocket[]): Promise<void> {
  let answered = 0;
  const failures: string[] = [];
  await new Promise<void>((resolve) => {
    socks.forEach((ws) => {
      const handler = (data: WebSocket.RawData) => {
        const msg = JSON.parse(data.toString()) as { id?: unknown; error?: { message: string } };
        if (msg.id !== 'sub') return;
        ws.off('message', handler);
        if (msg.error !== undefined) failures.push(msg.error.message);
        if (++answered === socks.length) resolve();
      };
      ws.on('message', handler);
      ws.send(`{"jsonrpc":"2.0","id":"sub","method":"events.subscribe","params":{"sandboxId":"${t.sandboxId}"}}`);
    });
  });
  if (failures.length > 0) throw new Error(`${failures.length} subscriptions refused: ${failures[0]}`);
}

async function fanOut(t: Target, socks: WebSocket[]): Promise<FanOut> {
  await subscribeAll(t, socks);
  // seq -> receipt times on this process's clock
  const received = new Map<number, number[]>();
  const handler = (data: WebSocket.RawData) => {
    const at = epochNow();
    const msg = JSON.parse(data.toString()) as { method?: string; params?: { seq: number } };
    if (msg.method !== 'sandbox.state' || msg.params === undefined) return;
    const list = received.get(msg.params.seq) ?? [];
    list.push(at);
    received.set(msg.params.seq, list);
  };
  for (const ws of socks) ws.on('message', handler);
  const clock = await clockOffset(t);
  const emitted: { seq: number; epochMs: number }[] = [];
  const opMs: number[] = [];
  for (let i = 0; i < FANOUT_CYCLES; i++) {
    for (const op of ['pause', 'resume'] as const) {
      const s = performance.now();
      const done = await t.ask({ type: 'op', op }, 'op');
      emitted.push(...done.emitted);
      const last = done.emitted.at(-1);
      const deadline = performance.now() + 60_000;
      while (last !== undefined && (received.get(last.seq)?.length ?? 0) < socks.length && performance.now() < deadline) {
        await new Promise((r) => setImmediate(r));
      }
      opMs.push(performance.now() - s);
    }
  }
  for (const ws of socks) ws.off('message', handler);
  const perNotification: number[] = [];
  const lastSubscriber: number[] = [];
  let delivered = 0;
  for (const e of emitted) {
    const got = received.get(e.seq) ?? [];
    delivered += got.length;
    // receipt on the child's clock = receipt here + offset
    for (const r of got) perNotification.push(r + clock.offset - e.epochMs);
    if (got.length > 0) lastSubscriber.push(Math.max(...got) + clock.offset - e.epochMs);
  }
  return {
    changes: emitted.length,
    delivered,
    expected: emitted.length * socks.length,
    opMs,
    perNotification: Float64Array.from(perNotification).sort(),
    lastSubscriber: Float64Array.from(lastSubscriber).sort(),
    clockUncertainty: clock.uncertainty,
  };
}

// ---- report ----------------------------------------------------------------

function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}
const ms = (v: number) => `${v.toFixed(2)} ms`;
const num = (v: number) => v.toFixed(0);
const errText = (e: Errors) => (e.count === 0 ? '0' : `${e.count} (${[...e.kinds].map(([k, n]) => `${k}: ${n}`).join(', ')})`);

function row(label: string, echo: string, api: string, compare = '', goal = '', met = ''): void {
  console.log(`${label.padEnd(44)} ${echo.padStart(14)} ${api.padStart(14)} ${compare.padStart(14)}   ${goal.padEnd(22)} ${met}`);
}

function latencyRows(e: Tally, a: Tally, withGoal: boolean): void {
  const [el, al] = [Float64Array.from(e.latencies).sort(), Float64Array.from(a.latencies).sort()];
  const p99 = pct(al, 0.99);
  row('   latency p50', ms(pct(el, 0.5)), ms(pct(al, 0.5)));
  if (withGoal) row('   latency p99', ms(pct(el, 0.99)), ms(p99), '', `< ${GOAL_P99_MS} ms`, p99 < GOAL_P99_MS ? 'yes' : 'NO');
  else row('   latency p99', ms(pct(el, 0.99)), ms(p99));
  row('   latency max', ms(el.at(-1) ?? NaN), ms(al.at(-1) ?? NaN));
}

async function main(): Promise<void> {
  const load0 = loadavg();
  const echo = await Target.start('echo');
  const api = await Target.start('sandboxd');
  console.log(`# sandboxd WebSocket API vs bare ws echo: ${CONNECTIONS} connections to each, loopback, node ${process.version}`);
  console.log(
    `# cores: ${cpus().length}. Each server runs alone in its own child process (echo pid ${echo.pid}, sandboxd pid ${api.pid}); ` +
      `the load generator (all clients, one event loop) runs in this process (pid ${process.pid}). Only one server is under load at a time, ` +
      `so one server process and the generator share the ${cpus().length} cores; nothing is pinned (the OS schedules them, along with whatever ` +
      `else the machine runs). CPU figures are % of one core over the measuring windows: the server under test, the generator, and the rest of the machine (other processes and kernel time charged to none; other work disturbs the figures, see also the load average).`,
  );
  console.log(
    `# each measurement alternates echo / sandboxd in ${ROUNDS} rounds; slices: closed loop ${SATURATION_SLICE_MS / 1000} s, ` +
      `open loop ${OPEN_LOOP_SLICE_MS / 1000} s, each after a warm-up (${FIRST_WARM_MS / 1000} s the first time, ${WARM_MS / 1000} s after)`,
  );
  console.log(`# load average before: ${load0.map((l) => l.toFixed(2)).join(' ')}\n`);

  const sides: Side[] = [
    { target: echo, socks: await openSockets(echo, CONNECTIONS) },
    { target: api, socks: await openSockets(api, CONNECTIONS) },
  ];
  const [echoSat, apiSat] = (await interleaved(sides, (side, warm, into) => saturateSlice(side.target, side.socks, warm, into))) as [Tally, Tally];
  const echoRate = (echoSat.calls / echoSat.wallMs) * 1000;
  const apiRate = (apiSat.calls / apiSat.wallMs) * 1000;
  const rates = OPEN_LOOP_SHARES.map((share) => Math.round(echoRate * share));
  const open: [Tally, Tally][] = [];
  for (const rate of rates) {
    open.push((await interleaved(sides, (side, warm, into) => pacedSlice(side.target, side.socks, rate, warm, into))) as [Tally, Tally]);
  }
  for (const ws of sides[0]!.socks) ws.terminate();
  await echo.stop();
  const fan = await fanOut(api, sides[1]!.socks);
  for (const ws of sides[1]!.socks) ws.terminate();
  await api.stop();

  const ratio = apiRate / echoRate;
  row('', 'bare ws echo', 'sandboxd', 'sandboxd/echo', 'goal', 'met');
  console.log('1. saturation (closed loop)');
  row('   throughput, calls/s', num(echoRate), num(apiRate), ratio.toFixed(2), `>= ${GOAL_RATIO} x echo`, ratio >= GOAL_RATIO ? 'yes' : 'NO');
  row('   errors', errText(echoSat.errors), errText(apiSat.errors));
  row('   CPU server / client / rest of machine, %', cpuText(echoSat.cpu), cpuText(apiSat.cpu));
  console.log('   (latency here is queueing: 1,000 calls in flight / throughput; for information only)');
  latencyRows(echoSat, apiSat, false);
  rates.forEach((rate, k) => {
    const [e, a] = open[k]!;
    const over = rate > apiRate ? ' (above sandboxd saturation: its queue can only grow)' : '';
    console.log(
      `${k + 2}. open loop, ${rate} calls/s = ${OPEN_LOOP_SHARES[k]! * 100}% of echo saturation, ${((rate / apiRate) * 100).toFixed(0)}% of sandboxd's${over}`,
    );
    row('   sent, calls/s', num((e.lag.length / e.wallMs) * 1000), num((a.lag.length / a.wallMs) * 1000));
    latencyRows(e, a, true);
    row('   errors', errText(e.errors), errText(a.errors));
    row('   CPU server / client / rest of machine, %', cpuText(e.cpu), cpuText(a.cpu));
    const [elag, alag] = [Float64Array.from(e.lag).sort(), Float64Array.from(a.lag).sort()];
    row('   generator lag p99 / max, ms', `${pct(elag, 0.99).toFixed(2)} / ${(elag.at(-1) ?? NaN).toFixed(2)}`, `${pct(alag, 0.99).toFixed(2)} / ${(alag.at(-1) ?? NaN).toFixed(2)}`);
  });
  const busiest = Math.max(...[echoSat, apiSat, ...open.flat()].map((t) => (t.cpu.machineUs - t.cpu.serverUs - t.cpu.clientUs) / 10 / t.cpu.clientMs));
  if (busiest > 25) {
    console.log(
      `# WARNING: other work used up to ${num(busiest)}% of a core during the measuring windows (of ${cpus().length * 100}%); ` +
        `latencies and generator lag above include waiting for a CPU. Rerun on a quiet machine for clean figures.`,
    );
  }
  const clientPct = echoSat.cpu.clientUs / 10 / echoSat.cpu.clientMs;
  const serverPct = echoSat.cpu.serverUs / 10 / echoSat.cpu.serverMs;
  if (clientPct > 90 && serverPct < 90) {
    console.log(
      `# note: echo saturation was bound by the load generator (client ${num(clientPct)}% vs server ${num(serverPct)}% of a core), ` +
        `so the echo ceiling is higher than measured and the ratio is an upper bound for sandboxd.`,
    );
  }

  console.log(`\n${rates.length + 2}. fan-out: ${fan.changes} state changes (${FANOUT_CYCLES} pause/resume cycles) x ${CONNECTIONS} subscribers of one sandbox`);
  console.log(`   delivered ${fan.delivered}/${fan.expected} notifications`);
  console.log(`   one pause or resume, from the request until all ${CONNECTIONS} subscribers hold its last state: ${fan.opMs.map((m) => m.toFixed(0)).join(', ')} ms`);
  console.log(
    `   announce -> receipt: p50 ${ms(pct(fan.perNotification, 0.5))}  p99 ${ms(pct(fan.perNotification, 0.99))}; ` +
      `announce -> last subscriber: p50 ${ms(pct(fan.lastSubscriber, 0.5))}  max ${ms(fan.lastSubscriber.at(-1) ?? NaN)} ` +
      `(cross-process clocks aligned to +-${fan.clockUncertainty.toFixed(3)} ms)`,
  );
  console.log(`\n# load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

await main();
