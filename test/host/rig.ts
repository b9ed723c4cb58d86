// A sandboxd runtime on the real host backends, for the host lifecycle tests:
// loop devices (losetup), the dm snapshot driver over the stand-in dmsetup, one
// real network namespace per slot, snapshot files and templates on disk, and the
// Cloud Hypervisor driver running the simulator inside each slot's namespace.
// Everything lives under one `sandboxd-test-host-*` dir and one `sbxt…` network
// prefix per test file, and is undone after the test even when it fails.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { execa } from 'execa';
import { Supervisor, type SupervisorOptions } from '../../actors/supervisor.ts';
import { EnvdClient } from '../../drivers/envd/envd-client.ts';
import { FsSnapshotFiles } from '../../drivers/files/fs-files.ts';
import { FsTemplateStore } from '../../drivers/files/fs-templates.ts';
import type { Drivers } from '../../drivers/index.ts';
import { removeOrphans } from '../../drivers/network/inventory.ts';
import { NetnsNetwork } from '../../drivers/network/netns-network.ts';
import type { NetworkDriver, NetworkHandle } from '../../drivers/network/network.ts';
import { GUEST_NET } from '../../drivers/network/slot-addresses.ts';
import { DmDiskDriver, type DmDiskOptions } from '../../drivers/storage/dm-disk.ts';
import { DMSETUP_STANDIN } from '../../drivers/storage/index.ts';
import { LosetupLoopDriver } from '../../drivers/storage/losetup-loop.ts';
import { RealHostSweeper } from '../../drivers/host/host-sweeper.ts';
import { silentLogger } from '../../core/log.ts';
import { MemoryStore } from '../../drivers/store/memory-store.ts';
import { ChDriver } from '../../drivers/vmm/ch/ch-driver.ts';
import { ENVD_PORT } from '../../drivers/vmm/ch/envd-address.ts';
import { cleanups, detachLoopsUnder } from '../storage/helpers.ts';

export const CHSIM = resolve(import.meta.dirname, '../../drivers/vmm/sim/chsim');
export const DM_PREFIX = 'sbxt-';
export const TEAM = 'acme';
export const ADMIN = { teamId: null };
export const CALLER = { teamId: TEAM };
/**
 * Network objects of one test file: its own prefix and address ranges, used by
 * no other test file, so files run side by side never sweep each other's slots.
 */
export interface NetRange {
  prefix: string;
  transitCidr: string;
  hostCidr: string;
}
export const LIFECYCLE_NET: NetRange = { prefix: 'sbxth', transitCidr: '169.254.40.0/24', hostCidr: '169.254.41.0/24' };
export const FAULTS_NET: NetRange = { prefix: 'sbxtf', transitCidr: '169.254.42.0/24', hostCidr: '169.254.43.0/24' };
const MAX_SLOTS = 16;
const BASE_BYTES = 16 << 20;

export const opts = (ms = 30_000) => ({ signal: AbortSignal.timeout(ms) });

/** Why these tests cannot run here, or undefined when they can. */
export async function missingHost(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (loop devices, namespaces)';
  for (const [tool, arg] of [['ip', '-V'], ['nft', '--version'], ['losetup', '--version'], ['mkfs.ext4', '-V']] as const) {
    const r = await execa(tool, [arg], { reject: false, timeout: 5000 });
    if (r.exitCode !== 0) return `needs ${tool}`;
  }
  return undefined;
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
    await execa('ip', args, { timeout: 10_000, cancelSignal: o.signal });
    return handle;
  }

  remove(slot: number, o: { signal: AbortSignal }): Promise<void> {
    return this.inner.remove(slot, o);
  }
}

export interface Rig {
  root: string;
  net: NetRange;
  dataDir: string;
  runDir: string;
  dmState: string;
  /** The agent; a test that restarts it puts the new one here (cleanup destroys through it). */
  sup: Supervisor;
  /** Another agent on the same drivers and host (an agent restart). */
  newSupervisor(): Supervisor;
  drivers: Drivers;
  loops: LosetupLoopDriver;
  dm: DmDiskDriver;
  files: FsSnapshotFiles;
  basePath: string;
}

export interface RigOptions {
  net: NetRange;
  /** Mounts a tmpfs of this size as the data dir (disk-full tests). */
  tmpfsBytes?: number;
  dm?: Partial<DmDiskOptions>;
  supervisor?: Partial<SupervisorOptions>;
}

/**
 * Several people (or runs) may test on one machine at once: a second run of the
 * same file would use the same names and sweep the first one's slots. One lock
 * per network prefix (a dir made atomically, naming its owner's pid; a dead
 * owner's lock is taken over) makes them take turns.
 */
async function lockPrefix(prefix: string, undo: (fn: () => unknown) => void): Promise<void> {
  const lock = `/tmp/sandboxd-test-lock-${prefix}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      undo(() => rmSync(lock, { recursive: true, force: true }));
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number(readFileSafe(join(lock, 'pid')));
    if (owner > 0 && !pidAlive(owner)) rmSync(lock, { recursive: true, force: true });
    else if (Date.now() > deadline) throw new Error(`${lock} is still held by pid ${owner}`);
    else await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function readFileSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function makeRig(t: TestContext, o: RigOptions): Promise<Rig> {
  const undo = cleanups(t);
  await lockPrefix(o.net.prefix, undo);
  const root = mkdtempSync('/tmp/sandboxd-test-host-');
  undo(() => rmSync(root, { recursive: true, force: true }));
  const dataDir = join(root, 'data');
  const runDir = join(root, 'run');
  const dmState = join(root, 'dm');
  for (const d of [dataDir, runDir, join(dmState, 'mapper')]) mkdirSync(d, { recursive: true });
  if (o.tmpfsBytes !== undefined) {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${o.tmpfsBytes}`, 'sbxt-host', dataDir]);
    undo(() => execFileSync('umount', ['--lazy', dataDir]));
  }
  // Undone before the data dir goes: loops under it, then the network (after the VMMs).
  undo(() => detachLoopsUnder(root));
  undo(() => removeOrphans(o.net.prefix, [], opts()));
  undo(() => killVmms(runDir));

  const kernel = join(root, 'vmlinux');
  writeFileSync(kernel, 'not a kernel');
  const basePath = join(dataDir, 'images', 'teams', TEAM, 'base', 'rootfs.ext4');
  mkdirSync(join(basePath, '..'), { recursive: true });
  execFileSync('truncate', ['-s', String(BASE_BYTES), basePath]);
  execFileSync('mkfs.ext4', ['-q', '-F', basePath]);

  const loops = new LosetupLoopDriver();
  const dm = new DmDiskDriver({
    loops,
    prefix: DM_PREFIX,
    dmsetupPath: DMSETUP_STANDIN,
    dmsetupEnv: { SANDBOXD_DMSETUP_STATE: dmState },
    mapperDir: join(dmState, 'mapper'),
    ...o.dm,
  });
  const files = new FsSnapshotFiles({ dataDir });
  const vmm = new ChDriver({
    binary: CHSIM,
    kernelPath: kernel,
    runDir,
    logDir: join(root, 'logs'),
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
    templates: new FsTemplateStore({ dataDir }),
    store: new MemoryStore(),
    sweeper: new RealHostSweeper({
      dataDir,
      runDir,
      vmDir: join(root, 'vm'),
      logDir: join(root, 'logs'),
      files,
      vmm,
      loops,
      dm,
      networkPrefix: o.net.prefix,
      log: silentLogger,
    }),
  };
  const newSupervisor = () =>
    new Supervisor({ drivers, slots: MAX_SLOTS, defaultDiskSizeMB: 64, vmSandboxDir: (id) => join(root, 'vm', id), ...o.supervisor });
  const rig: Rig = { root, net: o.net, dataDir, runDir, dmState, sup: newSupervisor(), newSupervisor, drivers, loops, dm, files, basePath };
  // First to run: the current supervisor destroys what the test left, so every owner releases its own.
  undo(async () => {
    await Promise.allSettled(rig.sup.ids().map((id) => rig.sup.destroy(ADMIN, id)));
  });
  return rig;
}

/** Pids of simulator VMMs whose API socket lies in `runDir`, by sandbox id. */
export function vmmProcesses(runDir: string): Map<string, number> {
  const out = new Map<string, number>();
  const pattern = new RegExp(`${runDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/(sb-[a-z0-9-]+)\\.sock`);
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    if (!cmdline.includes('chsim')) continue;
    const m = pattern.exec(cmdline.split('\0').join(' '));
    if (m) out.set(m[1]!, Number(pid));
  }
  return out;
}

function killVmms(runDir: string): void {
  for (const pid of vmmProcesses(runDir).values()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

