import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isSandboxId } from '../../core/ids.ts';
import { sleep } from '../../core/sleep.ts';
import type { Logger } from '../../core/log.ts';
import type { CallOpts } from '../call.ts';
import type { FsSnapshotFiles } from '../files/fs-files.ts';
import { takeInventory } from '../files/inventory.ts';
import { SNAPSHOT_META_FILE } from '../files/meta.ts';
import { removeOrphans } from '../network/inventory.ts';
import type { DmDiskDriver } from '../storage/dm-disk.ts';
import { canonical, type LosetupLoopDriver } from '../storage/losetup-loop.ts';
import { readCmdline } from '../vmm/proc-stat.ts';
import type { VmmDriver } from '../vmm/vmm.ts';
import type { Holdings, HostSweeper, Swept } from './sweeper.ts';

export interface HostSweeperOptions {
  dataDir: string;
  /** The VMMs' pidfiles and sockets (`<id>.pid`, `<id>.sock`). */
  runDir: string;
  /** The VMMs' working dirs, one per sandbox id. */
  vmDir: string;
  logDir: string;
  files: FsSnapshotFiles;
  vmm: VmmDriver;
  /** The dm backend's loops and devices; absent for the clone backend, which makes neither. */
  loops?: LosetupLoopDriver;
  dm?: DmDiskDriver;
  /** The netns backend's name prefix; absent for `none`. */
  networkPrefix?: string;
  log: Logger;
}

/**
 * The real host's sweep, in the order that frees each thing before what it
 * sits on: VMMs (they hold taps and disks), dm devices, loops, networks, then
 * files. Each removal is logged with its kind; the counts go to the caller.
 */
export class RealHostSweeper implements HostSweeper {
  constructor(private readonly o: HostSweeperOptions) {}

  async sweep(keep: Holdings, opts: CallOpts): Promise<Swept> {
    const out: Swept = {};
    const removed = (kind: string, name: string) => {
      (out[kind] ??= []).push(name);
      this.o.log.info({ kind, name }, 'removed an orphan left by a crash');
    };

    for (const id of await this.#idsIn(this.o.runDir, /^(.+)\.(?:pid|sock)$/)) {
      if (keep.vms.has(id)) continue;
      await this.o.vmm.destroy(id, opts);
      removed('vmm', id);
    }
    // A VMM the agent died spawning may have no pidfile yet: found by the socket its command line names.
    for (const { id, pid } of await this.#unrecordedVmms()) {
      if (keep.vms.has(id)) continue;
      await stopPid(pid, opts.signal);
      removed('vmm', `${id} (pid ${pid}, no pidfile)`);
    }
    for (const id of await this.#idsIn(this.o.vmDir, /^(.+)$/)) {
      const dir = join(this.o.vmDir, id);
      if (keep.vms.has(id) || keep.vmDirs.has(dir)) continue;
      await rm(dir, { recursive: true, force: true });
      removed('vm-dir', dir);
    }

    if (this.o.dm !== undefined) {
      // The name is all a removal needs; CoW loops are swept with the other loops below.
      const noCow = join(this.o.dataDir, 'sandboxes', '.sweep', 'rootfs.cow');
      for (const name of await this.o.dm.list(opts)) {
        if (keep.disks.has(name)) continue;
        await this.o.dm.remove({ name, devicePath: '', cowPath: noCow }, opts);
        removed('disk', name);
      }
    }
    if (this.o.loops !== undefined) {
      const root = await canonical(this.o.dataDir);
      const origins = new Set(await Promise.all([...keep.origins].map(canonical)));
      const cows = new Set(await Promise.all([...keep.diskCows].map(canonical)));
      for (const l of await this.o.loops.list(opts)) {
        if (!l.backingFile.startsWith(`${root}/`)) continue;
        if ((l.readOnly ? origins : cows).has(l.backingFile)) continue;
        await this.o.loops.detach(l.device, l.backingFile, opts);
        removed(l.readOnly ? 'loop' : 'cow-loop', `${l.device} (${l.backingFile})`);
      }
    }
    if (this.o.networkPrefix !== undefined) {
      for (const slot of await removeOrphans(this.o.networkPrefix, keep.networks, opts)) removed('network', String(slot));
    }

    const keepFiles = { sandboxIds: keep.sandboxes, stagingDirs: keep.stagingDirs };
    for (const path of await this.o.files.cleanupOrphans({ ...opts, keep: keepFiles })) removed('staging', path);
    for (const { sandboxId, dir } of (await takeInventory(this.o.files.layout, opts)).sandboxes) {
      if (keep.sandboxDirs.has(sandboxId)) continue;
      // A pause dir nobody claims (its metadata unreadable) is left for an operator.
      if ((await readdir(dir).catch(() => [] as string[])).includes(SNAPSHOT_META_FILE)) continue;
      await this.o.files.removeSandboxDir(sandboxId, opts);
      removed('sandbox-dir', sandboxId);
    }
    for (const name of await readdir(this.o.logDir).catch(() => [] as string[])) {
      const id = /^(sb-[^.]+)\./.exec(name)?.[1];
      if (id === undefined || keep.sandboxes.has(id)) continue;
      await rm(join(this.o.logDir, name), { force: true });
      removed('log', name);
    }
    return out;
  }

  /** VMM processes whose API socket lies in the run dir, by sandbox id. */
  async #unrecordedVmms(): Promise<Array<{ id: string; pid: number }>> {
    const out: Array<{ id: string; pid: number }> = [];
    const prefix = `path=${this.o.runDir}/`;
    for (const name of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(name)) continue;
      const argv = await readCmdline(Number(name));
      const arg = argv?.find((a) => a.startsWith(prefix) || a.startsWith(`--api-socket=${prefix}`));
      const id = arg === undefined ? undefined : /\/([^/]+)\.sock$/.exec(arg)?.[1];
      if (id !== undefined && isSandboxId(id)) out.push({ id, pid: Number(name) });
    }
    return out;
  }

  async #idsIn(dir: string, pattern: RegExp): Promise<string[]> {
    const ids = new Set<string>();
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const id = pattern.exec(name)?.[1];
      if (id !== undefined && isSandboxId(id)) ids.add(id);
    }
    return [...ids].sort();
  }
}

/** SIGTERM (the simulator takes its guest processes down with it), SIGKILL after 3 s, then wait for the pid to go. */
async function stopPid(pid: number, signal: AbortSignal): Promise<void> {
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const waitGone = async (ms: number) => {
    for (const deadline = Date.now() + ms; alive() && Date.now() < deadline; ) await sleep(50, signal);
  };
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  await waitGone(3_000);
  if (alive()) process.kill(pid, 'SIGKILL');
  await waitGone(10_000);
}
