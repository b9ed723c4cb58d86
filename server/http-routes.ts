import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../core/log.ts';
import type { ServerMetrics } from './metrics.ts';

/**
 * Operator routes on the agent's listener: liveness, readiness and Prometheus
 * metrics. They carry no sandbox data beyond counts, so they need no token;
 * bind the agent to an interface operators trust.
 */
export function handleHttp(
  req: IncomingMessage,
  res: ServerResponse,
  deps: { metrics: ServerMetrics; isReady: () => boolean; log: Logger },
): void {
  const path = new URL(req.url ?? '/', 'http://agent').pathname;
  if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
  switch (path) {
    case '/healthz':
      return plain(res, 200, 'ok\n');
    case '/readyz':
      return deps.isReady() ? plain(res, 200, 'ready\n') : plain(res, 503, 'not ready\n');
    case '/metrics':
      deps.metrics.registry.metrics().then(
        (body) => plain(res, 200, body, { 'content-type': deps.metrics.registry.contentType }),
        (err: unknown) => {
          deps.log.error({ err }, 'collecting metrics failed');
          plain(res, 500, 'metrics unavailable\n');
        },
      );
      return;
    case '/v1':
      return plain(res, 426, 'this endpoint speaks WebSocket (JSON-RPC 2.0)\n', { upgrade: 'websocket' });
    default:
      return plain(res, 404, 'not found\n');
  }
}

function plain(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
