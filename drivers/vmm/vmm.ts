import type { CallOpts } from '../call.ts';
import type { NetworkHandle } from '../network/network.ts';

export type VmState = 'Created' | 'Running' | 'Paused' | 'Shutdown' | 'BreakPoint';

export interface VmSpec {
  sandboxId: string;
  vcpus: number;
  memoryMB: number;
  /** The sandbox's disk device (DiskHandle.devicePath). */
  diskPath: string;
  network: NetworkHandle;
  /** The VMM's per-sandbox working dir; baked into snapshots' config.json, so restores must recreate it. */
  sandboxDir: string;
}

export interface RestoreSpec extends Omit<VmSpec, 'vcpus' | 'memoryMB'> {
  /** A dir holding config.json, state.json and memory-ranges. */
  snapshotDir: string;
  /** On-demand (userfaultfd) memory, where the VMM has it; else a full copy. */
  lazyMemory: boolean;
}

export interface VmHandle {
  sandboxId: string;
  pid: number;
  apiSocket: string;
  /** Base URL of the guest's envd as seen from the host. */
  envdUrl: string;
  /** True when memory was restored on demand and the memory loader must run before a snapshot. */
  lazyMemory: boolean;
}

export interface VmExit {
  sandboxId: string;
  code: number | null;
  signal: string | null;
}

/**
 * The VMM (Cloud Hypervisor or the bundled simulator): one process per sandbox,
 * found by sandbox id. Spawned detached with a pidfile so it outlives an agent restart.
 */
export interface VmmDriver {
  /** Starts the VMM and boots the guest. */
  boot(spec: VmSpec, opts: CallOpts): Promise<VmHandle>;
  /** Starts the VMM restoring a snapshot; the VM comes up Paused. */
  restore(spec: RestoreSpec, opts: CallOpts): Promise<VmHandle>;
  info(sandboxId: string, opts: CallOpts): Promise<{ state: VmState }>;
  pause(sandboxId: string, opts: CallOpts): Promise<void>;
  resume(sandboxId: string, opts: CallOpts): Promise<void>;
  /** Writes the VMM snapshot into `destDir`, an existing empty dir. The VM must be Paused. */
  snapshot(sandboxId: string, destDir: string, opts: CallOpts): Promise<void>;
  /** Sets the balloon's target size; 0 deflates it. */
  setBalloon(sandboxId: string, bytes: number, opts: CallOpts): Promise<void>;
  /** Shuts the VMM down (API, then SIGKILL after a grace period) and reaps it. Idempotent. */
  destroy(sandboxId: string, opts: CallOpts): Promise<void>;
  /**
   * Takes over the VMM a previous agent process left running (crash recovery):
   * its handle when the process is alive and answers, null when it is not.
   */
  adopt(sandboxId: string, network: NetworkHandle, opts: CallOpts): Promise<VmHandle | null>;
  /** Calls `onExit` once if the VMM process exits by itself; returns the unsubscribe. */
  watchExit(sandboxId: string, onExit: (exit: VmExit) => void): () => void;
}
