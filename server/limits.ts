// Limits that keep one client (or one team) from starving the others.

export interface ServerLimits {
  /** Largest frame accepted; a bigger one closes the connection with 1009. */
  maxPayloadBytes: number;
  /** Requests of one connection running at once; more are answered rate_limited. */
  maxInFlight: number;
  /** Token bucket per connection: sustained requests per second and burst size. */
  ratePerSec: number;
  burst: number;
  /** Subscriptions one connection may hold. */
  maxSubscriptions: number;
  /** Above this many buffered bytes, sandbox.state notifications coalesce per sandbox. */
  highWaterBytes: number;
  /** A connection whose buffer stays above this for `slowReaderGraceMs` is closed with 1008. */
  hardCapBytes: number;
  slowReaderGraceMs: number;
  /** Ping interval; a peer that has not answered the previous ping is dropped. */
  heartbeatMs: number;
  /** Lifecycle operations (create, pause, …) one team may have in flight. */
  teamOps: number;
  maxConnections: number;
  /** How long close() waits for peers to answer the close frame before cutting them off. */
  closeGraceMs: number;
}

export const defaultLimits: ServerLimits = {
  maxPayloadBytes: 64 * 1024,
  maxInFlight: 64,
  ratePerSec: 100,
  burst: 200,
  maxSubscriptions: 64,
  highWaterBytes: 256 * 1024,
  hardCapBytes: 4 * 1024 * 1024,
  slowReaderGraceMs: 2000,
  heartbeatMs: 30_000,
  teamOps: 32,
  maxConnections: 10_000,
  closeGraceMs: 3000,
};

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  take(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSec);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Counts lifecycle operations in flight per team; admin calls count under their own key. */
export class TeamOpLimiter {
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly cap: number) {}

  /** Takes a place for `team`; returns the release function, or null when the team is at its cap. */
  acquire(team: string): (() => void) | null {
    const n = this.inFlight.get(team) ?? 0;
    if (n >= this.cap) return null;
    this.inFlight.set(team, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.inFlight.get(team) ?? 1) - 1;
      if (left <= 0) this.inFlight.delete(team);
      else this.inFlight.set(team, left);
    };
  }
}
