import { z } from 'zod';
import { SandboxdError } from '../../core/errors.ts';
import type { CallOpts } from '../call.ts';
import type { ProcessEvent, ProcessSelector, ProcessStream } from './envd.ts';
import { ConnectError, encodeEnvelope, endStreamError, EnvelopeDecoder, errorFromResponse, FLAG_END_STREAM, messageOf } from './connect-json.ts';
import { open, readBody, toSandboxdError, type HttpResponse } from './http.ts';

/**
 * envd's server-streaming process calls (Start, Connect) as an async iterable of
 * events plus a cancel. Dropping a stream does not kill the guest process (envd.md §3).
 */

export type { ProcessEvent, ProcessSelector, ProcessStream } from './envd.ts';

export interface StartSpec {
  cmd: string;
  args: string[];
  env?: Record<string, string> | undefined;
  cwd?: string | undefined;
  /** Process lifetime: sent as Connect-Timeout-Ms, which E2B's envd enforces by killing the process. */
  timeoutMs?: number | undefined;
  pty?: { cols: number; rows: number } | undefined;
  tag?: string | undefined;
  /** Keep stdin open (PTYs, interactive processes). */
  stdin?: boolean | undefined;
}

const b64 = z.string().transform((s) => Buffer.from(s, 'base64'));
const EventSchema = z.looseObject({
  event: z.looseObject({
    start: z.looseObject({ pid: z.number().int().nonnegative().default(0) }).optional(),
    data: z.looseObject({ stdout: b64.optional(), stderr: b64.optional(), pty: b64.optional() }).optional(),
    end: z
      .looseObject({
        exitCode: z.number().int().optional(),
        exit_code: z.number().int().optional(),
        exited: z.boolean().optional(),
        status: z.string().optional(),
        error: z.string().nullish(),
      })
      .optional(),
    keepalive: z.looseObject({}).optional(),
  }),
});

/** Maps one decoded message to an event; proto3 JSON omits scalars at their default, hence the fallbacks. */
export function toProcessEvent(message: unknown): ProcessEvent | null {
  const parsed = EventSchema.safeParse(message);
  if (!parsed.success) throw new ConnectError('internal', 'unexpected process event');
  const e = parsed.data.event;
  if (e.start) return { type: 'start', pid: e.start.pid };
  if (e.data) {
    if (e.data.stdout) return { type: 'stdout', data: e.data.stdout };
    if (e.data.stderr) return { type: 'stderr', data: e.data.stderr };
    if (e.data.pty) return { type: 'pty', data: e.data.pty };
    return null;
  }
  if (e.end) {
    return { type: 'end', exitCode: e.end.exitCode ?? e.end.exit_code ?? 0, exited: e.end.exited ?? false, status: e.end.status ?? '', error: e.end.error ?? null };
  }
  if (e.keepalive) return { type: 'keepalive' };
  return null;
}

export function startRequest(spec: StartSpec): Record<string, unknown> {
  const process: Record<string, unknown> = { cmd: spec.cmd, args: spec.args, envs: spec.env ?? {} };
  if (spec.cwd !== undefined) process.cwd = spec.cwd;
  const msg: Record<string, unknown> = { process, stdin: spec.stdin ?? false };
  if (spec.pty) msg.pty = { size: { cols: spec.pty.cols, rows: spec.pty.rows } };
  if (spec.tag !== undefined) msg.tag = spec.tag;
  return msg;
}

export function startProcessStream(url: string, spec: StartSpec, opts: CallOpts): Promise<ProcessStream> {
  if (typeof spec.cmd !== 'string' || spec.cmd === '') return Promise.reject(new SandboxdError('invalid_argument', 'exec: cmd must be a non-empty string'));
  const headers: Record<string, string> = {};
  if (spec.timeoutMs !== undefined) {
    if (!Number.isInteger(spec.timeoutMs) || spec.timeoutMs <= 0) return Promise.reject(new SandboxdError('invalid_argument', `exec: invalid timeoutMs ${spec.timeoutMs}`));
    headers['Connect-Timeout-Ms'] = String(spec.timeoutMs);
  }
  // Our own bound a little after the guest's, for an envd that ignores the header.
  const bodyTimeoutMs = spec.timeoutMs === undefined ? null : spec.timeoutMs + 5000;
  return openServerStream(url, 'Start', startRequest(spec), headers, bodyTimeoutMs, opts);
}

export function connectProcessStream(url: string, selector: ProcessSelector, opts: CallOpts): Promise<ProcessStream> {
  return openServerStream(url, 'Connect', { process: selector }, {}, null, opts);
}

async function openServerStream(
  url: string,
  method: 'Start' | 'Connect',
  message: unknown,
  extraHeaders: Record<string, string>,
  bodyTimeoutMs: number | null,
  opts: CallOpts,
): Promise<ProcessStream> {
  const local = new AbortController();
  const onAbort = (): void => local.abort();
  opts.signal.addEventListener('abort', onAbort, { once: true });
  if (opts.signal.aborted) local.abort();
  const detach = (): void => opts.signal.removeEventListener('abort', onAbort);
  let res: HttpResponse;
  try {
    res = await open({
      method: 'POST',
      url: `${url}/process.Process/${method}`,
      headers: { 'Content-Type': 'application/connect+json', 'Connect-Protocol-Version': '1', ...extraHeaders },
      body: encodeEnvelope(message),
      timeoutMs: 10_000,
      bodyTimeoutMs,
      signal: local.signal,
    });
  } catch (err) {
    detach();
    throw err;
  }
  if (res.status !== 200) {
    detach();
    const err = errorFromResponse(res.status, await readBody(res).catch(() => ''));
    throw err;
  }
  const body = res.body;
  async function* events(): AsyncGenerator<ProcessEvent> {
    const decoder = new EnvelopeDecoder();
    let ended = false;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        for (const frame of decoder.push(chunk)) {
          if (ended) throw new ConnectError('internal', 'frame after end-of-stream');
          if (frame.flags & FLAG_END_STREAM) {
            const err = endStreamError(frame.payload);
            if (err) throw err;
            ended = true;
            continue;
          }
          const event = toProcessEvent(messageOf(frame));
          if (event) yield event;
        }
      }
    } catch (err) {
      throw toSandboxdError(err);
    } finally {
      res.done();
      detach();
      body.destroy();
    }
    // connect-go treats a stream without its end-of-stream frame as broken; so do we.
    if (!ended) throw new ConnectError('internal', `${method} stream ended without an end-of-stream frame${decoder.pending ? ' (truncated frame)' : ''}`);
  }
  return {
    events: events(),
    cancel: () => {
      detach();
      res.done();
      body.destroy();
    },
  };
}
