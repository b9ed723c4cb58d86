import type { SandboxSpec } from '../core/sandbox-spec.ts';
import type { ErrorInfo } from '../core/errors.ts';
import type {
  ExecRequest, ExecResult, GuestProcess, ProcessSelector, ProcessStartRequest, ProcessStream, PtySize, PtyStartRequest,
} from '../drivers/envd/envd.ts';
import type { TrackedConnection } from './connections.ts';
import type { FlushedMetrics, MetricPoint } from './metrics/sampler.ts';

export type { FlushedMetrics, MetricPoint };

/**
 * What the supervisor offers its one client, the server (and tests). All
 * decisions live behind this interface; the server only parses, authenticates
 * and forwards. Every call names its caller: a team sees only its own
 * sandboxes and templates, and another team's id answers not_found.
 */

/** teamId null = an admin token: sees every team. */
export interface Caller {
  teamId: string | null;
}

export interface CreateParams {
  templateId: string;
  /** Admins only: the team to create for (default: the caller's team). */
  teamId?: string;
  id?: string;
  vcpus?: number;
  memoryMB?: number;
  diskSizeMB?: number;
  timeoutSec?: number;
  defaultUser?: string;
  env?: Record<string, string>;
}

export type SandboxStatus =
  | 'creating'
  | 'running'
  | 'pausing'
  | 'paused'
  | 'resuming'
  | 'snapshotting'
  | 'flattening'
  | 'destroying'
  | 'error'
  | 'destroyed';

/** A command may name the incarnation it means; another one is refused (stale_incarnation). */
export interface Fence {
  incarnation?: number;
}

export interface SandboxView extends SandboxSpec {
  /** Changes when the sandbox is re-created under its id or rebuilt by an agent restart. */
  incarnation: number;
  status: SandboxStatus;
  step: string;
  slot: number | null;
  hostIp: string | null;
  createdAt: string;
  lastActiveAt: string;
  metadata: Record<string, string>;
  /** Why the sandbox is in Error, or why its last operation failed. */
  error: ErrorInfo | null;
}

export interface TemplateView {
  teamId: string;
  templateId: string;
  kind: 'base' | 'snapshot';
  sizeBytes: number;
}

/** One state change of one sandbox, including each step of a long operation. */
export interface StateChange {
  sandboxId: string;
  teamId: string;
  status: SandboxStatus;
  step: string;
  at: string;
  /** Per sandbox, strictly increasing. */
  seq: number;
}

export interface LifecycleEvent {
  sandboxId: string;
  teamId: string;
  type: 'auto_paused' | 'stopped' | 'error';
  reason?: string;
}

export interface AgentInfo {
  version: string;
  draining: boolean;
  sandboxes: Partial<Record<SandboxStatus, number>>;
  capacity: { slots: number; slotsInUse: number };
  backends: { disk: string; network: string };
  /** The last start-up reconciliation, once it has run: where sandboxes went, what the sweep removed by kind. */
  reconciled: { ms: number; outcomes: Record<string, number>; orphansRemoved: Record<string, number> } | null;
}

export interface ImportTemplateParams {
  templateId: string;
  /** Absolute path of a rootfs image (a regular file) on the agent's host. */
  path: string;
  /** The owning team (default: system, visible to every team). */
  teamId?: string;
}

/** What the port proxy needs to forward one connection into a sandbox. */
export interface ProxyTarget {
  /** The sandbox's own address: the only host the proxy ever connects to. */
  hostIp: string;
  /** Ends the connection's registration with the sandbox's drain. */
  release: () => void;
}

/**
 * Guest streams: each is Running-only (not_running otherwise), counts as
 * activity, and is closed when the sandbox leaves Running.
 */
export interface GuestStreamApi {
  execStream(caller: Caller, id: string, req: ExecRequest): Promise<ProcessStream>;
  ptyStart(caller: Caller, id: string, req: PtyStartRequest): Promise<ProcessStream>;
  ptyAttach(caller: Caller, id: string, process: ProcessSelector): Promise<ProcessStream>;
  ptyInput(caller: Caller, id: string, process: ProcessSelector, data: Buffer): Promise<void>;
  ptyResize(caller: Caller, id: string, process: ProcessSelector, size: PtySize): Promise<void>;
  ptyKill(caller: Caller, id: string, process: ProcessSelector): Promise<void>;
  processStart(caller: Caller, id: string, req: ProcessStartRequest): Promise<{ pid: number }>;
  processConnect(caller: Caller, id: string, process: ProcessSelector): Promise<ProcessStream>;
  processList(caller: Caller, id: string): Promise<GuestProcess[]>;
  processKill(caller: Caller, id: string, process: ProcessSelector, signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

export interface SupervisorApi extends GuestStreamApi {
  create(caller: Caller, params: CreateParams): Promise<{ sandbox: SandboxView; diskSizeBytes: number }>;
  get(caller: Caller, id: string): SandboxView;
  list(caller: Caller, filter?: { status?: SandboxStatus }): SandboxView[];
  pause(caller: Caller, id: string, fence?: Fence): Promise<SandboxView>;
  resume(caller: Caller, id: string, opts?: { timeoutSec?: number } & Fence): Promise<SandboxView>;
  destroy(caller: Caller, id: string, fence?: Fence): Promise<void>;
  snapshot(caller: Caller, id: string, target: { templateId: string; name?: string } & Fence): Promise<TemplateView>;
  flatten(caller: Caller, id: string, target: { templateId: string } & Fence): Promise<TemplateView>;
  /** Counts as activity; not_running unless Running. */
  ping(caller: Caller, id: string): void;
  setTimeout(caller: Caller, id: string, timeoutSec: number): void;
  exec(caller: Caller, id: string, req: ExecRequest): Promise<ExecResult>;
  /** Points of one range (5m, 10m, 1h, 2h, 6h, 12h, 24h; else invalid_range); empty while not sampled. */
  metrics(caller: Caller, id: string, range: string): MetricPoint[];
  /** All three rings, cleared; sampling stops until the sandbox next enters Running. */
  flushMetrics(caller: Caller, id: string): FlushedMetrics;
  /**
   * Registers a proxied connection with the sandbox's drain and counts it as
   * activity: not_found for another team, draining while a pause drains,
   * not_running unless Running. `conn.close` is the drain's force-close.
   */
  proxyConnect(caller: Caller, id: string, conn: TrackedConnection): ProxyTarget;
  /** Admin only: a host rootfs image becomes a base template. */
  importTemplate(caller: Caller, params: ImportTemplateParams): Promise<TemplateView>;
  listTemplates(caller: Caller): Promise<TemplateView[]>;
  deleteTemplate(caller: Caller, templateId: string): Promise<void>;
  info(): AgentInfo;
  /** Drains, pauses what runs (8 at once), destroys the rest; resolves when done. */
  shutdown(): Promise<void>;
  onState(listener: (change: StateChange) => void): () => void;
  onEvent(listener: (event: LifecycleEvent) => void): () => void;
}
