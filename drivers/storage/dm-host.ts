import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SandboxdError } from '../../core/errors.ts';
import { fsError } from './exec.ts';

// Host facts and file helpers of the dm disk driver: kernel support, device numbers,
// the CoW header, and the meaning of `dmsetup status` for a snapshot.

export interface SnapshotUsage {
  allocatedSectors: number;
  totalSectors: number;
  metadataSectors: number;
}

/** The snapshot can no longer be used: its CoW filled up or its header says invalid. Every read fails. */
export class DiskInvalidError extends SandboxdError {
  constructor(readonly disk: string, readonly state: string) {
    super('operation_failed', `snapshot ${disk} is ${state}: its CoW filled up or is corrupt; remove it and rebuild`, { step: 'disk.status' });
  }
}

/** Reads `0 LEN snapshot ALLOC/TOTAL META`; anything else after "snapshot" (Invalid, Overflow …) is a DiskInvalidError. */
export function parseSnapshotStatus(name: string, stdout: string): SnapshotUsage {
  const w = stdout.trim().split(/\s+/);
  if (w[2] !== 'snapshot') throw new SandboxdError('operation_failed', `${name} is not a snapshot: ${stdout}`, { step: 'disk.status' });
  const usage = w[3]?.match(/^([0-9]+)\/([0-9]+)$/);
  if (usage === null || usage === undefined || w[4] === undefined) throw new DiskInvalidError(name, w.slice(3).join(' ') || 'unknown');
  return { allocatedSectors: Number(usage[1]), totalSectors: Number(usage[2]), metadataSectors: Number(w[4]) };
}

export async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/**
 * Whether the kernel has device-mapper. Not the existence of /dev/mapper/control:
 * dmsetup creates that node itself even where the kernel has no driver behind it.
 */
export function deviceMapperAvailable(): boolean {
  try {
    return /\bdevice-mapper$/m.test(readFileSync('/proc/misc', 'utf8'));
  } catch {
    return false;
  }
}

/** MAJ:MIN of a device node, as `dmsetup table` prints it. */
export async function majMin(device: string): Promise<string> {
  const { rdev } = await stat(device);
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00);
  return `${major}:${minor}`;
}

/** A CoW never attached: the kernel takes an all-zero header as "new snapshot". */
export async function isFreshCow(cowPath: string): Promise<boolean> {
  const fh = await open(cowPath, 'r');
  try {
    const b = Buffer.alloc(512);
    await fh.read(b, 0, 512, 0);
    return b.every((x) => x === 0);
  } finally {
    await fh.close();
  }
}

/** A sparse, all-zero file of `size` bytes, made under a temporary name and renamed into place. */
export async function makeSparseFile(path: string, size: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${randomBytes(4).toString('hex')}`);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.truncate(size);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw fsError('disk.create', path, err);
  }
}
