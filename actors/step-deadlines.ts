import { SandboxdError } from '../core/errors.ts';

/** A step's bound while it is in flight; hand it back to `remove` when the step settles. */
export interface Deadline {
  readonly name: string;
  readonly boundMs: number;
}

interface Entry extends Deadline {
  /** null once the step settled or was aborted. */
  ctl: AbortController | null;
  readonly at: number;
  readonly queue: Queue;
}

/** The steps of one bound, in the order they were added, which is deadline order. */
interface Queue {
  items: Entry[];
  head: number;
}

/**
 * The bounds of the steps in flight, on one timer: a step whose bound runs out
 * has its controller aborted with a timeout error. A timer per step cost a
 * Timeout object and a timer-list insert and removal for every step, and in a
 * crowd each Timeout outlived its step's wait and was copied by the young
 * generation GC. A map of the steps in flight then cost about as much as the
 * rest of the step runner with 10,000 creates at once (rehashing as it churned).
 *
 * Steps of one bound are added in deadline order, so each bound keeps a queue
 * and only its head can be due. A settled step is marked and skipped, and
 * settled steps at a queue's head are dropped as they settle. The one timer is
 * re-armed only for a deadline earlier than the one it waits for, and cleared
 * when no step is in flight, so an idle agent holds no timer.
 */
export class StepDeadlines {
  readonly #queues = new Map<number, Queue>();
  #live = 0;
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Infinity;

  add(ctl: AbortController, name: string, boundMs: number): Deadline {
    let queue = this.#queues.get(boundMs);
    if (queue === undefined) this.#queues.set(boundMs, (queue = { items: [], head: 0 }));
    const entry: Entry = { ctl, at: performance.now() + boundMs, name, boundMs, queue };
    queue.items.push(entry);
    this.#live++;
    if (entry.at < this.#timerAt) this.#arm(entry.at);
    return entry;
  }

  /** The step settled (or was aborted otherwise): its bound no longer applies. */
  remove(deadline: Deadline): void {
    const entry = deadline as Entry;
    if (entry.ctl === null) return;
    entry.ctl = null;
    if (--this.#live === 0) {
      // Nothing in flight: drop every queue's settled entries and the timer.
      for (const queue of this.#queues.values()) {
        queue.items.length = 0;
        queue.head = 0;
      }
      if (this.#timer !== null) clearTimeout(this.#timer);
      this.#timer = null;
      this.#timerAt = Infinity;
      return;
    }
    dropSettledHead(entry.queue);
  }

  get size(): number {
    return this.#live;
  }

  /** Entries kept, settled ones not yet dropped included: what the queues cost in memory. */
  get kept(): number {
    let kept = 0;
    for (const queue of this.#queues.values()) kept += queue.items.length - queue.head;
    return kept;
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
    for (const queue of this.#queues.values()) {
      for (; queue.head < queue.items.length; queue.head++) {
        const entry = queue.items[queue.head]!;
        if (entry.ctl === null) continue;
        if (entry.at > now) {
          next = Math.min(next, entry.at);
          break;
        }
        const ctl = entry.ctl;
        entry.ctl = null;
        this.#live--;
        ctl.abort(new SandboxdError('timeout', `${entry.name} took longer than ${entry.boundMs} ms`));
      }
      compact(queue);
    }
    if (next !== Infinity) this.#arm(next);
  }
}

function dropSettledHead(queue: Queue): void {
  while (queue.head < queue.items.length && queue.items[queue.head]!.ctl === null) queue.head++;
  compact(queue);
}

/** Drops the skipped head once it is most of the array, so a queue's array stays about the size of what is in flight. */
function compact(queue: Queue): void {
  if (queue.head < 64 || queue.head * 2 < queue.items.length) return;
  queue.items.copyWithin(0, queue.head);
  queue.items.length -= queue.head;
  queue.head = 0;
}
