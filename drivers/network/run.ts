import { execa } from 'execa';
import { SandboxdError } from '../../core/errors.ts';

/**
 * Runs one external command (ip, nft, sysctl). A non-zero exit is a result,
 * not an exception, so callers can tell "already gone" from a real failure;
 * cancellation, timeouts and a missing binary throw typed errors. Injectable
 * so tests can fail any step or record what would have run.
 */
export type CommandRunner = (file: string, args: readonly string[], opts: RunOpts) => Promise<RunResult>;

export interface RunOpts {
  signal: AbortSignal;
  timeoutMs: number;
  /** Fed to stdin (nft -f -). */
  input?: string;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** An ip/nft call is a netlink round trip of a few ms; 10 s only trips on a wedged kernel or tool. */
export const COMMAND_TIMEOUT_MS = 10_000;

export const execaRunner: CommandRunner = async (file, args, opts) => {
  if (opts.signal.aborted) throw new SandboxdError('cancelled', `cancelled before ${file} ran`);
  const r = await execa(file, args, {
    cancelSignal: opts.signal,
    timeout: opts.timeoutMs,
    reject: false,
    stripFinalNewline: true,
    ...(opts.input === undefined ? { stdin: 'ignore' as const } : { input: opts.input }),
  });
  const cmd = `${file} ${args.join(' ')}`;
  if (r.isCanceled) throw new SandboxdError('cancelled', `cancelled: ${cmd}`, { cause: r.cause });
  if (r.timedOut) throw new SandboxdError('timeout', `${cmd} timed out after ${opts.timeoutMs} ms`, { cause: r.cause });
  if (r.exitCode === undefined) {
    throw new SandboxdError('operation_failed', `${cmd} could not run: ${r.shortMessage}`, { cause: r.cause });
  }
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr).trim() };
};

/** Runs `file args` and throws operation_failed naming the step unless it exits 0. */
export async function mustRun(
  runner: CommandRunner,
  step: string,
  file: string,
  args: readonly string[],
  opts: { signal: AbortSignal; input?: string },
): Promise<string> {
  const r = await runner(file, args, { ...opts, timeoutMs: COMMAND_TIMEOUT_MS });
  if (r.exitCode !== 0) throw failed(step, file, args, r);
  return r.stdout;
}

export function failed(step: string, file: string, args: readonly string[], r: RunResult): SandboxdError {
  return new SandboxdError('operation_failed', `${step}: ${file} ${args.join(' ')} exited ${r.exitCode}: ${r.stderr}`, {
    step,
  });
}

/** The messages ip and nft print when the object to delete or show is not there. */
export function isGone(r: RunResult): boolean {
  return /cannot find device|does not exist|no such (file|device|process)/i.test(r.stderr);
}

/** Parses `-j` output; an empty stdout (ip prints nothing for an empty list sometimes) is []. */
export function parseJson<T>(stdout: string, what: string): T {
  const text = stdout.trim();
  if (text === '') return [] as T;
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new SandboxdError('operation_failed', `unparseable JSON from ${what}`, { cause: err });
  }
}
