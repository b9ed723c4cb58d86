// The one registry of error kinds. Clients match on `code`, never on messages;
// the protocol maps each code to its own JSON-RPC error number (server/).

export const ErrorCodes = {
  not_found: { rpc: -32001, message: 'not found' },
  not_running: { rpc: -32002, message: 'sandbox is not running' },
  not_paused: { rpc: -32003, message: 'sandbox is not paused' },
  invalid_range: { rpc: -32004, message: 'invalid range' },
  draining: { rpc: -32005, message: 'agent is draining for shutdown' },
  already_exists: { rpc: -32006, message: 'already exists' },
  template_in_use: { rpc: -32007, message: 'template is in use' },
  invalid_argument: { rpc: -32008, message: 'invalid argument' },
  rate_limited: { rpc: -32009, message: 'rate limited' },
  timeout: { rpc: -32010, message: 'timed out' },
  cancelled: { rpc: -32011, message: 'cancelled' },
  operation_failed: { rpc: -32012, message: 'operation failed' },
  internal: { rpc: -32013, message: 'internal error' },
  starting: { rpc: -32014, message: 'agent is reconciling its sandboxes after a start' },
  stale_incarnation: { rpc: -32015, message: 'the sandbox is another incarnation than the one named' },
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** Plain-data form of an error: what machines keep in context and what travels on the wire. */
export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  /** The step that failed, for operation_failed. */
  step?: string;
}

export class SandboxdError extends Error {
  readonly code: ErrorCode;
  readonly step: string | undefined;
  constructor(code: ErrorCode, message?: string, opts?: { cause?: unknown; step?: string }) {
    super(message ?? ErrorCodes[code].message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SandboxdError';
    this.code = code;
    this.step = opts?.step;
  }

  toInfo(): ErrorInfo {
    return this.step === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, step: this.step };
  }

  static from(info: ErrorInfo): SandboxdError {
    return new SandboxdError(info.code, info.message, info.step === undefined ? undefined : { step: info.step });
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ErrorCodes, value);
}

/** Converts anything thrown into ErrorInfo; foreign errors keep their message. */
export function toErrorInfo(err: unknown, fallback: ErrorCode = 'operation_failed'): ErrorInfo {
  if (err instanceof SandboxdError) return err.toInfo();
  if (err instanceof Error) {
    if (err.name === 'AbortError') return { code: 'cancelled', message: err.message || 'cancelled' };
    if (err.name === 'TimeoutError') return { code: 'timeout', message: err.message || 'timed out' };
    const code = (err as { code?: unknown }).code;
    return { code: isErrorCode(code) ? code : fallback, message: err.message };
  }
  return { code: fallback, message: String(err) };
}
