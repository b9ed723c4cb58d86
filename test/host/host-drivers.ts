// The real-host driver bundle of the host tests, shared by the in-process rig
// (rig.ts) and the agent child process of the crash tests (test/crash/):
// loop devices (losetup), the dm snapshot driver over the stand-in dmsetup, one
// network namespace per slot, snapshot files and templates on disk, and the
// Cloud Hypervisor driver running the simulator inside each slot's namespace.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { silentLogger, type Logger } from '../../core/log.ts';
import { EnvdClient } from '../../drivers/envd/envd-client.ts';
import { FsSnapshotFiles } from '../../drivers/files/fs-files.ts';
import { FsTemplateStore } from '../../drivers/files/fs-templates.ts';
import { RealHostSweeper } from '../../drivers/host/host-sweeper.ts';
import type { Drivers } from '../../drivers/index.ts';
import { NetnsNetwork } from '../../drivers/network/netns-network.ts';
import type { NetworkDriver, NetworkHandle } from '../../drivers/network/network.ts';
import { GUEST_NET } from '../../drivers/network/slot-addresses.ts';
import { DmDiskDriver, type DmDiskOptions } from '../../drivers/storage/dm-disk.ts';
import { DMSETUP_STANDIN } from '../../drivers/storage/index.ts';
import { LosetupLoopDriver } from '../../drivers/storage/losetup-loop.ts';
import type { SandboxStore } from '../../drivers/store/store.ts';
import { ChDriver } from '../../drivers/vmm/ch/ch-driver.ts';
import { ENVD_PORT } from '../../drivers/vmm/ch/envd-address.ts';

export const CHSIM = resolve(import.meta.dirname, '../../drivers/vmm/sim/chsim');
export const DM_PREFIX = 'sbxt-';
export const TEAM = 'acme';
export const MAX_SLOTS = 16;
const BASE_BYTES = 16 << 20;

/**
 * Network objects of one test file (or one crash-test worker): its own prefix
 * and address ranges, used by no other, so they never sweep each other's slots.
 */
export interface NetRange {
  prefix: string;
  transitCidr: string;
  hostCidr: string;
}

/** Where one host test keeps everything, all under `root`. */
export interface HostPaths {
  root: string;
  dataDir: string;
  runDir: string;
  dmState: string;
  logDir: string;
  vmDir: string;
  kernel: string;
  /** The team's `base` template image. */
  basePath: string;
}

export function hostPaths(root: string): HostPaths {
  const dataDir = join(root, 'data');
  return {
    root,
    dataDir,
    runDir: join(root, 'run'),
    dmState: join(root, 'dm'),
    logDir: join(root, 'logs'),
    vmDir: join(root, 'vm'),
    kernel: join(root, 'vmlinux'),
    basePath: join(dataDir, 'images', 'teams', TEAM, 'base', 'rootfs.ext4'),
  };
}

/** Makes the dirs, the placeholder kernel and the team's small ext4 `base` template. */
export function prepareHostRoot(root: string): HostPaths {
  const p = hostPaths(root);
  for (const d of [p.dataDir, p.runDir, join(p.dmState, 'mapper')]) mkdirSync(d, { recursive: true });
  writeFileSync(p.kernel, 'not a kernel');
  mkdirSync(join(p.basePath, '..'), { recursive: true });
  execFileSync('truncate', ['-s', String(BASE_BYTES), p.basePath]);
  execFileSync('mkfs.ext4', ['-q', '-F', p.basePath]);
  return p;
}

/**
 * The stand-in envd listens on the guest's address inside the slot's namespace;
 * this puts that address on the namespace's `lo`, as the guest's own interface
 * would carry it, so the namespace's DNAT from the slot's host IP delivers to it.
 * The address goes with the namespace.
 */
class GuestAddressOnLo implements NetworkDriver {
  readonly kind = 'netns' as const;
  constructor(private readonly inner: NetnsNetwork) {}

  async create(slot: number, o: { signal: AbortSignal }): Promise<NetworkHandle> {
    const handle = await this.inner.create(slot, o);
    const args = ['-n', handle.namespace!, 'addr', 'replace', `${GUEST_NET.guestIp}/32`, 'dev', 'lo'];
    try {
      await execa('ip', args, { timeout: 10_000, cancelSignal: o.signal });
    } catch (err) {
      // A create that fails leaves nothing (the driver contract): a destroy's
      // cancel landing on this last command would otherwise leak the slot.
      await this.inner.remove(slot, { signal: AbortSignal.timeout(10_000) });
      throw err;
    }
    return handle;
  }

  remove(slot: number, o: { signal: AbortSignal }): Promise<void> {
    return this.inner.remove(slot, o);
  }
}

export interface HostDriverOptions {
  root: string;
  net: NetRange;
  store: SandboxStore;
  dm?: Partial<DmDiskOptions>;
  log?: Logger;
}

export interface HostDrivers {
  paths: HostPaths;
  drivers: Drivers;
  loops: LosetupLoopDriver;
  dm: DmDiskDriver;
  files: FsSnapshotFiles;
  /** The VMM working dir of a freshly booted sandbox (SupervisorOptions.vmSandboxDir). */
  vmSandboxDir(id: string): string;
}

/** The driver bundle over a root prepared by prepareHostRoot. */
export function buildHostDrivers(o: HostDriverOptions): HostDrivers {
  const paths = hostPaths(o.root);
  const loops = new LosetupLoopDriver();
  const dm = new DmDiskDriver({
    loops,
    prefix: DM_PREFIX,
    dmsetupPath: DMSETUP_STANDIN,
    dmsetupEnv: { SANDBOXD_DMSETUP_STATE: paths.dmState },
    mapperDir: join(paths.dmState, 'mapper'),
    ...o.dm,
  });
  const files = new FsSnapshotFiles({ dataDir: paths.dataDir });
  const vmm = new ChDriver({
    binary: CHSIM,
    kernelPath: paths.kernel,
    runDir: paths.runDir,
    logDir: paths.logDir,
    envdAddress: 'guest',
    env: { CHSIM_ENVD_LISTEN: `${GUEST_NET.guestIp}:${ENVD_PORT}` },
    startTimeoutMs: 20_000,
    shutdownGraceMs: 3_000,
  });
  const drivers: Drivers = {
    vmm,
    envd: new EnvdClient({ healthPollMs: 20 }),
    loop: loops,
    disk: dm,
    network: new GuestAddressOnLo(new NetnsNetwork({ layout: { ...o.net, maxSlots: MAX_SLOTS } })),
    files,
    templates: new FsTemplateStore({ dataDir: paths.dataDir }),
    store: o.store,
    sweeper: new RealHostSweeper({
      dataDir: paths.dataDir,
      runDir: paths.runDir,
      vmDir: paths.vmDir,
      logDir: paths.logDir,
      files,
      vmm,
      loops,
      dm,
      networkPrefix: o.net.prefix,
      log: o.log ?? silentLogger,
    }),
  };
  return { paths, drivers, loops, dm, files, vmSandboxDir: (id) => join(paths.vmDir, id) };
}
