import { SandboxdError } from '../core/errors.ts';

/**
 * The bounds of the steps in flight, on one timer: a step whose bound runs out
 * has its controller aborted with a timeout error. A timer per step cost a
 * Timeout object and a timer-list insert and removal for every step, and in a
 * crowd each Timeout outlived its step's wait and was copied by the young
 * generation GC. Here a step costs a map entry; the one timer is re-armed only
 * for a deadline earlier than the one it waits for, and cleared when no step
 * is in flight, so an idle agent holds no timer.
 */
export class StepDeadlines {
  readonly #due = new Map<AbortController, { at: number; name: string; boundMs: number }>();
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Infinity;

  add(ctl: AbortController, name: string, boundMs: number): void {
    const at = performance.now() + boundMs;
    this.#due.set(ctl, { at, name, boundMs });
    if (at < this.#timerAt) this.#arm(at);
  }

  /** The step settled (or was aborted otherwise): its bound no longer applies. */
  remove(ctl: AbortController): void {
    this.#due.delete(ctl);
    if (this.#due.size === 0 && this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
      this.#timerAt = Infinity;
    }
  }

  get size(): number {
    return this.#due.size;
  }

  #arm(at: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, at - performance.now()));
  }

  #expire(): void {
    this.#timer = null;
    this.#timerAt = Infinity;
    // Timers count whole milliseconds, so one can fire a fraction of one early.
    const now = performance.now() + 1;
    let next = Infinity;
    for (const [ctl, due] of this.#due) {
      if (due.at <= now) {
        this.#due.delete(ctl);
        ctl.abort(new SandboxdError('timeout', `${due.name} took longer than ${due.boundMs} ms`));
      } else if (due.at < next) next = due.at;
    }
    if (next !== Infinity) this.#arm(next);
  }
}
