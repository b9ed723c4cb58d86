import { closeSync, openSync } from 'node:fs';
import { open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { SandboxdError } from '../../../core/errors.ts';
import { isProcessAlive, readCmdline } from '../proc-stat.ts';

/**
 * The VMM as an OS process: spawned detached so it outlives an agent restart,
 * remembered by a pidfile, recognised by its command line (which names its API
 * socket, so a recycled pid is never mistaken for it), and reaped after a kill.
 */
export interface VmmProcess {
  pid: number;
  /** Settles when the process has exited; for a process found by pidfile, by polling /proc. */
  exited: Promise<ProcessExit>;
  /** True when this agent spawned it (exit status known); false when adopted. */
  child: boolean;
}

export interface ProcessExit {
  code: number | null;
  signal: string | null;
}

export interface SpawnRequest {
  file: string;
  args: string[];
  /** stdout and stderr of the VMM are appended here (panics end up here, not in --log-file). */
  outputFile: string;
  env?: Record<string, string>;
}

export function spawnDetached(req: SpawnRequest): VmmProcess {
  // execa's types only admit literal fd numbers; any open fd is passed straight to the child at run time.
  const fd = openSync(req.outputFile, 'a', 0o600) as 3;
  const spawn = () =>
    // No cancelSignal or timeout: the VMM lives on after this call; its owner (destroy) ends it.
    execa(req.file, req.args, { detached: true, cleanup: false, stdin: 'ignore', stdout: fd, stderr: fd, reject: false, buffer: false, env: req.env });
  let sub: ReturnType<typeof spawn>;
  try {
    sub = spawn();
  } finally {
    closeSync(fd);
  }
  const pid = sub.pid;
  if (pid === undefined) {
    // execa reports spawn failures (ENOENT, EACCES) through the promise.
    const failed = sub.then((r) => r);
    return { pid: -1, child: true, exited: failed.then((r) => ({ code: r.exitCode ?? null, signal: r.signal ?? null })) };
  }
  sub.unref();
  const exited = sub.then(
    (r) => ({ code: r.exitCode ?? null, signal: r.signal ?? null }),
    () => ({ code: null, signal: null }),
  );
  return { pid, child: true, exited };
}

export async function writePidfile(path: string, pid: number): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, `${pid}\n`, { mode: 0o600 });
  await rename(tmp, path);
}

export async function readPidfile(path: string): Promise<number | null> {
  try {
    const n = Number((await readFile(path, 'utf8')).trim());
    return Number.isInteger(n) && n > 1 ? n : null;
  } catch {
    return null;
  }
}

/** True when `pid` is a live process whose argv names `apiSocket` (ours, not a recycled pid). */
export async function isVmmProcess(pid: number, apiSocket: string): Promise<boolean> {
  const argv = await readCmdline(pid);
  if (argv === null) return false;
  return argv.some((a) => a === `path=${apiSocket}` || a === `--api-socket=path=${apiSocket}`);
}

/** Exit watch for a process this agent did not spawn: poll /proc until it is gone or a zombie. */
export function pollExit(pid: number, intervalMs = 200): Promise<ProcessExit> {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      void isProcessAlive(pid).then((alive) => {
        if (alive) return;
        clearInterval(timer);
        resolve({ code: null, signal: null });
      });
    }, intervalMs);
    timer.unref();
  });
}

export function signalProcess(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** Resolves true when `p` settles within `ms` (or false); rejects with `cancelled` if `signal` aborts first. */
export function settlesWithin(p: Promise<unknown>, ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(() => resolve(false)), ms);
    const onAbort = (): void => done(() => reject(new SandboxdError('cancelled', 'cancelled while waiting for the VMM')));
    const done = (fn: () => void): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      fn();
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    p.then(
      () => done(() => resolve(true)),
      () => done(() => resolve(true)),
    );
  });
}

/** The last `bytes` of a log file, for error messages when the VMM dies early. */
export async function tail(path: string, bytes = 2048): Promise<string> {
  try {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      const start = Math.max(0, size - bytes);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      return buf.toString('utf8').trim();
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

export async function removeFiles(paths: string[]): Promise<void> {
  await Promise.all(paths.map((p) => rm(p, { force: true, recursive: true })));
}

/** `p`, unless the signal aborts first (then `cancelled`); `p` itself runs on. */
export function raceSignal<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new SandboxdError('cancelled', 'cancelled'));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(new SandboxdError('cancelled', 'cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
