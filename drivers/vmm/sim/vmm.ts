import { closeSync } from 'node:fs';
import { apiFailure, ApiError } from './api-error.ts';
import type { RestoreRequest } from './cli.ts';
import { writeBootImage } from './guest-state.ts';
import { GuestMemory, openDirect } from './memory.ts';
import { resizedConfig, type ResizeRequest } from './resize.ts';
import type { SimLog, ViolationLog } from './sim-log.ts';
import { openSnapshot, SnapshotError, writeSnapshot } from './snapshot-files.ts';
import { assignDeviceIds, missingDevicePath, validateVmConfig, type VmConfig } from './vm-config.ts';
import { buildVersion, type VersionTraits } from './version.ts';

// The simulated VMM: CH's two pieces of ownership (a stored config and a live VM,
// reference §1.3) and the VmState transition table. Every action either succeeds
// or throws an ApiError carrying the error chain; the HTTP layer turns it into the
// version's status and body.

export type VmState = 'Created' | 'Running' | 'Paused' | 'Shutdown' | 'BreakPoint';
type LiveState = Exclude<VmState, 'Created'>;

const TRANSITIONS: Record<VmState, readonly VmState[]> = {
  Created: ['Running', 'Paused', 'Shutdown', 'BreakPoint'],
  Running: ['Paused', 'Shutdown', 'BreakPoint'],
  Paused: ['Running', 'Shutdown'],
  Shutdown: ['Running'],
  BreakPoint: ['Created', 'Running'],
};

interface LiveVm {
  state: LiveState;
  memory: GuestMemory;
  /** On-demand restore still has pages in the source file. */
  onDemand: boolean;
  counters: Record<string, Record<string, number>>;
}

export interface VmmOptions {
  traits: VersionTraits;
  log: SimLog;
  violations: ViolationLog;
  noShutdown: boolean;
  /** v53: idle delay before the background uffd prefault starts. */
  prefaultStartMs: number;
}

export type VmmListener = (state: VmState | null) => void;

function notRunning(action: string): ApiError {
  return apiFailure('VmNotRunning', action, 'VM is not running');
}

export class SimVmm {
  private config: VmConfig | null = null;
  private vm: LiveVm | null = null;
  private readonly listeners = new Set<VmmListener>();
  private readonly exitListeners = new Set<(code: number) => void>();
  private prefaultTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: VmmOptions) {}

  onStateChange(listener: VmmListener): void {
    this.listeners.add(listener);
  }

  /** Called when the guest powers off and the VMM must exit (no --no-shutdown). */
  onExitRequest(listener: (code: number) => void): void {
    this.exitListeners.add(listener);
  }

  get state(): VmState | null {
    return this.vm?.state ?? (this.config ? 'Created' : null);
  }

  /** The live guest's RAM, for the stand-in envd. */
  get memory(): GuestMemory | null {
    return this.vm?.memory ?? null;
  }

  get vmConfig(): VmConfig | null {
    return this.config;
  }

  private emit(): void {
    const state = this.vm?.state ?? null;
    for (const l of this.listeners) l(state);
  }

  private transition(to: LiveState, action: string, cause: string): void {
    const vm = this.vm;
    if (!vm) throw notRunning(action);
    if (!TRANSITIONS[vm.state].includes(to)) {
      throw apiFailure('InvalidStateTransition', action, cause, `Invalid VM state transition: ${vm.state} to ${to}`);
    }
    vm.state = to;
    this.emit();
  }

  private dropVm(): void {
    if (!this.vm) return;
    clearTimeout(this.prefaultTimer);
    this.vm.memory.close();
    this.vm = null;
    this.emit();
  }

  ping(): Record<string, unknown> {
    return { ...buildVersion(this.opts.traits.version), pid: process.pid, features: ['kvm', 'io_uring'] };
  }

  info(): Record<string, unknown> {
    const config = this.config;
    if (!config) throw apiFailure('VmNotCreated', 'The VM information could not be retrieved', 'VM is not created');
    const out: Record<string, unknown> = {
      config,
      state: this.state,
      memory_actual_size: config.memory.size - (config.balloon?.size ?? 0),
    };
    if (this.vm) {
      const devices = [...(config.disks ?? []), ...(config.net ?? [])].map((d) => d.id as string);
      if (config.balloon) devices.push('__balloon');
      out.device_tree = Object.fromEntries(devices.map((id) => [id, { id, resources: [], parent: null, children: [] }]));
    }
    return out;
  }

  create(parsed: VmConfig): void {
    const action = 'The VM could not be created';
    if (this.config) throw apiFailure('VmAlreadyCreated', action, 'VM is already created');
    const config = assignDeviceIds(parsed);
    validateVmConfig(config);
    this.config = config;
  }

  /** Create + boot from the command line's payload. */
  createAndBoot(config: VmConfig): void {
    validateVmConfig(config);
    this.config = config;
    this.boot();
  }

  boot(): void {
    const action = 'The VM could not boot';
    if (this.vm) throw apiFailure('VmAlreadyCreated', action, 'VM is already created');
    const config = this.config;
    if (!config) throw apiFailure('VmMissingConfig', action, 'VM is not created (missing configuration)');
    const missing = missingDevicePath(config);
    if (missing) throw apiFailure('Internal', action, 'Error creating VM', missing);
    const memory = new GuestMemory(config.memory.size);
    writeBootImage(memory);
    this.vm = { state: 'Running', memory, onDemand: false, counters: this.freshCounters(config) };
    this.emit();
    this.opts.log.log('info', `VM booted: ${config.cpus.boot_vcpus} vCPU, ${config.memory.size} bytes`);
  }

  private freshCounters(config: VmConfig): LiveVm['counters'] {
    const out: LiveVm['counters'] = {};
    for (const d of config.disks ?? []) out[d.id as string] = { read_bytes: 0, write_bytes: 0, read_ops: 0, write_ops: 0 };
    for (const n of config.net ?? []) out[n.id as string] = { rx_bytes: 0, rx_frames: 0, tx_bytes: 0, tx_frames: 0 };
    return out;
  }

  pause(): void {
    this.transition('Paused', 'The VM could not be paused', 'Cannot pause VM');
  }

  resume(): void {
    this.transition('Running', 'The VM could not be resumed', 'Cannot resume VM');
  }

  shutdown(): void {
    const action = 'The VM could not be shut down';
    if (!this.vm) throw notRunning(action);
    this.transition('Shutdown', action, 'Cannot shut down VM');
    this.dropVm(); // the config is kept: vm.info says Created, vm.boot boots again
  }

  reboot(): void {
    const action = 'The VM could not reboot';
    if (!this.vm) throw notRunning(action);
    if (this.vm.state !== 'Running') throw apiFailure('InvalidStateTransition', action, `Cannot reboot a ${this.vm.state} VM`);
    this.dropVm();
    this.boot();
  }

  delete(): void {
    this.dropVm();
    this.config = null;
  }

  nmi(): void {
    if (!this.vm) throw notRunning('The NMI could not be injected');
  }

  powerButton(): void {
    if (!this.vm) throw notRunning('The power button could not be triggered');
    // the guest answers the ACPI event by powering off, shortly after the API call returns
    setImmediate(() => {
      if (!this.vm) return;
      this.opts.log.log('info', 'guest powered off');
      if (this.opts.noShutdown) this.dropVm();
      else for (const l of this.exitListeners) l(0);
    });
  }

  counters(): Record<string, unknown> {
    if (!this.vm) throw notRunning('The VM counters could not be retrieved');
    return this.vm.counters;
  }

  resize(body: ResizeRequest): void {
    const config = this.config;
    if (!config) throw apiFailure('VmNotCreated', 'The VM could not be resized', 'VM is not created');
    this.config = resizedConfig(config, body, this.vm !== null);
  }

  snapshot(body: { destination_url: string }): void {
    const action = 'The VM could not be snapshotted';
    const vm = this.vm;
    if (!vm) throw notRunning(action);
    if (vm.state !== 'Paused') throw apiFailure('Internal', action, 'Error snapshotting VM', 'Trying to snapshot while VM is running');
    if (vm.onDemand && vm.memory.pendingPages > 0) {
      if (this.opts.traits.restoringGuard) {
        throw apiFailure('VmRestoring', action, 'VM on-demand memory restore is still in progress');
      }
      this.opts.violations.record(
        'snapshot_before_memory_loaded',
        `vm.snapshot to ${body.destination_url} while ${vm.memory.pendingPages} pages are still on demand; they are lost`,
      );
    }
    const config = this.config as VmConfig;
    // only memfd-backed RAM (shared=on, no hugepages) is walked for holes; the rest is written densely
    const sparse = this.opts.traits.sparseMemory && config.memory.shared && !config.memory.hugepages;
    try {
      writeSnapshot(body.destination_url, config, vm.memory, sparse);
    } catch (err) {
      if (err instanceof SnapshotError) throw apiFailure('Internal', action, 'Error snapshotting VM', err.message);
      throw err;
    }
  }

  restore(req: RestoreRequest): void {
    const action = 'The VM could not be restored';
    if (this.config || this.vm) throw apiFailure('VmAlreadyCreated', action, 'VM is already created');
    if (req.memory_restore_mode === 'OnDemand' && req.prefault) {
      throw apiFailure('ConfigValidation', action, 'Invalid restore configuration', 'on-demand memory restore cannot be combined with prefault');
    }
    const onDemand = req.memory_restore_mode === 'OnDemand';
    let snapshot;
    try {
      snapshot = openSnapshot(req.source_url);
    } catch (err) {
      if (err instanceof SnapshotError) throw apiFailure('Internal', action, 'Error restoring VM', err.message);
      throw err;
    }
    const { config, ranges, memoryFd, memoryPath } = snapshot;
    const directFd = openDirect(memoryPath);
    let memory: GuestMemory;
    try {
      memory = onDemand
        ? GuestMemory.onDemand(config.memory.size, memoryFd, ranges, directFd)
        : GuestMemory.copyFrom(config.memory.size, memoryFd, ranges, directFd);
    } catch (err) {
      closeQuietly(memoryFd);
      if (directFd !== undefined) closeQuietly(directFd);
      throw apiFailure('Internal', action, 'Error restoring VM', (err as Error).message);
    }
    if (!onDemand) {
      closeQuietly(memoryFd);
      if (directFd !== undefined) closeQuietly(directFd);
    }
    this.config = config;
    this.vm = { state: 'Paused', memory, onDemand, counters: this.freshCounters(config) };
    this.emit();
    this.opts.log.log('info', `VM restored from ${req.source_url} (${onDemand ? 'OnDemand' : 'Copy'})`);
    if (onDemand && this.opts.traits.restoringGuard) this.schedulePrefault();
    if (req.resume) this.resume();
  }

  /** v53: the uffd handler faults every page in once idle, then logs and stops. */
  private schedulePrefault(): void {
    const started = Date.now();
    const step = (next: number): void => {
      const vm = this.vm;
      if (!vm) return;
      const after = vm.memory.faultRange(next, 8192);
      if (vm.memory.pendingPages === 0) {
        this.opts.log.log('info', `UFFD handler: prefault done in ${Date.now() - started}ms`);
        return;
      }
      this.prefaultTimer = setTimeout(step, 0, after >= vm.memory.pageCount ? 0 : after);
    };
    this.prefaultTimer = setTimeout(step, this.opts.prefaultStartMs, 0);
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // nothing to release
  }
}
