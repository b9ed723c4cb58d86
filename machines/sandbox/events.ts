import type { ErrorInfo } from '../../core/errors.ts';

/** Commands from the supervisor; each carries an operation id its reply names. */
export type SandboxEvent =
  | { type: 'PAUSE'; opId: string }
  | { type: 'RESUME'; opId: string; timeoutSec?: number }
  | { type: 'SNAPSHOT'; opId: string; teamId: string; templateId: string; name?: string }
  | { type: 'FLATTEN'; opId: string; teamId: string; templateId: string }
  | { type: 'DESTROY'; opId: string }
  | { type: 'SET_TIMEOUT'; opId: string; timeoutSec: number }
  /** Guest calls, pings and proxy connections: resets the inactivity timer. */
  | { type: 'ACTIVITY'; at: number }
  /** The VMM process exited without being asked to. */
  | { type: 'VM_EXITED'; reason: string }
  /** Agent shutdown: no more inactivity pauses; the supervisor pauses what runs itself. */
  | { type: 'STOP_TIMERS' }
  /** Start-up reconciliation: a sandbox rebuilt from its record goes where `context.recovery` says. */
  | { type: 'RECOVER' };

/** What the machine tells the outside: replies to commands and lifecycle events. */
export type SandboxEmitted =
  | { type: 'reply'; opIds: string[]; ok: true }
  | { type: 'reply'; opIds: string[]; ok: false; error: ErrorInfo }
  | { type: 'lifecycle'; kind: 'auto_paused' | 'stopped' | 'error'; reason?: string };
