// The live inspector's cost, side by side in one run:
//  1. per sandbox event, with no inspection at all, with the feed recording
//     but nobody watching (page closed), and with one subscriber that gets
//     every entry serialised (page open): ACTIVITY pings on running sandboxes,
//     then whole create/pause/resume/destroy lifecycles;
//  2. update latency seen by a WebSocket client subscribed to the feed while
//     1,000 sandboxes pause at once (time from the entry being recorded to its
//     frame arriving; client and agent share this process and its 2 cores).
// Run: node --import tsx --expose-gc bench/inspect.bench.ts
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { InspectionEvent } from 'xstate';
import { createSupervisor, type Supervisor } from '../actors/supervisor.ts';
import { createFakeDrivers } from '../drivers/fake/index.ts';
import { sha256Hex } from '../server/auth.ts';
import { createInspectionFeed, type InspectionFeed } from '../server/inspect/feed.ts';
import { createServer } from '../server/server.ts';

type Mode = 'none' | 'noop' | 'closed' | 'open';
const MODES: Mode[] = ['none', 'noop', 'closed', 'open'];
const admin = { teamId: null };
const SANDBOXES = 200;
const PINGS = 50;
const LIFECYCLES = 100;
const ROUNDS = 5;
const require = createRequire(import.meta.url);

function setup(mode: Mode): { supervisor: Supervisor; feed: InspectionFeed | null; delivered: () => number } {
  const fake = createFakeDrivers();
  const feed = mode === 'none' || mode === 'noop' ? null : createInspectionFeed();
  let delivered = 0;
  if (mode === 'open') {
    // Stands in for a page's connection: every entry is turned into its frame.
    feed!.subscribe({ teamId: null, deliverInspect: (_e, frame) => void (delivered += frame().length > 0 ? 1 : 0) }, null);
  }
  // 'noop': xstate's own cost of having an inspect callback at all.
  const inspect = feed !== null ? feed.inspect : mode === 'noop' ? () => {} : undefined;
  const supervisor = createSupervisor({ drivers: fake.drivers, ...(inspect === undefined ? {} : { inspect }) });
  return { supervisor, feed, delivered: () => delivered };
}

async function pingCost(mode: Mode): Promise<number> {
  const { supervisor } = setup(mode);
  const ids: string[] = [];
  for (let i = 0; i < SANDBOXES; i++) ids.push((await supervisor.create(admin, { templateId: 'base', teamId: 't' })).sandbox.id);
  globalThis.gc?.();
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < PINGS; r++) for (const id of ids) supervisor.ping(admin, id);
  const ns = Number(process.hrtime.bigint() - t0) / (PINGS * ids.length);
  await Promise.all(ids.map((id) => supervisor.destroy(admin, id)));
  return ns;
}

async function lifecycleCost(mode: Mode): Promise<{ msPer: number; events: number }> {
  const { supervisor } = setup(mode);
  let events = 0;
  const off = supervisor.onState(() => events++);
  globalThis.gc?.();
  const t0 = performance.now();
  for (let i = 0; i < LIFECYCLES; i++) {
    const { sandbox } = await supervisor.create(admin, { templateId: 'base', teamId: 't' });
    await supervisor.pause(admin, sandbox.id);
    await supervisor.resume(admin, sandbox.id);
    await supervisor.destroy(admin, sandbox.id);
  }
  const ms = performance.now() - t0;
  off();
  return { msPer: ms / LIFECYCLES, events: events / LIFECYCLES };
}

/**
 * The feed's own cost per inspection event, without the noise of the actors:
 * real events captured from lifecycles are replayed into a no-op callback, a
 * feed nobody watches and a feed with one subscriber that serialises every entry.
 */
async function replay(): Promise<void> {
  const captured: InspectionEvent[] = [];
  const fake = createFakeDrivers();
  const supervisor = createSupervisor({ drivers: fake.drivers, inspect: (e) => captured.push(e) });
  for (let i = 0; i < 50; i++) {
    const { sandbox } = await supervisor.create(admin, { templateId: 'base', teamId: 't' });
    await supervisor.pause(admin, sandbox.id);
    await supervisor.resume(admin, sandbox.id);
    await supervisor.destroy(admin, sandbox.id);
  }
  const roots = captured.filter((e) => e.actorRef.sessionId === e.rootId && (e.type === '@xstate.event' || e.type === '@xstate.snapshot')).length;
  const run = (inspect: (e: InspectionEvent) => void) => {
    const t0 = process.hrtime.bigint();
    for (const e of captured) inspect(e);
    return Number(process.hrtime.bigint() - t0) / captured.length;
  };
  const res: Record<string, number[]> = { noop: [], closed: [], open: [] };
  let bytes = 0;
  for (let r = 0; r < 7; r++) {
    res.noop!.push(run(() => {}));
    res.closed!.push(run(createInspectionFeed().inspect));
    const open = createInspectionFeed();
    open.subscribe({ teamId: null, deliverInspect: (_e, frame) => void (bytes = frame().length) }, null);
    res.open!.push(run(open.inspect));
  }
  console.log(`0. feed cost per inspection event (replay of ${captured.length} real events, ${roots} of them recorded; median of 7)`);
  for (const [k, v] of Object.entries(res)) console.log(`   ${k.padEnd(8)} ${median(v).toFixed(0).padStart(6)} ns/event`);
  void bytes;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function costs(): Promise<void> {
  const ping: Record<Mode, number[]> = { none: [], noop: [], closed: [], open: [] };
  const life: Record<Mode, number[]> = { none: [], noop: [], closed: [], open: [] };
  let steps = 0;
  for (let r = 0; r < ROUNDS; r++) {
    // Interleaved so drift in the machine's speed hits every mode alike.
    for (const m of MODES) ping[m].push(await pingCost(m));
    for (const m of MODES) {
      const l = await lifecycleCost(m);
      life[m].push(l.msPer);
      steps = l.events;
    }
  }
  console.log(`1. cost per event (median of ${ROUNDS} rounds; ${SANDBOXES} sandboxes × ${PINGS} pings; ${LIFECYCLES} lifecycles of ~${steps.toFixed(0)} steps each)`);
  const base = median(ping.none);
  const baseLife = median(life.none);
  for (const m of MODES) {
    const p = median(ping[m]);
    const l = median(life[m]);
    const label = { none: 'no inspection', noop: 'no-op inspect cb', closed: 'feed, page closed', open: 'feed, page open' }[m];
    console.log(
      `   ${label.padEnd(20)} ping ${(p / 1000).toFixed(2).padStart(6)} µs/event (×${(p / base).toFixed(2)})` +
        `   lifecycle ${l.toFixed(2).padStart(6)} ms (×${(l / baseLife).toFixed(2)}, +${(((l - baseLife) * 1000) / steps).toFixed(1)} µs per step)`,
    );
  }
}

async function latency(n: number): Promise<void> {
  const feed = createInspectionFeed();
  const fake = createFakeDrivers();
  const supervisor = createSupervisor({ drivers: fake.drivers, inspect: feed.inspect, slots: 4096 });
  const token = 'sbxt-bench-inspect';
  const server = createServer({ supervisor, inspector: feed, tokens: [{ sha256: sha256Hex(token), teamId: null }], limits: { highWaterBytes: 64 << 20, hardCapBytes: 256 << 20 } });
  const addr = await server.listen(0);
  const ids: string[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => supervisor.create(admin, { templateId: 'base', teamId: 't' })));
    ids.push(...batch.map((b) => b.sandbox.id));
  }
  // The client runs in a worker thread: in this process's event loop it would
  // measure how long the agent's own work keeps it from reading.
  const worker = new Worker(CLIENT, { eval: true, workerData: { ws: require.resolve('ws'), url: `ws://127.0.0.1:${addr.port}/v1`, token, n } });
  const ready = new Promise<void>((r) => worker.once('message', () => r()));
  const result = new Promise<{ lat: number[]; gaps: number; lastAt: number }>((r) => worker.on('message', (m) => m !== 'subscribed' && r(m)));
  await ready;
  const t0 = performance.now();
  const wall0 = Date.now();
  await Promise.all(ids.map((id) => supervisor.pause(admin, id)));
  const agentDone = performance.now() - t0;
  const { lat, gaps, lastAt } = await result;
  lat.sort((a, b) => a - b);
  const p = (q: number) => lat[Math.min(lat.length - 1, Math.floor(lat.length * q))]!;
  console.log(`2. ${n} sandboxes pausing at once, one WebSocket subscriber of the whole feed (client in a worker thread)`);
  console.log(`   ${lat.length} entries; latency p50 ${p(0.5)} ms, p95 ${p(0.95)} ms, p99 ${p(0.99)} ms, max ${lat.at(-1)} ms; gaps ${gaps}`);
  console.log(`   all pauses done in the agent after ${agentDone.toFixed(0)} ms; last "paused" at the client ${lastAt - wall0} ms after the start`);
  await worker.terminate();
  await server.close();
}

/** The subscriber (plain JS, run as a worker): counts entries until every sandbox reported "paused". */
const CLIENT = `
const { parentPort, workerData } = require('node:worker_threads');
const { WebSocket } = require(workerData.ws);
const ws = new WebSocket(workerData.url, { headers: { authorization: 'Bearer ' + workerData.token } });
const lat = [];
let paused = 0, gaps = 0;
ws.on('message', (data) => {
  const msg = JSON.parse(data.toString());
  if (msg.id === 1) return parentPort.postMessage('subscribed');
  if (msg.method === 'inspect.gap') gaps++;
  if (msg.method !== 'inspect.event') return;
  lat.push(Date.now() - msg.params.at);
  if (msg.params.kind === 'snapshot' && msg.params.step === 'paused' && ++paused === workerData.n) {
    parentPort.postMessage({ lat, gaps, lastAt: Date.now() });
  }
});
ws.on('open', () => ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'inspect.subscribe', params: {} })));
`;

await replay();
await costs();
await latency(1000);
