import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SandboxdError } from '../../core/errors.ts';
import { fsError } from './exec.ts';

export interface SparseCopyOpts {
  signal: AbortSignal;
  /** Bytes the source must yield; a short read (an invalid dm snapshot, a truncated file) is an error. */
  expectedBytes?: number;
  /** Hole granularity: zero pages of this size are not written (default 4 KiB, the fs block size). */
  pageBytes?: number;
  /** Read size (default 1 MiB). */
  blockBytes?: number;
}

export interface SparseCopyResult {
  /** Apparent size of the copy. */
  bytes: number;
  /** Bytes actually written (non-zero pages). */
  dataBytes: number;
}

/**
 * Copies a device or file into a sparse file at `dst`: reads everything, writes only
 * non-zero pages, sets the size with truncate. Written under a temporary name in the
 * same directory and renamed into place, so `dst` is either absent or complete.
 */
export async function sparseCopy(src: string, dst: string, opts: SparseCopyOpts): Promise<SparseCopyResult> {
  const page = opts.pageBytes ?? 4096;
  const blockBytes = opts.blockBytes ?? 1 << 20;
  if (blockBytes % page !== 0) throw new SandboxdError('invalid_argument', 'block size must be a multiple of the page size');
  const tmp = join(dirname(dst), `.${basename(dst)}.tmp-${randomBytes(4).toString('hex')}`);
  const zero = Buffer.alloc(page);
  let input;
  try {
    input = await open(src, 'r');
  } catch (err) {
    throw fsError('disk.flatten', src, err);
  }
  let output;
  try {
    output = await open(tmp, 'wx', 0o644);
  } catch (err) {
    await input.close();
    throw fsError('disk.flatten', tmp, err);
  }
  let done = false;
  try {
    const buf = Buffer.allocUnsafe(blockBytes);
    let pos = 0;
    let dataBytes = 0;
    for (;;) {
      if (opts.signal.aborted) throw new SandboxdError('cancelled', `flatten of ${src} cancelled`, { step: 'disk.flatten' });
      const { bytesRead } = await input.read(buf, 0, blockBytes, pos);
      if (bytesRead === 0) break;
      // Write each run of non-zero pages with one call.
      let runStart = -1;
      for (let off = 0; off < bytesRead; off += page) {
        const end = Math.min(off + page, bytesRead);
        const isZero = end - off === page ? buf.subarray(off, end).equals(zero) : isAllZero(buf.subarray(off, end));
        if (!isZero && runStart < 0) runStart = off;
        if (isZero && runStart >= 0) {
          await output.write(buf, runStart, off - runStart, pos + runStart);
          dataBytes += off - runStart;
          runStart = -1;
        }
      }
      if (runStart >= 0) {
        await output.write(buf, runStart, bytesRead - runStart, pos + runStart);
        dataBytes += bytesRead - runStart;
      }
      pos += bytesRead;
    }
    if (opts.expectedBytes !== undefined && pos !== opts.expectedBytes) {
      throw new SandboxdError('operation_failed', `short read from ${src}: ${pos} of ${opts.expectedBytes} bytes`, {
        step: 'disk.flatten',
      });
    }
    await output.truncate(pos);
    await output.sync();
    await output.close();
    await input.close();
    await rename(tmp, dst);
    done = true;
    return { bytes: pos, dataBytes };
  } catch (err) {
    throw fsError('disk.flatten', `copy ${src} -> ${dst}`, err);
  } finally {
    if (!done) {
      await output.close().catch(() => undefined);
      await input.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
    }
  }
}

function isAllZero(b: Buffer): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}
