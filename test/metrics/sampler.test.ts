import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { MetricRings, RANGES, TIERS, type MetricPoint } from '../../actors/metrics/rings.ts';
import { cpuPercent, MetricsSampler, type SamplerClock } from '../../actors/metrics/sampler.ts';
import type { GuestUsage } from '../../drivers/envd/envd.ts';

/** A hand-driven clock: `advance` fires due timers in order and waits for each sample to finish. */
class FakeClock implements SamplerClock {
  t: number;
  readonly timers = new Set<{ ms: number; fn: () => Promise<void>; next: number }>();
  constructor(start: number) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  every(ms: number, fn: () => Promise<void>): { cancel(): void } {
    const timer = { ms, fn, next: this.t + ms };
    this.timers.add(timer);
    return { cancel: () => this.timers.delete(timer) };
  }
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      let due: { ms: number; fn: () => Promise<void>; next: number } | undefined;
      for (const timer of this.timers) if (timer.next <= end && (!due || timer.next < due.next)) due = timer;
      if (!due) break;
      this.t = due.next;
      due.next += due.ms;
      await due.fn();
    }
    this.t = end;
  }
}

// Aligned to a 5-minute boundary so coarse buckets start with the first sample.
const T0 = 1_800_000_000_000 - (1_800_000_000_000 % 300_000);

function setup(opts: { ticksPerSecond?: number; usage?: (url: string, signal: AbortSignal) => Promise<GuestUsage> } = {}) {
  const clock = new FakeClock(T0);
  const ticks = new Map<number, number>();
  let usageCalls = 0;
  const sampler = new MetricsSampler({
    clock,
    clockTicks: async () => 100,
    readCpuTicks: async (pid) => {
      const v = ticks.get(pid);
      if (v === undefined) throw new Error('no such process');
      return v;
    },
    envd: {
      usage: (url, { signal }) => {
        usageCalls++;
        return opts.usage ? opts.usage(url, signal) : Promise.resolve({ memUsedBytes: 1000 + usageCalls, diskUsedBytes: 5000 });
      },
    },
  });
  return { clock, ticks, sampler, usageCalls: () => usageCalls };
}

/** Lets the sampler's baseline read (a resolved promise chain) settle. */
const settle = () => new Promise((r) => setImmediate(r));

test('CPU % is the tick delta over elapsed × ticks/s × vcpus, clamped to 0–100', () => {
  assert.equal(cpuPercent(50, 1, 100, 1), 50);
  assert.equal(cpuPercent(50, 1, 100, 2), 25);
  assert.equal(cpuPercent(150, 2, 100, 1), 75);
  assert.equal(cpuPercent(500, 1, 100, 1), 100, 'VMM threads beyond the vCPUs are clamped');
  assert.equal(cpuPercent(-10, 1, 100, 1), 0, 'a counter going backwards (pid reuse) is not negative');
  assert.equal(cpuPercent(10, 0, 100, 1), 0, 'no elapsed time: no division by zero');
  assert.equal(cpuPercent(10, 1, 100, 0), 0);
});

test('each second yields one point with CPU from the /proc delta and memory/disk from envd', async () => {
  const { clock, ticks, sampler } = setup();
  ticks.set(4242, 1000);
  sampler.start('sb-a', { pid: 4242, envdUrl: 'http://127.0.0.1:1', vcpus: 2 });
  await settle();
  for (let i = 1; i <= 5; i++) {
    ticks.set(4242, 1000 + i * 60); // 60 ticks per second on 2 vCPUs at 100 Hz = 30 %
    await clock.advance(1000);
  }
  const pts = sampler.points('sb-a', '5m');
  assert.equal(pts.length, 5);
  assert.deepEqual(pts.map((p) => p.ts), [1, 2, 3, 4, 5].map((i) => T0 + i * 1000));
  for (const p of pts) assert.ok(Math.abs(p.cpuPct - 30) < 1e-9, String(p.cpuPct));
  assert.deepEqual(pts.map((p) => p.memBytes), [1001, 1002, 1003, 1004, 1005]);
  assert.ok(pts.every((p) => p.diskBytes === 5000));
  sampler.stop('sb-a');
});

test('a guest whose envd fails still gets CPU points (memory and disk 0) instead of a gap', async () => {
  const { clock, ticks, sampler } = setup({ usage: () => Promise.reject(new SandboxdError('operation_failed', 'down')) });
  ticks.set(7, 0);
  sampler.start('sb-b', { pid: 7, envdUrl: 'http://127.0.0.1:1', vcpus: 1 });
  await settle();
  ticks.set(7, 100);
  await clock.advance(1000);
  assert.deepEqual(sampler.points('sb-b', '10m'), [{ ts: T0 + 1000, cpuPct: 100, memBytes: 0, diskBytes: 0 }]);
  sampler.stop('sb-b');
});

test('a slow envd does not pile samples up, and stop aborts the call in flight', async () => {
  const signals: AbortSignal[] = [];
  const { clock, ticks, sampler, usageCalls } = setup({
    usage: (_url, signal) => {
      signals.push(signal);
      return new Promise(() => undefined); // never answers
    },
  });
  ticks.set(9, 0);
  sampler.start('sb-c', { pid: 9, envdUrl: 'http://127.0.0.1:1', vcpus: 1 });
  await settle();
  // The first tick hangs on envd; advancing must not start more calls meanwhile.
  void clock.advance(1000);
  await settle();
  const firstTimer = [...clock.timers][0];
  assert.ok(firstTimer);
  await firstTimer.fn();
  await firstTimer.fn();
  assert.equal(usageCalls(), 1);
  sampler.stop('sb-c');
  assert.equal(signals[0]?.aborted, true);
  assert.equal(clock.timers.size, 0, 'no timer left behind');
});

test('ranges pick their tier and cut-off; anything else is invalid_range, an unknown sandbox not_found', async () => {
  const { clock, ticks, sampler } = setup();
  ticks.set(11, 0);
  sampler.start('sb-d', { pid: 11, envdUrl: 'http://127.0.0.1:1', vcpus: 1 });
  await settle();
  await clock.advance(11 * 60_000);
  const now = clock.now();
  const five = sampler.points('sb-d', '5m');
  assert.ok(five.length > 0 && five.every((p) => p.ts >= now - RANGES['5m'].ms));
  assert.equal(five.length, RANGES['5m'].ms / 1000 + 1);
  assert.equal(sampler.points('sb-d', '10m').length, TIERS.fine.capacity, 'the 1 s ring holds 10 minutes');
  const hour = sampler.points('sb-d', '1h');
  assert.equal(hour.length, (11 * 60_000) / TIERS.mid.stepMs, 'finished 30 s buckets only');
  assert.ok(hour.every((p) => p.ts % TIERS.mid.stepMs === 0));
  for (const bad of ['1m', '48h', '', '10M', 'toString']) {
    assert.throws(() => sampler.points('sb-d', bad), (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_range', bad);
  }
  assert.throws(() => sampler.points('sb-zz', '5m'), (e: unknown) => e instanceof SandboxdError && e.code === 'not_found');
  sampler.stop('sb-d');
});

test('flush returns all three rings, clears them and stops sampling', async () => {
  const { clock, ticks, sampler, usageCalls } = setup();
  ticks.set(12, 0);
  sampler.start('sb-e', { pid: 12, envdUrl: 'http://127.0.0.1:1', vcpus: 1 });
  await settle();
  await clock.advance(6 * 60_000);
  const flushed = sampler.flush('sb-e');
  assert.equal(flushed.points10m.length, 360);
  // The sample at the end opens a new bucket, so every bucket before it is finished.
  assert.equal(flushed.points2h.length, (6 * 60_000) / TIERS.mid.stepMs);
  assert.equal(flushed.points24h.length, Math.floor((6 * 60_000) / TIERS.coarse.stepMs));
  const calls = usageCalls();
  await clock.advance(10_000);
  assert.equal(usageCalls(), calls, 'no sampling after a flush');
  assert.equal(clock.timers.size, 0);
  assert.deepEqual(sampler.points('sb-e', '10m'), []);
  assert.equal(sampler.active, 0);
  sampler.stop('sb-e');
});

test('coarse points are bucket averages, and the rings keep only their capacity', () => {
  const rings = new MetricRings();
  const total = 25 * 3600; // 25 hours at 1 s
  for (let i = 0; i < total; i++) rings.push({ ts: T0 + i * 1000, cpuPct: i % 2 === 0 ? 10 : 30, memBytes: i, diskBytes: 7 });
  const fine = rings.tier('fine');
  assert.equal(fine.length, TIERS.fine.capacity);
  assert.equal(fine.at(-1)?.ts, T0 + (total - 1) * 1000);
  const mid = rings.tier('mid');
  assert.equal(mid.length, TIERS.mid.capacity);
  const coarse = rings.tier('coarse');
  assert.equal(coarse.length, TIERS.coarse.capacity);
  // The last finished 5 min bucket covers samples [k, k+300) for k = total - 300 (the last one is pending).
  const last = coarse.at(-1) as MetricPoint;
  const k = total - 600;
  assert.equal(last.ts, T0 + k * 1000);
  assert.equal(last.cpuPct, 20);
  assert.equal(last.memBytes, Math.round(k + 299 / 2));
  assert.equal(last.diskBytes, 7);
  rings.clear();
  assert.deepEqual([rings.tier('fine'), rings.tier('mid'), rings.tier('coarse')], [[], [], []]);
});

test('start refuses a bad target instead of sampling pid 0', () => {
  const { sampler } = setup();
  assert.throws(() => sampler.start('sb-f', { pid: 0, envdUrl: 'x', vcpus: 1 }), (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_argument');
  assert.throws(() => sampler.start('sb-f', { pid: 5, envdUrl: 'x', vcpus: 0 }), SandboxdError);
  assert.equal(sampler.active, 0);
});

test('the real /proc reader sees this process burn CPU, and USER_HZ is known', async () => {
  const { readProcCpu, clockTicksPerSecond } = await import('../../drivers/vmm/proc-stat.ts');
  const before = await readProcCpu(process.pid);
  // Burn CPU until the kernel has charged a few ticks (bounded: a loaded machine may schedule us little).
  const deadline = Date.now() + 10_000;
  let after = before;
  while (after.ticks < before.ticks + 3 && Date.now() < deadline) {
    const until = Date.now() + 20;
    while (Date.now() < until) Math.sqrt(Math.random());
    after = await readProcCpu(process.pid);
  }
  assert.ok(after.ticks >= before.ticks + 3, `${before.ticks} → ${after.ticks}`);
  assert.ok(['R', 'S'].includes(after.state), after.state);
  const hz = await clockTicksPerSecond();
  assert.ok(Number.isInteger(hz) && hz > 0);
});
