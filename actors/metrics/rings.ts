/**
 * Three fixed-size rings of metric points: the last 10 minutes at 1 s, 2 hours
 * of 30 s averages and 24 hours of 5 min averages. Coarse points are averages
 * over wall-clock buckets, so a gap in sampling never stretches a bucket.
 */

export interface MetricPoint {
  /** Unix ms; for a coarse point, the start of its bucket. */
  ts: number;
  cpuPct: number;
  memBytes: number;
  diskBytes: number;
}

export interface TierSpec {
  stepMs: number;
  capacity: number;
}

export const TIERS = {
  fine: { stepMs: 1_000, capacity: 600 },
  mid: { stepMs: 30_000, capacity: 240 },
  coarse: { stepMs: 300_000, capacity: 288 },
} as const satisfies Record<string, TierSpec>;

export type TierName = keyof typeof TIERS;

class Ring {
  private readonly items: (MetricPoint | undefined)[];
  private head = 0;
  private size = 0;
  constructor(readonly capacity: number) {
    this.items = new Array<MetricPoint | undefined>(capacity);
  }
  push(p: MetricPoint): void {
    this.items[(this.head + this.size) % this.capacity] = p;
    if (this.size < this.capacity) this.size++;
    else this.head = (this.head + 1) % this.capacity;
  }
  /** Oldest first. */
  toArray(): MetricPoint[] {
    const out: MetricPoint[] = [];
    for (let i = 0; i < this.size; i++) out.push(this.items[(this.head + i) % this.capacity] as MetricPoint);
    return out;
  }
  clear(): void {
    this.items.fill(undefined);
    this.head = 0;
    this.size = 0;
  }
}

/** Averages raw samples over one bucket of a coarse tier. */
class Bucket {
  private start = -1;
  private n = 0;
  private cpu = 0;
  private mem = 0;
  private disk = 0;
  constructor(private readonly stepMs: number) {}

  /** Adds a sample; returns the finished average when the sample opens a new bucket. */
  add(p: MetricPoint): MetricPoint | null {
    const start = Math.floor(p.ts / this.stepMs) * this.stepMs;
    let done: MetricPoint | null = null;
    if (this.n > 0 && start !== this.start) done = this.average();
    if (done || this.n === 0) {
      this.start = start;
      this.n = this.cpu = this.mem = this.disk = 0;
    }
    this.n++;
    this.cpu += p.cpuPct;
    this.mem += p.memBytes;
    this.disk += p.diskBytes;
    return done;
  }

  private average(): MetricPoint {
    return { ts: this.start, cpuPct: this.cpu / this.n, memBytes: Math.round(this.mem / this.n), diskBytes: Math.round(this.disk / this.n) };
  }

  clear(): void {
    this.start = -1;
    this.n = this.cpu = this.mem = this.disk = 0;
  }
}

export class MetricRings {
  private readonly rings = { fine: new Ring(TIERS.fine.capacity), mid: new Ring(TIERS.mid.capacity), coarse: new Ring(TIERS.coarse.capacity) };
  private readonly buckets = { mid: new Bucket(TIERS.mid.stepMs), coarse: new Bucket(TIERS.coarse.stepMs) };

  push(p: MetricPoint): void {
    this.rings.fine.push(p);
    const mid = this.buckets.mid.add(p);
    if (mid) this.rings.mid.push(mid);
    const coarse = this.buckets.coarse.add(p);
    if (coarse) this.rings.coarse.push(coarse);
  }

  tier(name: TierName): MetricPoint[] {
    return this.rings[name].toArray();
  }

  clear(): void {
    for (const r of Object.values(this.rings)) r.clear();
    for (const b of Object.values(this.buckets)) b.clear();
  }
}

/** Which tier serves a range, and how far back it reaches. */
export const RANGES = {
  '5m': { tier: 'fine', ms: 5 * 60_000 },
  '10m': { tier: 'fine', ms: 10 * 60_000 },
  '1h': { tier: 'mid', ms: 60 * 60_000 },
  '2h': { tier: 'mid', ms: 2 * 60 * 60_000 },
  '6h': { tier: 'coarse', ms: 6 * 60 * 60_000 },
  '12h': { tier: 'coarse', ms: 12 * 60 * 60_000 },
  '24h': { tier: 'coarse', ms: 24 * 60 * 60_000 },
} as const satisfies Record<string, { tier: TierName; ms: number }>;

export type MetricRange = keyof typeof RANGES;

export function isMetricRange(value: unknown): value is MetricRange {
  return typeof value === 'string' && Object.hasOwn(RANGES, value);
}
