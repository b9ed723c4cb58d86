import type { LoopDriver } from '../drivers/storage/storage.ts';

interface Entry {
  refs: number;
  device: string;
}

/**
 * One read-only loop device per template image, shared by every sandbox made
 * from it: attached on first acquire, detached when the last holder releases.
 * Acquires and releases of one image run one at a time, so a release that
 * detaches can never race an acquire that would reuse the device.
 */
export class LoopRegistry {
  readonly #entries = new Map<string, Entry>();
  readonly #queues = new Map<string, Promise<unknown>>();

  constructor(private readonly loop: LoopDriver) {}

  acquire(imagePath: string, signal: AbortSignal): Promise<string> {
    return this.#serial(imagePath, async () => {
      const entry = this.#entries.get(imagePath);
      if (entry !== undefined) {
        entry.refs++;
        return entry.device;
      }
      const device = await this.loop.attach(imagePath, { signal });
      this.#entries.set(imagePath, { refs: 1, device });
      return device;
    });
  }

  release(imagePath: string, signal: AbortSignal): Promise<void> {
    return this.#serial(imagePath, async () => {
      const entry = this.#entries.get(imagePath);
      if (entry === undefined) return;
      if (entry.refs === 1) {
        // Detach before forgetting: if it fails, the reference stays and a retry can detach.
        await this.loop.detach(entry.device, imagePath, { signal });
        this.#entries.delete(imagePath);
      } else {
        entry.refs--;
      }
    });
  }

  /** image → refcount, for ledger comparisons. */
  held(): Map<string, number> {
    return new Map([...this.#entries].map(([path, e]) => [path, e.refs]));
  }

  /** Shutdown: detaches whatever is left regardless of counts. */
  async releaseAll(signal: AbortSignal): Promise<void> {
    for (const [path, entry] of [...this.#entries]) {
      await this.#serial(path, async () => {
        await this.loop.detach(entry.device, path, { signal });
        this.#entries.delete(path);
      });
    }
  }

  #serial<T>(imagePath: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(imagePath) ?? Promise.resolve();
    const run = previous.then(task, task);
    const tail = run.catch(() => undefined);
    this.#queues.set(imagePath, tail);
    void tail.then(() => {
      if (this.#queues.get(imagePath) === tail) this.#queues.delete(imagePath);
    });
    return run;
  }
}
