import { lstat, open, readFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { SandboxdError } from '../../core/errors.ts';
import { checkAborted, fsFailure, type FsOps, fsyncDir, guard } from './fs-ops.ts';
import { parseSnapshotMeta, SNAPSHOT_META_FILE, SNAPSHOT_META_MAX_BYTES, type SnapshotMeta } from './meta.ts';
import { tempBeside } from './sparse-copy.ts';

/** Temp name, write, fsync, rename, fsync the dir: the file is the old one or the whole new one, never a prefix. */
export async function writeFileAtomic(step: string, path: string, data: string, fs: FsOps): Promise<void> {
  const tmp = tempBeside(path);
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, path);
    await fsyncDir(dirname(path));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw fsFailure(step, path, err);
  }
}

/** Reads and parses `dir`/snapshot.json; shared with the template store. */
export async function readMetaIn(dir: string, signal: AbortSignal): Promise<SnapshotMeta> {
  const step = 'files.readMeta';
  const path = join(dir, SNAPSHOT_META_FILE);
  checkAborted(signal, step);
  const text = await guard(step, path, async () => {
    const st = await lstat(path);
    if (!st.isFile()) throw new SandboxdError('operation_failed', `${step}: ${path} is not a regular file`, { step });
    if (st.size > SNAPSHOT_META_MAX_BYTES) {
      throw new SandboxdError('operation_failed', `${step}: ${path} is ${st.size} bytes, not a snapshot metadata file`, { step });
    }
    return readFile(path, 'utf8');
  });
  return parseSnapshotMeta(text, path);
}
