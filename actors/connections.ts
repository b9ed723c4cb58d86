/**
 * Proxy connections into each sandbox. A pause drains them: new ones are
 * refused, in-flight ones get a grace period, the rest are closed; the drain
 * ends (reset) when the sandbox runs again or is torn down.
 */
export interface TrackedConnection {
  close(): void;
}

interface SandboxConnections {
  open: Set<TrackedConnection>;
  draining: boolean;
  idle: Array<() => void>;
}

export class ConnectionTracker {
  readonly #bySandbox = new Map<string, SandboxConnections>();

  #get(sandboxId: string): SandboxConnections {
    let entry = this.#bySandbox.get(sandboxId);
    if (entry === undefined) {
      entry = { open: new Set(), draining: false, idle: [] };
      this.#bySandbox.set(sandboxId, entry);
    }
    return entry;
  }

  /** Registers a connection; returns its release, or null while the sandbox drains (refuse it). */
  track(sandboxId: string, conn: TrackedConnection): (() => void) | null {
    const entry = this.#get(sandboxId);
    if (entry.draining) return null;
    entry.open.add(conn);
    return () => {
      entry.open.delete(conn);
      if (entry.open.size === 0) for (const wake of entry.idle.splice(0)) wake();
    };
  }

  count(sandboxId: string): number {
    return this.#bySandbox.get(sandboxId)?.open.size ?? 0;
  }

  /** Refuses new connections, waits up to `graceMs` for open ones to end, then closes the rest. */
  async drain(sandboxId: string, graceMs: number, signal: AbortSignal): Promise<void> {
    const entry = this.#get(sandboxId);
    entry.draining = true;
    if (entry.open.size > 0) {
      await new Promise<void>((resolve) => {
        const done = () => (clearTimeout(timer), signal.removeEventListener('abort', done), resolve());
        const timer = setTimeout(done, graceMs);
        signal.addEventListener('abort', done, { once: true });
        entry.idle.push(done);
      });
    }
    for (const conn of entry.open) conn.close();
    entry.open.clear();
  }

  /** Accepts connections again (the VM runs again). */
  reset(sandboxId: string): void {
    const entry = this.#bySandbox.get(sandboxId);
    if (entry !== undefined) entry.draining = false;
  }

  forget(sandboxId: string): void {
    const entry = this.#bySandbox.get(sandboxId);
    if (entry === undefined) return;
    for (const conn of entry.open) conn.close();
    this.#bySandbox.delete(sandboxId);
  }
}
