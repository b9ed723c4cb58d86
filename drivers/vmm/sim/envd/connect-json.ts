import {
  ConnectError, type Method, type ProcessConfig, type ProcessEvent, type Selector,
} from './messages.ts';

// The Connect JSON codec: proto3 JSON mapping (envd.md §4). Parsers accept
// lowerCamelCase and snake_case names, base64 in standard or URL-safe form, enums by
// name or number. Writers omit plain scalars at their default.

type Json = Record<string, unknown>;

function obj(value: unknown, what: string): Json {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConnectError('invalid_argument', `${what} must be an object`);
  return value as Json;
}

function field(o: Json, camel: string, snake?: string): unknown {
  return o[camel] ?? (snake ? o[snake] : undefined);
}

function str(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new ConnectError('invalid_argument', `${what} must be a string`);
  return value;
}

function num(value: unknown, what: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  const n = typeof value === 'string' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n)) throw new ConnectError('invalid_argument', `${what} must be an integer`);
  return n;
}

function bytes(value: unknown, what: string): Buffer | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new ConnectError('invalid_argument', `${what} must be base64`);
  return Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

function processConfig(value: unknown): ProcessConfig {
  const o = obj(value, 'process');
  const cmd = str(o.cmd, 'process.cmd');
  if (!cmd) throw new ConnectError('invalid_argument', 'process.cmd is required');
  const args = o.args ?? [];
  if (!Array.isArray(args) || args.some((a) => typeof a !== 'string')) throw new ConnectError('invalid_argument', 'process.args must be strings');
  const envs = obj(o.envs, 'process.envs');
  for (const v of Object.values(envs)) if (typeof v !== 'string') throw new ConnectError('invalid_argument', 'process.envs must map strings');
  const out: ProcessConfig = { cmd, args: args as string[], envs: envs as Record<string, string> };
  const cwd = str(o.cwd, 'process.cwd');
  if (cwd !== undefined) out.cwd = cwd;
  return out;
}

function selector(value: unknown): Selector {
  const o = obj(value, 'process');
  const pid = num(o.pid, 'process.pid');
  const tag = str(o.tag, 'process.tag');
  if (pid === undefined && tag === undefined) throw new ConnectError('invalid_argument', 'process selector needs pid or tag');
  return pid !== undefined ? { pid } : { tag: tag as string };
}

function pty(value: unknown): { size?: { cols: number; rows: number } } | undefined {
  if (value === undefined || value === null) return undefined;
  const size = obj(obj(value, 'pty').size, 'pty.size');
  return { size: { cols: num(size.cols, 'cols') ?? 0, rows: num(size.rows, 'rows') ?? 0 } };
}

const SIGNALS: Record<string, number> = { SIGNAL_UNSPECIFIED: 0, SIGNAL_SIGTERM: 15, SIGNAL_SIGKILL: 9 };

/** Decodes a request message of `method` from its JSON value. */
export function fromJson(method: Method, value: unknown): unknown {
  const o = obj(value, 'request');
  switch (method) {
    case 'List':
      return {};
    case 'Start': {
      const out: Record<string, unknown> = { process: processConfig(o.process) };
      const p = pty(o.pty);
      if (p) out.pty = p;
      const tag = str(o.tag, 'tag');
      if (tag !== undefined) out.tag = tag;
      if (o.stdin !== undefined && o.stdin !== null) {
        if (typeof o.stdin !== 'boolean') throw new ConnectError('invalid_argument', 'stdin must be a boolean');
        out.stdin = o.stdin;
      }
      return out;
    }
    case 'Connect':
    case 'CloseStdin':
      return { process: selector(o.process) };
    case 'Update': {
      const p = pty(o.pty);
      return p ? { process: selector(o.process), pty: p } : { process: selector(o.process) };
    }
    case 'SendInput': {
      const input = obj(o.input, 'input');
      const stdin = bytes(input.stdin, 'input.stdin');
      const ptyIn = bytes(input.pty, 'input.pty');
      return { process: selector(o.process), input: stdin ? { stdin } : ptyIn ? { pty: ptyIn } : {} };
    }
    case 'SendSignal': {
      const raw = field(o, 'signal');
      const signal = typeof raw === 'string' && raw in SIGNALS ? SIGNALS[raw] : num(raw, 'signal') ?? 0;
      return { process: selector(o.process), signal };
    }
  }
}

function configJson(c: ProcessConfig): Json {
  const out: Json = { cmd: c.cmd, args: c.args, envs: c.envs };
  if (c.cwd !== undefined) out.cwd = c.cwd;
  return out;
}

/** Encodes a response message (a process event for streams) as proto3 JSON. */
export function toJson(method: Method, msg: unknown): Json {
  if (method === 'Start' || method === 'Connect') {
    const ev = msg as ProcessEvent;
    if ('start' in ev) return { event: { start: { pid: ev.start.pid } } };
    if ('data' in ev) {
      const [key, buf] = Object.entries(ev.data)[0] as [string, Buffer];
      return { event: { data: { [key]: buf.toString('base64') } } };
    }
    if ('end' in ev) {
      const end: Json = { status: ev.end.status };
      if (ev.end.exitCode !== 0) end.exitCode = ev.end.exitCode;
      if (ev.end.exited) end.exited = true;
      if (ev.end.error !== undefined) end.error = ev.end.error;
      return { event: { end } };
    }
    return { event: { keepalive: {} } };
  }
  if (method === 'List') {
    const list = msg as { processes: { config: ProcessConfig; pid: number; tag?: string }[] };
    return {
      processes: list.processes.map((p) => (p.tag === undefined ? { config: configJson(p.config), pid: p.pid } : { config: configJson(p.config), pid: p.pid, tag: p.tag })),
    };
  }
  return {};
}
