import { lstat, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '../../core/log.ts';
import { fsFailure, fsyncDir, type FsOps, guard, lstatOrNull } from './fs-ops.ts';
import { COW_FILE, type DataLayout } from './layout.ts';
import { parseSnapshotMeta, SNAPSHOT_META_FILE, SNAPSHOT_META_MAX_BYTES } from './meta.ts';

/**
 * Replaces `final` with `stage` by renames only, so that at every instant one
 * complete generation is on disk:
 *   1. final → trash      (fails: nothing moved)
 *   2. stage → final      (fails: trash → final again; if even that fails, the
 *                          old generation sits in trash and the new in stage,
 *                          and start-up recovery puts the new one back)
 *   3. trash removed      (fails: only a leftover for the orphan cleanup)
 * Between 1 and 2 `final` is briefly absent; Linux has no portable exchange of
 * two directories from node, so the crash window is closed by recovery instead.
 */
export async function swapDir(stage: string, final: string, trash: string, fs: FsOps, log: Logger): Promise<void> {
  const step = 'files.swapIn';
  const parent = dirname(final);
  const hadOld = (await guard(step, final, () => lstatOrNull(final))) !== null;
  if (hadOld) await guard(step, final, () => fs.rename(final, trash));
  try {
    await fs.rename(stage, final);
  } catch (err) {
    if (hadOld) {
      try {
        await fs.rename(trash, final);
      } catch (restoreErr) {
        log.error({ trash, final, stage, err: String(restoreErr) }, 'swap: could not put the previous generation back');
      }
    }
    throw fsFailure(step, `${stage} -> ${final}`, err);
  }
  await guard(step, parent, () => fsyncDir(parent));
  if (hadOld) {
    try {
      await fs.rm(trash, { recursive: true, force: true });
    } catch (err) {
      log.warn({ trash, err: String(err) }, 'swap: previous generation left in trash for the orphan cleanup');
    }
  }
}

async function hasFile(path: string): Promise<boolean> {
  return (await lstatOrNull(path))?.isFile() ?? false;
}

/** A pause staging dir whose metadata parses is a complete generation: swapIn only starts from one. */
async function isCompletePause(dir: string): Promise<boolean> {
  try {
    const path = join(dir, SNAPSHOT_META_FILE);
    if ((await lstat(path)).size > SNAPSHOT_META_MAX_BYTES) return false;
    return parseSnapshotMeta(await readFile(path, 'utf8'), path).kind === 'pause';
  } catch {
    return false;
  }
}

/**
 * Start-up repair of one sandbox whose pause was cut short between staging the
 * CoW and finishing the swap (see swapDir). Puts the newest complete pause
 * staging in place when the sandbox dir is missing or has lost its CoW to it,
 * and brings a CoW back from trash if only trash still holds it. A sandbox dir
 * that still has its CoW is left as it is: its staging is an unfinished pause.
 * Returns true when something was moved.
 */
export async function recoverSandboxDir(
  layout: DataLayout,
  sandboxId: string,
  stagings: string[],
  trashes: string[],
  fs: FsOps,
  log: Logger,
): Promise<boolean> {
  const final = layout.sandboxDir(sandboxId);
  let finalExists = (await lstatOrNull(final))?.isDirectory() ?? false;
  if (finalExists && (await hasFile(join(final, COW_FILE)))) return false;
  let moved = false;

  const complete: { dir: string; hasCow: boolean; mtime: number }[] = [];
  for (const dir of stagings) {
    if (!(await isCompletePause(dir))) continue;
    complete.push({ dir, hasCow: await hasFile(join(dir, COW_FILE)), mtime: (await lstat(dir)).mtimeMs });
  }
  complete.sort((a, b) => Number(b.hasCow) - Number(a.hasCow) || b.mtime - a.mtime);
  const pick = complete[0];
  if (pick !== undefined && (!finalExists || pick.hasCow)) {
    if (finalExists) await swapDir(pick.dir, final, layout.sandboxTrashDir(sandboxId), fs, log);
    else {
      await fs.rename(pick.dir, final);
      await fsyncDir(layout.sandboxesDir);
    }
    log.warn({ sandboxId, from: pick.dir }, 'recovered an interrupted pause: its staged generation is now the sandbox dir');
    finalExists = true;
    moved = true;
  }
  // A trashed generation is never revived (it may be a destroy in progress), but a CoW it still holds is the disk.
  if (finalExists && !(await hasFile(join(final, COW_FILE)))) {
    for (const dir of trashes) {
      if (!(await hasFile(join(dir, COW_FILE)))) continue;
      await fs.rename(join(dir, COW_FILE), join(final, COW_FILE));
      log.warn({ sandboxId, from: dir }, 'recovered the CoW of an interrupted swap from trash');
      moved = true;
      break;
    }
  }
  return moved;
}
