import type { SandboxSpec } from '../../core/sandbox-spec.ts';
import type { ErrorInfo } from '../../core/errors.ts';
import type { SnapshotMeta } from '../../drivers/files/meta.ts';
import type { TemplateInfo } from '../../drivers/files/files.ts';
import type { NetworkHandle } from '../../drivers/network/network.ts';
import type { DiskHandle } from '../../drivers/storage/storage.ts';
import type { VmHandle } from '../../drivers/vmm/vmm.ts';

/**
 * What a sandbox holds on the host right now. A field is non-null exactly while
 * the resource exists, so the release chain knows what to undo and tests can
 * compare it with the drivers' ledger.
 */
export interface Resources {
  /** The template's rootfs the loop is attached to (held = loopDevice set). */
  originPath: string | null;
  loopDevice: string | null;
  originSizeBytes: number | null;
  /** sandboxes/{id}/ exists. */
  sandboxDir: boolean;
  /** The CoW file exists (inside the sandbox dir, or moved into staging during a pause). */
  cowPath: string | null;
  /** The CoW device is attached. */
  disk: DiskHandle | null;
  slot: number | null;
  network: NetworkHandle | null;
  vm: VmHandle | null;
  stagingDir: string | null;
}

export const noResources: Resources = {
  originPath: null,
  loopDevice: null,
  originSizeBytes: null,
  sandboxDir: false,
  cowPath: null,
  disk: null,
  slot: null,
  network: null,
  vm: null,
  stagingDir: null,
};

export type OpKind = 'create' | 'pause' | 'resume' | 'snapshot' | 'flatten';

export interface Op {
  id: string;
  kind: OpKind;
  /** Pause started by the inactivity timer rather than a caller. */
  auto?: boolean;
  /** Snapshot and flatten: where the template goes. */
  target?: { teamId: string; templateId: string; name?: string };
  /** Resume: a new inactivity timeout to apply once running. */
  timeoutSec?: number;
}

/** What the sandbox was made from, read by the first create step. */
export interface TemplateSource {
  kind: 'base' | 'snapshot';
  dir: string;
  rootfsPath: string;
  meta: SnapshotMeta | null;
}

export interface SandboxInput extends SandboxSpec {
  defaultUser?: string;
  env?: Record<string, string>;
  /** The create's operation id; its reply carries it. */
  opId: string;
  now: number;
}

export interface SandboxContext extends Omit<SandboxInput, 'opId' | 'now'> {
  createdAt: number;
  lastActiveAt: number;
  res: Resources;
  template: TemplateSource | null;
  /** The pause snapshot's metadata, read by resume and by a paused snapshot. */
  pauseMeta: SnapshotMeta | null;
  /** The operation in flight; replied to when the sandbox settles. */
  op: Op | null;
  /** Destroy requests waiting for the current operation and the teardown. */
  destroyOps: string[];
  /** Why the current operation is failing; set by the failing step. */
  failure: ErrorInfo | null;
  /** Undo steps that failed; what they should have released is still held. */
  releaseFailures: ErrorInfo[];
  /** Why the sandbox is in Error, or why its last operation failed. */
  lastError: ErrorInfo | null;
  /** Background memory loader after an on-demand restore. */
  memoryLoader: 'none' | 'running' | 'done';
  envdVersion: string | null;
  /** Snapshot and flatten: the template produced. */
  producedTemplate: TemplateInfo | null;
  /** Create: the disk size chosen, max(diskSizeMB, origin size). */
  diskSizeBytes: number | null;
  /** The VMM's sandbox dir, baked into its snapshots; carried from template to sandbox to template. */
  vmSandboxDir: string | null;
  /** The VMM process exited on its own; its handle is kept until stopVm has cleaned up after it. */
  vmExited: boolean;
  /** Set only in a sandbox rebuilt after an agent crash: where `recovering` goes (actors/reconcile.ts decides). */
  recovery: Recovery | null;
}

/** States a sandbox rebuilt from its durable record may be sent to; see the README's reconciliation table. */
export const RECOVERY_TARGETS = [
  'running',
  'paused',
  'error',
  'crashed',
  'destroying',
  'creating.rollback',
  'pausing.rollback',
  'pausing.commit',
  'pausing.commit.swapIn',
  'resuming.rollback',
  'resuming.waitEnvd',
  'snapshotting.rollback',
  'snapshottingPaused.rollback',
  'flattening.rollback',
] as const;
export type RecoveryTarget = (typeof RECOVERY_TARGETS)[number];

export interface Recovery {
  to: RecoveryTarget;
  /** Why, for the log and, when the sandbox is released for it, the `error` lifecycle event. */
  reason: string;
}

export function initialContext(input: SandboxInput): SandboxContext {
  const { opId, now, ...record } = input;
  // The input's fields go last: Node 20's V8 takes a slow path for every key an
  // object literal adds after a spread (40 µs per create here, against 0.6 µs).
  return {
    createdAt: now,
    lastActiveAt: now,
    res: noResources,
    template: null,
    pauseMeta: null,
    op: { id: opId, kind: 'create' },
    destroyOps: [],
    failure: null,
    releaseFailures: [],
    lastError: null,
    memoryLoader: 'none',
    envdVersion: null,
    producedTemplate: null,
    diskSizeBytes: null,
    vmSandboxDir: null,
    vmExited: false,
    recovery: null,
    ...record,
  };
}

/**
 * What a step hands back: the resources it acquired or released (null = released)
 * and any facts it learned. Every step has this one shape so the machine can
 * record any step's outcome the same way.
 */
export interface StepOutput {
  res?: Partial<Resources>;
  template?: TemplateSource;
  pauseMeta?: SnapshotMeta;
  envdVersion?: string;
  memoryLoader?: SandboxContext['memoryLoader'];
  producedTemplate?: TemplateInfo;
  diskSizeBytes?: number;
  vmSandboxDir?: string;
  /** Create from a snapshot template: the template's sizes win. */
  vcpus?: number;
  memoryMB?: number;
}

export interface StepInput {
  context: SandboxContext;
}
