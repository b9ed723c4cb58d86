import { SandboxdError } from '../../core/errors.ts';
import type { CallOpts } from '../call.ts';
import type { DiskDriver, DiskHandle, DiskRequest, LoopDriver } from '../storage/storage.ts';
import { split } from './fs.ts';
import type { FakeHost } from './host.ts';
import { sandboxOfPath } from './ledger.ts';

/** dm names: no '/', at most 127 bytes (DM_NAME_LEN 128 with the NUL). */
const DM_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,126}$/;

/**
 * Loop devices as `/dev/loopN`, lowest free N first like `losetup -f`, so a
 * number is reused after a detach. No refcount: the runtime's registry counts.
 */
export class FakeLoop implements LoopDriver {
  readonly #host: FakeHost;
  readonly #byImage = new Map<string, string>();

  constructor(host: FakeHost) {
    this.#host = host;
  }

  async attach(imagePath: string, { signal }: CallOpts): Promise<string> {
    await this.#host.faults.gate('loop.attach', undefined, signal);
    const existing = this.#byImage.get(imagePath);
    if (existing !== undefined) return existing;
    if (this.#host.fs.readFile(imagePath) === undefined) {
      throw new SandboxdError('operation_failed', `losetup: ${imagePath}: no such file`);
    }
    const loops = this.#host.ledger.loops;
    let n = 0;
    while (loops.has(`/dev/loop${n}`)) n++;
    const device = `/dev/loop${n}`;
    loops.set(device, { imagePath });
    this.#byImage.set(imagePath, device);
    return device;
  }

  /**
   * Detaching a device that is gone, or that now backs another image, is a
   * no-op. Stricter than the kernel (which detaches a busy loop lazily): a
   * loop that still backs a disk is refused, so a wrong release order shows.
   */
  async detach(device: string, imagePath: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('loop.detach', undefined, signal);
    const entry = this.#host.ledger.loops.get(device);
    if (entry === undefined || entry.imagePath !== imagePath) return;
    const users = [...this.#host.diskOrigins].filter(([, origin]) => origin === device).map(([name]) => name);
    if (users.length > 0) throw new SandboxdError('operation_failed', `loop ${device} is busy: disks ${users.join(', ')}`);
    this.#host.ledger.loops.delete(device);
    this.#byImage.delete(imagePath);
  }

  async sizeBytes(device: string, { signal }: CallOpts): Promise<number> {
    await this.#host.faults.gate('loop.sizeBytes', undefined, signal);
    const entry = this.#host.ledger.loops.get(device);
    const file = entry === undefined ? undefined : this.#host.fs.readFile(entry.imagePath);
    if (file === undefined) throw new SandboxdError('operation_failed', `blockdev: ${device}: no such device`);
    return file.size;
  }
}

/** Device-mapper snapshot disks: the CoW file lives in the fake files, the device in the ledger. */
export class FakeDisk implements DiskDriver {
  readonly kind = 'dm' as const;
  readonly #host: FakeHost;

  constructor(host: FakeHost) {
    this.#host = host;
  }

  async create(req: DiskRequest, { signal }: CallOpts): Promise<DiskHandle> {
    await this.#host.faults.gate('disk.create', sandboxOfPath(req.cowPath), signal);
    this.#checkRequest(req);
    const existing = this.#existing(req);
    if (existing !== undefined) return existing;
    this.#requireOrigin(req);
    if (!this.#host.fs.hasDir(split(req.cowPath).dir)) {
      throw new SandboxdError('operation_failed', `cannot create ${req.cowPath}: no such directory`);
    }
    // A zero-started CoW: sparse, nothing allocated yet.
    this.#host.fs.writeFile(req.cowPath, { size: req.sizeBytes, allocated: 0 });
    return this.#addDevice(req);
  }

  async attach(req: DiskRequest, { signal }: CallOpts): Promise<DiskHandle> {
    await this.#host.faults.gate('disk.attach', sandboxOfPath(req.cowPath), signal);
    this.#checkRequest(req);
    const existing = this.#existing(req);
    if (existing !== undefined) return existing;
    this.#requireOrigin(req);
    if (this.#host.fs.readFile(req.cowPath) === undefined) {
      throw new SandboxdError('operation_failed', `cannot attach ${req.name}: CoW ${req.cowPath} does not exist`);
    }
    return this.#addDevice(req);
  }

  async remove(handle: DiskHandle, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('disk.remove', sandboxOfPath(handle.cowPath), signal);
    const disk = this.#host.ledger.disks.get(handle.name);
    if (disk === undefined) return;
    const user = this.#host.diskUsers.get(disk.devicePath);
    if (user !== undefined) throw new SandboxdError('operation_failed', `dmsetup remove ${disk.name}: device busy (VMM of ${user})`);
    this.#host.ledger.disks.delete(disk.name);
    this.#host.diskOrigins.delete(disk.name);
  }

  async discard(cowPath: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('disk.discard', sandboxOfPath(cowPath), signal);
    this.#host.fs.unlink(cowPath);
  }

  async flatten(handle: DiskHandle, outPath: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('disk.flatten', sandboxOfPath(handle.cowPath), signal);
    const disk = this.#host.ledger.disks.get(handle.name);
    if (disk === undefined) throw new SandboxdError('operation_failed', `flatten: device ${handle.name} does not exist`);
    this.#writeFlat(disk.cowPath, outPath);
  }

  async flattenDetached(req: DiskRequest, outPath: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('disk.flattenDetached', sandboxOfPath(req.cowPath), signal);
    this.#checkRequest(req);
    this.#requireOrigin(req);
    if (this.#host.fs.readFile(req.cowPath) === undefined) {
      throw new SandboxdError('operation_failed', `flatten: CoW ${req.cowPath} does not exist`);
    }
    // The temporary device would come and go within this call: nothing to record.
    this.#writeFlat(req.cowPath, outPath);
  }

  #writeFlat(cowPath: string, outPath: string): void {
    if (!this.#host.fs.hasDir(split(outPath).dir)) {
      throw new SandboxdError('operation_failed', `flatten: ${split(outPath).dir} does not exist`);
    }
    const size = this.#host.fs.readFile(cowPath)?.size ?? 0;
    this.#host.fs.writeFile(outPath, { size, allocated: size });
  }

  #checkRequest(req: DiskRequest): void {
    if (!DM_NAME.test(req.name)) throw new SandboxdError('invalid_argument', `invalid dm name: ${JSON.stringify(req.name)}`);
    if (!Number.isInteger(req.sizeBytes) || req.sizeBytes <= 0) {
      throw new SandboxdError('invalid_argument', `disk size must be a positive integer, got ${req.sizeBytes}`);
    }
    if (!req.cowPath.startsWith(`${this.#host.root}/`)) {
      throw new SandboxdError('invalid_argument', `CoW path outside the data dir: ${req.cowPath}`);
    }
  }

  /** The same request again returns the existing device; the name taken by another CoW is refused. */
  #existing(req: DiskRequest): DiskHandle | undefined {
    const disk = this.#host.ledger.disks.get(req.name);
    if (disk === undefined) return undefined;
    if (disk.cowPath !== req.cowPath) {
      throw new SandboxdError('operation_failed', `dm device ${req.name} exists over another CoW (${disk.cowPath})`);
    }
    return { ...disk };
  }

  #requireOrigin(req: DiskRequest): void {
    const loop = this.#host.ledger.loops.get(req.originDevice);
    if (loop === undefined || loop.imagePath !== req.originPath) {
      throw new SandboxdError('operation_failed', `origin ${req.originDevice} is not attached to ${req.originPath}`);
    }
  }

  #addDevice(req: DiskRequest): DiskHandle {
    const handle: DiskHandle = { name: req.name, devicePath: `/dev/mapper/${req.name}`, cowPath: req.cowPath };
    this.#host.ledger.disks.set(req.name, handle);
    this.#host.diskOrigins.set(req.name, req.originDevice);
    return { ...handle };
  }
}
