// A sandboxd runtime on the real host backends, for the host lifecycle tests:
// loop devices (losetup), the dm snapshot driver over the stand-in dmsetup, one
// real network namespace per slot, snapshot files and templates on disk, and the
// Cloud Hypervisor driver running the simulator inside each slot's namespace.
// Everything lives under one `sandboxd-test-host-*` dir and one `sbxt…` network
// prefix per test file, and is undone after the test even when it fails.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { execa } from 'execa';
import { Supervisor, type SupervisorOptions } from '../../actors/supervisor.ts';
import type { FsSnapshotFiles } from '../../drivers/files/fs-files.ts';
import type { Drivers } from '../../drivers/index.ts';
import { removeOrphans } from '../../drivers/network/inventory.ts';
import type { DmDiskDriver, DmDiskOptions } from '../../drivers/storage/dm-disk.ts';
import type { LosetupLoopDriver } from '../../drivers/storage/losetup-loop.ts';
import { MemoryStore } from '../../drivers/store/memory-store.ts';
import { cleanups, detachLoopsUnder } from '../storage/helpers.ts';
import { buildHostDrivers, MAX_SLOTS, prepareHostRoot, TEAM, type NetRange } from './host-drivers.ts';

export { CHSIM, DM_PREFIX, TEAM, type NetRange } from './host-drivers.ts';
export const ADMIN = { teamId: null };
export const CALLER = { teamId: TEAM };
export const LIFECYCLE_NET: NetRange = { prefix: 'sbxth', transitCidr: '169.254.40.0/24', hostCidr: '169.254.41.0/24' };
export const FAULTS_NET: NetRange = { prefix: 'sbxtf', transitCidr: '169.254.42.0/24', hostCidr: '169.254.43.0/24' };

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
export async function lockPrefix(prefix: string, undo: (fn: () => unknown) => void): Promise<void> {
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
  const paths = prepareHostRoot(root);
  const { dataDir, runDir, dmState, basePath } = paths;
  if (o.tmpfsBytes !== undefined) {
    // Mounted over the prepared data dir, so the base template is made again inside it.
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${o.tmpfsBytes}`, 'sbxt-host', dataDir]);
    undo(() => execFileSync('umount', ['--lazy', dataDir]));
    prepareHostRoot(root);
  }
  // Undone before the data dir goes: loops under it, then the network (after the VMMs).
  undo(() => detachLoopsUnder(root));
  undo(() => removeOrphans(o.net.prefix, [], opts()));
  undo(() => killVmms(runDir));

  const { drivers, loops, dm, files, vmSandboxDir } = buildHostDrivers({
    root,
    net: o.net,
    store: new MemoryStore(),
    ...(o.dm === undefined ? {} : { dm: o.dm }),
  });
  const newSupervisor = () =>
    new Supervisor({ drivers, slots: MAX_SLOTS, defaultDiskSizeMB: 64, vmSandboxDir, ...o.supervisor });
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

export function killVmms(runDir: string): void {
  for (const pid of vmmProcesses(runDir).values()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

