// The cost of durability (issue 6): the real Supervisor on the fake drivers
// drives N sandboxes through create → pause → resume → destroy with the
// in-memory store and with the SQLite store (synchronous FULL, the agent's
// setting, and NORMAL for comparison), side by side in one run; then raw
// save() and ledger throughput, and how a save's time splits.
// Run: node --import tsx bench/store.bench.ts   (STORE_BENCH_N=500 sandboxes)
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Supervisor } from '../actors/supervisor.ts';
import { createFakeDrivers } from '../drivers/fake/index.ts';
import { MemoryStore } from '../drivers/store/memory-store.ts';
import { checkRecord } from '../drivers/store/record-schema.ts';
import { SqliteStore } from '../drivers/store/sqlite-store.ts';
import type { SandboxRecord, SandboxStore } from '../drivers/store/store.ts';

const N = Number(process.env.STORE_BENCH_N ?? 500);
const CONCURRENCY = 50;
const RAW_SAVES = Number(process.env.STORE_BENCH_SAVES ?? 5_000);
const TEAM = { teamId: 'bench' };

const dirs: string[] = [];
function benchDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sandboxd-test-bench-store-'));
  dirs.push(dir);
  return dir;
}
process.on('exit', () => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** The filesystem the SQLite file lives on: fsync cost depends on it. */
function filesystemOf(path: string): string {
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '));
  const best = mounts.filter((m) => m[1] !== undefined && (path === m[1] || path.startsWith(m[1] === '/' ? '/' : `${m[1]}/`))).sort((a, b) => b[1]!.length - a[1]!.length)[0];
  return best === undefined ? 'unknown' : `${best[2]} on ${best[0]} at ${best[1]}`;
}

/** Counts the writes and the time spent inside them. */
/** The floor under a synchronous=FULL commit: one 4 KiB write + fdatasync on the same filesystem (median µs). */
function fsyncFloorUs(dir: string): number {
  const fd = openSync(join(dir, 'fsync-probe'), 'w');
  const page = Buffer.alloc(4096, 1);
  const times: number[] = [];
  try {
    for (let i = 0; i < 300; i++) {
      const t0 = performance.now();
      writeSync(fd, page);
      fdatasyncSync(fd);
      times.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
  }
  return times.sort((a, b) => a - b)[times.length >> 1]! * 1000;
}

class CountingStore implements SandboxStore {
  writes = 0;
  insideMs = 0;
  constructor(readonly inner: SandboxStore) {}
  save(record: SandboxRecord): void {
    const t0 = performance.now();
    this.writes++;
    this.inner.save(record);
    this.insideMs += performance.now() - t0;
  }
  remove(id: string): void {
    const t0 = performance.now();
    this.writes++;
    this.inner.remove(id);
    this.insideMs += performance.now() - t0;
  }
  loadAll(): SandboxRecord[] {
    return this.inner.loadAll();
  }
  nextEpoch(): number {
    return this.inner.nextEpoch();
  }
}

interface Run {
  name: string;
  ms: number;
  writes: number;
  insideMs: number;
}

async function lifecycle(name: string, store: SandboxStore, n: number): Promise<Run> {
  const counting = new CountingStore(store);
  const fakes = createFakeDrivers();
  const sup = new Supervisor({ drivers: { ...fakes.drivers, store: counting }, slots: n + 10 });
  const t0 = performance.now();
  for (let start = 0; start < n; start += CONCURRENCY) {
    const batch = Array.from({ length: Math.min(CONCURRENCY, n - start) }, async () => {
      const { sandbox } = await sup.create(TEAM, { templateId: 'base' });
      await sup.pause(TEAM, sandbox.id);
      await sup.resume(TEAM, sandbox.id);
      await sup.destroy(TEAM, sandbox.id);
    });
    await Promise.all(batch);
  }
  const ms = performance.now() - t0;
  await sup.shutdown();
  if (store.loadAll().length !== 0) throw new Error(`${name}: records left after destroy`);
  return { name, ms, writes: counting.writes, insideMs: counting.insideMs };
}

/**
 * Fills a store with `paused` + `running` sandboxes, kills the agent (halt: the
 * actors stop, records and host stay), opens the store again and times a new
 * agent's reconcile() over it.
 */
async function reconciliation(durable: boolean, paused: number, running: number) {
  const fakes = createFakeDrivers();
  const dir = benchDir();
  const openStore = (): SandboxStore & { close?: () => void } => (durable ? new SqliteStore(dir) : memory);
  const memory = new MemoryStore();
  let store = openStore();
  const first = new Supervisor({ drivers: { ...fakes.drivers, store }, slots: paused + running + 10 });
  const ids: string[] = [];
  for (let start = 0; start < paused + running; start += CONCURRENCY) {
    const batch = Array.from({ length: Math.min(CONCURRENCY, paused + running - start) }, async (_, k) => {
      const { sandbox } = await first.create(TEAM, { templateId: 'base', timeoutSec: 0 });
      if (start + k < paused) await first.pause(TEAM, sandbox.id);
      ids.push(sandbox.id);
    });
    await Promise.all(batch);
  }
  first.halt();
  store.close?.();
  store = openStore();
  const t0 = performance.now();
  const loadMs = (() => {
    const t = performance.now();
    store.loadAll();
    return performance.now() - t;
  })();
  const next = new Supervisor({ drivers: { ...fakes.drivers, store }, slots: paused + running + 10, gateUntilReconciled: true });
  const report = await next.reconcile(AbortSignal.timeout(600_000));
  const ms = performance.now() - t0 - loadMs;
  const outcomes: Record<string, number> = {};
  for (const o of report.outcomes) outcomes[o.to] = (outcomes[o.to] ?? 0) + 1;
  next.halt();
  store.close?.();
  return { ms, loadMs, outcomes };
}

function sample(i: number): SandboxRecord {
  return {
    id: `sb-bench-${i % 1000}`,
    teamId: 'bench',
    templateId: 'base',
    vcpus: 1,
    memoryMB: 512,
    diskSizeMB: 1024,
    timeoutSec: 300,
    status: 'running',
    step: 'running.inactivity.off+running.memoryLoader.idle',
    opId: null,
    incarnation: 1,
    slot: i % 1000,
    hostIp: '10.11.0.1',
    rootfsDevice: `/dev/mapper/sbx-bench-${i}`,
    resources: { loopDevice: '/dev/loop1', sandboxDir: true, disk: { name: 'x', devicePath: '/dev/mapper/x', cowPath: '/d/x/rootfs.cow' } },
    createdAt: '2026-11-23T10:00:00.000Z',
    lastActiveAt: '2026-11-23T10:00:00.000Z',
    metadata: { envdVersion: '0.4.1' },
    machine: { value: { running: { inactivity: 'off', memoryLoader: 'idle' } }, context: { id: `sb-bench-${i % 1000}` } },
    ledger: [{ kind: 'vmm', name: `sb-bench-${i % 1000}`, state: 'present' }],
  };
}

function timeIt(n: number, fn: (i: number) => void): number {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn(i);
  return (performance.now() - t0) / n; // ms per call
}

const pad = (s: string, n: number) => s.padEnd(n);
const num = (x: number, d = 0) => x.toFixed(d).padStart(9);

async function main(): Promise<void> {
  const probe = benchDir();
  console.log(`store bench: ${N} sandboxes × create/pause/resume/destroy, ${CONCURRENCY} at once; SQLite file on ${filesystemOf(probe)}`);
  // The disk is shared with whatever else runs: fsync latency moves the SQLite figures, so it is printed beside them.
  console.log(`fsync floor before: ${fsyncFloorUs(probe).toFixed(0)} µs per 4 KiB write + fdatasync (median)`);

  // Warm-up so the first measured configuration does not pay for JIT and module loading.
  await lifecycle('warm-up', new MemoryStore(), 50);

  const full = new SqliteStore(benchDir());
  const normal = new SqliteStore(benchDir(), { synchronous: 'NORMAL' });
  const runs = [
    await lifecycle('MemoryStore', new MemoryStore(), N),
    await lifecycle('SqliteStore synchronous=FULL', full, N),
    await lifecycle('SqliteStore synchronous=NORMAL', normal, N),
  ];
  const base = runs[0]!;
  console.log('\n1. Supervisor lifecycle throughput (every transition saved before it is announced)');
  console.log(`   ${pad('store', 32)}  total ms  transitions  transitions/s   µs/transition  × memory  of which in store`);
  for (const r of runs) {
    const perSec = (r.writes / r.ms) * 1000;
    console.log(`   ${pad(r.name, 32)}${num(r.ms)}  ${num(r.writes)}    ${num(perSec)}      ${num((r.ms * 1000) / r.writes, 1)}   ${(r.ms / base.ms).toFixed(2)}   ${num((r.insideMs * 1000) / r.writes, 1)} µs`);
  }
  const fullRun = runs[1]!;
  console.log(`   cost of durability: ${(((fullRun.ms - base.ms) * 1000) / fullRun.writes).toFixed(1)} µs per transition (${(fullRun.ms / base.ms).toFixed(2)}× the in-memory run)`);

  console.log(`\n2. Raw save() of one ~600-byte record, ${RAW_SAVES} calls over 1,000 ids (each its own committed transaction)`);
  const mem = new MemoryStore();
  const rows: Array<[string, number]> = [
    ['MemoryStore', timeIt(RAW_SAVES, (i) => mem.save(sample(i)))],
    ['zod check alone (part of every SQLite save)', timeIt(RAW_SAVES, (i) => checkRecord(sample(i)))],
    ['SqliteStore synchronous=FULL', timeIt(RAW_SAVES, (i) => full.save(sample(i)))],
    ['SqliteStore synchronous=NORMAL', timeIt(RAW_SAVES, (i) => normal.save(sample(i)))],
  ];
  console.log(`   ${pad('', 46)}  µs/save     saves/s`);
  for (const [name, ms] of rows) console.log(`   ${pad(name, 46)}${num(ms * 1000, 1)}  ${num(1000 / ms)}`);

  const moves = Math.min(RAW_SAVES, 2_000);
  const ledgerMs = timeIt(moves, (i) => {
    const name = `/d/sandboxes/sb-${i}/rootfs.cow`;
    full.intend('cow', name, `sb-l${i}`);
    full.markPresent('cow', name, `sb-l${i}`);
  });
  console.log(`\n3. Ledger, synchronous=FULL: intend + markPresent ${num((ledgerMs * 1000) / 2, 1)} µs per move (${num(2000 / ledgerMs)} moves/s)`);
  const t0 = performance.now();
  const loaded = full.loadAll().length;
  console.log(`   loadAll of ${loaded} records (parsed with zod): ${(performance.now() - t0).toFixed(1)} ms`);
  full.close();
  normal.close();

  const PAUSED = Number(process.env.STORE_BENCH_PAUSED ?? 1_000);
  const RUNNING = Number(process.env.STORE_BENCH_RUNNING ?? 100);
  console.log(`\n4. Start-up reconciliation of ${PAUSED} paused + ${RUNNING} running records (fake drivers: the agent's own cost)`);
  for (const durable of [false, true]) {
    const r = await reconciliation(durable, PAUSED, RUNNING);
    console.log(
      `   ${pad(durable ? 'SqliteStore synchronous=FULL' : 'MemoryStore', 32)} ${num(r.ms)} ms total (${num((r.ms * 1000) / (PAUSED + RUNNING), 1)} µs per sandbox), of which loading the records ${r.loadMs.toFixed(1)} ms; outcomes ${JSON.stringify(r.outcomes)}`,
    );
  }
  console.log(`\nfsync floor after: ${fsyncFloorUs(probe).toFixed(0)} µs per 4 KiB write + fdatasync (median)`);
}

await main();
