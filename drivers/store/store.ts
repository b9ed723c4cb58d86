import type { SandboxSpec } from '../../core/sandbox-spec.ts';

/**
 * The durable record of one sandbox, handed to the store on every transition.
 * Plain JSON: the store knows nothing of the machine that produced it.
 */
export interface SandboxRecord extends SandboxSpec {
  /** Top-level state: creating, running, pausing, paused, resuming, snapshotting, flattening, destroying, error, destroyed. */
  status: string;
  /** Active leaf state(s), e.g. "pausing.snapshotVm". */
  step: string;
  /** The operation in flight, if any. */
  opId: string | null;
  /** Bumped each time the agent (re)starts the actor; a late result of an older incarnation is refused. */
  incarnation: number;
  slot: number | null;
  hostIp: string | null;
  rootfsDevice: string | null;
  /** Resource handles the sandbox holds now (see machines/context.ts). */
  resources: Record<string, unknown>;
  createdAt: string;
  lastActiveAt: string;
  metadata: Record<string, string>;
  /** The machine's state and context as JSON: what start-up reconciliation rebuilds the sandbox from. */
  machine: { value: unknown; context: Record<string, unknown> };
  /** The sandbox's rows of the resource ledger as of this record (actors/ledger-rows.ts). */
  ledger: LedgerRow[];
}

/** One host resource of a sandbox, by kind and host name, and where it stands. */
export interface LedgerRow {
  kind: string;
  name: string;
  state: 'intended' | 'present' | 'releasing';
}

/**
 * Persistence hook of the runtime. Synchronous: a record is saved before the
 * transition is announced and before the step it enters touches the host.
 */
export interface SandboxStore {
  save(record: SandboxRecord): void;
  remove(sandboxId: string): void;
  loadAll(): SandboxRecord[];
  /**
   * Bumped once per agent start (durably where the store is durable): sandbox
   * incarnations are numbered within it, so none is ever handed out twice.
   */
  nextEpoch(): number;
}
