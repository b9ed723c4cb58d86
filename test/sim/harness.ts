import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { execa, type ResultPromise } from 'execa';

// Spawns the simulator as a real process in a sandboxd-test-* temp dir and talks
// to it with raw node:http requests, over its unix socket and its loopback envd.

export const CHSIM = resolve(fileURLToPath(import.meta.url), '../../../drivers/vmm/sim/chsim');

export function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'sandboxd-test-chsim-'));
  t.after(() => removeDir(dir));
  return dir;
}

/** Retries what a process still exiting may write meanwhile (ENOTEMPTY), rather than throw before the next cleanup. */
const removeDir = (dir: string) => rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });

export async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Polls an async condition until it holds or the deadline passes. */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Sim {
  dir: string;
  socket: string;
  violations: string;
  proc: ResultPromise<{ reject: false; all: true; buffer: true }>;
  exited: () => boolean;
  envdUrl(): string;
  readViolations(): { rule: string; detail: string }[];
}

export interface SpawnOpts {
  version?: number;
  args?: string[];
  env?: Record<string, string>;
  /** Do not wait for the socket (the process is expected to fail). */
  noWait?: boolean;
  dir?: string;
}

/** Boots a VM from a payload unless `args` is given. The process is killed after the test. */
export async function spawnSim(t: TestContext, opts: SpawnOpts = {}): Promise<Sim> {
  // Its own dir goes only once the process has exited (below): removed first, it could still be written to.
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'sandboxd-test-chsim-'));
  const socket = join(dir, 'api.sock');
  const violations = join(dir, 'violations.jsonl');
  const args = opts.args ?? [
    '--kernel', '/boot/vmlinux', '--cmdline', 'console=ttyS0', '--memory', 'size=64M,shared=on',
    '--disk', `path=${join(dir, 'disk.img')}`, '--net', 'tap=sbxt0,mac=02:fc:00:00:00:05', '--console', 'off',
  ];
  if (args.some((a) => a.includes(join(dir, 'disk.img')))) {
    const { writeFileSync } = await import('node:fs');
    if (!existsSync(join(dir, 'disk.img'))) writeFileSync(join(dir, 'disk.img'), Buffer.alloc(4096, 1));
  }
  const proc = execa(CHSIM, ['--api-socket', `path=${socket}`, '--sim-version', String(opts.version ?? 52), '--sim-violations', violations, '--log-file', join(dir, 'ch.log'), '-vv', ...args], {
    reject: false,
    all: true,
    buffer: true,
    env: opts.env ?? {},
  });
  let done = false;
  void proc.finally(() => {
    done = true;
  });
  t.after(async () => {
    // SIGTERM lets the simulator kill its guest processes; SIGKILL only if it does not exit
    if (!done) proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
    await proc;
    clearTimeout(timer);
    if (opts.dir === undefined) removeDir(dir);
  });
  // the socket file appears at bind(), a moment before listen(): wait until a ping answers
  if (!opts.noWait) {
    await eventually('the API socket', async () => {
      if (done) return true;
      if (!existsSync(socket)) return false;
      return httpRequest({ socketPath: socket }, 'GET', '/api/v1/vmm.ping').then(() => true, () => false);
    }, 10_000);
  }
  if (done && !opts.noWait) throw new Error(`chsim exited early: ${(await proc).all}`);
  return {
    dir,
    socket,
    violations,
    proc,
    exited: () => done,
    envdUrl: () => readFileSync(`${socket}.envd`, 'utf8'),
    readViolations: () =>
      existsSync(violations)
        ? readFileSync(violations, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { rule: string; detail: string })
        : [],
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
  json(): unknown;
}

export function httpRequest(
  target: { socketPath: string } | { url: string },
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string | number> = {},
  timeoutMs = 10_000,
): Promise<Reply> {
  return new Promise((resolvePromise, reject) => {
    const base = 'socketPath' in target ? { socketPath: target.socketPath, host: 'localhost' } : (() => {
      const u = new URL(target.url);
      return { host: u.hostname, port: Number(u.port) };
    })();
    const req = request({ ...base, method, path, headers, signal: AbortSignal.timeout(timeoutMs), agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body: buf, text: buf.toString('utf8'), json: () => JSON.parse(buf.toString('utf8')) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

export const api = (sim: Pick<Sim, 'socket'>, method: string, endpoint: string, body?: unknown, headers?: Record<string, string | number>): Promise<Reply> =>
  httpRequest({ socketPath: sim.socket }, method, `/api/v1/${endpoint}`, body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body), headers);

export const envd = (sim: Sim, method: string, path: string, body?: string | Buffer, headers?: Record<string, string | number>, timeoutMs?: number): Promise<Reply> =>
  httpRequest({ url: sim.envdUrl() }, method, path, body, headers, timeoutMs);

/** Opens a streaming call; `attached` resolves on the first response bytes (the start event). */
export function openStream(sim: Sim, method: string, message: unknown): { attached: Promise<void>; body: Promise<Buffer>; soFar: () => Buffer } {
  let attach: () => void = () => undefined;
  const chunks: Buffer[] = [];
  const attached = new Promise<void>((r) => (attach = r));
  const body = new Promise<Buffer>((resolveBody, reject) => {
    const u = new URL(sim.envdUrl());
    const req = request(
      { host: u.hostname, port: Number(u.port), method: 'POST', path: `/process.Process/${method}`, agent: false, headers: { 'Content-Type': 'application/connect+json' } },
      (res) => {
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          attach();
        });
        res.on('end', () => resolveBody(Buffer.concat(chunks)));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(frame(0, Buffer.from(JSON.stringify(message))));
  });
  return { attached, body, soFar: () => Buffer.concat(chunks) };
}

export function frame(flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt8(flags, 0);
  h.writeUInt32BE(payload.length, 1);
  return Buffer.concat([h, payload]);
}

export function frames(body: Buffer): { flags: number; payload: Buffer }[] {
  const out: { flags: number; payload: Buffer }[] = [];
  for (let pos = 0; pos < body.length; ) {
    if (body.length - pos < 5) break; // a frame still arriving
    const len = body.readUInt32BE(pos + 1);
    if (body.length - pos - 5 < len) break;
    out.push({ flags: body.readUInt8(pos), payload: body.subarray(pos + 5, pos + 5 + len) });
    pos += 5 + len;
  }
  return out;
}

/** Start with the Connect JSON codec; returns the decoded frames once the stream ends. */
export async function startJson(sim: Sim, request: unknown, timeoutMs?: number): Promise<{ status: number; messages: unknown[]; end: unknown; endFlags: number }> {
  const reply = await envd(sim, 'POST', '/process.Process/Start', frame(0, Buffer.from(JSON.stringify(request))), {
    'Content-Type': 'application/connect+json',
    'Connect-Protocol-Version': 1,
  }, timeoutMs);
  const all = frames(reply.body);
  const last = all.at(-1);
  return {
    status: reply.status,
    messages: all.slice(0, -1).map((f) => JSON.parse(f.payload.toString('utf8'))),
    end: last ? JSON.parse(last.payload.toString('utf8')) : undefined,
    endFlags: last?.flags ?? -1,
  };
}

/** Runs a command in the guest and collects its stdout, stderr and end event. */
export async function exec(sim: Sim, cmd: string, args: string[] = [], extra: Record<string, unknown> = {}): Promise<{ stdout: string; stderr: string; end: Record<string, unknown> }> {
  const r = await startJson(sim, { process: { cmd, args, ...extra }, stdin: false });
  let stdout = '';
  let stderr = '';
  let end: Record<string, unknown> = {};
  for (const m of r.messages as { event: Record<string, Record<string, unknown>> }[]) {
    const data = m.event.data;
    if (data?.stdout) stdout += Buffer.from(data.stdout as string, 'base64').toString();
    if (data?.stderr) stderr += Buffer.from(data.stderr as string, 'base64').toString();
    if (m.event.end) end = m.event.end;
  }
  return { stdout, stderr, end };
}
