import { lstat, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { execa } from 'execa';
import type { CallOpts } from '../call.ts';
import { checkAborted, fsFailure, fsyncDir } from './fs-ops.ts';
import { copySparse, execFailure, tempBeside } from './sparse-copy.ts';

/**
 * How to drop the zero pages of a memory file:
 *  - 'rewrite': sparse-copy it beside itself (`cp --sparse=always`) and rename
 *    the copy over it. One sequential pass; needs free space for the data pages
 *    until the rename, and gives the file a new inode.
 *  - 'dig-holes': `fallocate --dig-holes` in place. Needs no space, keeps the
 *    inode, but punches each zero run with its own syscall, and on ext4 each
 *    punch waits on the journal.
 * Measured by bench/files.bench.ts on a 2 GiB file with 10% scattered data
 * pages (~47,000 zero runs), on a shared disk: rewrite 1.6–3.2 s (node's own
 * copy 3.4–5 s), dig-holes 10–40 s (extrapolated from a 128 MiB slice; it
 * swings with other writers because each punch goes through the journal), one
 * `fallocate --punch-hole` process per run 140–480 s. A plain read of the file
 * took 1.2–4 s. So rewrite is the default, and dig-holes is kept for files with
 * other hardlinks (a rewrite would split them) and for a disk too full to hold
 * the copy.
 */
export type PunchStrategy = 'auto' | 'rewrite' | 'dig-holes';

/** A floor of 60 s plus 1 s per 20 MB of apparent size (dig-holes, the slower path, ran at 50–200 MB/s). */
export function punchTimeoutMs(bytes: number): number {
  return 60_000 + Math.ceil(bytes / 20_000);
}

/**
 * Punches the all-zero 4 KiB pages of `file` into holes. Readers see the same
 * bytes; only the allocation shrinks. Returns the bytes freed (allocated before
 * minus after). Safe to repeat.
 */
export async function punchZeroPagesInFile(file: string, { signal }: CallOpts, strategy: PunchStrategy = 'auto'): Promise<number> {
  const step = 'files.punchZeroPages';
  checkAborted(signal, step);
  let before;
  try {
    before = await lstat(file);
  } catch (err) {
    throw fsFailure(step, file, err);
  }
  if (!before.isFile()) return 0;
  let useRewrite = strategy === 'rewrite' || (strategy === 'auto' && before.nlink === 1);
  if (useRewrite) {
    try {
      await rewriteSparse(file, signal);
    } catch (err) {
      const full = err instanceof Error && /no space left/.test(err.message);
      if (!(full && strategy === 'auto')) throw err;
      useRewrite = false; // too full for a copy: punch in place instead
    }
  }
  if (!useRewrite) await digHoles(file, before.size, signal);
  const after = await lstat(file);
  return Math.max(0, (before.blocks - after.blocks) * 512);
}

async function rewriteSparse(file: string, signal: AbortSignal): Promise<void> {
  const tmp = tempBeside(file);
  try {
    await copySparse(file, tmp, { signal });
    await rename(tmp, file);
    await fsyncDir(dirname(file));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw fsFailure('files.punchZeroPages', file, err);
  }
}

async function digHoles(file: string, size: number, signal: AbortSignal): Promise<void> {
  try {
    await execa('fallocate', ['--dig-holes', '--', file], {
      cancelSignal: signal,
      timeout: punchTimeoutMs(size),
      stdin: 'ignore',
    });
  } catch (err) {
    throw execFailure('files.punchZeroPages', `dig holes in ${file}`, err);
  }
}
