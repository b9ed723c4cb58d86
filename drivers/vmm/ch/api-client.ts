import { request } from 'node:http';
import { z } from 'zod';
import { SandboxdError } from '../../../core/errors.ts';
import type { CallOpts } from '../../call.ts';

/**
 * Cloud Hypervisor's REST API over its unix socket (reference §1). One HTTP/1.1
 * request per call, each with a Content-Length (micro-http sizes bodies by it
 * alone) and no body at all on the bodyless actions, which refuse one with 400.
 */
export interface ChApi {
  ping(opts: ApiCallOpts): Promise<VmmPing>;
  info(opts: ApiCallOpts): Promise<VmInfo>;
  counters(opts: ApiCallOpts): Promise<VmCounters>;
  /** A bodyless PUT action: vm.pause, vm.resume, vm.shutdown, vmm.shutdown, … */
  action(endpoint: BodylessAction, opts: ApiCallOpts): Promise<void>;
  snapshot(destinationDir: string, opts: ApiCallOpts): Promise<void>;
  restore(config: RestoreConfig, opts: ApiCallOpts): Promise<void>;
  resize(desired: ResizeRequest, opts: ApiCallOpts): Promise<void>;
}

export interface ApiCallOpts extends CallOpts {
  /** Per-call bound; the client's default when absent. */
  timeoutMs?: number;
}

export type BodylessAction =
  | 'vm.boot'
  | 'vm.delete'
  | 'vm.shutdown'
  | 'vm.reboot'
  | 'vm.pause'
  | 'vm.resume'
  | 'vm.power-button'
  | 'vmm.shutdown';

export const VmStateSchema = z.enum(['Created', 'Running', 'Paused', 'Shutdown', 'BreakPoint']);

export const VmmPingSchema = z.object({
  version: z.string(),
  build_version: z.string().optional(),
  pid: z.number().int().optional(),
  features: z.array(z.string()).optional(),
});
export type VmmPing = z.infer<typeof VmmPingSchema>;

export const VmInfoSchema = z.object({
  config: z.record(z.string(), z.unknown()),
  state: VmStateSchema,
  memory_actual_size: z.number().int().nonnegative().optional(),
  device_tree: z.record(z.string(), z.unknown()).nullish(),
});
export type VmInfo = z.infer<typeof VmInfoSchema>;

export const VmCountersSchema = z.record(z.string(), z.record(z.string(), z.number()));
export type VmCounters = z.infer<typeof VmCountersSchema>;

export interface RestoreConfig {
  source_url: string;
  prefault?: boolean;
  /** v52+ only; older versions reject unknown fields. */
  memory_restore_mode?: 'Copy' | 'OnDemand';
  resume?: boolean;
}

export interface ResizeRequest {
  desired_vcpus?: number;
  desired_ram?: number;
  desired_balloon?: number;
}

export type ChErrorKind =
  | 'bad_request'
  | 'not_found'
  | 'conflict'
  | 'busy'
  | 'internal'
  | 'invalid_state'
  /** v53: an on-demand restore is still faulting pages in; a snapshot must wait. */
  | 'restoring'
  /** Nothing answered on the socket (VMM gone or not started). */
  | 'unavailable';

/** A failure reported by (or instead of) the VMM's API; `chain` is the error chain, top level first. */
export class ChApiError extends SandboxdError {
  readonly status: number;
  readonly chain: string[];
  readonly kind: ChErrorKind;
  readonly endpoint: string;
  constructor(endpoint: string, status: number, chain: string[], kind: ChErrorKind, cause?: unknown) {
    const detail = chain.length > 0 ? chain.join(': ') : `HTTP ${status}`;
    super('operation_failed', `cloud-hypervisor ${endpoint}: ${detail}`, cause === undefined ? undefined : { cause });
    this.name = 'ChApiError';
    this.status = status;
    this.chain = chain;
    this.kind = kind;
    this.endpoint = endpoint;
  }
}

// Substrings of CH's #[error] texts (reference §1.2: match on substrings only).
const RESTORING = [/VmRestoring/i, /memory restore is still in progress/i];
const INVALID_STATE = [
  /invalid (state )?transition/i,
  /InvalidStateTransition/,
  /VmNotRunning/,
  /not running/i,
  /snapshot while VM is running/i,
  /already (created|paused|running)/i,
  /VmAlreadyCreated/,
  /VM is not created/i,
  /VmNotCreated/,
];

/** Parses an error body: v47+ a JSON array of strings, v40–v46 plain text. */
export function parseErrorChain(body: string): string[] {
  const text = body.trim();
  if (text.startsWith('[')) {
    try {
      const parsed = z.array(z.string()).safeParse(JSON.parse(text));
      if (parsed.success) return parsed.data;
    } catch {
      // not JSON after all: fall through to plain text
    }
  }
  return text === '' ? [] : [text];
}

export function classifyError(status: number, chain: readonly string[]): ChErrorKind {
  switch (status) {
    case 400:
      return 'bad_request';
    case 404:
      return 'not_found';
    case 409:
      return 'conflict';
    case 429:
      return 'busy';
  }
  const all = chain.join('\n');
  if (RESTORING.some((re) => re.test(all))) return 'restoring';
  if (INVALID_STATE.some((re) => re.test(all))) return 'invalid_state';
  return 'internal';
}

/** The largest response accepted; vm.info of a big VM is a few KiB. */
export const MAX_RESPONSE_BYTES = 1 << 20;
const DEFAULT_TIMEOUT_MS = 10_000;

export interface ChApiClientOptions {
  defaultTimeoutMs?: number;
  maxResponseBytes?: number;
}

interface RawResponse {
  status: number;
  body: string;
}

export class ChApiClient implements ChApi {
  readonly socketPath: string;
  private readonly defaultTimeoutMs: number;
  private readonly maxResponseBytes: number;

  constructor(socketPath: string, options: ChApiClientOptions = {}) {
    this.socketPath = socketPath;
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxResponseBytes = options.maxResponseBytes ?? MAX_RESPONSE_BYTES;
  }

  async ping(opts: ApiCallOpts): Promise<VmmPing> {
    return this.getJson('vmm.ping', VmmPingSchema, opts);
  }

  async info(opts: ApiCallOpts): Promise<VmInfo> {
    return this.getJson('vm.info', VmInfoSchema, opts);
  }

  async counters(opts: ApiCallOpts): Promise<VmCounters> {
    return this.getJson('vm.counters', VmCountersSchema, opts);
  }

  async action(endpoint: BodylessAction, opts: ApiCallOpts): Promise<void> {
    await this.call('PUT', endpoint, undefined, opts);
  }

  async snapshot(destinationDir: string, opts: ApiCallOpts): Promise<void> {
    await this.call('PUT', 'vm.snapshot', { destination_url: `file://${destinationDir}` }, opts);
  }

  async restore(config: RestoreConfig, opts: ApiCallOpts): Promise<void> {
    await this.call('PUT', 'vm.restore', config, opts);
  }

  async resize(desired: ResizeRequest, opts: ApiCallOpts): Promise<void> {
    await this.call('PUT', 'vm.resize', desired, opts);
  }

  private async getJson<T>(endpoint: string, schema: z.ZodType<T>, opts: ApiCallOpts): Promise<T> {
    const res = await this.call('GET', endpoint, undefined, opts);
    let json: unknown;
    try {
      json = JSON.parse(res.body);
    } catch (err) {
      throw new ChApiError(endpoint, res.status, [`response is not JSON: ${res.body.slice(0, 200)}`], 'internal', err);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new ChApiError(endpoint, res.status, [`unexpected response: ${z.prettifyError(parsed.error)}`], 'internal');
    }
    return parsed.data;
  }

  /** One request; resolves on 2xx, throws ChApiError otherwise. */
  async call(method: 'GET' | 'PUT', endpoint: string, body: unknown, opts: ApiCallOpts): Promise<RawResponse> {
    const res = await this.send(method, endpoint, body === undefined ? undefined : JSON.stringify(body), opts);
    if (res.status >= 200 && res.status < 300) return res;
    const chain = parseErrorChain(res.body);
    throw new ChApiError(endpoint, res.status, chain, classifyError(res.status, chain));
  }

  private send(method: string, endpoint: string, body: string | undefined, opts: ApiCallOpts): Promise<RawResponse> {
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const { signal } = opts;
    if (signal.aborted) return Promise.reject(cancelled(endpoint, signal.reason));
    const payload = body === undefined ? undefined : Buffer.from(body);
    const headers: Record<string, string> = {
      Host: 'localhost',
      Accept: 'application/json',
      // Always sized, never chunked: micro-http reads a body by Content-Length only.
      'Content-Length': String(payload?.length ?? 0),
    };
    if (payload !== undefined) headers['Content-Type'] = 'application/json';

    return new Promise<RawResponse>((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | undefined, res?: RawResponse): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (err) {
          req.destroy();
          reject(err);
        } else resolve(res as RawResponse);
      };
      const onAbort = (): void => finish(cancelled(endpoint, signal.reason));
      const timer = setTimeout(
        () => finish(new SandboxdError('timeout', `cloud-hypervisor ${endpoint}: no answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
      signal.addEventListener('abort', onAbort, { once: true });

      // agent:false: one connection per call, so a dead VMM never leaves a stale pooled socket.
      const req = request({ socketPath: this.socketPath, path: `/api/v1/${endpoint}`, method, headers, agent: false });
      req.on('error', (err: NodeJS.ErrnoException) => {
        finish(
          new ChApiError(endpoint, 0, [`API socket ${this.socketPath} not answering: ${err.code ?? err.message}`], 'unavailable', err),
        );
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > this.maxResponseBytes) {
            finish(new ChApiError(endpoint, res.statusCode ?? 0, [`response larger than ${this.maxResponseBytes} bytes`], 'internal'));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => finish(undefined, { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => finish(new ChApiError(endpoint, res.statusCode ?? 0, [`response broken: ${err.message}`], 'unavailable', err)));
      });
      req.end(payload);
    });
  }
}

function cancelled(endpoint: string, reason: unknown): SandboxdError {
  return new SandboxdError('cancelled', `cloud-hypervisor ${endpoint}: cancelled`, reason === undefined ? undefined : { cause: reason });
}
