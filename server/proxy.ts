import { request as httpRequest, STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Caller, ProxyTarget, SupervisorApi } from '../actors/api.ts';
import { SandboxdError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { offeredProtocols, originAllowed, tokenFromRequest, type TokenTable } from './auth.ts';
import { SUBPROTOCOL } from './protocol.ts';

/**
 * The port proxy (protocol.md): `/v1/sandboxes/{id}/ports/{port}/{path…}` on
 * the agent's own listener, HTTP and WebSocket upgrades alike. Authenticated
 * like the API, team-checked by the supervisor (another team's sandbox: 404),
 * forwarded only to the sandbox's own address; each connection is registered
 * with the sandbox's drain (refused with 503 while it drains, force-closed when
 * the drain's window ends) and counts as activity.
 */
export interface PortProxy {
  /** Answers the request when its path names a sandbox port; false otherwise. */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean;
  /** The same for an upgrade request. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  /** Closes every proxied connection (the agent's listener is closing). */
  closeAll(): void;
}

export interface ProxyDeps {
  supervisor: SupervisorApi;
  tokens: TokenTable;
  origins: readonly string[];
  log: Logger;
  /** How long the sandbox's service may take to accept a connection. */
  connectTimeoutMs?: number;
}

const ROUTE = /^\/v1\/sandboxes\/([^/]{1,64})\/ports\/([^/]{1,5})(\/.*)?$/;
/** Long-lived connections touch the sandbox at most this often. */
const TOUCH_EVERY_MS = 1_000;
// Hop-by-hop headers and our own credentials never travel to the guest.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const DROPPED = new Set([...HOP_BY_HOP, 'authorization', 'host']);

interface Route {
  sandboxId: string;
  port: number;
  /** Path and query inside the sandbox. */
  path: string;
}

export function createPortProxy(deps: ProxyDeps): PortProxy {
  const log = deps.log.child({ component: 'proxy' });
  const connectTimeoutMs = deps.connectTimeoutMs ?? 10_000;
  const live = new Set<{ close(): void }>();

  /** Authenticates, routes and registers; answers the refusal itself and returns null when refused. */
  function admit(req: IncomingMessage, refuse: (status: number, message: string) => void, conn: { close(): void }) {
    const url = new URL(req.url ?? '/', 'http://agent');
    const m = ROUTE.exec(url.pathname);
    if (m === null) return null;
    const token = tokenFromRequest(req);
    const caller = token === null ? null : deps.tokens.resolve(token);
    if (caller === null) return refuse(401, 'unauthorized'), null;
    const port = /^[0-9]+$/.test(m[2]!) ? Number(m[2]) : NaN;
    if (!(port >= 1 && port <= 65_535)) return refuse(400, 'port must be 1-65535'), null;
    // Sandbox ids are plain ASCII: an encoded one is simply not found.
    const route: Route = { sandboxId: m[1]!, port, path: `${m[3] ?? '/'}${url.search}` };
    let target: ProxyTarget;
    try {
      target = deps.supervisor.proxyConnect(caller, route.sandboxId, conn);
    } catch (err) {
      const code = err instanceof SandboxdError ? err.code : 'internal';
      const status = code === 'not_found' || code === 'invalid_argument' ? 404 : code === 'draining' || code === 'not_running' ? 503 : 500;
      refuse(status, status === 404 ? 'sandbox not found' : status === 503 ? `sandbox unavailable (${code})` : 'internal error');
      return null;
    }
    return { caller, route, target };
  }

  function toucher(caller: Caller, sandboxId: string): () => void {
    let last = performance.now();
    return () => {
      const now = performance.now();
      if (now - last < TOUCH_EVERY_MS) return;
      last = now;
      try {
        deps.supervisor.ping(caller, sandboxId);
      } catch {
        // Not running any more: the drain closes this connection.
      }
    };
  }

  return {
    closeAll() {
      for (const conn of [...live]) conn.close();
    },

    handleRequest(req, res) {
      if (!ROUTE.test(new URL(req.url ?? '/', 'http://agent').pathname)) return false;
      let upstreamReq: ReturnType<typeof httpRequest> | null = null;
      const conn = { close: () => (upstreamReq?.destroy(), res.destroy()) };
      const admitted = admit(req, (status, message) => plainReply(res, status, message), conn);
      if (admitted === null) return true;
      const { caller, route, target } = admitted;
      live.add(conn);
      res.once('close', () => {
        live.delete(conn);
        target.release();
        upstreamReq?.destroy();
      });
      try {
        upstreamReq = httpRequest({
          host: target.hostIp,
          port: route.port,
          method: req.method,
          path: route.path,
          headers: forwardHeaders(req, route),
          timeout: connectTimeoutMs,
        });
      } catch {
        plainReply(res, 400, 'bad request path');
        return true;
      }
      const touch = toucher(caller, route.sandboxId);
      upstreamReq.once('timeout', () => upstreamReq?.destroy(new Error('upstream timeout')));
      upstreamReq.once('error', (err) => {
        log.debug({ sandboxId: route.sandboxId, port: route.port, err: err.message }, 'proxied request failed');
        if (!res.headersSent) plainReply(res, 502, 'the sandbox service did not answer');
        else res.destroy();
      });
      upstreamReq.once('response', (up) => {
        up.on('error', () => res.destroy());
        res.writeHead(up.statusCode ?? 502, stripHopByHop(up.headers));
        up.on('data', touch);
        up.pipe(res);
      });
      req.on('data', touch);
      req.on('error', () => upstreamReq?.destroy());
      req.pipe(upstreamReq);
      return true;
    },

    handleUpgrade(req, socket, head) {
      if (!ROUTE.test(new URL(req.url ?? '/', 'http://agent').pathname)) return false;
      if (!originAllowed(req, deps.origins)) return refuseSocket(socket, 403), true;
      let upstream: Duplex | null = null;
      let upstreamReq: ReturnType<typeof httpRequest> | null = null;
      const conn = { close: () => (upstream?.destroy(), upstreamReq?.destroy(), socket.destroy()) };
      const admitted = admit(req, (status) => refuseSocket(socket, status), conn);
      if (admitted === null) return true;
      const { caller, route, target } = admitted;
      live.add(conn);
      socket.once('close', () => {
        live.delete(conn);
        target.release();
        conn.close();
      });
      const offered = offeredProtocols(req);
      // The browser form's auth entries are ours; the guest sees only the application's subprotocols.
      const appProtocols = offered.filter((p) => p !== SUBPROTOCOL && !p.startsWith('bearer.'));
      const headers = forwardHeaders(req, route);
      delete headers['sec-websocket-protocol'];
      if (appProtocols.length > 0) headers['sec-websocket-protocol'] = appProtocols.join(', ');
      headers.connection = 'Upgrade';
      headers.upgrade = req.headers.upgrade ?? 'websocket';
      try {
        upstreamReq = httpRequest({ host: target.hostIp, port: route.port, method: req.method, path: route.path, headers, timeout: connectTimeoutMs });
      } catch {
        refuseSocket(socket, 400);
        return true;
      }
      upstreamReq.once('timeout', () => upstreamReq?.destroy(new Error('upstream timeout')));
      upstreamReq.once('error', (err) => {
        log.debug({ sandboxId: route.sandboxId, port: route.port, err: err.message }, 'proxied upgrade failed');
        refuseSocket(socket, 502);
      });
      upstreamReq.once('response', (up) => {
        // The service refused the upgrade: pass its answer on and end.
        up.on('error', () => socket.destroy());
        socket.write(statusBlock(up.statusCode ?? 502, up.statusMessage, { ...stripHopByHop(up.headers), connection: 'close' }));
        up.pipe(socket);
      });
      upstreamReq.once('upgrade', (up, upSocket, upHead) => {
        upstream = upSocket;
        upstreamReq?.setTimeout(0);
        const answer: Record<string, string | string[] | undefined> = { ...up.headers };
        // A browser that offered only our pair expects one of its own offers back.
        if (answer['sec-websocket-protocol'] === undefined && offered.includes(SUBPROTOCOL)) answer['sec-websocket-protocol'] = SUBPROTOCOL;
        socket.write(statusBlock(101, up.statusMessage, answer));
        if (upHead.length > 0) socket.write(upHead);
        if (head.length > 0) upSocket.write(head);
        const touch = toucher(caller, route.sandboxId);
        upSocket.on('data', touch);
        socket.on('data', touch);
        upSocket.on('error', () => conn.close());
        upSocket.once('close', () => socket.destroy());
        upSocket.pipe(socket);
        socket.pipe(upSocket);
      });
      upstreamReq.end();
      return true;
    },
  };
}

function forwardHeaders(req: IncomingMessage, route: Route): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || DROPPED.has(name)) continue;
    out[name] = value;
  }
  out.host = req.headers.host ?? `localhost:${route.port}`;
  out['x-forwarded-for'] = req.socket.remoteAddress ?? '';
  out['x-forwarded-prefix'] = `/v1/sandboxes/${route.sandboxId}/ports/${route.port}`;
  return out;
}

function stripHopByHop(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    out[name] = value;
  }
  return out;
}

function statusBlock(status: number, message: string | undefined, headers: Record<string, string | string[] | undefined>): string {
  const lines = [`HTTP/1.1 ${status} ${message ?? STATUS_CODES[status] ?? ''}`];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n`;
}

function plainReply(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', connection: 'close' });
  res.end(`${message}\n`);
}

function refuseSocket(socket: Duplex, status: number): void {
  if (socket.destroyed) return;
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
