import { SandboxdError } from '../core/errors.ts';

/**
 * Network slot indices. A slot is held from create until destroy, across
 * pause and resume, so a resumed sandbox keeps its host IP. The lowest free
 * slot is handed out first, which keeps names and addresses small and dense.
 */
export class SlotAllocator {
  readonly #owner = new Map<number, string>();
  #next = 0;

  constructor(readonly capacity: number) {}

  allocate(sandboxId: string): number {
    if (this.#owner.size >= this.capacity) throw new SandboxdError('operation_failed', 'no free network slot');
    while (this.#owner.has(this.#next)) this.#next = (this.#next + 1) % this.capacity;
    const slot = this.#next;
    this.#owner.set(slot, sandboxId);
    return slot;
  }

  /** Takes a known slot again (start-up, or a slot recorded in a pause snapshot). */
  reserve(slot: number, sandboxId: string): void {
    const owner = this.#owner.get(slot);
    if (owner !== undefined && owner !== sandboxId) {
      throw new SandboxdError('operation_failed', `slot ${slot} is held by ${owner}`);
    }
    this.#owner.set(slot, sandboxId);
  }

  release(slot: number): void {
    this.#owner.delete(slot);
    if (slot < this.#next) this.#next = slot;
  }

  ownerOf(slot: number): string | undefined {
    return this.#owner.get(slot);
  }

  get inUse(): number {
    return this.#owner.size;
  }

  /** slot → sandbox id, for ledger comparisons. */
  held(): Map<number, string> {
    return new Map(this.#owner);
  }
}
