import { Agent, request, type ClientRequest, type IncomingMessage } from 'node:http';
import { SandboxdError } from '../../core/errors.ts';

/**
 * Plain HTTP/1.1 to envd with a keep-alive agent (a sandbox's envd is called every
 * second by the metrics sampler). Each call has a timeout and the caller's signal;
 * errors come back as SandboxdError: timeout, cancelled, or operation_failed when
 * nothing answers.
 */
export interface HttpCall {
  method: 'GET' | 'POST';
  url: string;
  headers?: Record<string, string>;
  body?: Buffer;
  timeoutMs: number;
  /** Bound of the body once headers arrived: undefined = the same timer runs on, null = none (streams). */
  bodyTimeoutMs?: number | null;
  signal: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers: IncomingMessage['headers'];
  /** The body stream; call `done()` when finished with it (or on error) to release the timers. */
  body: IncomingMessage;
  done(): void;
}

// Idle sockets are unref'd by node, so the pool never holds a process open.
// No socket cap: long-lived streams (PTYs, attached processes) must never queue a later exec behind them.
const agent = new Agent({ keepAlive: true, keepAliveMsecs: 1000 });

export function open(call: HttpCall): Promise<HttpResponse> {
  const { signal, timeoutMs } = call;
  const url = new URL(call.url);
  if (signal.aborted) return Promise.reject(new SandboxdError('cancelled', `envd ${url.pathname}: cancelled`));
  return new Promise((resolve, reject) => {
    let settled = false;
    let timedOut = false;
    let response: IncomingMessage | undefined;
    const cleanup = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    };
    const fail = (err: Error): void => {
      cleanup();
      // Once the body is being read, the error must surface from the body stream itself.
      if (response) response.destroy(err);
      req.destroy(err);
      if (!settled) {
        settled = true;
        reject(err);
      }
    };
    const onAbort = (): void => fail(new SandboxdError('cancelled', `envd ${url.pathname}: cancelled`));
    const arm = (ms: number): NodeJS.Timeout =>
      setTimeout(() => {
        timedOut = true;
        fail(new SandboxdError('timeout', `envd ${url.pathname}: no answer within ${ms} ms`));
      }, ms);
    let timer = arm(timeoutMs);
    signal.addEventListener('abort', onAbort, { once: true });
    const headers: Record<string, string> = { ...call.headers, 'Content-Length': String(call.body?.length ?? 0) };
    const send = (attempt: number): ClientRequest => {
      const r = request({ host: url.hostname, port: url.port, path: url.pathname + url.search, method: call.method, headers, agent });
      r.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return;
        // A pooled connection the guest dropped meanwhile (a restored or replaced VM): one retry on a new one.
        if (attempt === 0 && r.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          req = send(1);
          return;
        }
        settled = true;
        cleanup();
        reject(timedOut ? err : new SandboxdError('operation_failed', `envd ${url.host}${url.pathname}: ${err.code ?? err.message}`, { cause: err }));
      });
      r.on('response', (res) => {
        settled = true;
        response = res;
        if (call.bodyTimeoutMs !== undefined) {
          clearTimeout(timer);
          if (call.bodyTimeoutMs !== null) timer = arm(call.bodyTimeoutMs);
        }
        // Aborts and the timeout keep covering the body until the caller is done with it.
        res.on('error', () => undefined);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, done: cleanup });
      });
      r.end(call.body);
      return r;
    };
    let req = send(0);
  });
}

/** Reads a whole body, refusing more than `max` bytes. */
export async function readBody(res: HttpResponse, max = 1 << 20): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) throw new SandboxdError('operation_failed', `envd response larger than ${max} bytes`);
      chunks.push(chunk);
    }
  } catch (err) {
    res.body.destroy();
    throw toSandboxdError(err);
  } finally {
    res.done();
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function toSandboxdError(err: unknown): SandboxdError {
  if (err instanceof SandboxdError) return err;
  const e = err as NodeJS.ErrnoException;
  return new SandboxdError('operation_failed', `envd: ${e?.code ?? e?.message ?? String(err)}`, { cause: err });
}
