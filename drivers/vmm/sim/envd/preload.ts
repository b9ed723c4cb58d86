import type { GuestMemory } from '../memory.ts';

// The guest side of the memory loader (Wrenn's POST /memory/preload): walks all
// RAM and touches every page, which faults in what an on-demand restore left in the
// snapshot file. It advances only while the VM runs (a paused guest does nothing).

export type PreloadState = 'idle' | 'running' | 'done' | 'failed' | 'cancelled';

export interface PreloadStatus {
  state: PreloadState;
  regions: number;
  pages: number;
  bytes: number;
  elapsed_sec: number;
  source: string;
  error: string | null;
}

/** Pages per step: 16 MiB, so a 512 MiB guest is walked in 32 event-loop turns. */
const STEP_PAGES = 4096;

export class MemoryPreloader {
  private status: PreloadStatus = MemoryPreloader.idle();
  private startedAt = 0;
  private nextPage = 0;
  private stopTimer: () => void = () => undefined;

  constructor(
    private readonly memory: () => GuestMemory | null,
    private readonly running: () => boolean,
  ) {}

  private static idle(): PreloadStatus {
    return { state: 'idle', regions: 0, pages: 0, bytes: 0, elapsed_sec: 0, source: '', error: null };
  }

  snapshot(): PreloadStatus {
    if (this.status.state === 'running') this.status.elapsed_sec = (Date.now() - this.startedAt) / 1000;
    return { ...this.status };
  }

  /** The first call starts the walk; later calls only report, unless it was reset or stopped. */
  start(): PreloadStatus {
    if (this.status.state === 'idle' || this.status.state === 'cancelled' || this.status.state === 'failed') {
      this.status = { ...MemoryPreloader.idle(), state: 'running', regions: 1, source: '/dev/mem' };
      this.startedAt = Date.now();
      this.nextPage = 0;
      this.schedule();
    }
    return this.snapshot();
  }

  cancel(): void {
    if (this.status.state !== 'running') return;
    this.stopTimer();
    this.status = { ...this.snapshot(), state: 'cancelled' };
  }

  /** /init resets the status (and stops a walk in progress). */
  reset(): void {
    this.stopTimer();
    this.status = MemoryPreloader.idle();
  }

  private schedule(): void {
    const handle = setImmediate(() => this.step());
    this.stopTimer = () => clearImmediate(handle);
  }

  private step(): void {
    if (this.status.state !== 'running') return;
    const mem = this.memory();
    if (!mem) {
      this.status = { ...this.snapshot(), state: 'failed', error: 'guest memory is gone' };
      return;
    }
    if (!this.running()) {
      // frozen guest: look again shortly without spinning
      const handle = setTimeout(() => this.step(), 20);
      this.stopTimer = () => clearTimeout(handle);
      return;
    }
    try {
      const from = this.nextPage;
      this.nextPage = mem.faultRange(from, STEP_PAGES);
      this.status.pages += this.nextPage - from;
      this.status.bytes = this.status.pages * 4096;
    } catch (err) {
      this.status = { ...this.snapshot(), state: 'failed', error: (err as Error).message };
      return;
    }
    if (this.nextPage >= mem.pageCount) {
      this.status = { ...this.snapshot(), state: 'done' };
      return;
    }
    this.schedule();
  }
}
