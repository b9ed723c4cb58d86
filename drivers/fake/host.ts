import { SandboxdError } from '../../core/errors.ts';
import { assertNameId } from '../../core/ids.ts';
import type { EnvdInit, GuestUsage, MemoryLoaderState } from '../envd/envd.ts';
import { SNAPSHOT_META_FILE, SnapshotMetaSchema, type SnapshotMeta } from '../files/meta.ts';
import type { VmExit, VmHandle } from '../vmm/vmm.ts';
import { FaultPlan } from './faults.ts';
import { FakeFs } from './fs.ts';
import { Ledger, type LedgerVm } from './ledger.ts';

/**
 * The one fake host every fake driver works on: its files, its VMs, the
 * ledger of what is held and the fault plan. Tests reach in through it to
 * seed templates, crash a VMM or read a guest's memory.
 */
export interface FakeHostOptions {
  root?: string;
  /** Latency of every gated call, in ms (0: none, and no timers at all). */
  latencyMs?: number;
  /** How long a started memory loader runs (0: done at the next status call). */
  memoryLoaderMs?: number;
}

export const GIB = 1024 ** 3;
export const MIB = 1024 ** 2;
export const PAGE = 4096;
/** The VMM snapshot files a restore needs (CH writes exactly these). */
export const VMM_FILES = ['config.json', 'state.json', 'memory-ranges'] as const;
export const ROOTFS_FILE = 'rootfs.ext4';

/** What the fake VMM bakes into config.json and checks again at restore. */
export interface FakeVmConfig {
  vcpus: number;
  memoryMB: number;
  diskPath: string;
  sandboxDir: string;
  tapName: string;
  guestMac: string;
}

export interface FakeLoader {
  state: MemoryLoaderState;
  /** performance.now() at which a running loader is done; NaN: at the next status call. */
  doneAt: number;
  error?: string;
}

export interface FakeVm {
  readonly sandboxId: string;
  readonly handle: VmHandle;
  /** The ledger's entry; its `state` is the VM's state. */
  readonly entry: LedgerVm;
  readonly config: FakeVmConfig;
  readonly slot: number;
  /** The guest's memory as envd `kv` sees it. */
  readonly memory: Map<string, string>;
  /** False after a lazy restore until the memory loader finishes: a snapshot then loses the memory. */
  memoryLoaded: boolean;
  loader: FakeLoader;
  balloonBytes: number;
  envdInit: EnvdInit | null;
  readonly exitListeners: Set<(exit: VmExit) => void>;
}

export class FakeHost {
  readonly root: string;
  readonly ledger = new Ledger();
  readonly faults = new FaultPlan();
  readonly fs: FakeFs;
  readonly vms = new Map<string, FakeVm>();
  /** disk device path → sandbox whose VMM has it open (CH locks its disks). */
  readonly diskUsers = new Map<string, string>();
  /** dm name → origin loop device, for `problems()`. */
  readonly diskOrigins = new Map<string, string>();
  memoryLoaderMs: number;
  usage: GuestUsage = { memUsedBytes: 128 * MIB, diskUsedBytes: 512 * MIB };
  envdVersion = '0.0.0-fake';
  #nextPid = 40_000;
  #nextStaging = 1;

  constructor(opts: FakeHostOptions = {}) {
    this.root = (opts.root ?? '/fake/sandboxd').replace(/\/+$/, '');
    this.fs = new FakeFs(this.root, this.ledger);
    this.memoryLoaderMs = opts.memoryLoaderMs ?? 0;
    if ((opts.latencyMs ?? 0) > 0) this.faults.latency('*', opts.latencyMs ?? 0);
  }

  nextPid(): number {
    return this.#nextPid++;
  }

  nextStaging(): number {
    return this.#nextStaging++;
  }

  templateDir(teamId: string, templateId: string): string {
    return `${this.root}/images/teams/${assertNameId('team', teamId)}/${assertNameId('template', templateId)}`;
  }

  /** A base template: a dir holding rootfs.ext4 only. Returns the dir. */
  addBaseTemplate(teamId: string, templateId: string, opts: { rootfsBytes?: number } = {}): string {
    const dir = this.templateDir(teamId, templateId);
    this.fs.mkdir(dir);
    const size = opts.rootfsBytes ?? GIB;
    this.fs.writeFile(`${dir}/${ROOTFS_FILE}`, { size, allocated: size });
    return dir;
  }

  /**
   * A snapshot template: rootfs.ext4, the VMM files (config.json naming
   * `meta.sandboxDir`, memory holding `memory`) and snapshot.json. A meta that
   * does not parse throws.
   */
  addSnapshotTemplate(
    teamId: string,
    templateId: string,
    meta: SnapshotMeta,
    opts: { memory?: Record<string, string>; rootfsBytes?: number } = {},
  ): string {
    const parsed = SnapshotMetaSchema.parse(meta);
    const dir = this.addBaseTemplate(teamId, templateId, opts);
    const config: FakeVmConfig = {
      vcpus: parsed.vcpus,
      memoryMB: parsed.memoryMB,
      diskPath: `/dev/mapper/template-${templateId}`,
      sandboxDir: parsed.sandboxDir,
      tapName: 'tap0',
      guestMac: '02:fc:00:00:00:05',
    };
    this.writeVmmFiles(dir, config, new Map(Object.entries(opts.memory ?? {})));
    this.fs.writeFile(`${dir}/${SNAPSHOT_META_FILE}`, metaFile(parsed));
    return dir;
  }

  /** Writes CH's three snapshot files into an existing dir. */
  writeVmmFiles(dir: string, config: FakeVmConfig, memory: ReadonlyMap<string, string>): void {
    const text = JSON.stringify(config);
    this.fs.writeFile(`${dir}/config.json`, { size: text.length, allocated: text.length, text });
    this.fs.writeFile(`${dir}/state.json`, { size: 2, allocated: 2, text: '{}' });
    const size = config.memoryMB * MIB;
    this.fs.writeFile(`${dir}/memory-ranges`, { size, allocated: size, memory: new Map(memory) });
  }

  /** Reads config.json of a VMM snapshot dir; undefined when any of the three files is missing. */
  readVmmConfig(dir: string): FakeVmConfig | undefined {
    for (const name of VMM_FILES) if (this.fs.readFile(`${dir}/${name}`) === undefined) return undefined;
    const text = this.fs.readFile(`${dir}/config.json`)?.text;
    return text === undefined ? undefined : (JSON.parse(text) as FakeVmConfig);
  }

  vm(sandboxId: string): FakeVm | undefined {
    return this.vms.get(sandboxId);
  }

  /** The guest memory of a live VM as a plain object, or undefined when there is no VM. */
  readGuest(sandboxId: string): Record<string, string> | undefined {
    const vm = this.vms.get(sandboxId);
    return vm === undefined ? undefined : Object.fromEntries([...vm.memory].sort(([a], [b]) => (a < b ? -1 : 1)));
  }

  writeGuest(sandboxId: string, key: string, value: string): void {
    const vm = this.vms.get(sandboxId);
    if (vm === undefined) throw new SandboxdError('not_found', `no VM for ${sandboxId}`);
    vm.memory.set(key, value);
  }

  /** The guest's memory loader gives up: status 'failed', and the memory stays not faulted in. */
  failMemoryLoader(sandboxId: string, error = 'injected memory loader failure'): void {
    const vm = this.vms.get(sandboxId);
    if (vm === undefined) throw new SandboxdError('not_found', `no VM for ${sandboxId}`);
    vm.loader = { state: 'failed', doneAt: Number.NaN, error };
  }

  /**
   * The VMM process of `sandboxId` dies on its own: it leaves the ledger and
   * its exit listeners are called once. Returns false when there was no VM.
   */
  crashVm(sandboxId: string, exit: { code?: number | null; signal?: string | null } = {}): boolean {
    const vm = this.dropVm(sandboxId);
    if (vm === undefined) return false;
    const info: VmExit = { sandboxId, code: exit.code ?? null, signal: exit.signal === undefined ? 'SIGKILL' : exit.signal };
    const listeners = [...vm.exitListeners];
    vm.exitListeners.clear();
    for (const listener of listeners) listener(info);
    return true;
  }

  /** Forgets a VM (destroy or crash); its listeners stay on the returned record. */
  dropVm(sandboxId: string): FakeVm | undefined {
    const vm = this.vms.get(sandboxId);
    if (vm === undefined) return undefined;
    this.vms.delete(sandboxId);
    this.ledger.vms.delete(sandboxId);
    if (this.diskUsers.get(vm.config.diskPath) === sandboxId) this.diskUsers.delete(vm.config.diskPath);
    return vm;
  }

  /** Contradictions in what is held (see Ledger.problems); empty when sound. */
  problems(): string[] {
    return this.ledger.problems(this.diskOrigins);
  }
}

export function metaFile(meta: SnapshotMeta): { size: number; allocated: number; text: string } {
  const text = JSON.stringify(meta, null, 2);
  return { size: text.length, allocated: text.length, text };
}

/**
 * Finishes a running memory loader whose time is up. A loader with no set
 * duration (memoryLoaderMs 0) finishes only when someone asks for its status
 * (`observed`), so a runtime that snapshots without waiting is caught.
 */
export function settleLoader(vm: FakeVm, observed: boolean): void {
  if (vm.loader.state !== 'running') return;
  const due = Number.isNaN(vm.loader.doneAt) ? observed : performance.now() >= vm.loader.doneAt;
  if (!due) return;
  vm.loader = { state: 'done', doneAt: vm.loader.doneAt };
  vm.memoryLoaded = true;
}
