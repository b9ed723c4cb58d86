import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { SandboxdError } from './errors.ts';
import { NAME_ID } from './ids.ts';

/**
 * The agent's configuration: an optional JSON file (SANDBOXD_CONFIG or
 * --config), then SANDBOXD_* environment variables on top. Every key is
 * checked by one strict schema, so a typo is an error naming the key and
 * where it came from, never a silent default.
 */

/** The bundled Cloud Hypervisor simulator: the embedded default VMM. */
export const BUNDLED_SIMULATOR = fileURLToPath(new URL('../drivers/vmm/sim/chsim', import.meta.url));

const absPath = z.string().min(1).refine((p) => !p.includes('\0'), 'must not contain NUL');
const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const TokenSchema = z.strictObject({
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits (sha256sum of the token)'),
  /** null = admin token (sees every team). */
  teamId: z.string().regex(NAME_ID, 'must be a team id').nullable(),
});

export const ConfigSchema = z.strictObject({
  dataDir: absPath.default('./data'),
  listen: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.int().min(0).max(65_535).default(7070),
    })
    .default({ host: '127.0.0.1', port: 7070 }),
  vmm: z
    .strictObject({
      binary: absPath.optional(),
      kernelPath: absPath.optional(),
      kernelCmdline: z.string().max(4096).optional(),
      envdAddress: z.enum(['guest', 'sim-port-file']).optional(),
    })
    .default({}),
  backends: z
    .strictObject({
      disk: z.enum(['auto', 'dm', 'clone']).optional(),
      network: z.enum(['auto', 'netns', 'none']).optional(),
    })
    .default({}),
  slots: z.int().min(1).max(16_384).default(1024),
  defaultDiskSizeMB: z.int().min(1).max(4_194_304).default(4096),
  tokens: z.array(TokenSchema).default([]),
  logLevel: z.enum(logLevels).default('info'),
  warmUpLifecycles: z.int().min(0).max(100_000).default(1000),
});

export type ConfigInput = z.input<typeof ConfigSchema>;

/** The configuration with every default applied and every path absolute. */
export interface AgentConfig {
  dataDir: string;
  listen: { host: string; port: number };
  vmm: {
    binary: string;
    /** The bundled simulator is in use: the embedded default, host-independent backends. */
    simulator: boolean;
    /** null with the simulator: a placeholder file is made under the data dir. */
    kernelPath: string | null;
    kernelCmdline: string | undefined;
    envdAddress: 'guest' | 'sim-port-file';
  };
  backends: { disk: 'auto' | 'dm' | 'clone'; network: 'auto' | 'netns' | 'none' };
  slots: number;
  defaultDiskSizeMB: number;
  tokens: { sha256: string; teamId: string | null }[];
  logLevel: (typeof logLevels)[number];
  /** Throwaway sandbox lifecycles run on in-memory fakes before serving (agent/warm-up.ts); 0 = none. */
  warmUpLifecycles: number;
  /** Where each overridden key came from, for messages. */
  sources: Record<string, string>;
}

/** Environment variable → config key path. Numbers are converted here; the schema judges them. */
const ENV_KEYS: Record<string, { path: string[]; kind: 'string' | 'int' | 'json' }> = {
  SANDBOXD_DATA_DIR: { path: ['dataDir'], kind: 'string' },
  SANDBOXD_HOST: { path: ['listen', 'host'], kind: 'string' },
  SANDBOXD_PORT: { path: ['listen', 'port'], kind: 'int' },
  SANDBOXD_VMM_BINARY: { path: ['vmm', 'binary'], kind: 'string' },
  SANDBOXD_KERNEL: { path: ['vmm', 'kernelPath'], kind: 'string' },
  SANDBOXD_KERNEL_CMDLINE: { path: ['vmm', 'kernelCmdline'], kind: 'string' },
  SANDBOXD_ENVD_ADDRESS: { path: ['vmm', 'envdAddress'], kind: 'string' },
  SANDBOXD_DISK_BACKEND: { path: ['backends', 'disk'], kind: 'string' },
  SANDBOXD_NETWORK_BACKEND: { path: ['backends', 'network'], kind: 'string' },
  SANDBOXD_SLOTS: { path: ['slots'], kind: 'int' },
  SANDBOXD_DEFAULT_DISK_MB: { path: ['defaultDiskSizeMB'], kind: 'int' },
  SANDBOXD_TOKENS: { path: ['tokens'], kind: 'json' },
  SANDBOXD_LOG_LEVEL: { path: ['logLevel'], kind: 'string' },
  SANDBOXD_WARM_UP: { path: ['warmUpLifecycles'], kind: 'int' },
};

export const CONFIG_ENV_VARS = Object.keys(ENV_KEYS);

export interface LoadOptions {
  /** --config on the command line; wins over SANDBOXD_CONFIG. */
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  /** Relative paths resolve against this (default: process.cwd()). */
  cwd?: string;
  /** Reads the config file (tests). */
  readFile?: (path: string) => string;
}

function configError(message: string): SandboxdError {
  return new SandboxdError('invalid_argument', `invalid configuration: ${message}`);
}

/** Loads, merges and validates; throws invalid_argument with every bad key named. */
export function loadConfig(opts: LoadOptions = {}): AgentConfig {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const sources: Record<string, string> = {};
  let raw: Record<string, unknown> = {};

  const file = opts.configPath ?? nonEmpty(env.SANDBOXD_CONFIG);
  if (file !== undefined) {
    const path = resolve(cwd, file);
    let text: string;
    try {
      text = (opts.readFile ?? ((p) => readFileSync(p, 'utf8')))(path);
    } catch (err) {
      throw configError(`cannot read config file ${path}: ${(err as Error).message}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw configError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw configError(`config file ${path} must hold a JSON object`);
    raw = parsed as Record<string, unknown>;
    for (const key of Object.keys(raw)) sources[key] = path;
  }

  for (const [name, spec] of Object.entries(ENV_KEYS)) {
    const value = nonEmpty(env[name]);
    if (value === undefined) continue;
    let converted: unknown = value;
    if (spec.kind === 'int') converted = /^-?\d+$/.test(value.trim()) ? Number(value) : value;
    if (spec.kind === 'json') {
      try {
        converted = JSON.parse(value);
      } catch {
        throw configError(`${name} must be JSON (e.g. [{"sha256":"…","teamId":"team-a"}])`);
      }
    }
    setPath(raw, spec.path, converted);
    sources[spec.path.join('.')] = `env ${name}`;
  }

  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    const lines = result.error.issues.slice(0, 10).map((issue) => {
      const path = issue.path.map(String);
      if (issue.code === 'unrecognized_keys') {
        const keys = issue.keys.map((k) => [...path, k].join('.'));
        const from = sourceOf(sources, [...path, issue.keys[0] ?? '']);
        return `unknown key ${keys.join(', ')}${from === undefined ? '' : ` (from ${from})`}`;
      }
      const from = sourceOf(sources, path);
      return `${path.join('.') || '(top level)'}: ${issue.message}${from === undefined ? '' : ` (from ${from})`}`;
    });
    throw configError(lines.join('; '));
  }
  const c = result.data;
  const binary = c.vmm.binary === undefined ? BUNDLED_SIMULATOR : resolve(cwd, c.vmm.binary);
  const simulator = binary === BUNDLED_SIMULATOR;
  // Without the simulator a real kernel is needed: refuse to start without one rather than fail each boot.
  if (!simulator && c.vmm.kernelPath === undefined) {
    throw configError('vmm.kernelPath is required with a real VMM binary (SANDBOXD_KERNEL)');
  }
  return {
    dataDir: resolve(cwd, c.dataDir),
    listen: c.listen,
    vmm: {
      binary,
      simulator,
      kernelPath: c.vmm.kernelPath === undefined ? null : resolve(cwd, c.vmm.kernelPath),
      kernelCmdline: c.vmm.kernelCmdline,
      envdAddress: c.vmm.envdAddress ?? (simulator ? 'sim-port-file' : 'guest'),
    },
    // The simulator's default is what works unprivileged anywhere; a real VMM gets the production backends where the host has them.
    backends: {
      disk: c.backends.disk ?? (simulator ? 'clone' : 'auto'),
      network: c.backends.network ?? (simulator ? 'none' : 'auto'),
    },
    slots: c.slots,
    defaultDiskSizeMB: c.defaultDiskSizeMB,
    tokens: c.tokens,
    logLevel: c.logLevel,
    warmUpLifecycles: c.warmUpLifecycles,
    sources,
  };
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function sourceOf(sources: Record<string, string>, path: string[]): string | undefined {
  for (let n = path.length; n > 0; n--) {
    const s = sources[path.slice(0, n).join('.')];
    if (s !== undefined) return s;
  }
  return undefined;
}
