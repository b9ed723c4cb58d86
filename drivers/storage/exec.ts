import { execa } from 'execa';
import { SandboxdError } from '../../core/errors.ts';

/** One external command of the storage drivers: argument array, timeout, cancellation, typed errors. */
export interface RunOpts {
  signal: AbortSignal;
  timeoutMs: number;
  /** Extra environment on top of the agent's (the stand-in dmsetup reads its state dir from it). */
  env?: Record<string, string> | undefined;
  /** Names the step in the error, e.g. 'loop.attach'. */
  step: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** A failed command, keeping its stderr so callers can tell "busy" or "gone" apart. */
export class CommandError extends SandboxdError {
  readonly stderr: string;
  readonly exitCode: number | undefined;
  constructor(message: string, stderr: string, exitCode: number | undefined, step: string, cause: unknown) {
    super('operation_failed', message, { cause, step });
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

export async function run(file: string, args: readonly string[], opts: RunOpts): Promise<RunResult> {
  if (opts.signal.aborted) throw new SandboxdError('cancelled', `${opts.step}: cancelled before ${file} ran`, { step: opts.step });
  try {
    const r = await execa(file, args, {
      cancelSignal: opts.signal,
      timeout: opts.timeoutMs,
      env: opts.env,
      stdin: 'ignore',
      stripFinalNewline: true,
    });
    return { stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as {
      isCanceled?: boolean;
      timedOut?: boolean;
      code?: string;
      stderr?: unknown;
      exitCode?: number;
      shortMessage?: string;
    };
    const cmd = `${file} ${args.join(' ')}`;
    if (e.isCanceled) throw new SandboxdError('cancelled', `${opts.step}: cancelled: ${cmd}`, { cause: err, step: opts.step });
    if (e.timedOut) {
      throw new SandboxdError('timeout', `${opts.step}: ${cmd} timed out after ${opts.timeoutMs} ms`, { cause: err, step: opts.step });
    }
    if (e.code === 'ENOENT') {
      throw new SandboxdError('operation_failed', `${opts.step}: ${file} not found`, { cause: err, step: opts.step });
    }
    const stderr = typeof e.stderr === 'string' ? e.stderr.trim() : '';
    throw new CommandError(`${opts.step}: ${cmd} failed: ${stderr || e.shortMessage || 'unknown error'}`, stderr, e.exitCode, opts.step, err);
  }
}

/** A signal for cleanup work that must run even when the caller's signal has fired. */
export function cleanupSignal(timeoutMs: number): AbortSignal {
  return AbortSignal.timeout(timeoutMs);
}

/** Maps a filesystem error (ENOSPC, EIO …) to a typed error naming the step. */
export function fsError(step: string, what: string, err: unknown): SandboxdError {
  if (err instanceof SandboxdError) return err;
  const code = (err as { code?: unknown }).code;
  if (code === 'ENOENT') return new SandboxdError('not_found', `${step}: ${what}: no such file`, { cause: err, step });
  if (code === 'ABORT_ERR' || (err as Error)?.name === 'AbortError') {
    return new SandboxdError('cancelled', `${step}: ${what}: cancelled`, { cause: err, step });
  }
  const msg = err instanceof Error ? err.message : String(err);
  return new SandboxdError('operation_failed', `${step}: ${what}: ${msg}`, { cause: err, step });
}
