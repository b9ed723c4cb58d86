import { lstat } from 'node:fs/promises';
import { execa } from 'execa';
import type { CallOpts } from '../call.ts';
import { checkAborted, fsFailure } from './fs-ops.ts';
import { execFailure } from './sparse-copy.ts';

/**
 * Dig-holes reads the whole file once; on this host a dense 2 GiB memory file
 * took about 1 s (bench/files.bench.ts), so a floor of 60 s plus 1 s per
 * 100 MB leaves room for a slow disk without letting a hung tool sit forever.
 */
export function punchTimeoutMs(bytes: number): number {
  return 60_000 + Math.ceil(bytes / 100_000);
}

/**
 * Punches every all-zero filesystem block of `file` into a hole, in place
 * (`fallocate --dig-holes`, util-linux). Readers see the same bytes; only the
 * allocation shrinks. Returns the bytes freed (allocated before − after).
 *
 * Chosen over our own scan + one `fallocate --punch-hole` per zero run: with
 * scattered data a memory file has tens of thousands of runs, and one process
 * per run costs orders of magnitude more than the tool's single pass.
 */
export async function punchZeroPagesInFile(file: string, { signal }: CallOpts): Promise<number> {
  const step = 'files.punchZeroPages';
  checkAborted(signal, step);
  let before;
  try {
    before = await lstat(file);
  } catch (err) {
    throw fsFailure(step, file, err);
  }
  if (!before.isFile()) return 0;
  try {
    await execa('fallocate', ['--dig-holes', '--', file], {
      cancelSignal: signal,
      timeout: punchTimeoutMs(before.size),
      stdin: 'ignore',
    });
  } catch (err) {
    throw execFailure(step, `dig holes in ${file}`, err);
  }
  const after = await lstat(file);
  return Math.max(0, (before.blocks - after.blocks) * 512);
}
