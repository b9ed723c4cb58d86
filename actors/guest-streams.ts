import { SandboxdError } from '../core/errors.ts';
import type { EnvdDriver, EnvdStreams, ProcessEvent, ProcessStream } from '../drivers/envd/envd.ts';

/**
 * Guest streams (exec streams, PTY and process connections) per sandbox. They
 * live only while the sandbox runs: leaving Running aborts the sandbox's signal,
 * which cancels calls still opening and closes every open stream. The guest
 * processes themselves are not killed here (a paused guest keeps them).
 */
export class GuestStreamSet {
  readonly #bySandbox = new Map<string, { abort: AbortController; open: Set<ProcessStream> }>();

  /** Aborted when the sandbox leaves Running; every guest call of this run carries it. */
  signal(sandboxId: string): AbortSignal {
    return this.#get(sandboxId).abort.signal;
  }

  /** Tracks a stream until it ends, is cancelled, or the sandbox leaves Running; `onEvent` sees each event. */
  adopt(sandboxId: string, stream: ProcessStream, onEvent: () => void = () => undefined): ProcessStream {
    const entry = this.#get(sandboxId);
    if (entry.abort.signal.aborted) {
      stream.cancel();
      throw new SandboxdError('not_running', `sandbox ${sandboxId} left running`);
    }
    let done = false;
    const tracked: ProcessStream = {
      events: follow(stream.events, onEvent, () => release()),
      cancel: () => release(),
    };
    const release = (): void => {
      if (done) return;
      done = true;
      entry.open.delete(tracked);
      stream.cancel();
    };
    entry.open.add(tracked);
    return tracked;
  }

  count(sandboxId: string): number {
    return this.#bySandbox.get(sandboxId)?.open.size ?? 0;
  }

  /** The sandbox left Running: cancel what is opening, close what is open; the next run gets a fresh signal. */
  closeAll(sandboxId: string): void {
    const entry = this.#bySandbox.get(sandboxId);
    if (entry === undefined) return;
    this.#bySandbox.delete(sandboxId);
    entry.abort.abort(new SandboxdError('not_running', `sandbox ${sandboxId} left running`));
    for (const stream of [...entry.open]) stream.cancel();
  }

  #get(sandboxId: string) {
    let entry = this.#bySandbox.get(sandboxId);
    if (entry === undefined) {
      entry = { abort: new AbortController(), open: new Set() };
      this.#bySandbox.set(sandboxId, entry);
    }
    return entry;
  }
}

/** Passes events through; runs `onEnd` once the consumer stops iterating, for whatever reason. */
async function* follow(events: AsyncIterable<ProcessEvent>, onEvent: () => void, onEnd: () => void): AsyncGenerator<ProcessEvent> {
  try {
    for await (const event of events) {
      onEvent();
      yield event;
    }
  } finally {
    onEnd();
  }
}

export function hasStreams(envd: EnvdDriver): envd is EnvdDriver & EnvdStreams {
  const s = envd as Partial<EnvdStreams>;
  return typeof s.execStream === 'function' && typeof s.processList === 'function' && typeof s.ptyStart === 'function';
}
