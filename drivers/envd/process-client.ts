import { z } from 'zod';
import { SandboxdError } from '../../core/errors.ts';
import type { CallOpts } from '../call.ts';
import { errorFromResponse } from './connect-json.ts';
import type { EnvdStreams, GuestProcess, ProcessSelector, ProcessStream, PtySize } from './envd.ts';
import { open, readBody } from './http.ts';
import { connectProcessStream, startProcessStream } from './process-stream.ts';

/**
 * envd's process service beyond plain exec (envd.md §3): streams, PTYs and
 * background processes. Unary calls use the Connect JSON codec without envelopes.
 */

const TAG = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

function checkSelector(sel: ProcessSelector): ProcessSelector {
  if ('pid' in sel) {
    if (!Number.isInteger(sel.pid) || sel.pid <= 0 || sel.pid > 0xffffffff) throw new SandboxdError('invalid_argument', `invalid pid: ${sel.pid}`);
    return { pid: sel.pid };
  }
  if (!TAG.test(sel.tag)) throw new SandboxdError('invalid_argument', `invalid process tag: ${JSON.stringify(sel.tag)}`);
  return { tag: sel.tag };
}

function checkSize(size: PtySize): PtySize {
  const ok = (n: number): boolean => Number.isInteger(n) && n > 0 && n <= 0xffff;
  if (!ok(size.cols) || !ok(size.rows)) throw new SandboxdError('invalid_argument', `invalid PTY size ${size.cols}x${size.rows}`);
  return { cols: size.cols, rows: size.rows };
}

const ListSchema = z.looseObject({
  processes: z
    .array(
      z.looseObject({
        pid: z.number().int().nonnegative().default(0),
        tag: z.string().nullish(),
        config: z.looseObject({ cmd: z.string().default(''), args: z.array(z.string()).default([]), cwd: z.string().nullish() }).optional(),
      }),
    )
    .default([]),
});

/** One unary Connect call: JSON in, JSON out, errors as Connect error bodies. */
export async function unary(url: string, method: string, message: unknown, opts: CallOpts, timeoutMs = 10_000): Promise<unknown> {
  const res = await open({
    method: 'POST',
    url: `${url}/process.Process/${method}`,
    headers: { 'Content-Type': 'application/json', 'Connect-Protocol-Version': '1', Accept: 'application/json' },
    body: Buffer.from(JSON.stringify(message)),
    timeoutMs,
    signal: opts.signal,
  });
  const body = await readBody(res);
  if (res.status !== 200) throw errorFromResponse(res.status, body);
  try {
    return body === '' ? {} : JSON.parse(body);
  } catch (err) {
    throw new SandboxdError('operation_failed', `envd ${method}: response is not JSON`, { cause: err });
  }
}

export const processCalls: EnvdStreams = {
  execStream(url, req, opts) {
    return startProcessStream(url, { cmd: req.cmd, args: req.args, env: req.env, cwd: req.cwd, timeoutMs: req.timeoutMs }, opts);
  },

  async ptyStart(url, req, opts) {
    const size = checkSize(req.size);
    checkSelector({ tag: req.tag });
    // stdin stays open: keystrokes arrive through SendInput.
    return startProcessStream(url, { cmd: req.cmd, args: req.args, env: req.env, cwd: req.cwd, tag: req.tag, pty: size, stdin: true }, opts);
  },

  async ptyAttach(url, process, opts) {
    return connectProcessStream(url, checkSelector(process), opts);
  },

  async ptyInput(url, process, data, opts) {
    await unary(url, 'SendInput', { process: checkSelector(process), input: { pty: data.toString('base64') } }, opts);
  },

  async ptyResize(url, process, size, opts) {
    await unary(url, 'Update', { process: checkSelector(process), pty: { size: checkSize(size) } }, opts);
  },

  async ptyKill(url, process, opts) {
    await unary(url, 'SendSignal', { process: checkSelector(process), signal: 'SIGNAL_SIGKILL' }, opts);
  },

  async processStart(url, req, opts) {
    if (req.tag !== undefined) checkSelector({ tag: req.tag });
    const stream: ProcessStream = await startProcessStream(url, { cmd: req.cmd, args: req.args, env: req.env, cwd: req.cwd, tag: req.tag, stdin: false }, opts);
    try {
      for await (const event of stream.events) {
        if (event.type === 'start') return { pid: event.pid };
      }
    } finally {
      // Closing the stream leaves the process running (envd.md §3).
      stream.cancel();
    }
    throw new SandboxdError('operation_failed', `envd: ${req.cmd} ended before reporting its pid`);
  },

  async processConnect(url, process, opts) {
    return connectProcessStream(url, checkSelector(process), opts);
  },

  async processList(url, opts) {
    const parsed = ListSchema.safeParse(await unary(url, 'List', {}, opts));
    if (!parsed.success) throw new SandboxdError('operation_failed', 'envd List: unexpected response');
    return parsed.data.processes.map(
      (p): GuestProcess => ({ pid: p.pid, tag: p.tag ?? null, cmd: p.config?.cmd ?? '', args: p.config?.args ?? [], cwd: p.config?.cwd ?? null }),
    );
  },

  async processKill(url, process, signal, opts) {
    await unary(url, 'SendSignal', { process: checkSelector(process), signal: signal === 'SIGKILL' ? 'SIGNAL_SIGKILL' : 'SIGNAL_SIGTERM' }, opts);
  },
};
