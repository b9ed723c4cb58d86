import type { WebSocket, RawData } from 'ws';
import type { Caller, LifecycleEvent, StateChange, SupervisorApi } from '../actors/api.ts';
import { SandboxdError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { stateFrame, type SubscriptionHub, type Subscriber } from './hub.ts';
import type { InspectEntry, InspectionFeed, InspectSubscriber } from './inspect/feed.ts';
import { TokenBucket, type ServerLimits, type TeamOpLimiter } from './limits.ts';
import { methods, type CallContext, type MethodSpec } from './methods.ts';
import type { ServerMetrics } from './metrics.ts';
import { RpcCodes } from './protocol.ts';
import { errorBody, errorLabel, invalidParams, ProtocolError, replyError, replyOk, type RpcId } from './rpc.ts';
import { fastEnvelope, fastParams } from './fast-parse.ts';
import { ConnectionStreams, MAX_STREAMS } from './streams.ts';
import { isMethodName, issuesOf, notImplementedMethods, requestEnvelope, schemas, type MethodName } from './schemas.ts';

export interface ConnectionDeps {
  supervisor: SupervisorApi;
  hub: SubscriptionHub;
  metrics: ServerMetrics;
  limits: ServerLimits;
  teamOps: TeamOpLimiter;
  log: Logger;
  inspector?: InspectionFeed | undefined;
}

const notImplemented = new Set<string>(notImplementedMethods);

/**
 * One authenticated WebSocket peer: parses its frames, applies its limits,
 * forwards to the supervisor and writes replies and notifications with
 * backpressure. A request keeps running when the peer goes away; only its
 * reply is dropped.
 */
export class Connection implements Subscriber, InspectSubscriber {
  readonly teamId: string | null;
  /** Set by each pong; the heartbeat drops a peer that has not answered since the last ping. */
  alive = true;
  private closing = false;
  private inFlight = 0;
  private readonly bucket: TokenBucket;
  private readonly subIds = new Set<string>();
  private readonly inspectIds = new Set<string>();
  /** Inspection entries were dropped while the peer read slowly; it is told before the next one. */
  private inspectGap = false;
  /** Latest sandbox.state per sandbox, held back while the peer reads slowly. */
  private readonly held = new Map<string, StateChange>();
  private flushTimer: NodeJS.Timeout | null = null;
  private overCapSince: number | null = null;
  private killTimer: NodeJS.Timeout | null = null;
  private readonly ctx: CallContext;
  private readonly streams = new ConnectionStreams(
    (frame) => this.send(frame, 'notification'),
    MAX_STREAMS,
    () => this.ws.bufferedAmount > this.deps.limits.highWaterBytes,
  );

  constructor(
    readonly ws: WebSocket,
    readonly caller: Caller,
    private readonly deps: ConnectionDeps,
  ) {
    this.teamId = caller.teamId;
    this.bucket = new TokenBucket(deps.limits.ratePerSec, deps.limits.burst);
    this.ctx = {
      caller,
      supervisor: deps.supervisor,
      subscriptions: {
        add: (sandboxId) => {
          if (this.subIds.size >= deps.limits.maxSubscriptions) {
            throw new SandboxdError('rate_limited', `at most ${deps.limits.maxSubscriptions} subscriptions per connection`);
          }
          const id = deps.hub.add(this, sandboxId);
          this.subIds.add(id);
          return id;
        },
        remove: (id) => this.subIds.delete(id) && deps.hub.remove(id),
      },
      streams: this.streams,
    };
    const feed = deps.inspector;
    if (feed !== undefined) {
      this.ctx.inspect = {
        feed,
        add: (sandboxId) => {
          if (this.inspectIds.size >= deps.limits.maxSubscriptions) {
            throw new SandboxdError('rate_limited', `at most ${deps.limits.maxSubscriptions} inspector subscriptions per connection`);
          }
          const id = feed.subscribe(this, sandboxId);
          this.inspectIds.add(id);
          return id;
        },
        remove: (id) => this.inspectIds.delete(id) && feed.unsubscribe(id),
      };
    }
  }

  onFrame(data: RawData, isBinary: boolean): void {
    if (this.closing) return;
    this.deps.metrics.frames.in++;
    // Every frame costs a token, garbage included, so junk cannot buy unlimited replies.
    const allowed = this.bucket.take();
    let id: RpcId = null;
    let method = '(none)';
    try {
      const msg = parseFrame(data, isBinary);
      let request = fastEnvelope(msg);
      if (request === null) {
        const env = requestEnvelope.safeParse(msg);
        if (!env.success) {
          id = salvageId(msg);
          throw new ProtocolError(RpcCodes.invalidRequest, 'invalid request: expected {jsonrpc:"2.0", id, method, params?}', {
            issues: issuesOf(env.error),
          });
        }
        request = env.data;
      }
      id = request.id;
      if (!allowed) throw new SandboxdError('rate_limited', 'too many requests on this connection; slow down');
      method = request.method;
      if (this.inFlight >= this.deps.limits.maxInFlight) {
        throw new SandboxdError('rate_limited', `at most ${this.deps.limits.maxInFlight} requests in flight per connection`);
      }
      if (!isMethodName(method)) {
        if (notImplemented.has(method)) {
          throw new ProtocolError(RpcCodes.methodNotFound, `${method} is not implemented yet`, { notImplemented: true });
        }
        throw new ProtocolError(RpcCodes.methodNotFound, `method not found: ${method.slice(0, 64)}`);
      }
      const raw = request.params ?? {};
      let params = fastParams(schemas[method], raw);
      if (params === undefined) {
        const parsed = schemas[method].safeParse(raw);
        if (!parsed.success) throw invalidParams(issuesOf(parsed.error));
        params = parsed.data;
      }
      this.start(id, method, params);
    } catch (err) {
      const refused = allowed ? err : new SandboxdError('rate_limited', 'too many requests on this connection; slow down');
      this.sendError(id, method, refused, 0);
    }
  }

  private start(id: RpcId, method: MethodName, params: unknown): void {
    const spec = methods[method] as MethodSpec<MethodName>;
    let release: (() => void) | null = null;
    if (spec.lifecycle) {
      release = this.deps.teamOps.acquire(this.teamId ?? '(admin)');
      if (release === null) throw new SandboxdError('rate_limited', "too many lifecycle operations in flight for this team");
    }
    const started = performance.now();
    let result: unknown;
    try {
      result = spec.run(this.ctx, params as never);
    } catch (err) {
      release?.();
      this.sendError(id, method, err, started);
      return;
    }
    // A synchronous answer (sandbox.get, sandbox.ping…) is sent at once, without a trip through the microtask queue.
    if (!isThenable(result)) {
      release?.();
      this.reply(id, method, result, started);
      return;
    }
    this.inFlight++;
    void this.settle(id, method, result, started, release);
  }

  private async settle(id: RpcId, method: string, pending: PromiseLike<unknown>, started: number, release: (() => void) | null): Promise<void> {
    let result: unknown;
    try {
      result = await pending;
    } catch (err) {
      this.inFlight--;
      release?.();
      this.sendError(id, method, err, started);
      return;
    }
    this.inFlight--;
    release?.();
    this.reply(id, method, result, started);
  }

  private reply(id: RpcId, method: string, result: unknown, started: number): void {
    let frame: string;
    try {
      // A result that cannot be serialised is an internal error, not a crash.
      frame = replyOk(id, result);
    } catch (err) {
      this.sendError(id, method, err, started);
      return;
    }
    this.deps.metrics.operationSeconds.observe(method, 'ok', (performance.now() - started) / 1000);
    this.send(frame, 'reply');
  }

  private sendError(id: RpcId, method: string, err: unknown, started: number): void {
    const body = errorBody(err, this.deps.log, { method });
    const label = errorLabel(body);
    this.deps.metrics.errors.inc({ code: label });
    if (started > 0) {
      this.deps.metrics.operationSeconds.observe(method, label, (performance.now() - started) / 1000);
    }
    this.send(replyError(id, body), 'reply');
  }

  deliverState(change: StateChange, frame: () => Buffer): void {
    if (this.closing) return;
    // Latest wins per sandbox while the peer is behind; order per sandbox is kept
    // because once anything is held, newer changes are held too.
    if (this.held.size > 0 || this.ws.bufferedAmount > this.deps.limits.highWaterBytes) {
      if (this.held.has(change.sandboxId)) this.deps.metrics.notificationsCoalesced.inc();
      this.held.delete(change.sandboxId);
      this.held.set(change.sandboxId, change);
      this.scheduleFlush();
      return;
    }
    this.send(frame(), 'notification');
  }

  deliverEvent(event: LifecycleEvent, frame: () => Buffer): void {
    if (this.closing) return;
    // Events are never dropped; the sandbox's held state goes first so the peer sees them in order.
    const held = this.held.get(event.sandboxId);
    if (held !== undefined) {
      this.held.delete(event.sandboxId);
      this.send(stateFrame(held), 'notification');
    }
    this.send(frame(), 'notification');
  }

  deliverInspect(_entry: InspectEntry, frame: () => Buffer): void {
    if (this.closing) return;
    // The inspector is a view, not a record: behind a slow reader its entries are
    // dropped, and a gap notice tells the page to fetch the history again.
    if (this.ws.bufferedAmount > this.deps.limits.highWaterBytes) {
      this.inspectGap = true;
      return;
    }
    if (this.inspectGap) {
      this.inspectGap = false;
      this.send(gapFrame, 'notification');
    }
    this.send(frame(), 'notification');
  }

  private scheduleFlush(): void {
    if (this.flushTimer !== null) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = null;
      this.flush();
    }, 20);
  }

  private flush(): void {
    if (this.closing) return;
    while (this.held.size > 0 && this.ws.bufferedAmount <= this.deps.limits.highWaterBytes / 2) {
      const [sandboxId, change] = this.held.entries().next().value as [string, StateChange];
      this.held.delete(sandboxId);
      this.send(stateFrame(change), 'notification');
    }
    if (this.held.size > 0) this.scheduleFlush();
  }

  private send(frame: string | Buffer, kind: 'reply' | 'notification'): void {
    if (this.closing || this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(frame, { binary: false });
    this.deps.metrics.frames[kind]++;
    const buffered = this.ws.bufferedAmount;
    if (buffered <= this.deps.limits.hardCapBytes) return;
    // Twice the cap is a ceiling that bounds a burst of replies before the grace
    // period of the sweep runs out.
    if (buffered > 2 * this.deps.limits.hardCapBytes) this.cutOff();
    else this.overCapSince ??= performance.now();
  }

  private cutOff(): void {
    this.deps.metrics.connectionsClosed.inc({ reason: 'slow_reader' });
    this.deps.log.warn({ teamId: this.teamId, buffered: this.ws.bufferedAmount }, 'closing a connection that stopped reading');
    this.close(1008, 'slow reader: too much unread data');
  }

  /** Called by the server's sweep: cuts off a peer whose buffer stayed over the cap for the grace period. */
  checkSlowReader(now: number): boolean {
    if (this.closing || this.overCapSince === null) return false;
    if (this.ws.bufferedAmount <= this.deps.limits.hardCapBytes) {
      this.overCapSince = null;
      return false;
    }
    if (now - this.overCapSince < this.deps.limits.slowReaderGraceMs) return false;
    this.cutOff();
    return true;
  }

  /** Starts the close handshake and stops all further work for this peer. */
  close(code: number, reason: string): void {
    if (this.closing) return;
    this.dispose();
    this.ws.close(code, reason);
    // A peer that does not read will not answer the close frame either; do not
    // hold its buffer for ws's own 30 s close timeout.
    this.killTimer = setTimeout(() => this.ws.terminate(), this.deps.limits.closeGraceMs);
    this.killTimer.unref();
  }

  /** The socket is gone (closed by either side). */
  closed(): void {
    this.dispose();
    if (this.killTimer !== null) clearTimeout(this.killTimer);
    this.killTimer = null;
  }

  /** Drops subscriptions and held notifications; requests in flight keep running. */
  dispose(): void {
    this.closing = true;
    for (const id of this.subIds) this.deps.hub.remove(id);
    this.subIds.clear();
    for (const id of this.inspectIds) this.deps.inspector?.unsubscribe(id);
    this.inspectIds.clear();
    this.streams.closeAll();
    this.held.clear();
    if (this.flushTimer !== null) clearTimeout(this.flushTimer);
    this.flushTimer = null;
  }
}

const gapFrame = Buffer.from(JSON.stringify({ jsonrpc: '2.0', method: 'inspect.gap', params: {} }));

/** The JSON value of one text frame. */
function parseFrame(data: RawData, isBinary: boolean): unknown {
  if (isBinary) throw new ProtocolError(RpcCodes.invalidRequest, 'binary frames are not accepted; send JSON text');
  let msg: unknown;
  try {
    msg = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(data as Buffer[]).toString('utf8'));
  } catch {
    throw new ProtocolError(RpcCodes.parseError, 'parse error: not valid JSON');
  }
  if (Array.isArray(msg)) throw new ProtocolError(RpcCodes.invalidRequest, 'batches are not supported; send one request per frame');
  return msg;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** The id of a malformed request, when it has a usable one (JSON-RPC: else null). */
function salvageId(msg: unknown): RpcId {
  if (typeof msg !== 'object' || msg === null) return null;
  const id = (msg as { id?: unknown }).id;
  if (typeof id === 'string' && id.length <= 128) return id;
  if (typeof id === 'number' && Number.isFinite(id)) return id;
  return null;
}
