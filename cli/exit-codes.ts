import { ConnectionError, RpcError } from '../server/client.ts';

/**
 * sandboxctl's exit codes, one per kind of failure a script may want to tell
 * apart. `exec` passes the command's own exit code through when the call
 * itself succeeded.
 */
export const ExitCodes = {
  ok: 0,
  /** An unexpected error: a bug in the agent or the CLI. */
  internal: 1,
  /** Bad command line or rejected params (invalid_argument, invalid_range, -32602, …). */
  usage: 2,
  not_found: 3,
  /** The sandbox or template is in the wrong state: not_running, not_paused, already_exists, template_in_use. */
  conflict: 4,
  /** Try again later: draining, rate_limited, starting. */
  unavailable: 5,
  /** timeout, cancelled. */
  timeout: 6,
  /** A step of the operation failed (operation_failed). */
  failed: 7,
  /** Cannot reach the agent, token refused, or the connection dropped. */
  connection: 8,
} as const;

/** Thrown for a bad command line; printed with the command's usage. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return ExitCodes.usage;
  if (err instanceof ConnectionError) return ExitCodes.connection;
  if (!(err instanceof RpcError)) return ExitCodes.internal;
  switch (err.kind) {
    case 'not_found': return ExitCodes.not_found;
    case 'not_running': case 'not_paused': case 'already_exists': case 'template_in_use': case 'stale_incarnation': return ExitCodes.conflict;
    case 'draining': case 'rate_limited': case 'starting': return ExitCodes.unavailable;
    case 'timeout': case 'cancelled': return ExitCodes.timeout;
    case 'operation_failed': return ExitCodes.failed;
    case 'invalid_argument': case 'invalid_range': return ExitCodes.usage;
    case 'internal': return ExitCodes.internal;
    default:
      // Standard JSON-RPC errors: the request itself was wrong.
      return err.code >= -32700 && err.code <= -32600 ? ExitCodes.usage : ExitCodes.internal;
  }
}
