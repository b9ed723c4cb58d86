import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { apiFailure, ApiError, errorBody, HttpFailure, statusOf } from './api-error.ts';
import { ROUTES, UNSIMULATED, type Route } from './api-routes.ts';
import type { Faults } from './faults.ts';
import type { SimLog, ViolationLog } from './sim-log.ts';
import type { VersionTraits } from './version.ts';
import type { SimVmm } from './vmm.ts';

// CH's REST API over the unix socket (reference §1.1–1.2): micro-http's headers,
// the 4 MiB body limit, 400 for bad method/body, 404 for unknown paths, and the
// version's error bodies. Requests that break the reference's rules for a client
// are also written to the violations log.

export const API_ROOT = '/api/v1/';
export const MAX_BODY = 4 * 1024 * 1024;

export interface ApiServerDeps {
  vmm: SimVmm;
  traits: VersionTraits;
  log: SimLog;
  violations: ViolationLog;
  faults: Faults;
  /** vmm.shutdown answered: exit cleanly. */
  onShutdown(): void;
  /** A crash-after fault fired: die like a killed process. */
  onCrash(): void;
}

function send(res: ServerResponse, status: number, body?: string): void {
  res.sendDate = false;
  res.setHeader('Server', 'Cloud Hypervisor API');
  res.setHeader('Connection', 'keep-alive');
  if (status !== 204) {
    const data = Buffer.from(body ?? '', 'utf8');
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Content-Length', data.length);
    res.writeHead(status);
    res.end(data);
  } else {
    res.writeHead(204);
    res.end();
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function createApiServer(deps: ApiServerDeps): Server {
  const { traits, violations } = deps;
  const fail = (res: ServerResponse, err: HttpFailure | ApiError): void => {
    const status = err instanceof HttpFailure ? err.status : statusOf(err, traits);
    send(res, status, errorBody(err.chain, traits));
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '').split('?')[0] ?? '';
    const endpoint = path.startsWith(API_ROOT) ? path.slice(API_ROOT.length) : undefined;
    const route: Route | undefined = endpoint === undefined ? undefined : ROUTES[endpoint];
    const tag = `${req.method} ${path}`;
    if (!route || endpoint === undefined) {
      if (endpoint !== undefined && UNSIMULATED.has(endpoint)) {
        violations.record('route_not_simulated', tag);
        return fail(res, apiFailure('Internal', `${endpoint} is not simulated by chsim`));
      }
      violations.record('unknown_route', tag);
      return fail(res, new HttpFailure(404, ['Not found']));
    }
    const length = Number(req.headers['content-length'] ?? 0);
    if (req.headers['transfer-encoding'] !== undefined) {
      // micro-http sizes bodies by Content-Length only, so a chunked body is misread; refuse it outright
      violations.record('chunked_body', `${tag} sent Transfer-Encoding: ${req.headers['transfer-encoding']}`);
      res.on('finish', () => req.socket.destroy());
      return fail(res, new HttpFailure(400, ['Bad Request', 'chunked request bodies are not supported']));
    }
    if (length > MAX_BODY) {
      violations.record('body_too_large', `${tag} body of ${length} bytes`);
      res.on('finish', () => req.socket.destroy());
      return send(res, 400, 'Request payload exceeds the 4 MiB limit');
    }
    if (req.method !== route.method) {
      violations.record('wrong_method', `${tag} (expects ${route.method})`);
      await readBody(req);
      return fail(res, new HttpFailure(400, ['Bad Request']));
    }
    const body = await readBody(req);
    if (route.method === 'GET' && body.length > 0) {
      violations.record('get_with_body', tag);
      return fail(res, new HttpFailure(400, ['Bad Request', 'a GET request cannot carry a body']));
    }
    let parsed: unknown;
    if (route.body === 'none' && body.length > 0) {
      violations.record('body_on_bodyless_put', `${tag} carried ${body.length} bytes`);
      return fail(res, new HttpFailure(400, ['Bad Request']));
    }
    if (route.body === 'json') {
      if (body.length === 0) {
        violations.record('missing_body', tag);
        return fail(res, new HttpFailure(400, ['Bad Request', 'request body is required']));
      }
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch (err) {
        violations.record('invalid_json', `${tag}: ${(err as Error).message}`);
        return fail(res, new HttpFailure(400, ['Cannot deserialize JSON payload', (err as Error).message]));
      }
      try {
        if (route.parse) parsed = route.parse(parsed);
      } catch (err) {
        const msg = (err as Error).message;
        violations.record('invalid_json', `${tag}: ${msg}`);
        return fail(res, new HttpFailure(400, ['Cannot deserialize JSON payload', msg]));
      }
      if (endpoint === 'vm.restore') {
        parsed = checkRestoreFields(parsed as Record<string, unknown>, deps);
        // fds travel as SCM_RIGHTS, which node:http cannot receive: CH answers 400 when the count is short
        const wanted = ((parsed as { net_fds?: { num_fds: number }[] }).net_fds ?? []).reduce((n, f) => n + f.num_fds, 0);
        if (wanted > 0) {
          violations.record('net_fds_not_received', `${tag} announced ${wanted} fds; the simulator cannot receive SCM_RIGHTS`);
          return fail(res, new HttpFailure(400, ['Bad Request', `expected ${wanted} fds, received 0`]));
        }
      }
    }

    const fault = deps.faults.onCall(endpoint);
    if (fault?.kind === 'hang') {
      deps.log.log('warn', `fault: ${endpoint} hangs`);
      return;
    }
    if (fault?.kind === 'delay') await new Promise((r) => setTimeout(r, fault.ms));
    if (fault?.kind === 'fail') {
      deps.log.log('warn', `fault: ${endpoint} fails`);
      return fail(res, apiFailure('Internal', `The ${endpoint} request failed`, 'chsim injected fault'));
    }

    try {
      const result = route.run(deps.vmm, parsed);
      if (route.okStatus === 200) send(res, 200, '');
      else if (result) send(res, 200, JSON.stringify(result));
      else send(res, 204);
    } catch (err) {
      if (err instanceof ApiError || err instanceof HttpFailure) return fail(res, err);
      deps.log.log('error', `${tag}: ${String(err)}`);
      return fail(res, apiFailure('Internal', `The ${endpoint} request failed`, String(err)));
    }
    if (endpoint === 'vmm.shutdown') res.on('finish', () => deps.onShutdown());
    if (deps.faults.crashAfter(endpoint)) res.on('finish', () => deps.onCrash());
  }

  // micro-http does not insist on a Host header; node's server would answer 400 without one
  const server = createServer({ requireHostHeader: false }, (req, res) => {
    res.on('finish', () => deps.log.log('debug', `API ${req.method} ${req.url} -> ${res.statusCode}`));
    handle(req, res).catch((err: unknown) => {
      deps.log.log('error', `API handler: ${String(err)}`);
      if (!res.headersSent) send(res, 500, errorBody(['Error from API', String(err)], traits));
    });
  });
  server.keepAliveTimeout = 0; // micro-http sends no Keep-Alive header
  return server;
}

/** v40–v51 know only source_url, prefault and net_fds: later fields are dropped and reported. */
function checkRestoreFields(body: Record<string, unknown>, deps: ApiServerDeps): Record<string, unknown> {
  if (deps.traits.restoreModes) return body;
  const out = { ...body };
  for (const key of ['memory_restore_mode', 'resume']) {
    if (key in out) {
      deps.violations.record('restore_field_unsupported', `vm.restore field ${key} needs CH v52+, simulating v${deps.traits.version}`);
      delete out[key];
    }
  }
  return out;
}
