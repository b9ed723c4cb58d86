import { WebSocket } from 'ws';
import type { SandboxStatus, SandboxView } from '../actors/api.ts';
import type { MethodName, Notification, ParamsOf, ResultOf, RpcErrorBody, StateNotice, StreamNotification } from './protocol.ts';
import type { StreamExitNotice } from './streams.ts';

/** Guest output of one stream: `kind` says which channel, `data` is the decoded bytes. */
export type StreamOutput = (kind: 'stdout' | 'stderr' | 'pty', data: Buffer) => void;

/** Notifications that arrive before their stream's handler is set are kept (up to this many per stream). */
const EARLY_LIMIT = 1024;

/**
 * Typed client of the v1 protocol, used by sandboxctl, the tests and the
 * benchmark. Reconnects with bounded backoff and re-subscribes; calls that were
 * in flight when the link dropped fail with ConnectionError (the agent may still
 * have carried them out).
 */

/** An error reply: `code` is the JSON-RPC number, `kind` the registry code (data.code) when there is one. */
export class RpcError extends Error {
  readonly code: number;
  readonly data: RpcErrorBody['data'];
  constructor(body: RpcErrorBody) {
    super(body.message);
    this.name = 'RpcError';
    this.code = body.code;
    this.data = body.data;
  }
  get kind(): string | undefined {
    return typeof this.data?.code === 'string' ? this.data.code : undefined;
  }
}

export type ConnectionFailure = 'unauthorized' | 'forbidden' | 'connect_failed' | 'disconnected' | 'closed';

export class ConnectionError extends Error {
  constructor(
    readonly reason: ConnectionFailure,
    message: string,
    readonly closeCode?: number,
  ) {
    super(message);
    this.name = 'ConnectionError';
  }
}

export interface ClientOptions {
  token: string;
  /** Reconnect after an unexpected close (default on), with delays doubling from 100 ms up to maxDelayMs. */
  reconnect?: false | { maxDelayMs?: number; maxAttempts?: number };
  /** Called when the link drops for good (user close, auth refused, attempts used up). */
  onClose?: (err: ConnectionError | null) => void;
}

export interface Subscription {
  unsubscribe(): Promise<void>;
}

interface LocalSub {
  sandboxId: string | undefined;
  handler: (n: Notification) => void;
  serverId: string | null;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export class SandboxdClient {
  private ws!: WebSocket;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly subs = new Set<LocalSub>();
  private readonly streamHandlers = new Map<string, (n: StreamNotification) => void>();
  private readonly early = new Map<string, StreamNotification[]>();
  private userClosed = false;

  private constructor(
    readonly url: string,
    private readonly opts: ClientOptions,
  ) {}

  static async connect(url: string, opts: ClientOptions): Promise<SandboxdClient> {
    const client = new SandboxdClient(url, opts);
    client.attach(await open(url, opts.token));
    return client;
  }

  call<M extends MethodName>(method: M, ...args: {} extends ParamsOf<M> ? [params?: ParamsOf<M>] : [params: ParamsOf<M>]): Promise<ResultOf<M>> {
    return this.raw(method, args[0] ?? {}) as Promise<ResultOf<M>>;
  }

  /** Any method name and params, unchecked (for tests and tools). */
  raw(method: string, params: unknown): Promise<unknown> {
    if (this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new ConnectionError('disconnected', 'not connected to the agent'));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  /** Notifications of one sandbox, or of every sandbox the token may see. Survives reconnects. */
  async subscribe(sandboxId: string | undefined, handler: (n: Notification) => void): Promise<Subscription> {
    const sub: LocalSub = { sandboxId, handler, serverId: null };
    sub.serverId = (await this.call('events.subscribe', sandboxId === undefined ? {} : { sandboxId })).subscriptionId;
    this.subs.add(sub);
    return {
      unsubscribe: async () => {
        if (!this.subs.delete(sub) || sub.serverId === null) return;
        await this.call('events.unsubscribe', { subscriptionId: sub.serverId }).catch(() => undefined);
      },
    };
  }

  /**
   * Calls a stream-opening method (sandbox.execStream, pty.start, pty.attach,
   * process.connect) and follows its output; `exit` settles with the stream's
   * stream.exit, or rejects when the connection drops first.
   */
  async openStream<M extends 'sandbox.execStream' | 'pty.start' | 'pty.attach' | 'process.connect'>(
    method: M,
    params: ParamsOf<M>,
    onOutput: StreamOutput,
  ): Promise<ResultOf<M> & { exit: Promise<StreamExitNotice> }> {
    const result = (await this.raw(method, params)) as ResultOf<M>;
    const exit = new Promise<StreamExitNotice>((resolve, reject) => {
      const onClose = () => reject(new ConnectionError('disconnected', `connection closed before stream ${result.streamId} ended`));
      this.ws.once('close', onClose);
      this.listenStream(result.streamId, (n) => {
        if (n.method === 'stream.data') {
          const p = n.params;
          if (p.stdout !== undefined) onOutput('stdout', Buffer.from(p.stdout, 'base64'));
          if (p.stderr !== undefined) onOutput('stderr', Buffer.from(p.stderr, 'base64'));
          if (p.pty !== undefined) onOutput('pty', Buffer.from(p.pty, 'base64'));
          return;
        }
        this.streamHandlers.delete(result.streamId);
        this.ws.off('close', onClose);
        resolve(n.params);
      });
    });
    exit.catch(() => undefined);
    return { ...result, exit };
  }

  /** Routes one stream's notifications to `handler`, starting with any that came before it was set. */
  listenStream(streamId: string, handler: (n: StreamNotification) => void): () => void {
    this.streamHandlers.set(streamId, handler);
    const early = this.early.get(streamId) ?? [];
    this.early.delete(streamId);
    for (const n of early) handler(n);
    return () => this.streamHandlers.delete(streamId);
  }

  /** Resolves once the sandbox reaches one of `statuses` (checked after subscribing, so no change is missed). */
  async waitForState(sandboxId: string, statuses: SandboxStatus | SandboxStatus[], opts: { timeoutMs?: number } = {}): Promise<StateNotice | SandboxView> {
    const want = new Set(Array.isArray(statuses) ? statuses : [statuses]);
    let settle!: (v: StateNotice | SandboxView) => void;
    const reached = new Promise<StateNotice | SandboxView>((r) => (settle = r));
    const sub = await this.subscribe(sandboxId, (n) => {
      if (n.method === 'sandbox.state' && want.has(n.params.status)) settle(n.params);
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      const now = await this.call('sandbox.get', { id: sandboxId });
      if (want.has(now.status)) return now;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${sandboxId} did not reach ${[...want].join('|')} in ${opts.timeoutMs} ms`)), opts.timeoutMs ?? 60_000);
      });
      return await Promise.race([reached, timeout]);
    } finally {
      clearTimeout(timer);
      await sub.unsubscribe();
    }
  }

  async close(): Promise<void> {
    this.userClosed = true;
    if (this.ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close(1000);
    });
  }

  get socket(): WebSocket {
    return this.ws;
  }

  private attach(ws: WebSocket): void {
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      if (!isBinary) this.onMessage(data.toString());
    });
    ws.on('error', () => undefined);
    ws.once('close', (code) => this.onDrop(code));
  }

  private onMessage(text: string): void {
    let msg: { id?: unknown; result?: unknown; error?: RpcErrorBody; method?: string; params?: unknown };
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.method === 'stream.data' || msg.method === 'stream.exit') {
      this.onStream(msg as StreamNotification);
      return;
    }
    if (typeof msg.method === 'string') {
      const n = msg as Notification;
      for (const sub of this.subs) {
        if (sub.sandboxId === undefined || sub.sandboxId === n.params.sandboxId) sub.handler(n);
      }
      return;
    }
    const pending = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
    if (pending === undefined) return;
    this.pending.delete(msg.id as number);
    if (msg.error !== undefined) pending.reject(new RpcError(msg.error));
    else pending.resolve(msg.result);
  }

  private onStream(n: StreamNotification): void {
    const handler = this.streamHandlers.get(n.params.streamId);
    if (handler !== undefined) return handler(n);
    const early = this.early.get(n.params.streamId) ?? [];
    if (early.length < EARLY_LIMIT) early.push(n);
    this.early.set(n.params.streamId, early);
  }

  private onDrop(code: number): void {
    for (const p of this.pending.values()) p.reject(new ConnectionError('disconnected', `connection closed (${code})`, code));
    this.pending.clear();
    if (this.userClosed || this.opts.reconnect === false) {
      this.opts.onClose?.(this.userClosed ? null : new ConnectionError('closed', `connection closed (${code})`, code));
      return;
    }
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    const { maxDelayMs = 5000, maxAttempts = Infinity } = this.opts.reconnect || {};
    for (let attempt = 0; attempt < maxAttempts && !this.userClosed; attempt++) {
      await new Promise((r) => setTimeout(r, Math.min(maxDelayMs, 100 * 2 ** attempt)));
      if (this.userClosed) return;
      let ws: WebSocket;
      try {
        ws = await open(this.url, this.opts.token);
      } catch (err) {
        if (err instanceof ConnectionError && err.reason !== 'connect_failed') return this.opts.onClose?.(err);
        continue;
      }
      this.attach(ws);
      await this.resubscribe();
      return;
    }
    this.opts.onClose?.(new ConnectionError('connect_failed', 'could not reconnect to the agent'));
  }

  private async resubscribe(): Promise<void> {
    for (const sub of [...this.subs]) {
      try {
        const params = sub.sandboxId === undefined ? {} : { sandboxId: sub.sandboxId };
        sub.serverId = (await this.call('events.subscribe', params)).subscriptionId;
      } catch {
        // The sandbox is gone (or the link dropped again, and the next reconnect retries).
        if (this.ws.readyState === WebSocket.OPEN) this.subs.delete(sub);
      }
    }
  }
}

function open(url: string, token: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false, handshakeTimeout: 10_000 });
    ws.once('open', () => {
      ws.removeAllListeners('error');
      ws.removeAllListeners('unexpected-response');
      resolve(ws);
    });
    ws.once('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      ws.terminate();
      if (status === 401) reject(new ConnectionError('unauthorized', 'the agent refused the token (401)'));
      else if (status === 403) reject(new ConnectionError('forbidden', 'the agent refused the connection (403)'));
      else reject(new ConnectionError('connect_failed', `the agent answered HTTP ${status}`));
    });
    ws.once('error', (err) => reject(new ConnectionError('connect_failed', `cannot connect to ${url}: ${err.message}`)));
  });
}
