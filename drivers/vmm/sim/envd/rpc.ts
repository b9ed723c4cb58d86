import type { IncomingMessage, ServerResponse } from 'node:http';
import { codecFor, type Codec } from './codec.ts';
import { envelope, FLAG_END_STREAM, parseFrames } from './envelope.ts';
import { GUEST_COMMANDS, runGuestCommand } from './guest-commands.ts';
import {
  ConnectError, HTTP_STATUS, METHODS, STREAMING_METHODS, type CloseStdinRequest, type ConnectRequest, type Method,
  type ProcessEvent, type SendInputRequest, type SendSignalRequest, type StartRequest, type UpdateRequest,
} from './messages.ts';
import type { GuestEnv, GuestProcess, ProcessTable } from './processes.ts';
import type { GuestMemory } from '../memory.ts';

// The Connect process service (`POST /process.Process/<Method>`, envd.md §3–4):
// unary calls answer 200 with the response message or a non-200 JSON error;
// Start and Connect answer 200 with enveloped events and a final end-of-stream frame.

export interface RpcDeps {
  table: ProcessTable;
  guestEnv(): GuestEnv;
  memory(): GuestMemory | null;
}

export const RPC_PREFIX = '/process.Process/';

function unaryError(res: ServerResponse, err: ConnectError): void {
  const body = JSON.stringify({ code: err.code, message: err.message });
  res.writeHead(HTTP_STATUS[err.code], { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function endStream(res: ServerResponse, err?: ConnectError): void {
  const payload = err ? { error: { code: err.code, message: err.message } } : {};
  res.end(envelope(FLAG_END_STREAM, Buffer.from(JSON.stringify(payload))));
}

function asConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof SyntaxError) return new ConnectError('invalid_argument', `bad request message: ${err.message}`);
  return new ConnectError('internal', err instanceof Error ? err.message : String(err));
}

/** Streams a process's events until its end; the process outlives a dropped stream. */
function stream(res: ServerResponse, codec: Codec, method: Method, proc: GuestProcess, lead: ProcessEvent[]): void {
  const write = (ev: ProcessEvent): void => {
    res.write(envelope(0, codec.encode(method, ev)));
  };
  for (const ev of lead) write(ev);
  const unsubscribe = proc.subscribe((ev) => {
    write(ev);
    if ('end' in ev) {
      unsubscribe();
      endStream(res);
    }
  });
  res.on('close', unsubscribe);
}

export async function handleRpc(req: IncomingMessage, res: ServerResponse, body: Buffer, deps: RpcDeps): Promise<void> {
  const name = (req.url ?? '').split('?')[0]?.slice(RPC_PREFIX.length) ?? '';
  if (!METHODS.has(name)) return unaryError(res, new ConnectError('unimplemented', `process.Process/${name} is not implemented`));
  const method = name as Method;
  const streaming = STREAMING_METHODS.has(method);
  if (req.method !== 'POST') {
    res.writeHead(405, { Allow: 'POST', 'Content-Length': 0 });
    return void res.end();
  }
  const codec = codecFor(req.headers['content-type'], streaming);
  if (!codec) {
    res.writeHead(415, { 'Content-Length': 0 });
    return void res.end();
  }

  if (!streaming) {
    try {
      const result = unary(method, codec.decode(method, body), deps);
      const out = codec.encode(method, result);
      res.writeHead(200, { 'Content-Type': `application/${codec.name}`, 'Content-Length': out.length });
      return void res.end(out);
    } catch (err) {
      return unaryError(res, asConnectError(err));
    }
  }

  res.writeHead(200, { 'Content-Type': `application/connect+${codec.name}` });
  try {
    const frames = parseFrames(body);
    const first = frames[0];
    if (frames.length !== 1 || !first || first.flags !== 0) throw new ConnectError('invalid_argument', 'expected exactly one request envelope');
    const message = codec.decode(method, first.payload);
    if (method === 'Start') {
      const r = message as StartRequest;
      const lifetime = Number(req.headers['connect-timeout-ms'] ?? 0);
      const proc = GUEST_COMMANDS.has(r.process.cmd)
        ? deps.table.runInternal(r.process, r.tag, () => runGuestCommand(deps.memory(), r.process.args))
        : await deps.table.start(
            r.process,
            { ...(r.tag === undefined ? {} : { tag: r.tag }), pty: r.pty !== undefined, stdin: r.stdin ?? true, ...(lifetime > 0 ? { lifetimeMs: lifetime } : {}) },
            deps.guestEnv(),
          );
      stream(res, codec, method, proc, [{ start: { pid: proc.pid } }]);
    } else {
      const proc = deps.table.find((message as ConnectRequest).process);
      stream(res, codec, method, proc, [{ start: { pid: proc.pid } }]);
    }
  } catch (err) {
    endStream(res, asConnectError(err));
  }
}

function unary(method: Method, message: unknown, deps: RpcDeps): unknown {
  const { table } = deps;
  switch (method) {
    case 'List':
      return { processes: table.list() };
    case 'SendInput': {
      const r = message as SendInputRequest;
      const data = r.input.stdin ?? r.input.pty;
      if (!data) throw new ConnectError('invalid_argument', 'input needs stdin or pty bytes');
      table.sendInput(r.process, data);
      return {};
    }
    case 'SendSignal': {
      const r = message as SendSignalRequest;
      table.signal(r.process, r.signal);
      return {};
    }
    case 'CloseStdin':
      table.closeStdin((message as CloseStdinRequest).process);
      return {};
    case 'Update':
      table.update((message as UpdateRequest).process);
      return {};
    default:
      throw new ConnectError('unimplemented', `${method} is a streaming method`);
  }
}
