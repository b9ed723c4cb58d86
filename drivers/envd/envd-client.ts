import { sleep } from '../../core/sleep.ts';
import { z } from 'zod';
import { SandboxdError } from '../../core/errors.ts';
import type { CallOpts } from '../call.ts';
import { errorFromResponse } from './connect-json.ts';
import type {
  EnvdDriver, EnvdInit, EnvdStreams, ExecRequest, ExecResult, GuestProcess, GuestUsage, MemoryLoaderStatus, ProcessSelector, ProcessStream,
  ProcessStartRequest, PtySize, PtyStartRequest,
} from './envd.ts';
import { open, readBody, type HttpResponse } from './http.ts';
import { processCalls } from './process-client.ts';
import { startProcessStream, type ProcessEvent } from './process-stream.ts';

/**
 * EnvdDriver over envd's HTTP API and its Connect process service (JSON codec),
 * per envd.md. Works against E2B's and Wrenn's envd and the simulator's stand-in.
 */

/** Readiness budget after a boot or restore: 8 s per GiB of RAM, at least 120 s (lifecycle.md). */
export function envdHealthBudgetMs(memoryMB: number): number {
  const gib = Math.ceil(Math.max(0, memoryMB) / 1024);
  return Math.max(120_000, gib * 8_000);
}

const HealthSchema = z.looseObject({ version: z.string().optional() });
const MetricsSchema = z.looseObject({ mem_used: z.number().nonnegative(), disk_used: z.number().nonnegative() });
const PreloadSchema = z.looseObject({
  state: z.enum(['idle', 'running', 'done', 'failed', 'cancelled']),
  pages: z.number().nonnegative().default(0),
  error: z.string().nullish(),
});

export interface EnvdClientOptions {
  /** Bound of each plain HTTP call. */
  callTimeoutMs?: number;
  /** Interval between /health probes while waiting. */
  healthPollMs?: number;
  /** Largest stdout (and stderr) kept by exec; the rest is dropped. */
  maxExecOutputBytes?: number;
}

export class EnvdClient implements EnvdDriver, EnvdStreams {
  private readonly callTimeoutMs: number;
  private readonly healthPollMs: number;
  private readonly maxExecOutputBytes: number;

  constructor(options: EnvdClientOptions = {}) {
    this.callTimeoutMs = options.callTimeoutMs ?? 10_000;
    this.healthPollMs = options.healthPollMs ?? 100;
    this.maxExecOutputBytes = options.maxExecOutputBytes ?? 16 << 20;
  }

  async waitHealthy(url: string, budgetMs: number, opts: CallOpts): Promise<void> {
    const deadline = Date.now() + budgetMs;
    let last = 'no answer yet';
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new SandboxdError('timeout', `envd at ${url} not healthy within ${budgetMs} ms (${last})`);
      try {
        const res = await this.call('GET', url, '/health', undefined, { signal: opts.signal }, Math.min(2000, remaining));
        await readBody(res).catch(() => '');
        // E2B answers 204, Wrenn 200 with its version: both mean ready.
        if (res.status === 200 || res.status === 204) return;
        last = `HTTP ${res.status}`;
      } catch (err) {
        if (err instanceof SandboxdError && err.code === 'cancelled') throw err;
        last = err instanceof Error ? err.message : String(err);
      }
      await sleep(Math.min(this.healthPollMs, Math.max(0, deadline - Date.now())), opts.signal);
    }
  }

  async version(url: string, opts: CallOpts): Promise<string> {
    const res = await this.call('GET', url, '/health', undefined, opts);
    const header = res.headers['x-envd-version'];
    const body = await readBody(res);
    expectStatus('/health', res.status, [200, 204], body);
    if (body.trim() !== '') {
      const parsed = HealthSchema.safeParse(safeJson(body));
      if (parsed.success && parsed.data.version) return parsed.data.version;
    }
    if (typeof header === 'string' && header !== '') return header;
    throw new SandboxdError('not_found', `envd at ${url} reports no version`);
  }

  async init(url: string, init: EnvdInit, opts: CallOpts): Promise<void> {
    // The host's clock goes along: a restored guest's clock is as old as its snapshot.
    const body: Record<string, unknown> = { timestamp: new Date().toISOString() };
    if (init.defaultUser) body.defaultUser = init.defaultUser;
    if (init.env && Object.keys(init.env).length > 0) body.envVars = init.env;
    const res = await this.call('POST', url, '/init', body, opts);
    expectStatus('/init', res.status, [200, 204], await readBody(res));
  }

  async prepareSnapshot(url: string, opts: CallOpts): Promise<void> {
    const res = await this.call('POST', url, '/snapshot/prepare', undefined, opts);
    expectStatus('/snapshot/prepare', res.status, [200, 204], await readBody(res));
  }

  async startMemoryLoader(url: string, opts: CallOpts): Promise<MemoryLoaderStatus> {
    return this.preload('POST', url, opts);
  }

  async memoryLoaderStatus(url: string, opts: CallOpts): Promise<MemoryLoaderStatus> {
    return this.preload('GET', url, opts);
  }

  /** Polls the memory loader until it is no longer running; returns its final status. */
  async waitMemoryLoader(url: string, opts: CallOpts & { pollMs?: number }): Promise<MemoryLoaderStatus> {
    for (;;) {
      const status = await this.memoryLoaderStatus(url, opts);
      if (status.state !== 'running') return status;
      await sleep(opts.pollMs ?? 1000, opts.signal);
    }
  }

  private async preload(method: 'GET' | 'POST', url: string, opts: CallOpts): Promise<MemoryLoaderStatus> {
    const res = await this.call(method, url, '/memory/preload', undefined, opts);
    const body = await readBody(res);
    expectStatus('/memory/preload', res.status, [200], body);
    const s = parse('/memory/preload', PreloadSchema, body);
    return { state: s.state, pages: s.pages, error: s.error ?? null };
  }

  async usage(url: string, opts: CallOpts): Promise<GuestUsage> {
    const res = await this.call('GET', url, '/metrics', undefined, opts);
    const body = await readBody(res);
    expectStatus('/metrics', res.status, [200], body);
    const m = parse('/metrics', MetricsSchema, body);
    return { memUsedBytes: m.mem_used, diskUsedBytes: m.disk_used };
  }

  async exec(url: string, req: ExecRequest, opts: CallOpts): Promise<ExecResult> {
    const stream = await startProcessStream(url, { cmd: req.cmd, args: req.args, env: req.env, cwd: req.cwd, timeoutMs: req.timeoutMs }, opts);
    const out = new OutputBuffer(this.maxExecOutputBytes);
    const err = new OutputBuffer(this.maxExecOutputBytes);
    let end: Extract<ProcessEvent, { type: 'end' }> | undefined;
    try {
      for await (const event of stream.events) {
        if (event.type === 'stdout') out.push(event.data);
        else if (event.type === 'stderr') err.push(event.data);
        else if (event.type === 'end') end = event;
      }
    } finally {
      stream.cancel();
    }
    if (!end) throw new SandboxdError('operation_failed', `envd: process stream of ${req.cmd} ended without an end event`);
    return { exitCode: end.exitCode, stdout: out.text(), stderr: err.text() };
  }

  // Streaming calls: see process-client.ts.
  execStream(url: string, req: ExecRequest, opts: CallOpts): Promise<ProcessStream> {
    return processCalls.execStream(url, req, opts);
  }
  ptyStart(url: string, req: PtyStartRequest, opts: CallOpts): Promise<ProcessStream> {
    return processCalls.ptyStart(url, req, opts);
  }
  ptyAttach(url: string, process: ProcessSelector, opts: CallOpts): Promise<ProcessStream> {
    return processCalls.ptyAttach(url, process, opts);
  }
  ptyInput(url: string, process: ProcessSelector, data: Buffer, opts: CallOpts): Promise<void> {
    return processCalls.ptyInput(url, process, data, opts);
  }
  ptyResize(url: string, process: ProcessSelector, size: PtySize, opts: CallOpts): Promise<void> {
    return processCalls.ptyResize(url, process, size, opts);
  }
  ptyKill(url: string, process: ProcessSelector, opts: CallOpts): Promise<void> {
    return processCalls.ptyKill(url, process, opts);
  }
  processStart(url: string, req: ProcessStartRequest, opts: CallOpts): Promise<{ pid: number }> {
    return processCalls.processStart(url, req, opts);
  }
  processConnect(url: string, process: ProcessSelector, opts: CallOpts): Promise<ProcessStream> {
    return processCalls.processConnect(url, process, opts);
  }
  processList(url: string, opts: CallOpts): Promise<GuestProcess[]> {
    return processCalls.processList(url, opts);
  }
  processKill(url: string, process: ProcessSelector, signal: 'SIGTERM' | 'SIGKILL', opts: CallOpts): Promise<void> {
    return processCalls.processKill(url, process, signal, opts);
  }

  private async call(method: 'GET' | 'POST', url: string, path: string, body: unknown, opts: CallOpts, timeoutMs = this.callTimeoutMs): Promise<HttpResponse> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (payload) headers['Content-Type'] = 'application/json';
    return open({ method, url: `${url}${path}`, headers, body: payload, timeoutMs, signal: opts.signal });
  }
}

class OutputBuffer {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly max: number) {}
  push(data: Buffer): void {
    const room = this.max - this.size;
    if (room <= 0) return;
    const part = data.length > room ? data.subarray(0, room) : data;
    this.chunks.push(part);
    this.size += part.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

function expectStatus(path: string, status: number, ok: number[], body: string): void {
  if (ok.includes(status)) return;
  const err = errorFromResponse(status, body);
  throw new SandboxdError(err.code, `envd ${path}: HTTP ${status}: ${err.message}`, { cause: err });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parse<T>(path: string, schema: z.ZodType<T>, body: string): T {
  const parsed = schema.safeParse(safeJson(body));
  if (!parsed.success) throw new SandboxdError('operation_failed', `envd ${path}: unexpected response: ${body.slice(0, 200)}`);
  return parsed.data;
}

