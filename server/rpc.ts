import { ErrorCodes, SandboxdError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { RpcCodes, type RpcErrorBody } from './protocol.ts';
import type { IssueView } from './schemas.ts';

// JSON-RPC framing: building replies and turning thrown errors into error bodies.

export type RpcId = string | number | null;

/** Thrown inside the server for the standard JSON-RPC errors (never by the supervisor). */
export class ProtocolError extends Error {
  constructor(
    readonly rpcCode: number,
    message: string,
    readonly data?: RpcErrorBody['data'],
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

export function invalidParams(issues: IssueView[]): ProtocolError {
  return new ProtocolError(RpcCodes.invalidParams, 'invalid params', { code: 'invalid_argument', issues });
}

/**
 * The error body for anything a handler threw. A SandboxdError keeps its code,
 * message and step; anything else is a bug: logged here with its stack, and the
 * client sees only "internal error".
 */
export function errorBody(err: unknown, log: Logger, context: { method: string }): RpcErrorBody {
  if (err instanceof ProtocolError) {
    return err.data === undefined ? { code: err.rpcCode, message: err.message } : { code: err.rpcCode, message: err.message, data: err.data };
  }
  if (err instanceof SandboxdError) {
    const data: NonNullable<RpcErrorBody['data']> = { code: err.code };
    if (err.step !== undefined) data.step = err.step;
    return { code: ErrorCodes[err.code].rpc, message: err.message, data };
  }
  log.error({ err, method: context.method }, 'unexpected error in a handler');
  return { code: ErrorCodes.internal.rpc, message: ErrorCodes.internal.message, data: { code: 'internal' } };
}

/** The label an error reply is counted under: the registry code, or the JSON-RPC kind. */
export function errorLabel(body: RpcErrorBody): string {
  if (typeof body.data?.code === 'string') return body.data.code;
  switch (body.code) {
    case RpcCodes.parseError: return 'parse_error';
    case RpcCodes.invalidRequest: return 'invalid_request';
    case RpcCodes.methodNotFound: return 'method_not_found';
    default: return 'other';
  }
}

export function replyOk(id: RpcId, result: unknown): string {
  return JSON.stringify({ jsonrpc: '2.0', id, result });
}

export function replyError(id: RpcId, error: RpcErrorBody): string {
  return JSON.stringify({ jsonrpc: '2.0', id, error });
}

export function notification(method: string, params: unknown): string {
  return JSON.stringify({ jsonrpc: '2.0', method, params });
}
