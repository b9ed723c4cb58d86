// How much the fake drivers cost the runtime benchmarks: 10,000 sandboxes
// through create → pause → resume → destroy at zero latency, with no fault
// rules and with rules that never match (the scan every call then pays),
// plus the cost of the ledger queries the model tests make after each step.
import { createFakeDrivers, type FakeDrivers } from '../drivers/fake/index.ts';
import { createFromBase, destroy, pause, resume, type Running } from '../test/fakes/script.ts';

const N = Number(process.env.FAKE_BENCH_N ?? 10_000);
const BATCH = 100;

async function inBatches(n: number, run: (i: number) => Promise<void>): Promise<void> {
  for (let start = 0; start < n; start += BATCH) {
    const jobs: Promise<void>[] = [];
    for (let i = start; i < Math.min(n, start + BATCH); i++) jobs.push(run(i));
    await Promise.all(jobs);
  }
}

interface Figures {
  create: number;
  pauseResume: number;
  destroy: number;
  calls: number;
}

async function lifecycle(fake: FakeDrivers): Promise<Figures> {
  const d = fake.drivers;
  const held: Running[] = [];
  let t = performance.now();
  await inBatches(N, async (i) => {
    held[i] = await createFromBase(d, `sb-bench-${i}`, i);
  });
  const create = performance.now() - t;
  t = performance.now();
  await inBatches(N, async (i) => {
    const s = held[i];
    if (s === undefined) throw new Error('missing sandbox');
    await pause(d, s, { detachLoop: false });
    held[i] = await resume(d, s.id);
  });
  const pauseResume = performance.now() - t;
  t = performance.now();
  await inBatches(N, async (i) => {
    const s = held[i];
    if (s !== undefined) await destroy(d, s, { detachLoop: false });
  });
  const destroyMs = performance.now() - t;
  let calls = 0;
  for (const n of fake.host.faults.calls.values()) calls += n;
  if (fake.host.ledger.vms.size !== 0 || fake.host.ledger.cows.size !== 0) throw new Error('bench leaked');
  return { create, pauseResume, destroy: destroyMs, calls };
}

function row(name: string, f: Figures, base?: Figures): string {
  const total = f.create + f.pauseResume + f.destroy;
  const ratio = base === undefined ? '' : `  x${(total / (base.create + base.pauseResume + base.destroy)).toFixed(2)}`;
  return (
    `${name.padEnd(28)} create ${f.create.toFixed(0).padStart(6)} ms  pause+resume ${f.pauseResume.toFixed(0).padStart(6)} ms` +
    `  destroy ${f.destroy.toFixed(0).padStart(6)} ms  ${((total * 1000) / f.calls).toFixed(2)} µs/call${ratio}`
  );
}

// Warm up the JIT so the first row is not penalised.
const warm = createFakeDrivers();
await lifecycle(warm);

function withRules(): FakeDrivers {
  const fake = createFakeDrivers();
  for (const m of ['vmm.pause', 'disk.create', 'files.swapIn', 'envd.exec', 'network.remove'] as const) {
    fake.host.faults.fail(m, { sandboxId: 'sb-never' });
  }
  fake.host.faults.latency('templates.importRootfs', 5);
  return fake;
}

// Alternate the two variants so machine noise hits both alike; report medians.
const ROUNDS = 3;
const plainRuns: Figures[] = [];
const ruledRuns: Figures[] = [];
for (let r = 0; r < ROUNDS; r++) {
  plainRuns.push(await lifecycle(createFakeDrivers()));
  ruledRuns.push(await lifecycle(withRules()));
}
const total = (f: Figures): number => f.create + f.pauseResume + f.destroy;
const median = (runs: Figures[]): Figures => {
  const sorted = [...runs].sort((a, b) => total(a) - total(b));
  const mid = sorted[Math.floor(sorted.length / 2)];
  if (mid === undefined) throw new Error('no runs');
  return mid;
};
const plain = median(plainRuns);
console.log(`fake drivers, ${N} sandboxes, zero latency (${plain.calls} gated calls per run, median of ${ROUNDS})`);
console.log(row('no rules', plain));
console.log(row('5 non-matching rules', median(ruledRuns), plain));

// Ledger queries at full scale.
const big = createFakeDrivers();
await inBatches(N, async (i) => {
  await createFromBase(big.drivers, `sb-big-${i}`, i);
});
let t = performance.now();
const snap = big.host.ledger.snapshot();
const snapshotMs = performance.now() - t;
t = performance.now();
const probes = 100;
for (let i = 0; i < probes; i++) big.host.ledger.heldBy(`sb-big-${i * 97}`);
const heldByMs = (performance.now() - t) / probes;
console.log(
  `ledger with ${snap.vms.length} sandboxes: snapshot() ${snapshotMs.toFixed(1)} ms, heldBy() ${heldByMs.toFixed(2)} ms each, ` +
    `heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB`,
);
