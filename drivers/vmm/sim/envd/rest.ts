import { statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readEnvdDefaults, writeEnvdDefaults, type EnvdDefaults } from '../guest-state.ts';
import type { SimVmm } from '../vmm.ts';
import type { MemoryPreloader } from './preload.ts';

// envd's plain HTTP routes as the Wrenn host uses them (envd.md §2, §7).

export const ENVD_VERSION = '0.2.0';

export interface RestDeps {
  vmm: SimVmm;
  preloader: MemoryPreloader;
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(body);
}

function noContent(res: ServerResponse): void {
  res.writeHead(204, { 'Cache-Control': 'no-store' });
  res.end();
}

function errorJson(res: ServerResponse, status: number, message: string): void {
  json(res, status, { code: status, message });
}

function stringMap(value: unknown): Record<string, string> | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  return Object.fromEntries(Object.entries(value).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

/** POST /init: E2B's camelCase fields and Wrenn's snake_case ones; every field optional. */
function init(body: Buffer, deps: RestDeps): EnvdDefaults {
  const text = body.toString('utf8').trim();
  const raw = (text === '' ? {} : JSON.parse(text)) as Record<string, unknown>;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SyntaxError('init body must be an object');
  const mem = deps.vmm.memory;
  if (!mem) throw new Error('guest has no memory');
  const current = readEnvdDefaults(mem);
  const next: EnvdDefaults = { ...current };
  const env = stringMap(raw.envVars);
  if (env) next.envVars = env;
  if (typeof raw.defaultUser === 'string' && raw.defaultUser) next.defaultUser = raw.defaultUser;
  if (typeof raw.defaultWorkdir === 'string' && raw.defaultWorkdir) next.defaultWorkdir = raw.defaultWorkdir;
  const wrenn: [string, string][] = [['sandbox_id', 'WRENN_SANDBOX_ID'], ['template_id', 'WRENN_TEMPLATE_ID'], ['proxy_domain', 'WRENN_PROXY_DOMAIN']];
  for (const [key, envName] of wrenn) {
    if (typeof raw[key] === 'string' && raw[key]) next.envVars = { ...next.envVars, [envName]: raw[key] as string };
  }
  const lifecycle = raw.lifecycle_id ?? raw.lifecycleID;
  if (typeof lifecycle === 'string') next.lifecycleId = lifecycle;
  writeEnvdDefaults(mem, next);
  // init resets the memory loader: the host starts the loader only after init
  deps.preloader.reset();
  return next;
}

function metrics(deps: RestDeps): Record<string, number> {
  const config = deps.vmm.vmConfig;
  const mem = deps.vmm.memory;
  const memTotal = config?.memory.size ?? 0;
  const memUsed = mem?.residentBytes() ?? 0;
  let diskTotal = 0;
  let diskUsed = 0;
  const disk = config?.disks?.[0]?.path;
  if (disk) {
    try {
      const st = statSync(disk);
      diskTotal = st.size;
      diskUsed = st.blocks * 512;
    } catch {
      // a vanished disk reads as empty
    }
  }
  return {
    ts: Math.floor(Date.now() / 1000),
    cpu_count: config?.cpus.boot_vcpus ?? 1,
    cpu_used_pct: 0,
    mem_total: memTotal,
    mem_used: memUsed,
    mem_cache: 0,
    mem_total_mib: Math.floor(memTotal / 1048576),
    mem_used_mib: Math.floor(memUsed / 1048576),
    disk_used: diskUsed,
    disk_total: diskTotal,
  };
}

/** Returns false when no REST route matches (the caller answers 404). */
export function handleRest(req: IncomingMessage, res: ServerResponse, body: Buffer, deps: RestDeps): boolean {
  const path = (req.url ?? '').split('?')[0];
  const route = `${req.method} ${path}`;
  switch (route) {
    case 'GET /health':
      json(res, 200, { version: ENVD_VERSION });
      return true;
    case 'POST /init':
      try {
        init(body, deps);
        noContent(res);
      } catch (err) {
        errorJson(res, err instanceof SyntaxError ? 400 : 500, (err as Error).message);
      }
      return true;
    case 'GET /envs': {
      const mem = deps.vmm.memory;
      json(res, 200, mem ? readEnvdDefaults(mem).envVars ?? {} : {});
      return true;
    }
    case 'POST /snapshot/prepare':
      noContent(res);
      return true;
    case 'POST /memory/preload':
      json(res, 200, deps.preloader.start());
      return true;
    case 'GET /memory/preload':
      json(res, 200, deps.preloader.snapshot());
      return true;
    case 'POST /memory/preload/cancel':
      deps.preloader.cancel();
      noContent(res);
      return true;
    case 'GET /metrics':
      json(res, 200, metrics(deps));
      return true;
    case 'GET /activity': {
      const m = metrics(deps);
      json(res, 200, { cpu_count: m.cpu_count, cpu_used_pct: 0, net_bps: 0, disk_bps: 0 });
      return true;
    }
    default:
      return false;
  }
}

export function notFound(res: ServerResponse): void {
  errorJson(res, 404, 'not found');
}

export function faultResponse(res: ServerResponse): void {
  errorJson(res, 500, 'chsim injected fault');
}
