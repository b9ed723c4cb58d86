import { randomBytes } from 'node:crypto';
import { rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { SandboxdError } from '../../core/errors.ts';
import { fsError } from './exec.ts';
import { WORKER_SOURCE, type CopyJob, type CopyReply } from './sparse-copy-worker.ts';

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
 * The loop runs in a worker thread; the signal cancels it between blocks.
 */
export async function sparseCopy(src: string, dst: string, opts: SparseCopyOpts): Promise<SparseCopyResult> {
  const pageBytes = opts.pageBytes ?? 4096;
  const blockBytes = opts.blockBytes ?? 1 << 20;
  if (blockBytes % pageBytes !== 0) throw new SandboxdError('invalid_argument', 'block size must be a multiple of the page size');
  if (opts.signal.aborted) throw new SandboxdError('cancelled', `flatten of ${src} cancelled`, { step: 'disk.flatten' });
  const tmp = join(dirname(dst), `.${basename(dst)}.tmp-${randomBytes(4).toString('hex')}`);
  const cancel = new Int32Array(new SharedArrayBuffer(4));
  const job: CopyJob = { src, tmp, pageBytes, blockBytes, cancel };
  const onAbort = () => Atomics.store(cancel, 0, 1);
  opts.signal.addEventListener('abort', onAbort, { once: true });
  let renamed = false;
  try {
    const reply = await new Promise<CopyReply>((resolve, reject) => {
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: job });
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`sparse copy worker exited with ${code}`)));
    });
    if (!reply.ok) {
      if (reply.cancelled) throw new SandboxdError('cancelled', `flatten of ${src} cancelled`, { step: 'disk.flatten' });
      throw Object.assign(new Error(reply.message), { code: reply.code });
    }
    if (opts.expectedBytes !== undefined && reply.bytes !== opts.expectedBytes) {
      throw new SandboxdError('operation_failed', `short read from ${src}: ${reply.bytes} of ${opts.expectedBytes} bytes`, {
        step: 'disk.flatten',
      });
    }
    await rename(tmp, dst);
    renamed = true;
    return { bytes: reply.bytes, dataBytes: reply.dataBytes };
  } catch (err) {
    throw fsError('disk.flatten', `copy ${src} -> ${dst}`, err);
  } finally {
    opts.signal.removeEventListener('abort', onAbort);
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
}
