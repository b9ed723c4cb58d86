import { randomBytes } from 'node:crypto';
import { rename, stat, truncate, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SandboxdError } from '../../core/errors.ts';
import type { CallOpts } from '../call.ts';
import { fsError, run } from './exec.ts';
import { KeyedLock } from './keyed-lock.ts';
import { assertHostPath, assertPrefix, assertSize, diskName, sandboxIdOf } from './names.ts';
import type { DiskDriver, DiskHandle, DiskRequest } from './storage.ts';

export interface CloneDiskOptions {
  /** Disk name prefix (default 'sbxd-'; tests use 'sbxt-'). */
  prefix?: string;
  cpPath?: string;
  /** A full copy of a large image on a filesystem without reflinks takes a while. */
  copyTimeoutMs?: number;
}

/**
 * DiskDriver for hosts without device-mapper (the embedded default): the CoW is a
 * whole clone of the template's rootfs and is itself the VMM's disk.
 *
 * Copies use `cp --reflink=auto --sparse=always`: on btrfs and xfs that is an
 * instant reflink sharing every extent with the template (checked with filefrag,
 * which marks the extents "shared"); elsewhere cp falls back to a sparse copy that
 * skips the image's holes and zero runs. `--reflink=always` would fail on ext4 and
 * need a second call, so one call covers both.
 */
export class CloneDiskDriver implements DiskDriver {
  readonly kind = 'clone' as const;
  readonly prefix: string;
  private readonly cp: string;
  private readonly copyTimeoutMs: number;
  private readonly locks = new KeyedLock();

  constructor(opts: CloneDiskOptions = {}) {
    this.prefix = assertPrefix(opts.prefix ?? 'sbxd-');
    this.cp = opts.cpPath ?? 'cp';
    this.copyTimeoutMs = opts.copyTimeoutMs ?? 600_000;
  }

  deviceName(sandboxId: string): string {
    return diskName(this.prefix, sandboxId);
  }

  async create(req: DiskRequest, opts: CallOpts): Promise<DiskHandle> {
    this.check(req);
    // The clone is renamed into place complete, so an existing file is this request's earlier result.
    await this.locks.run(req.cowPath, async () => {
      if (!(await isFile(req.cowPath))) await this.copy(req.originPath, req.cowPath, req.sizeBytes, 'disk.create', opts);
    });
    return this.handle(req);
  }

  async attach(req: DiskRequest, _opts: CallOpts): Promise<DiskHandle> {
    this.check(req);
    if (!(await isFile(req.cowPath))) throw new SandboxdError('not_found', `CoW not found: ${req.cowPath}`, { step: 'disk.attach' });
    return this.handle(req);
  }

  async remove(handle: DiskHandle, _opts: CallOpts): Promise<void> {
    sandboxIdOf(this.prefix, handle.name);
  }

  async discard(cowPath: string, _opts: CallOpts): Promise<void> {
    assertHostPath('CoW', cowPath);
    await unlink(cowPath).catch((err: unknown) => {
      if ((err as { code?: string }).code !== 'ENOENT') throw fsError('disk.discard', cowPath, err);
    });
  }

  async flatten(handle: DiskHandle, outPath: string, opts: CallOpts): Promise<void> {
    sandboxIdOf(this.prefix, handle.name);
    assertHostPath('CoW', handle.cowPath);
    assertHostPath('output', outPath);
    await this.copy(handle.cowPath, outPath, 0, 'disk.flatten', opts);
  }

  async flattenDetached(req: DiskRequest, outPath: string, opts: CallOpts): Promise<void> {
    this.check(req);
    assertHostPath('output', outPath);
    if (!(await isFile(req.cowPath))) throw new SandboxdError('not_found', `CoW not found: ${req.cowPath}`, { step: 'disk.flatten' });
    await this.copy(req.cowPath, outPath, 0, 'disk.flatten', opts);
  }

  /** Clone `src` to a temporary name beside `dst`, grow it to `minBytes`, rename into place. */
  private async copy(src: string, dst: string, minBytes: number, step: string, opts: CallOpts): Promise<void> {
    if (!(await isFile(src))) throw new SandboxdError('not_found', `${step}: source not found: ${src}`, { step });
    const tmp = join(dirname(dst), `.${basename(dst)}.tmp-${randomBytes(4).toString('hex')}`);
    try {
      await run(this.cp, ['--reflink=auto', '--sparse=always', '--', src, tmp], {
        signal: opts.signal,
        timeoutMs: this.copyTimeoutMs,
        step,
      });
      const { size } = await stat(tmp);
      if (minBytes > size) await truncate(tmp, minBytes);
      await rename(tmp, dst);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw fsError(step, `copy ${src} -> ${dst}`, err);
    }
  }

  private handle(req: DiskRequest): DiskHandle {
    return { name: req.name, devicePath: req.cowPath, cowPath: req.cowPath };
  }

  private check(req: DiskRequest): void {
    sandboxIdOf(this.prefix, req.name);
    assertHostPath('origin', req.originPath);
    assertHostPath('CoW', req.cowPath);
    assertSize('disk size', req.sizeBytes);
  }
}

async function isFile(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isFile(),
    () => false,
  );
}
