import { SandboxdError } from '../../core/errors.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import type { EnvdDriver } from '../../drivers/envd/envd.ts';
import { clockTicksPerSecond, readProcCpu } from '../../drivers/vmm/proc-stat.ts';
import { isMetricRange, MetricRings, RANGES, type MetricPoint } from './rings.ts';

/**
 * Samples each Running sandbox once a second (lifecycle.md, Metrics): the VMM
 * process's CPU % from /proc and the guest's memory and disk use from envd.
 */

export type { MetricPoint } from './rings.ts';

export interface SamplerTarget {
  pid: number;
  envdUrl: string;
  vcpus: number;
}

export interface FlushedMetrics {
  points10m: MetricPoint[];
  points2h: MetricPoint[];
  points24h: MetricPoint[];
}

/** Time and timers, injectable so tests drive the sampler by hand. */
export interface SamplerClock {
  now(): number;
  every(ms: number, fn: () => Promise<void>): { cancel(): void };
}

export const realClock: SamplerClock = {
  now: () => Date.now(),
  every(ms, fn) {
    const t = setInterval(() => void fn(), ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
};

export interface SamplerDeps {
  envd: Pick<EnvdDriver, 'usage'>;
  clock?: SamplerClock;
  /** utime+stime of a process in clock ticks. */
  readCpuTicks?: (pid: number) => Promise<number>;
  /** Clock ticks per second (USER_HZ). */
  clockTicks?: () => Promise<number>;
  intervalMs?: number;
  log?: Logger;
}

/** CPU % of `vcpus` over `elapsedSec`: tick delta / (elapsed × ticks/s × vcpus), clamped to 0–100. */
export function cpuPercent(deltaTicks: number, elapsedSec: number, ticksPerSec: number, vcpus: number): number {
  if (!(elapsedSec > 0) || !(vcpus > 0) || !(ticksPerSec > 0)) return 0;
  const pct = (deltaTicks / (elapsedSec * ticksPerSec * vcpus)) * 100;
  return Math.min(100, Math.max(0, Number.isFinite(pct) ? pct : 0));
}

interface Entry {
  target: SamplerTarget;
  rings: MetricRings;
  timer: { cancel(): void } | null;
  abort: AbortController | null;
  last: { ticks: number; at: number } | null;
  busy: boolean;
}

export class MetricsSampler {
  private readonly entries = new Map<string, Entry>();
  private readonly clock: SamplerClock;
  private readonly readCpuTicks: (pid: number) => Promise<number>;
  private readonly clockTicks: () => Promise<number>;
  private readonly intervalMs: number;
  private readonly log: Logger;

  constructor(private readonly deps: SamplerDeps) {
    this.clock = deps.clock ?? realClock;
    this.readCpuTicks = deps.readCpuTicks ?? (async (pid) => (await readProcCpu(pid)).ticks);
    this.clockTicks = deps.clockTicks ?? clockTicksPerSecond;
    this.intervalMs = deps.intervalMs ?? 1000;
    this.log = deps.log ?? silentLogger;
  }

  /** Starts (or re-targets) sampling; the rings of an earlier run are kept until flushed. */
  start(sandboxId: string, target: SamplerTarget): void {
    if (!Number.isInteger(target.pid) || target.pid <= 0 || !Number.isInteger(target.vcpus) || target.vcpus <= 0) {
      throw new SandboxdError('invalid_argument', `metrics: invalid target pid=${target.pid} vcpus=${target.vcpus}`);
    }
    const entry = this.entries.get(sandboxId) ?? { target, rings: new MetricRings(), timer: null, abort: null, last: null, busy: false };
    this.halt(entry);
    entry.target = target;
    entry.last = null;
    entry.abort = new AbortController();
    // The first reading only sets the baseline for the first delta.
    void this.baseline(entry, entry.abort.signal);
    entry.timer = this.clock.every(this.intervalMs, () => this.tick(entry));
    this.entries.set(sandboxId, entry);
  }

  /** Stops sampling and forgets the sandbox. */
  stop(sandboxId: string): void {
    const entry = this.entries.get(sandboxId);
    if (!entry) return;
    this.halt(entry);
    this.entries.delete(sandboxId);
  }

  points(sandboxId: string, range: string): MetricPoint[] {
    if (!isMetricRange(range)) throw new SandboxdError('invalid_range', `invalid range ${JSON.stringify(range)}: use one of ${Object.keys(RANGES).join(', ')}`);
    const entry = this.entries.get(sandboxId);
    if (!entry) throw new SandboxdError('not_found', `no metrics for ${sandboxId}`);
    const { tier, ms } = RANGES[range];
    const since = this.clock.now() - ms;
    return entry.rings.tier(tier).filter((p) => p.ts >= since);
  }

  /** Returns all three rings, clears them and stops sampling (the sandbox stays known, with empty rings). */
  flush(sandboxId: string): FlushedMetrics {
    const entry = this.entries.get(sandboxId);
    if (!entry) throw new SandboxdError('not_found', `no metrics for ${sandboxId}`);
    this.halt(entry);
    const out = { points10m: entry.rings.tier('fine'), points2h: entry.rings.tier('mid'), points24h: entry.rings.tier('coarse') };
    entry.rings.clear();
    return out;
  }

  /** Whether the sandbox has rings (sampled now, or flushed and not yet stopped). */
  has(sandboxId: string): boolean {
    return this.entries.has(sandboxId);
  }

  /** Number of sandboxes being sampled right now. */
  get active(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.timer) n++;
    return n;
  }

  private halt(entry: Entry): void {
    entry.timer?.cancel();
    entry.timer = null;
    entry.abort?.abort();
    entry.abort = null;
  }

  private async baseline(entry: Entry, signal: AbortSignal): Promise<void> {
    const at = this.clock.now();
    try {
      const ticks = await this.readCpuTicks(entry.target.pid);
      if (!signal.aborted && entry.last === null) entry.last = { ticks, at };
    } catch {
      // the first tick sets it instead
    }
  }

  /** One sample; skipped when the previous one is still waiting on envd. */
  private async tick(entry: Entry): Promise<void> {
    const signal = entry.abort?.signal;
    if (entry.busy || !signal || signal.aborted) return;
    entry.busy = true;
    try {
      const now = this.clock.now();
      let cpuPct = 0;
      try {
        const ticks = await this.readCpuTicks(entry.target.pid);
        if (entry.last) {
          cpuPct = cpuPercent(ticks - entry.last.ticks, (now - entry.last.at) / 1000, await this.clockTicks(), entry.target.vcpus);
        }
        entry.last = { ticks, at: now };
      } catch (err) {
        this.log.debug({ err, pid: entry.target.pid }, 'metrics: /proc read failed');
      }
      let memBytes = 0;
      let diskBytes = 0;
      try {
        // Bounded below the interval so a stuck envd cannot pile samples up.
        const usage = await this.deps.envd.usage(entry.target.envdUrl, { signal: AbortSignal.any([signal, AbortSignal.timeout(Math.max(100, this.intervalMs - 100))]) });
        memBytes = usage.memUsedBytes;
        diskBytes = usage.diskUsedBytes;
      } catch (err) {
        this.log.debug({ err }, 'metrics: envd usage failed');
      }
      if (!signal.aborted) entry.rings.push({ ts: now, cpuPct, memBytes, diskBytes });
    } finally {
      entry.busy = false;
    }
  }
}
