import { stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { SandboxdError } from '../../core/errors.ts';
import type { CallOpts } from '../call.ts';
import { CommandError, cleanupSignal, fsError, run } from './exec.ts';
import { KeyedLock } from './keyed-lock.ts';
import { canonical, type LosetupLoopDriver } from './losetup-loop.ts';
import { assertHostPath, assertPrefix, assertSize, diskName, sandboxIdOf } from './names.ts';
import { sparseCopy } from './sparse-copy.ts';
import { exists, isFreshCow, majMin, makeSparseFile, parseSnapshotStatus, type SnapshotUsage } from './dm-host.ts';

export { DiskInvalidError, deviceMapperAvailable, type SnapshotUsage } from './dm-host.ts';
import type { DiskDriver, DiskHandle, DiskRequest } from './storage.ts';

export interface DmDiskOptions {
  /** Attaches each CoW file read-write under its snapshot. */
  loops: LosetupLoopDriver;
  /** Device name prefix (default 'sbxd-'; tests use 'sbxt-'). */
  prefix?: string;
  /** Where device nodes appear (default /dev/mapper; the stand-in's dir in tests). */
  mapperDir?: string;
  dmsetupPath?: string;
  /** Extra environment for dmsetup (the stand-in's state dir). */
  dmsetupEnv?: Record<string, string>;
  timeoutMs?: number;
  /** Snapshot chunk in 512-byte sectors; 8 = 4 KiB, the guest filesystem's block. */
  chunkSectors?: number;
  /** A device still open (udev, a late reader) is retried this often before remove gives up. */
  removeAttempts?: number;
  removeRetryDelayMs?: number;
  /** Called on each busy remove attempt (tests, logs). */
  onRemoveBusy?: (name: string, attempt: number) => void;
  /** How long to wait for the device node after create (udev may lag). */
  nodeWaitMs?: number;
}

const GONE = /does not exist|not found|No such device/i;
const BUSY = /Device or resource busy/i;

/**
 * DiskDriver on device-mapper's `snapshot` target: the origin is the template's
 * read-only loop, the CoW a sparse file on its own read-write loop, stored
 * persistently (P) so the CoW survives remove and is re-attached on resume.
 * The device is as long as the origin; the CoW file is `sizeBytes` long, which is
 * at least the origin, so it cannot overflow.
 */
export class DmDiskDriver implements DiskDriver {
  readonly kind = 'dm' as const;
  readonly prefix: string;
  /** One operation at a time per device name (a temp flatten device has its own name). */
  private readonly locks = new KeyedLock();
  private readonly o: Required<Omit<DmDiskOptions, 'dmsetupEnv' | 'onRemoveBusy'>> & Pick<DmDiskOptions, 'dmsetupEnv' | 'onRemoveBusy'>;

  constructor(opts: DmDiskOptions) {
    this.prefix = assertPrefix(opts.prefix ?? 'sbxd-');
    this.o = {
      prefix: this.prefix,
      mapperDir: opts.mapperDir ?? '/dev/mapper',
      dmsetupPath: opts.dmsetupPath ?? 'dmsetup',
      timeoutMs: opts.timeoutMs ?? 30_000,
      chunkSectors: opts.chunkSectors ?? 8,
      removeAttempts: opts.removeAttempts ?? 25,
      removeRetryDelayMs: opts.removeRetryDelayMs ?? 200,
      nodeWaitMs: opts.nodeWaitMs ?? 5_000,
      loops: opts.loops,
      dmsetupEnv: opts.dmsetupEnv,
      onRemoveBusy: opts.onRemoveBusy,
    };
  }

  deviceName(sandboxId: string): string {
    return diskName(this.prefix, sandboxId);
  }

  async create(req: DiskRequest, opts: CallOpts): Promise<DiskHandle> {
    this.check(req);
    return this.locks.run(req.name, () => this.createUnlocked(req, opts));
  }

  private async createUnlocked(req: DiskRequest, opts: CallOpts): Promise<DiskHandle> {
    const current = await this.table(req.name, opts);
    if (current !== undefined) return this.adopt(req, current, opts);
    let madeCow = false;
    if (await exists(req.cowPath)) {
      if (!(await isFreshCow(req.cowPath))) {
        throw new SandboxdError('already_exists', `CoW ${req.cowPath} already holds a snapshot; attach or discard it`, { step: 'disk.create' });
      }
    } else {
      await makeSparseFile(req.cowPath, req.sizeBytes);
      madeCow = true;
    }
    try {
      return await this.activate(req, opts);
    } catch (err) {
      if (madeCow) await unlink(req.cowPath).catch(() => undefined);
      throw err;
    }
  }

  async attach(req: DiskRequest, opts: CallOpts): Promise<DiskHandle> {
    this.check(req);
    return this.locks.run(req.name, () => this.attachUnlocked(req, opts));
  }

  private async attachUnlocked(req: DiskRequest, opts: CallOpts): Promise<DiskHandle> {
    const current = await this.table(req.name, opts);
    if (current !== undefined) return this.adopt(req, current, opts);
    if (!(await exists(req.cowPath))) throw new SandboxdError('not_found', `CoW not found: ${req.cowPath}`, { step: 'disk.attach' });
    return this.activate(req, opts);
  }

  async remove(handle: DiskHandle, opts: CallOpts): Promise<void> {
    this.ownName(handle.name);
    assertHostPath('CoW', handle.cowPath);
    return this.locks.run(handle.name, () => this.removeUnlocked(handle, opts));
  }

  private async removeUnlocked(handle: DiskHandle, opts: CallOpts): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.dmsetup(['remove', handle.name], 'disk.remove', opts);
        break;
      } catch (err) {
        if (err instanceof CommandError && GONE.test(err.stderr)) break;
        if (!(err instanceof CommandError && BUSY.test(err.stderr))) throw err;
        if (attempt >= this.o.removeAttempts) {
          throw new SandboxdError('operation_failed', `disk ${handle.name} still busy after ${attempt} attempts`, { cause: err, step: 'disk.remove' });
        }
        this.o.onRemoveBusy?.(handle.name, attempt);
        await delay(this.o.removeRetryDelayMs, undefined, { signal: opts.signal }).catch((e: unknown) => {
          throw new SandboxdError('cancelled', `remove of ${handle.name} cancelled`, { cause: e, step: 'disk.remove' });
        });
      }
    }
    await this.detachCowLoops(handle.cowPath, opts);
  }

  async discard(cowPath: string, opts: CallOpts): Promise<void> {
    assertHostPath('CoW', cowPath);
    await this.detachCowLoops(cowPath, opts);
    await unlink(cowPath).catch((err: unknown) => {
      if ((err as { code?: string }).code !== 'ENOENT') throw fsError('disk.discard', cowPath, err);
    });
  }

  async flatten(handle: DiskHandle, outPath: string, opts: CallOpts): Promise<void> {
    this.ownName(handle.name);
    assertHostPath('output', outPath);
    await this.status(handle.name, opts);
    const expectedBytes = await this.deviceBytes(handle.devicePath, opts);
    await sparseCopy(handle.devicePath, outPath, { signal: opts.signal, expectedBytes });
    try {
      // A snapshot invalidated during the copy returned EIO or garbage: do not publish it.
      await this.status(handle.name, opts);
    } catch (err) {
      await unlink(outPath).catch(() => undefined);
      throw err;
    }
  }

  async flattenDetached(req: DiskRequest, outPath: string, opts: CallOpts): Promise<void> {
    this.check(req);
    assertHostPath('output', outPath);
    const id = sandboxIdOf(this.prefix, req.name);
    // Under the sandbox disk's lock: an attach of the same CoW waits until the temp device is gone.
    return this.locks.run(req.name, async () => {
      if ((await this.table(req.name, opts)) !== undefined) {
        throw new SandboxdError('operation_failed', `disk ${req.name} is attached; flatten the attached device instead`, { step: 'disk.flatten' });
      }
      if (!(await exists(req.cowPath))) throw new SandboxdError('not_found', `CoW not found: ${req.cowPath}`, { step: 'disk.flatten' });
      const temp = { ...req, name: `${this.flatPrefix}${id}` };
      // A leftover from a crash under the temporary name is ours to remove.
      await this.removeUnlocked({ name: temp.name, devicePath: this.nodePath(temp.name), cowPath: req.cowPath }, opts);
      const handle = await this.activate(temp, opts);
      try {
        await this.flatten(handle, outPath, opts);
      } finally {
        await this.removeUnlocked(handle, { signal: cleanupSignal(this.o.timeoutMs * 2) });
      }
    });
  }

  /** Allocation of the snapshot; a DiskInvalidError when it was invalidated (CoW full or corrupt). */
  async status(name: string, opts: CallOpts): Promise<SnapshotUsage> {
    this.ownName(name);
    const { stdout } = await this.dmsetup(['status', name], 'disk.status', opts);
    return parseSnapshotStatus(name, stdout);
  }

  /** Names of the dm devices under this driver's prefix. */
  async list(opts: CallOpts): Promise<string[]> {
    const { stdout } = await this.dmsetup(['ls'], 'disk.list', opts);
    if (/^No devices found/.test(stdout.trim())) return [];
    return stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0] ?? '')
      .filter((n) => n.startsWith(this.prefix))
      .sort();
  }

  private async activate(req: DiskRequest, opts: CallOpts): Promise<DiskHandle> {
    const originBytes = await this.o.loops.sizeBytes(req.originDevice, opts);
    const attached = (await this.o.loops.list(opts)).find((l) => l.device === req.originDevice);
    if (attached === undefined || attached.backingFile !== (await canonical(req.originPath))) {
      throw new SandboxdError('invalid_argument', `${req.originDevice} is not attached to ${req.originPath}`, { step: 'disk.attach' });
    }
    if (originBytes % 512 !== 0 || originBytes === 0) {
      throw new SandboxdError('invalid_argument', `origin ${req.originPath} is ${originBytes} bytes, not whole sectors`);
    }
    const cowLoop = await this.o.loops.attachReadWrite(req.cowPath, opts);
    const table = `0 ${originBytes / 512} snapshot ${req.originDevice} ${cowLoop} P ${this.o.chunkSectors}`;
    const devicePath = this.nodePath(req.name);
    // Whether a device by this name may now exist because of this call: not when
    // dmsetup itself answered with a failure (e.g. the name is taken by someone else).
    let mayExist = true;
    try {
      await this.dmsetup(['create', req.name, '--table', table], 'disk.create', opts).catch((err: unknown) => {
        if (err instanceof CommandError) mayExist = false;
        throw err;
      });
      await this.waitForNode(devicePath, opts);
      return { name: req.name, devicePath, cowPath: req.cowPath };
    } catch (err) {
      const signal = cleanupSignal(this.o.timeoutMs);
      if (mayExist) await this.dmsetup(['remove', req.name], 'disk.create', { signal }).catch(() => undefined);
      await this.o.loops.detach(cowLoop, req.cowPath, { signal }).catch(() => undefined);
      throw err;
    }
  }

  /** An existing device is ours for this request only when it maps the same origin and CoW. */
  private async adopt(req: DiskRequest, table: string, opts: CallOpts): Promise<DiskHandle> {
    const w = table.trim().split(/\s+/);
    const cowLoops = (await this.o.loops.findByBackingFile(req.cowPath, opts)).filter((l) => !l.readOnly);
    const cowIds = await Promise.all(cowLoops.map((l) => majMin(l.device)));
    if (w[2] === 'snapshot' && w[3] === (await majMin(req.originDevice)) && cowIds.includes(w[4] ?? '')) {
      return { name: req.name, devicePath: this.nodePath(req.name), cowPath: req.cowPath };
    }
    throw new SandboxdError('already_exists', `disk ${req.name} exists over another origin or CoW`, { step: 'disk.create' });
  }

  private async table(name: string, opts: CallOpts): Promise<string | undefined> {
    try {
      return (await this.dmsetup(['table', name], 'disk.table', opts)).stdout;
    } catch (err) {
      if (err instanceof CommandError && GONE.test(err.stderr)) return undefined;
      throw err;
    }
  }

  private async detachCowLoops(cowPath: string, opts: CallOpts): Promise<void> {
    for (const l of await this.o.loops.findByBackingFile(cowPath, opts)) {
      if (!l.readOnly) await this.o.loops.detach(l.device, cowPath, opts);
    }
  }

  private async deviceBytes(devicePath: string, opts: CallOpts): Promise<number> {
    const st = await stat(devicePath).catch((err: unknown) => {
      throw fsError('disk.flatten', devicePath, err);
    });
    if (st.isFile()) return st.size;
    const { stdout } = await run('blockdev', ['--getsize64', devicePath], { signal: opts.signal, timeoutMs: this.o.timeoutMs, step: 'disk.flatten' });
    return Number(stdout.trim());
  }

  private async waitForNode(devicePath: string, opts: CallOpts): Promise<void> {
    const deadline = Date.now() + this.o.nodeWaitMs;
    while (!(await exists(devicePath))) {
      if (Date.now() > deadline) throw new SandboxdError('timeout', `${devicePath} did not appear`, { step: 'disk.create' });
      await delay(20, undefined, { signal: opts.signal });
    }
  }

  private nodePath(name: string): string {
    return join(this.o.mapperDir, name);
  }

  private dmsetup(args: string[], step: string, opts: CallOpts) {
    return run(this.o.dmsetupPath, args, { signal: opts.signal, timeoutMs: this.o.timeoutMs, env: this.o.dmsetupEnv, step });
  }

  /** Temporary devices of flattenDetached: their own prefix, so a leftover is recognisable. */
  private get flatPrefix(): string {
    return `${this.prefix}flat-`;
  }

  /** A sandbox disk name, or the temporary name of a detached flatten. */
  private ownName(name: string): void {
    sandboxIdOf(name.startsWith(this.flatPrefix) ? this.flatPrefix : this.prefix, name);
  }

  private check(req: DiskRequest): void {
    sandboxIdOf(this.prefix, req.name);
    assertHostPath('origin device', req.originDevice);
    assertHostPath('origin', req.originPath);
    assertHostPath('CoW', req.cowPath);
    assertSize('disk size', req.sizeBytes);
  }
}
