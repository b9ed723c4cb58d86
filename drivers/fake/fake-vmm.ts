import { SandboxdError } from '../../core/errors.ts';
import { assertSandboxId } from '../../core/ids.ts';
import type { CallOpts } from '../call.ts';
import type { NetworkHandle } from '../network/network.ts';
import type { RestoreSpec, VmExit, VmHandle, VmSpec, VmState, VmmDriver } from '../vmm/vmm.ts';
import { type FakeHost, type FakeVm, type FakeVmConfig, MIB, settleLoader } from './host.ts';

/**
 * Cloud Hypervisor as a map of VMs keyed by sandbox id, with CH's state rules
 * (reference §1.3): pause only Running → Paused, resume only Paused → Running,
 * snapshot only Paused and into an existing empty dir, restore comes up
 * Paused. Wrong-state calls fail as CH's 500s do: operation_failed. A call for
 * a sandbox with no VMM process fails with not_found.
 */
export class FakeVmm implements VmmDriver {
  readonly #host: FakeHost;

  constructor(host: FakeHost) {
    this.#host = host;
  }

  async boot(spec: VmSpec, { signal }: CallOpts): Promise<VmHandle> {
    await this.#host.faults.gate('vmm.boot', spec.sandboxId, signal);
    const id = assertSandboxId(spec.sandboxId);
    const existing = this.#host.vms.get(id);
    if (existing !== undefined) return { ...existing.handle };
    for (const [name, v] of [['vcpus', spec.vcpus], ['memoryMB', spec.memoryMB]] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new SandboxdError('invalid_argument', `${name} must be a positive integer`);
    }
    this.#requireDevices(id, spec.diskPath, spec.network.slot);
    const config = this.#config(spec, spec.vcpus, spec.memoryMB);
    return this.#start(id, config, spec.network.slot, 'Running', new Map(), false);
  }

  async restore(spec: RestoreSpec, { signal }: CallOpts): Promise<VmHandle> {
    await this.#host.faults.gate('vmm.restore', spec.sandboxId, signal);
    const id = assertSandboxId(spec.sandboxId);
    const existing = this.#host.vms.get(id);
    if (existing !== undefined) return { ...existing.handle };
    const saved = this.#host.readVmmConfig(spec.snapshotDir);
    if (saved === undefined) {
      throw new SandboxdError('operation_failed', `restore: ${spec.snapshotDir} does not hold config.json, state.json and memory-ranges`);
    }
    // Devices are rebuilt from config.json, so the VMM's sandbox dir must be the recorded one.
    if (saved.sandboxDir !== spec.sandboxDir) {
      throw new SandboxdError('operation_failed', `restore: snapshot expects sandbox dir ${saved.sandboxDir}, got ${spec.sandboxDir}`);
    }
    this.#requireDevices(id, spec.diskPath, spec.network.slot);
    const memory = this.#host.fs.readFile(`${spec.snapshotDir}/memory-ranges`)?.memory ?? new Map<string, string>();
    const config = this.#config(spec, saved.vcpus, saved.memoryMB);
    return this.#start(id, config, spec.network.slot, 'Paused', new Map(memory), spec.lazyMemory);
  }

  async info(sandboxId: string, { signal }: CallOpts): Promise<{ state: VmState }> {
    await this.#host.faults.gate('vmm.info', sandboxId, signal);
    return { state: this.#vm(sandboxId).entry.state };
  }

  async pause(sandboxId: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('vmm.pause', sandboxId, signal);
    const vm = this.#vm(sandboxId);
    if (vm.entry.state !== 'Running') {
      throw new SandboxdError('operation_failed', `vm.pause: invalid state transition from ${vm.entry.state} to Paused`);
    }
    vm.entry.state = 'Paused';
  }

  async resume(sandboxId: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('vmm.resume', sandboxId, signal);
    const vm = this.#vm(sandboxId);
    if (vm.entry.state !== 'Paused' && vm.entry.state !== 'BreakPoint') {
      throw new SandboxdError('operation_failed', `vm.resume: invalid state transition from ${vm.entry.state} to Running`);
    }
    vm.entry.state = 'Running';
  }

  async snapshot(sandboxId: string, destDir: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('vmm.snapshot', sandboxId, signal);
    const vm = this.#vm(sandboxId);
    if (vm.entry.state !== 'Paused') {
      throw new SandboxdError('operation_failed', `vm.snapshot: trying to snapshot while VM is ${vm.entry.state}`);
    }
    const files = this.#host.fs.list(destDir);
    if (files === undefined) throw new SandboxdError('operation_failed', `vm.snapshot: destination ${destDir} is not a directory`);
    if (files.length > 0) throw new SandboxdError('operation_failed', `vm.snapshot: destination ${destDir} is not empty`);
    settleLoader(vm, false);
    // Pages a lazy restore has not faulted in yet are not in this VMM's memory: they are lost.
    this.#host.writeVmmFiles(destDir, vm.config, vm.memoryLoaded ? vm.memory : new Map());
  }

  async setBalloon(sandboxId: string, bytes: number, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('vmm.setBalloon', sandboxId, signal);
    const vm = this.#vm(sandboxId);
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > vm.config.memoryMB * MIB) {
      throw new SandboxdError('invalid_argument', `balloon size ${bytes} outside 0..${vm.config.memoryMB * MIB}`);
    }
    vm.balloonBytes = bytes;
  }

  async destroy(sandboxId: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('vmm.destroy', sandboxId, signal);
    // A deliberate shutdown is not a crash: the exit listeners are not called.
    this.#host.dropVm(assertSandboxId(sandboxId))?.exitListeners.clear();
  }

  async adopt(sandboxId: string, _network: NetworkHandle, { signal }: CallOpts): Promise<VmHandle | null> {
    await this.#host.faults.gate('vmm.adopt', sandboxId, signal);
    const vm = this.#host.vms.get(assertSandboxId(sandboxId));
    return vm === undefined ? null : { ...vm.handle };
  }

  watchExit(sandboxId: string, onExit: (exit: VmExit) => void): () => void {
    const vm = this.#host.vms.get(sandboxId);
    if (vm === undefined) {
      // The process is already gone: report it once, as a pid watcher would.
      let live = true;
      queueMicrotask(() => {
        if (live) onExit({ sandboxId, code: null, signal: null });
      });
      return () => {
        live = false;
      };
    }
    vm.exitListeners.add(onExit);
    return () => {
      vm.exitListeners.delete(onExit);
    };
  }

  #vm(sandboxId: string): FakeVm {
    const vm = this.#host.vms.get(assertSandboxId(sandboxId));
    if (vm === undefined) throw new SandboxdError('not_found', `no VMM process for ${sandboxId}`);
    return vm;
  }

  #config(spec: VmSpec | RestoreSpec, vcpus: number, memoryMB: number): FakeVmConfig {
    return {
      vcpus,
      memoryMB,
      diskPath: spec.diskPath,
      sandboxDir: spec.sandboxDir,
      tapName: spec.network.tapName,
      guestMac: spec.network.guestMac,
    };
  }

  /** The disk device and the slot's network must exist, and no other VMM may hold the disk (CH locks it). */
  #requireDevices(sandboxId: string, diskPath: string, slot: number): void {
    const name = diskPath.startsWith('/dev/mapper/') ? diskPath.slice('/dev/mapper/'.length) : undefined;
    if (name === undefined || this.#host.ledger.disks.get(name)?.devicePath !== diskPath) {
      throw new SandboxdError('operation_failed', `disk ${diskPath} does not exist`);
    }
    const user = this.#host.diskUsers.get(diskPath);
    if (user !== undefined && user !== sandboxId) {
      throw new SandboxdError('operation_failed', `disk ${diskPath} is locked by the VMM of ${user}`);
    }
    if (!this.#host.ledger.networks.has(slot)) throw new SandboxdError('operation_failed', `network of slot ${slot} does not exist`);
  }

  #start(
    id: string,
    config: FakeVmConfig,
    slot: number,
    state: VmState,
    memory: Map<string, string>,
    lazyMemory: boolean,
  ): VmHandle {
    const pid = this.#host.nextPid();
    const handle: VmHandle = {
      sandboxId: id,
      pid,
      apiSocket: `${this.#host.root}/run/${id}.sock`,
      envdUrl: `fake://${id}`,
      lazyMemory,
    };
    const entry = { pid, state };
    const vm: FakeVm = {
      sandboxId: id,
      handle,
      entry,
      config,
      slot,
      memory,
      memoryLoaded: !lazyMemory,
      loader: { state: 'idle', doneAt: Number.NaN },
      balloonBytes: 0,
      envdInit: null,
      exitListeners: new Set(),
    };
    this.#host.vms.set(id, vm);
    this.#host.ledger.vms.set(id, entry);
    this.#host.diskUsers.set(config.diskPath, id);
    return { ...handle };
  }
}
