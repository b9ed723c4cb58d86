import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Caller, SupervisorApi } from '../actors/api.ts';
import { silentLogger, type Logger } from '../core/log.ts';
import { originAllowed, tokenFromRequest, TokenTable, type TokenEntry } from './auth.ts';
import { Connection } from './connection.ts';
import { handleHttp } from './http-routes.ts';
import type { InspectionFeed } from './inspect/feed.ts';
import { createInspectorRoutes, sameOrigin } from './inspect/routes.ts';
import { SubscriptionHub } from './hub.ts';
import { defaultLimits, TeamOpLimiter, type ServerLimits } from './limits.ts';
import { createMetrics, type ServerMetrics } from './metrics.ts';
import { SUBPROTOCOL } from './protocol.ts';
import { createPortProxy } from './proxy.ts';

export interface ServerOptions {
  supervisor: SupervisorApi;
  tokens: readonly TokenEntry[];
  logger?: Logger;
  limits?: Partial<ServerLimits>;
  /** Origins browsers may connect from (exact `scheme://host[:port]`); requests without Origin are not browsers. */
  origins?: readonly string[];
  /** /readyz answers 200 only once this returns true (default: always ready). */
  isReady?: () => boolean;
  /**
   * The live inspector's feed (server/inspect/feed.ts), the same object whose
   * `inspect` callback was given to the supervisor. Enables the inspect.*
   * methods and the page at /inspect.
   */
  inspector?: InspectionFeed;
}

export interface SandboxdServer {
  http: Server;
  wss: WebSocketServer;
  metrics: ServerMetrics;
  limits: ServerLimits;
  listen(port: number, host?: string): Promise<AddressInfo>;
  /** Closes every connection with 1001 and stops listening; requests in flight keep running in the supervisor. */
  close(): Promise<void>;
  connectionCount(): number;
  subscriptionCount(): number;
}

const WS_PATH = '/v1';
const SWEEP_MS = 100;

/** The agent's one listener: JSON-RPC over WebSocket at /v1 and the operator HTTP routes. */
export function createServer(opts: ServerOptions): SandboxdServer {
  const log = (opts.logger ?? silentLogger).child({ component: 'server' });
  const limits: ServerLimits = { ...defaultLimits, ...opts.limits };
  const tokens = new TokenTable(opts.tokens);
  const origins = opts.origins ?? [];
  const isReady = opts.isReady ?? (() => true);
  const metrics = createMetrics(opts.supervisor);
  const hub = new SubscriptionHub();
  const teamOps = new TeamOpLimiter(limits.teamOps);
  const connections = new Set<Connection>();
  const deps = { supervisor: opts.supervisor, hub, metrics, limits, teamOps, log, inspector: opts.inspector };
  const inspectorRoutes = opts.inspector === undefined ? null : createInspectorRoutes();
  const proxy = createPortProxy({ supervisor: opts.supervisor, tokens, origins, log });
  let stopping = false;

  const http = createHttpServer((req, res) => {
    if (!stopping && proxy.handleRequest(req, res)) return;
    if (inspectorRoutes?.handle(req, res)) return;
    handleHttp(req, res, { metrics, isReady, log });
  });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxPayloadBytes,
    perMessageDeflate: false,
    // Select our subprotocol, never echo the bearer.TOKEN entry back.
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const deny = (status: number) => {
      // The remote address only: headers may carry a token.
      log.debug({ remote: req.socket.remoteAddress, status }, 'upgrade refused');
      refuse(socket, status);
    };
    if (!stopping && proxy.handleUpgrade(req, socket, head)) return;
    const path = new URL(req.url ?? '/', 'http://agent').pathname;
    if (path !== WS_PATH) return deny(404);
    if (stopping || connections.size >= limits.maxConnections) return deny(503);
    // The inspector page connects from the agent's own origin.
    if (!originAllowed(req, origins) && !(inspectorRoutes !== null && sameOrigin(req))) return deny(403);
    const token = tokenFromRequest(req);
    const caller = token === null ? null : tokens.resolve(token);
    if (caller === null) {
      metrics.connectionsClosed.inc({ reason: 'unauthorized' });
      return deny(401);
    }
    wss.handleUpgrade(req, socket, head, (ws) => attach(ws, caller));
  });

  function attach(ws: WebSocket, caller: Caller): void {
    const conn = new Connection(ws, caller, deps);
    connections.add(conn);
    metrics.connections.set(connections.size);
    log.debug({ teamId: caller.teamId }, 'connection opened');
    ws.on('message', (data, isBinary) => conn.onFrame(data, isBinary));
    ws.on('pong', () => {
      conn.alive = true;
    });
    ws.on('error', (err) => {
      // Oversize frames and protocol violations land here; ws closes the socket itself.
      log.debug({ err: err.message, teamId: caller.teamId }, 'connection error');
    });
    ws.on('close', (code) => {
      conn.closed();
      connections.delete(conn);
      metrics.connections.set(connections.size);
      log.debug({ teamId: caller.teamId, code }, 'connection closed');
    });
  }

  const unsubscribe = [
    opts.supervisor.onState((change) => hub.publishState(change)),
    opts.supervisor.onEvent((event) => hub.publishEvent(event)),
  ];

  const sweep = setInterval(() => {
    const now = performance.now();
    for (const conn of connections) conn.checkSlowReader(now);
  }, SWEEP_MS);
  sweep.unref();

  const heartbeat = setInterval(() => {
    for (const conn of connections) {
      if (!conn.alive) {
        metrics.connectionsClosed.inc({ reason: 'heartbeat' });
        conn.ws.terminate();
        continue;
      }
      conn.alive = false;
      conn.ws.ping();
    }
  }, limits.heartbeatMs);
  heartbeat.unref();

  let closed: Promise<void> | null = null;
  return {
    http,
    wss,
    metrics,
    limits,
    connectionCount: () => connections.size,
    subscriptionCount: () => hub.size,
    listen(port, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        http.once('error', reject);
        http.listen(port, host, () => {
          http.off('error', reject);
          resolve(http.address() as AddressInfo);
        });
      });
    },
    close() {
      closed ??= (async () => {
        stopping = true;
        clearInterval(sweep);
        clearInterval(heartbeat);
        for (const off of unsubscribe) off();
        proxy.closeAll();
        const gone = [...connections].map((c) => new Promise<void>((r) => (c.ws.readyState === c.ws.CLOSED ? r() : c.ws.once('close', () => r()))));
        for (const conn of connections) conn.close(1001, 'agent shutting down');
        const httpClosed = new Promise<void>((r) => http.close(() => r()));
        http.closeIdleConnections();
        await Promise.all(gone);
        http.closeAllConnections();
        await httpClosed;
        wss.close();
      })();
      return closed;
    },
  };
}

/** Answers a refused upgrade with a bare status line and drops the socket; nothing else runs. */
function refuse(socket: Duplex, status: number): void {
  const reason = STATUS_CODES[status] ?? 'Error';
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
