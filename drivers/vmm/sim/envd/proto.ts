import { ConnectError, type Method, type ProcessConfig, type ProcessEvent, type Selector } from './messages.ts';

// A hand-written binary protobuf codec for envd's process.proto (field numbers in
// envd.md §3). Only the messages the process service uses; unknown fields are skipped.

type Field = number | Buffer;
type Fields = Map<number, Field[]>;

function readVarint(buf: Buffer, pos: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    if (pos >= buf.length) throw new ConnectError('invalid_argument', 'truncated protobuf varint');
    const byte = buf[pos++] as number;
    // values here fit in 53 bits; multiply instead of shifting past 32
    result += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7;
    if (shift > 63) throw new ConnectError('invalid_argument', 'protobuf varint too long');
  }
}

function parse(buf: Buffer): Fields {
  const out: Fields = new Map();
  let pos = 0;
  while (pos < buf.length) {
    const [key, afterKey] = readVarint(buf, pos);
    pos = afterKey;
    const field = Math.floor(key / 8);
    const wire = key % 8;
    let value: Field;
    if (wire === 0) [value, pos] = readVarint(buf, pos);
    else if (wire === 2) {
      const [len, afterLen] = readVarint(buf, pos);
      if (afterLen + len > buf.length) throw new ConnectError('invalid_argument', 'truncated protobuf field');
      value = buf.subarray(afterLen, afterLen + len);
      pos = afterLen + len;
    } else if (wire === 1) {
      pos += 8;
      continue;
    } else if (wire === 5) {
      pos += 4;
      continue;
    } else throw new ConnectError('invalid_argument', `unsupported protobuf wire type ${wire}`);
    const list = out.get(field) ?? [];
    list.push(value);
    out.set(field, list);
  }
  return out;
}

const last = (f: Fields, n: number): Field | undefined => f.get(n)?.at(-1);
const bytesOf = (f: Fields, n: number): Buffer | undefined => {
  const v = last(f, n);
  return Buffer.isBuffer(v) ? v : undefined;
};
const strOf = (f: Fields, n: number): string | undefined => bytesOf(f, n)?.toString('utf8');
const numOf = (f: Fields, n: number): number | undefined => {
  const v = last(f, n);
  return typeof v === 'number' ? v : undefined;
};
const sub = (f: Fields, n: number): Fields | undefined => {
  const b = bytesOf(f, n);
  return b ? parse(b) : undefined;
};

function config(f: Fields | undefined): ProcessConfig {
  if (!f) throw new ConnectError('invalid_argument', 'process is required');
  const cmd = strOf(f, 1);
  if (!cmd) throw new ConnectError('invalid_argument', 'process.cmd is required');
  const args = (f.get(2) ?? []).filter(Buffer.isBuffer).map((b) => b.toString('utf8'));
  const envs: Record<string, string> = {};
  for (const entry of (f.get(3) ?? []).filter(Buffer.isBuffer)) {
    const e = parse(entry);
    envs[strOf(e, 1) ?? ''] = strOf(e, 2) ?? '';
  }
  const cwd = strOf(f, 4);
  return cwd === undefined ? { cmd, args, envs } : { cmd, args, envs, cwd };
}

function selector(f: Fields | undefined): Selector {
  if (!f) throw new ConnectError('invalid_argument', 'process selector is required');
  const pid = numOf(f, 1);
  if (pid !== undefined) return { pid };
  const tag = strOf(f, 2);
  if (tag !== undefined) return { tag };
  throw new ConnectError('invalid_argument', 'process selector needs pid or tag');
}

function pty(f: Fields | undefined): { size: { cols: number; rows: number } } | undefined {
  if (!f) return undefined;
  const size = sub(f, 1);
  return { size: { cols: size ? numOf(size, 1) ?? 0 : 0, rows: size ? numOf(size, 2) ?? 0 : 0 } };
}

export function fromProto(method: Method, payload: Buffer): unknown {
  const f = parse(payload);
  switch (method) {
    case 'List':
      return {};
    case 'Start': {
      const out: Record<string, unknown> = { process: config(sub(f, 1)) };
      const p = pty(sub(f, 2));
      if (p) out.pty = p;
      const tag = strOf(f, 3);
      if (tag !== undefined) out.tag = tag;
      const stdin = numOf(f, 4);
      if (stdin !== undefined) out.stdin = stdin !== 0;
      return out;
    }
    case 'Connect':
    case 'CloseStdin':
      return { process: selector(sub(f, 1)) };
    case 'Update': {
      const p = pty(sub(f, 2));
      return p ? { process: selector(sub(f, 1)), pty: p } : { process: selector(sub(f, 1)) };
    }
    case 'SendInput': {
      const input = sub(f, 2);
      const stdin = input && bytesOf(input, 1);
      const ptyIn = input && bytesOf(input, 2);
      return { process: selector(sub(f, 1)), input: stdin ? { stdin } : ptyIn ? { pty: ptyIn } : {} };
    }
    case 'SendSignal':
      return { process: selector(sub(f, 1)), signal: numOf(f, 2) ?? 0 };
  }
}

class Writer {
  private readonly parts: Buffer[] = [];
  private varint(n: number): void {
    const bytes: number[] = [];
    let v = n;
    while (v >= 0x80) {
      bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    bytes.push(v);
    this.parts.push(Buffer.from(bytes));
  }
  uint(field: number, n: number): this {
    this.varint(field * 8);
    this.varint(n);
    return this;
  }
  sint(field: number, n: number): this {
    return this.uint(field, n >= 0 ? n * 2 : -n * 2 - 1);
  }
  bytes(field: number, data: Buffer | string): this {
    const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    this.varint(field * 8 + 2);
    this.varint(b.length);
    this.parts.push(b);
    return this;
  }
  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function encodeConfig(c: ProcessConfig): Buffer {
  const w = new Writer().bytes(1, c.cmd);
  for (const a of c.args) w.bytes(2, a);
  for (const [k, v] of Object.entries(c.envs)) w.bytes(3, new Writer().bytes(1, k).bytes(2, v).finish());
  if (c.cwd !== undefined) w.bytes(4, c.cwd);
  return w.finish();
}

function encodeEvent(ev: ProcessEvent): Buffer {
  const w = new Writer();
  if ('start' in ev) w.bytes(1, new Writer().uint(1, ev.start.pid).finish());
  else if ('data' in ev) {
    const d = ev.data;
    const inner = new Writer();
    if (d.stdout) inner.bytes(1, d.stdout);
    else if (d.stderr) inner.bytes(2, d.stderr);
    else if (d.pty) inner.bytes(3, d.pty);
    w.bytes(2, inner.finish());
  } else if ('end' in ev) {
    const inner = new Writer();
    if (ev.end.exitCode !== 0) inner.sint(1, ev.end.exitCode);
    if (ev.end.exited) inner.uint(2, 1);
    if (ev.end.status) inner.bytes(3, ev.end.status);
    if (ev.end.error !== undefined) inner.bytes(4, ev.end.error);
    w.bytes(3, inner.finish());
  } else w.bytes(4, Buffer.alloc(0));
  return w.finish();
}

export function toProto(method: Method, message: unknown): Buffer {
  if (method === 'Start' || method === 'Connect') return new Writer().bytes(1, encodeEvent(message as ProcessEvent)).finish();
  if (method === 'List') {
    const w = new Writer();
    for (const p of (message as { processes: { config: ProcessConfig; pid: number; tag?: string }[] }).processes) {
      const info = new Writer().bytes(1, encodeConfig(p.config)).uint(2, p.pid);
      if (p.tag !== undefined) info.bytes(3, p.tag);
      w.bytes(1, info.finish());
    }
    return w.finish();
  }
  return Buffer.alloc(0);
}

/** Test helpers: encode a request and decode a response the way a Go client would. */
export const protoForTests = { parse, Writer, encodeConfig };
