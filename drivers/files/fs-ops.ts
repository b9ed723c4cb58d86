import * as fsp from 'node:fs/promises';
import { SandboxdError } from '../../core/errors.ts';

/**
 * The few filesystem calls whose failure matters for crash safety (swap,
 * promote, link). Tests inject a version that fails on a chosen call, because
 * root ignores permission bits and cannot otherwise make a rename fail on demand.
 */
export interface FsOps {
  rename(from: string, to: string): Promise<void>;
  link(existing: string, newPath: string): Promise<void>;
  rm(path: string, opts: { recursive: boolean; force: boolean }): Promise<void>;
}

export const realFsOps: FsOps = {
  rename: (from, to) => fsp.rename(from, to),
  link: (existing, newPath) => fsp.link(existing, newPath),
  rm: (path, opts) => fsp.rm(path, opts),
};

function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function isErrno(err: unknown, ...codes: string[]): boolean {
  const code = errnoOf(err);
  return code !== undefined && codes.includes(code);
}

/** Throws `cancelled` when the caller has given up; called between steps. */
export function checkAborted(signal: AbortSignal, step: string): void {
  if (signal.aborted) throw new SandboxdError('cancelled', `${step}: cancelled`, { step });
}

/**
 * Turns a thrown filesystem error into a typed SandboxdError naming the step
 * and the path. A full disk gets its own wording: it is the one failure an
 * operator can act on without reading a stack.
 */
export function fsFailure(step: string, path: string, err: unknown): SandboxdError {
  if (err instanceof SandboxdError) return err;
  if (err instanceof Error && err.name === 'AbortError') {
    return new SandboxdError('cancelled', `${step}: cancelled`, { cause: err, step });
  }
  const code = errnoOf(err);
  const detail = err instanceof Error ? err.message : String(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new SandboxdError('operation_failed', `${step}: no space left on device writing ${path}`, { cause: err, step });
  }
  if (code === 'ENOENT') return new SandboxdError('not_found', `${step}: ${path} does not exist`, { cause: err, step });
  return new SandboxdError('operation_failed', `${step}: ${path}: ${detail}`, { cause: err, step });
}

/** Runs `fn`, mapping whatever it throws with fsFailure. */
export async function guard<T>(step: string, path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw fsFailure(step, path, err);
  }
}

/** fsyncs a directory so that renames and creations inside it survive a power cut. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** lstat that answers null for a missing path. */
export async function lstatOrNull(path: string): Promise<import('node:fs').Stats | null> {
  try {
    return await fsp.lstat(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return null;
    throw err;
  }
}

/** Bytes a file or the regular files of a dir (not recursive) occupy on disk: blocks × 512, not apparent size. */
export async function allocatedBytes(path: string): Promise<number> {
  const st = await lstatOrNull(path);
  if (st === null) return 0;
  if (!st.isDirectory()) return st.isFile() ? st.blocks * 512 : 0;
  let total = 0;
  for (const entry of await fsp.readdir(path, { withFileTypes: true })) {
    if (entry.isFile()) total += (await fsp.lstat(`${path}/${entry.name}`)).blocks * 512;
  }
  return total;
}
