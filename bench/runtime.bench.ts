// Runtime benchmark (issue 2): the sandbox actors' own overhead over their
// steps, memory per idle sandbox, create throughput, PauseAll against its
// ideal, and why sandboxes are root actors rather than spawned children.
// Run: npm run bench (node with the agent's heap flag, --expose-gc)
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { assign, createActor, createMachine, setup } from 'xstate';
import { warmUp } from '../agent/warm-up.ts';
import { Supervisor } from '../actors/supervisor.ts';
import { loadConfig } from '../core/config.ts';
import { createFakeDrivers, type FakeDrivers } from '../drivers/fake/index.ts';
import { bareLogic, bareOp, bareSandbox, leanLogic, recordSteps } from './bare-sandbox.ts';

const TEAM = { teamId: 'bench' };
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) console.warn('run with --expose-gc for the heap figure');

function setupFakes(latencyMs: number): FakeDrivers & { sup: Supervisor } {
  const fakes = createFakeDrivers();
  if (latencyMs > 0) fakes.host.faults.latency('*', latencyMs);
  return { ...fakes, sup: new Supervisor({ drivers: fakes.drivers, slots: 20_000 }) };
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const fmt = (x: number, d = 3) => x.toFixed(d);

/**
 * Runs `op` and returns elapsed / (driver calls it made × latency): the
 * sequential sum of its steps' latencies. Parallel steps make it < 1.
 */
async function ratioOf(
  f: ReturnType<typeof setupFakes>,
  latencyMs: number,
  op: () => Promise<unknown>,
  skip: ReadonlySet<string> = new Set(),
) {
  const log: Array<{ method: string }> = [];
  const before = f.host.faults.callLog;
  f.host.faults.callLog = log as never;
  const t0 = performance.now();
  await op();
  const elapsed = performance.now() - t0;
  f.host.faults.callLog = before;
  const calls = log.filter((c) => !skip.has(c.method)).length;
  return { ratio: elapsed / (calls * latencyMs), elapsed, calls };
}

async function alone(latencyMs: number) {
  const f = setupFakes(latencyMs);
  const rows: Array<[string, number, number, number]> = [];
  let id = '';
  const r1 = await ratioOf(f, latencyMs, async () => (id = (await f.sup.create(TEAM, { templateId: 'base' })).sandbox.id));
  rows.push(['create (base)', r1.ratio, r1.elapsed, r1.calls]);
  const r2 = await ratioOf(f, latencyMs, () => f.sup.pause(TEAM, id));
  rows.push(['pause', r2.ratio, r2.elapsed, r2.calls]);
  const r3 = await ratioOf(f, latencyMs, () => f.sup.resume(TEAM, id));
  rows.push(['resume', r3.ratio, r3.elapsed, r3.calls]);
  const r4 = await ratioOf(f, latencyMs, () => f.sup.snapshot(TEAM, id, { templateId: 'bench-tmpl' }));
  rows.push(['live snapshot', r4.ratio, r4.elapsed, r4.calls]);
  const r5 = await ratioOf(f, latencyMs, () => f.sup.destroy(TEAM, id));
  rows.push(['destroy', r5.ratio, r5.elapsed, r5.calls]);
  console.log(`\n1. Operation time / sum of its sequential step latencies, one sandbox alone (${latencyMs} ms per driver call)`);
  console.log('   operation        ratio   elapsed ms  driver calls');
  for (const [name, ratio, elapsed, calls] of rows) console.log(`   ${name.padEnd(15)} ${fmt(ratio)}   ${fmt(elapsed, 0).padStart(8)}   ${calls}`);
}

const OPS = ['create', 'pause', 'resume', 'destroy'] as const;
type Op = (typeof OPS)[number];
interface Round {
  /** Each operation's time over the sum of its step latencies, one entry per sandbox. */
  ratios: Record<Op, number[]>;
  /** CPU used over the round's wall time (GC threads included). */
  busy: number;
  perCallUs: number;
}

/**
 * n sandboxes on fakes of `latencyMs` per call, each running create, pause,
 * resume and destroy in turn: through the agent, or through the bare machine.
 */
async function crowd(n: number, latencyMs: number) {
  const f = setupFakes(latencyMs);
  // Per-operation sums, measured alone once (the same for every sandbox of one template).
  // The template's loop is attached by the first sandbox and detached by the last, so
  // the other 999 never wait for it; the memory loader's poll runs beside the operations.
  const shared = new Set(['loop.attach', 'loop.detach', 'envd.memoryLoaderStatus']);
  const probe = setupFakes(latencyMs);
  const sums: Record<string, number> = {};
  let pid = '';
  const sum = async (op: () => Promise<unknown>) => (await ratioOf(probe, latencyMs, op, shared)).calls * latencyMs;
  sums.create = await sum(async () => (pid = (await probe.sup.create(TEAM, { templateId: 'base' })).sandbox.id));
  sums.pause = await sum(() => probe.sup.pause(TEAM, pid));
  sums.resume = await sum(() => probe.sup.resume(TEAM, pid));
  sums.destroy = await sum(() => probe.sup.destroy(TEAM, pid));

  const callsPerChain = OPS.reduce((total, op) => total + sums[op]! / latencyMs, 0);
  const run = async (chain: (timed: (name: Op, op: () => Promise<unknown>) => Promise<void>) => Promise<void>): Promise<Round> => {
    const ratios: Record<Op, number[]> = { create: [], pause: [], resume: [], destroy: [] };
    const timed = async (name: Op, op: () => Promise<unknown>) => {
      const t0 = performance.now();
      await op();
      ratios[name].push((performance.now() - t0) / sums[name]!);
    };
    const wall0 = performance.now();
    const cpu0 = process.cpuUsage();
    await Promise.all(Array.from({ length: n }, () => chain(timed)));
    const cpu = process.cpuUsage(cpu0);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    return { ratios, busy: cpuMs / (performance.now() - wall0), perCallUs: (cpuMs * 1000) / (n * callsPerChain) };
  };
  const agentRound = () =>
    run(async (timed) => {
      let id = '';
      await timed('create', async () => (id = (await f.sup.create(TEAM, { templateId: 'base' })).sandbox.id));
      await timed('pause', () => f.sup.pause(TEAM, id));
      await timed('resume', () => f.sup.resume(TEAM, id));
      await timed('destroy', () => f.sup.destroy(TEAM, id));
    });
  const bareRound = async () => {
    const logic = bareLogic(await recordSteps(), latencyMs);
    return run(async (timed) => {
      const actor = bareSandbox(logic);
      for (const op of OPS) await timed(op, () => bareOp(actor, op.toUpperCase() as Uppercase<Op>));
    });
  };
  return { agentRound, bareRound };
}

async function concurrent(n: number, latencyMs: number) {
  const { agentRound, bareRound } = await crowd(n, latencyMs);
  const agent = await agentRound();
  gc?.();
  // The bare machine runs last: its replayed steps are other functions than the
  // agent's, and once xstate's call sites have seen both, an agent round after it
  // measured 68-84 µs per driver call against 57-63 µs before it (no agent runs it).
  const warm = await agentRound();
  gc?.();
  const bare = await bareRound();
  console.log(`\n2. The same ratio with ${n} sandboxes operating at once (${latencyMs} ms per driver call), twice through the agent, then`);
  console.log(`   xstate alone in the same run (the bare machine replaying the agent's steps). The first round runs while the JIT still compiles`);
  console.log(`   the code on the create path (no start-up warm-up: see 2b); the second is the steady state. CPU used over`);
  console.log(`   each round (GC threads included): agent ${fmt(agent.busy * 100, 0)}%, xstate alone ${fmt(bare.busy * 100, 0)}%, agent again ${fmt(warm.busy * 100, 0)}%`);
  // Each call's completion costs CPU; once n of them take about as long as the call itself, the next calls start late.
  const fill = (r: { perCallUs: number }) => `${fmt((r.perCallUs * n) / (latencyMs * 10), 0)}%`;
  console.log(`   CPU per driver call (GC threads included): agent ${fmt(agent.perCallUs, 1)} µs, xstate alone ${fmt(bare.perCallUs, 1)} µs,`);
  console.log(`   agent again ${fmt(warm.perCallUs, 1)} µs; ${n} of them against the ${latencyMs} ms a call waits: ${fill(agent)} / ${fill(bare)} / ${fill(warm)}`);
  console.log('   operation   agent, first round  | xstate alone   | agent, second round');
  console.log('               p50    p99    max   | p50    p99     | p50    p99    max');
  for (const op of OPS) {
    const [a, b, w] = [agent.ratios[op], bare.ratios[op], warm.ratios[op]];
    console.log(
      `   ${op.padEnd(10)}  ${fmt(pct(a, 50))}  ${fmt(pct(a, 99))}  ${fmt(Math.max(...a))} | ${fmt(pct(b, 50))}  ${fmt(pct(b, 99))}  | ${fmt(pct(w, 50))}  ${fmt(pct(w, 99))}  ${fmt(Math.max(...w))}`,
    );
  }
}

/**
 * A fresh process's first crowd, as an agent meets it after start: each round
 * in its own child process (one after the other), once without the start-up
 * JIT warm-up and once after the agent's default one (agent/warm-up.ts).
 */
async function freshProcess(n: number, latencyMs: number) {
  const lifecycles = loadConfig({ env: {} }).warmUpLifecycles;
  console.log(`\n2b. A fresh process's first ${n} at once (${latencyMs} ms per driver call), each in its own process: ratio p99 per operation`);
  console.log('   start-up warm-up            create  pause   resume  destroy | CPU per driver call');
  for (const warm of [0, lifecycles]) {
    const child = await execa(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
      env: { BENCH_ONLY: 'firstRound', BENCH_WARM_UP: String(warm), BENCH_CONCURRENT: String(n), BENCH_LATENCY_MS: String(latencyMs) },
      timeout: 300_000,
    });
    const r = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as { warmUpMs: number; p99: Record<Op, number>; perCallUs: number };
    const label = warm === 0 ? 'none' : `${warm} lifecycles, ${fmt(r.warmUpMs, 0)} ms`;
    console.log(`   ${label.padEnd(27)} ${OPS.map((op) => fmt(r.p99[op])).join('   ')}   | ${fmt(r.perCallUs, 1)} µs`);
  }
}

/** The child of freshProcess: the warm-up it is told, then one round through the agent. */
async function firstRound(n: number, latencyMs: number, lifecycles: number) {
  const warm = lifecycles > 0 ? await warmUp(lifecycles, AbortSignal.timeout(120_000)) : undefined;
  const round = await (await crowd(n, latencyMs)).agentRound();
  const p99 = Object.fromEntries(OPS.map((op) => [op, pct(round.ratios[op], 99)]));
  console.log(JSON.stringify({ warmUpMs: warm?.ms ?? 0, p99, perCallUs: round.perCallUs }));
}

/**
 * xstate's own share, for comparison: the bare machine replaying the recorded
 * steps at zero latency, driven from create to Running; and the leanest machine
 * with as many invoked steps as a create runs.
 */
async function floors(n: number): Promise<{ bareMs: number; leanMs: number; steps: number }> {
  const replay = await recordSteps();
  const logic = bareLogic(replay, 0);
  let t0 = performance.now();
  const bare = Array.from({ length: n }, () => bareSandbox(logic));
  await Promise.all(bare.map((a) => bareOp(a, 'CREATE')));
  const bareMs = performance.now() - t0;
  for (const a of bare) a.stop();
  gc?.();
  const steps = [...replay.keys()].filter((k) => k.startsWith('create/')).length;
  const lean = leanLogic(steps);
  t0 = performance.now();
  await Promise.all(
    Array.from({ length: n }, () => {
      const actor = createActor(lean);
      return new Promise((resolve) => (actor.on('reply', resolve), actor.start()));
    }),
  );
  return { bareMs, leanMs: performance.now() - t0, steps };
}

async function scale(n: number) {
  gc?.();
  const base = process.memoryUsage().heapUsed;
  const f = setupFakes(0);
  gc?.();
  const withSupervisor = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, () => f.sup.create(TEAM, { templateId: 'base' })));
  const createMs = performance.now() - t0;
  gc?.();
  gc?.();
  const heap = process.memoryUsage().heapUsed - withSupervisor;
  console.log(`\n3. ${n} sandboxes created at once (zero latency): ${fmt(createMs / 1000, 2)} s (${fmt((createMs * 1000) / n, 0)} µs each)`);
  console.log(`4. Heap per idle Running sandbox with ${n} sandboxes (agent side: actors, context, logger, allocators): ${fmt(heap / n / 1024, 1)} KB`);
  console.log(`   (fake drivers' own bookkeeping included; process heap before the supervisor: ${fmt(base / 1024 / 1024, 1)} MB)`);
  return f;
}

/**
 * Creates as they reach the supervisor through the server, which lets each team
 * have 32 lifecycle operations in flight (server/limits.ts): a window of them
 * rather than all at once, where every create's steps run in lockstep with the
 * other 9,999 and all their transient state is alive together.
 */
const WINDOW = 256;
async function createsInWindow(n: number, window: number): Promise<number> {
  const f = setupFakes(0);
  let started = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (started < n) {
      started++;
      await f.sup.create(TEAM, { templateId: 'base' });
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
  const ms = performance.now() - t0;
  await f.sup.shutdown();
  return ms;
}

async function pauseAll(n: number, latencyMs: number, rounds = 3) {
  const probe = setupFakes(latencyMs);
  const { sandbox } = await probe.sup.create(TEAM, { templateId: 'base' });
  const singlePause = async () => {
    const t0 = performance.now();
    await probe.sup.pause(TEAM, sandbox.id);
    const ms = performance.now() - t0;
    await probe.sup.resume(TEAM, sandbox.id);
    return ms;
  };
  console.log(`\n5. PauseAll (shutdown) of ${n} sandboxes, 8 at once, against the ideal ceil(${n}/8) × one pause (${latencyMs} ms per driver call)`);
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const f = setupFakes(latencyMs);
    await Promise.all(Array.from({ length: n }, () => f.sup.create(TEAM, { templateId: 'base' })));
    // The single-pause reference is sampled right before and after, so a change in the machine's load shows in both.
    const times: number[] = [];
    for (let i = 0; i < 10; i++) times.push(await singlePause());
    const t0 = performance.now();
    await f.sup.shutdown();
    const elapsed = performance.now() - t0;
    for (let i = 0; i < 10; i++) times.push(await singlePause());
    const pauseMs = pct(times, 50);
    const ideal = Math.ceil(n / 8) * pauseMs;
    const paused = f.sup.list(TEAM).filter((s) => s.status === 'paused').length;
    ratios.push(elapsed / ideal);
    console.log(`   round ${r + 1}: ${fmt(elapsed, 0)} ms; ideal ${Math.ceil(n / 8)} × ${fmt(pauseMs, 1)} ms (median of 20 single pauses) = ${fmt(ideal, 0)} ms; ratio ${fmt(elapsed / ideal)} (${paused} paused)`);
  }
  console.log(`   median ratio ${fmt(pct(ratios, 50))}`);
}

async function childrenVsRoots(n: number) {
  const child = createMachine({ context: { n: 0 }, on: { PING: { actions: assign({ n: ({ context }) => context.n + 1 }) } } });
  const parent = setup({ actors: { child } }).createMachine({
    on: { ADD: { actions: assign(({ spawn }) => (spawn('child'), {})) } },
  });
  const p = createActor(parent).start();
  let t0 = performance.now();
  for (let i = 0; i < n; i++) p.send({ type: 'ADD' });
  const spawned = performance.now() - t0;
  t0 = performance.now();
  const roots = Array.from({ length: n }, () => createActor(child).start());
  const rooted = performance.now() - t0;
  console.log(`\n6. Holding ${n} actors: spawned one by one under one parent ${fmt(spawned, 0)} ms, as root actors in a map ${fmt(rooted, 0)} ms (×${fmt(spawned / rooted, 1)}); sandboxes are root actors`);
  for (const r of roots) r.stop();
  p.stop();
}

/**
 * The agent's young generation is set by `npm start`; figures measured with
 * another one are not the agent's, so the run says which it had.
 */
function youngGeneration(): string {
  const start = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const flag = /--max-semi-space-size=\d+/;
  const agent = flag.exec(start)?.[0] ?? 'the default';
  const here = process.execArgv.find((a) => flag.test(a)) ?? 'the default';
  return here === agent ? `V8 young generation: ${here}, as npm start runs the agent` : `WARNING: this run has ${here}, npm start runs the agent with ${agent}`;
}

const LATENCY = Number(process.env.BENCH_LATENCY_MS ?? 100);
if (!process.env.BENCH_ONLY?.includes('firstRound')) console.log(youngGeneration());
// BENCH_ONLY=alone,concurrent,fresh,scale,pauseAll,roots runs some sections only.
const only = new Set(process.env.BENCH_ONLY?.split(',') ?? ['alone', 'concurrent', 'fresh', 'scale', 'pauseAll', 'roots']);
if (only.has('alone')) await alone(LATENCY);
// With 1,000 sandboxes the agent's CPU work (section 3 gives it per create, beside
// xstate's bare floor) competes with the injected waits: at 100 ms per call it
// fills much of the window, and where it does not fit the ratio measures CPU
// saturation (the busy figure says how close); at 500 ms it measures scheduling.
const CROWD = Number(process.env.BENCH_CONCURRENT ?? 1000);
if (only.has('concurrent')) for (const latency of [LATENCY, 5 * LATENCY]) await concurrent(CROWD, latency);
if (only.has('fresh')) await freshProcess(CROWD, LATENCY);
if (only.has('firstRound')) await firstRound(CROWD, LATENCY, Number(process.env.BENCH_WARM_UP ?? 0));
if (only.has('scale')) {
  const n = Number(process.env.BENCH_SANDBOXES ?? 10_000);
  const floor = await floors(n);
  gc?.();
  const big = await scale(n);
  const each = (ms: number) => `${fmt(ms / 1000, 2)} s (${fmt((ms * 1000) / n, 0)} µs each)`;
  console.log(`   xstate alone in the same run: the bare sandbox machine replaying the agent's steps ${each(floor.bareMs)};`);
  console.log(`   the leanest machine with ${floor.steps} invoked steps (flat, no guard, no parallel region) ${each(floor.leanMs)}`);
  await big.sup.shutdown();
  gc?.();
  const windowed = await createsInWindow(n, WINDOW);
  console.log(`   the same ${n} creates with at most ${WINDOW} in flight, as the server admits them from 8 teams (32 lifecycle operations each): ${each(windowed)}`);
}
if (only.has('pauseAll')) await pauseAll(1000, Number(process.env.BENCH_PAUSE_LATENCY_MS ?? 2));
if (only.has('roots')) await childrenVsRoots(5000);
