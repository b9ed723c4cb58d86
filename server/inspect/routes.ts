import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { sandboxMachine } from '../../machines/sandbox/machine.ts';
import { machineDefinition } from './definition.ts';
import { machineGraph } from './graph.ts';

/**
 * The inspector page and its assets, served from the agent's own files and
 * node_modules (nothing from the internet). The page and the machine graph
 * carry no sandbox data, so they load without a token; the page's WebSocket
 * authenticates like any client.
 */
export interface InspectorRoutes {
  /** True when the request was for the inspector (answered). */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
}

const PAGE_DIR = fileURLToPath(new URL('./page/', import.meta.url));
const require = createRequire(import.meta.url);

interface Asset {
  file: () => string;
  type: string;
}

const assets: Record<string, Asset> = {
  '/inspect': { file: () => `${PAGE_DIR}index.html`, type: 'text/html; charset=utf-8' },
  '/inspect/': { file: () => `${PAGE_DIR}index.html`, type: 'text/html; charset=utf-8' },
  '/inspect/app.js': { file: () => `${PAGE_DIR}app.js`, type: 'text/javascript; charset=utf-8' },
  '/inspect/chart.js': { file: () => `${PAGE_DIR}chart.js`, type: 'text/javascript; charset=utf-8' },
  '/inspect/style.css': { file: () => `${PAGE_DIR}style.css`, type: 'text/css; charset=utf-8' },
  '/inspect/elk.js': { file: () => require.resolve('elkjs/lib/elk.bundled.js'), type: 'text/javascript; charset=utf-8' },
};

// Scripts and styles from this origin only; the WebSocket back to it.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export function createInspectorRoutes(): InspectorRoutes {
  const cache = new Map<string, Buffer>();
  let graph: Buffer | null = null;
  const load = (path: string, asset: Asset) => {
    let body = cache.get(path);
    if (body === undefined) cache.set(path, (body = readFileSync(asset.file())));
    return body;
  };
  return {
    handle(req, res) {
      const path = new URL(req.url ?? '/', 'http://agent').pathname;
      if (path !== '/inspect' && !path.startsWith('/inspect/')) return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, 'text/plain; charset=utf-8', Buffer.from('method not allowed\n'), { allow: 'GET, HEAD' });
        return true;
      }
      if (path === '/inspect/graph.json') {
        graph ??= Buffer.from(JSON.stringify(machineGraph(machineDefinition(sandboxMachine))));
        send(res, 200, 'application/json', graph);
        return true;
      }
      const asset = assets[path];
      if (asset === undefined) {
        send(res, 404, 'text/plain; charset=utf-8', Buffer.from('not found\n'));
        return true;
      }
      send(res, 200, asset.type, load(path, asset));
      return true;
    },
  };
}

function send(res: ServerResponse, status: number, type: string, body: Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': String(body.length),
    'cache-control': 'no-cache',
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    ...headers,
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** An upgrade from a page the agent itself served: Origin names the Host the request went to. */
export function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (origin === undefined || host === undefined) return false;
  return origin === `http://${host}` || origin === `https://${host}`;
}
