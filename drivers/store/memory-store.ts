import type { SandboxRecord, SandboxStore } from './store.ts';

/** In-memory store; the SQLite store replaces it where records must outlive the process. */
export class MemoryStore implements SandboxStore {
  readonly #records = new Map<string, SandboxRecord>();
  save(record: SandboxRecord): void {
    this.#records.set(record.id, record);
  }

  remove(sandboxId: string): void {
    this.#records.delete(sandboxId);
  }

  loadAll(): SandboxRecord[] {
    return [...this.#records.values()];
  }

  #epoch = 0;
  nextEpoch(): number {
    return ++this.#epoch;
  }

  get(sandboxId: string): SandboxRecord | undefined {
    return this.#records.get(sandboxId);
  }
}
