import { SandboxdError } from '../core/errors.ts';
import type { ProcessEvent, ProcessStream } from '../drivers/envd/envd.ts';
import { notification } from './rpc.ts';

/**
 * The guest streams one WebSocket connection opened. Each gets an id in the
 * method's result; its output goes to this connection only, as `stream.data`
 * then one `stream.exit`. Closing the connection closes its streams (the guest
 * process of a PTY or background process keeps running; envd decides that).
 */
export interface StreamPort {
  /** Adopts a stream: waits for its start event (pid), returns its id, then forwards its events. */
  open(stream: ProcessStream): Promise<{ streamId: string; pid: number | null }>;
}

export interface StreamDataNotice {
  streamId: string;
  stdout?: string;
  stderr?: string;
  pty?: string;
}

export interface StreamExitNotice {
  streamId: string;
  /** null when the stream ended without the process's end (closed, sandbox left Running, envd failed). */
  exitCode: number | null;
  exited: boolean;
  status: string;
  error: string | null;
}

/** Open guest streams per connection. */
export const MAX_STREAMS = 64;
const BACKLOG_POLL_MS = 10;

export class ConnectionStreams implements StreamPort {
  readonly #open = new Map<string, ProcessStream>();
  #next = 1;
  #closed = false;

  constructor(
    private readonly send: (frame: string) => void,
    private readonly maxStreams: number,
    /** True while the peer is behind: the streams stop reading from the guest until it catches up. */
    private readonly congested: () => boolean = () => false,
  ) {}

  get size(): number {
    return this.#open.size;
  }

  async open(stream: ProcessStream): Promise<{ streamId: string; pid: number | null }> {
    if (this.#closed) {
      stream.cancel();
      throw new SandboxdError('cancelled', 'connection closed');
    }
    if (this.#open.size >= this.maxStreams) {
      stream.cancel();
      throw new SandboxdError('rate_limited', `at most ${this.maxStreams} streams per connection`);
    }
    const streamId = `st-${this.#next++}`;
    this.#open.set(streamId, stream);
    const it = stream.events[Symbol.asyncIterator]();
    let first: IteratorResult<ProcessEvent> | { error: unknown };
    try {
      first = await it.next();
    } catch (error) {
      first = { error };
    }
    if (this.#closed) {
      stream.cancel();
      throw new SandboxdError('cancelled', 'connection closed');
    }
    const pid = 'value' in first && first.value?.type === 'start' ? first.value.pid : null;
    const pending = pid === null ? first : null;
    // After the reply: the result frame carrying the id is written before any of its notifications.
    setImmediate(() => void this.#pump(streamId, it, pending));
    return { streamId, pid };
  }

  /** Closes one stream of this connection; false when the id is not one of them. */
  close(streamId: string): boolean {
    const stream = this.#open.get(streamId);
    if (stream === undefined) return false;
    this.#open.delete(streamId);
    stream.cancel();
    return true;
  }

  closeAll(): void {
    this.#closed = true;
    for (const stream of this.#open.values()) stream.cancel();
    this.#open.clear();
  }

  async #pump(streamId: string, it: AsyncIterator<ProcessEvent>, pending: IteratorResult<ProcessEvent> | { error: unknown } | null): Promise<void> {
    let end: StreamExitNotice = { streamId, exitCode: null, exited: false, status: 'closed', error: 'stream ended without an exit' };
    try {
      let step = pending;
      for (;;) {
        // Flow control: a slow reader slows the guest's stream down instead of piling up frames here.
        while (step === null && !this.#closed && this.congested()) await new Promise((r) => setTimeout(r, BACKLOG_POLL_MS));
        step ??= await it.next();
        if ('error' in step) throw step.error;
        if (step.done === true) break;
        const e = step.value;
        step = null;
        if (e.type === 'stdout' || e.type === 'stderr' || e.type === 'pty') {
          this.#notify('stream.data', { streamId, [e.type]: e.data.toString('base64') });
        } else if (e.type === 'end') {
          end = { streamId, exitCode: e.exitCode, exited: e.exited, status: e.status, error: e.error };
        }
      }
    } catch (err) {
      end = { ...end, error: err instanceof Error ? err.message : String(err) };
    } finally {
      const owned = this.#open.get(streamId);
      this.#open.delete(streamId);
      owned?.cancel();
    }
    this.#notify('stream.exit', end);
  }

  #notify(method: 'stream.data' | 'stream.exit', params: StreamDataNotice | StreamExitNotice): void {
    if (!this.#closed) this.send(notification(method, params));
  }
}
