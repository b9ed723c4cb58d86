import { stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import type { InspectionEvent } from 'xstate';
import { SandboxdError } from '../core/errors.ts';
import { assertNameId, assertSandboxId, newOpId, newSandboxId } from '../core/ids.ts';
import { silentLogger, type Logger } from '../core/log.ts';
import type {
  EnvdDriver, EnvdStreams, ExecRequest, ExecResult, GuestProcess, ProcessSelector, ProcessStartRequest, ProcessStream, PtySize, PtyStartRequest,
} from '../drivers/envd/envd.ts';
import { SYSTEM_TEAM } from '../drivers/files/files.ts';
import type { Drivers } from '../drivers/index.ts';
import type { SandboxContext } from '../machines/sandbox/context.ts';
import type { SandboxEvent } from '../machines/sandbox/events.ts';
import { sandboxMachine } from '../machines/sandbox/machine.ts';
import { inactivityTimer } from '../machines/sandbox/setup.ts';
import type {
  AgentInfo,
  Caller,
  CreateParams,
  ImportTemplateParams,
  LifecycleEvent,
  ProxyTarget,
  SandboxStatus,
  SandboxView,
  StateChange,
  SupervisorApi,
  TemplateView,
  Fence,
} from './api.ts';
import { ConnectionTracker, type TrackedConnection } from './connections.ts';
import { GuestStreamSet, hasStreams } from './guest-streams.ts';
import { LoopRegistry } from './loop-registry.ts';
import { normalizeCreate, normalizeTimeout } from './params.ts';
import { SlotAllocator } from './slots.ts';
import { StepRunner } from './step-runner.ts';
import { deviceNameOf, stepImplementations, type StepImpl } from './steps.ts';
import type { StepName } from '../machines/sandbox/steps.ts';
import { isMetricRange, RANGES } from './metrics/rings.ts';
import type { FlushedMetrics, MetricPoint } from './metrics/sampler.ts';
import { reconcileAll, type ReconcileReport } from './reconcile.ts';
import { pausedFromDisk } from './recovery.ts';
import { SandboxRegistry, type Entry } from './sandbox-registry.ts';
import { shutdownAll } from './shutdown.ts';
import { status, view, type SandboxSnapshot } from './view.ts';

export interface SupervisorOptions {
  drivers: Drivers;
  logger?: Logger;
  /** Network slots on this host. */
  slots?: number;
  /** Default disk size for creates that name none. */
  defaultDiskSizeMB?: number;
  /** The VMM's working dir of a freshly booted sandbox. */
  vmSandboxDir?: (sandboxId: string) => string;
  /** Entering and leaving Running: where the metrics sampler hooks in. */
  onRunning?: (context: SandboxContext) => void;
  onLeaveRunning?: (context: SandboxContext) => void;
  /** Tests: wraps each step implementation (to hold, fail or observe it). */
  wrapStep?: (name: StepName, impl: StepImpl) => StepImpl;
  /** Tests: the upper bound of each step (default: actors/step-runner.ts). */
  stepBoundMs?: (name: StepName) => number;
  /** Tests: the inactivity delay for a timeoutSec (default: timeoutSec seconds). */
  inactivityDelayMs?: (timeoutSec: number) => number;
  /** Where metrics are read from (the MetricsSampler fed through onRunning/onLeaveRunning). */
  metrics?: MetricsSource;
  /**
   * The agent: every command is refused with `starting` until reconcile() has
   * finished (tests that build a bare supervisor leave it off).
   */
  gateUntilReconciled?: boolean;
  /** xstate inspection of every sandbox actor (the live inspector). */
  inspect?: (event: InspectionEvent) => void;
  version?: string;
}

/** What the supervisor reads metrics from; the MetricsSampler fits. */
export interface MetricsSource {
  points(sandboxId: string, range: string): MetricPoint[];
  flush(sandboxId: string): FlushedMetrics;
  /** Whether the sandbox has rings (sampled now or since its last flush). */
  has(sandboxId: string): boolean;
}

/** Bound of one unary guest call (PTY input, process list, kill…). */
const GUEST_CALL_MS = 30_000;
/** Output on an open guest stream keeps the sandbox active, touched this often at most. */
const STREAM_ACTIVITY_EVERY_MS = 1_000;

/**
 * The one place that knows every sandbox: admission, routing of commands to
 * their actors, replies, state notifications, persistence of each transition,
 * shared allocators, shutdown. Sandboxes are root actors held in a map: spawning
 * them as children of one parent costs O(n) per spawn in xstate 5.
 */
export class Supervisor implements SupervisorApi {
  readonly slots: SlotAllocator;
  readonly loops: LoopRegistry;
  readonly connections = new ConnectionTracker();
  readonly guestStreams = new GuestStreamSet();
  readonly #drivers: Drivers;
  readonly #log: Logger;
  readonly #reg: SandboxRegistry;
  readonly #runner: StepRunner;
  readonly #logic: typeof sandboxMachine;
  readonly #opts: SupervisorOptions;
  #draining = false;
  #starting: boolean;
  #reconciled: AgentInfo['reconciled'] = null;
  /** Aborted by halt(): a reconciliation under way must not sweep on behalf of a stopped agent. */
  readonly #halted = new AbortController();

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
    this.#starting = opts.gateUntilReconciled ?? false;
    this.#drivers = opts.drivers;
    this.#log = opts.logger ?? silentLogger;
    this.slots = new SlotAllocator(opts.slots ?? 1024);
    this.loops = new LoopRegistry(opts.drivers.loop);
    this.#reg = new SandboxRegistry({
      store: opts.drivers.store,
      names: {
        disk: (id) => deviceNameOf(opts.drivers.disk, id),
        cow: (id) => opts.drivers.files.cowPath(id),
      },
      vmm: opts.drivers.vmm,
      log: this.#log,
      ...(opts.inspect === undefined ? {} : { inspect: opts.inspect }),
      onGone: (id) => {
        this.connections.forget(id);
        this.#runner.forget(id);
      },
    });
    const impls = stepImplementations({
      drivers: opts.drivers,
      loops: this.loops,
      slots: this.slots,
      connections: this.connections,
      vmSandboxDir: opts.vmSandboxDir ?? ((id) => `/run/sandboxd/${id}`),
      watchVm: (id) => this.#reg.watchVm(id),
      unwatchVm: (id) => this.#reg.unwatchVm(id),
      now: () => new Date(),
    });
    const wrap = opts.wrapStep;
    const steps = wrap === undefined ? impls : (Object.fromEntries(
      Object.entries(impls).map(([name, impl]) => [name, wrap(name as StepName, impl)]),
    ) as typeof impls);
    this.#runner = new StepRunner(steps, (id) => this.#reg.logFor(id), opts.stepBoundMs, {
      beforeStep: (id) => this.#reg.persist(id) ?? 0,
      incarnationOf: (id) => this.#reg.get(id)?.incarnation,
    });
    this.#logic = sandboxMachine.provide({
      actors: this.#runner.actors(),
      actions: {
        cancelInFlight: ({ context }) => this.#runner.cancel(context.id),
        startBackground: ({ context }) => {
          this.connections.reset(context.id);
          opts.onRunning?.(context);
        },
        stopBackground: ({ context }) => {
          this.guestStreams.closeAll(context.id);
          opts.onLeaveRunning?.(context);
        },
      },
      ...(opts.inactivityDelayMs === undefined ? {} : inactivityTimer((context) => opts.inactivityDelayMs!(context.timeoutSec))),
    });
  }

  // ---- commands ----

  async create(caller: Caller, params: CreateParams): Promise<{ sandbox: SandboxView; diskSizeBytes: number }> {
    const teamId = this.#teamFor(caller, params.teamId);
    const input = normalizeCreate(params, teamId, this.#opts.defaultDiskSizeMB ?? 4096);
    this.#admitted();
    if (this.#draining) throw new SandboxdError('draining');
    const id = params.id === undefined ? newSandboxId() : assertSandboxId(params.id);
    if (this.#reg.has(id)) throw new SandboxdError('already_exists', `sandbox ${id} already exists`);
    const opId = newOpId();
    const entry = this.#reg.start(this.#logic, { id, opId, now: Date.now(), ...input });
    await this.#reg.reply(id, entry, opId);
    const snapshot = entry.actor.getSnapshot();
    return { sandbox: view(snapshot, entry.incarnation), diskSizeBytes: snapshot.context.diskSizeBytes ?? 0 };
  }

  get(caller: Caller, id: string): SandboxView {
    const entry = this.#entry(caller, id);
    return view(entry.actor.getSnapshot(), entry.incarnation);
  }

  list(caller: Caller, filter?: { status?: SandboxStatus }): SandboxView[] {
    this.#admitted();
    const out: SandboxView[] = [];
    for (const entry of this.#reg.entries().map(([, e]) => e)) {
      if (caller.teamId !== null && entry.teamId !== caller.teamId) continue;
      const v = view(entry.actor.getSnapshot(), entry.incarnation);
      if (filter?.status === undefined || v.status === filter.status) out.push(v);
    }
    return out;
  }

  async pause(caller: Caller, id: string, fence?: Fence): Promise<SandboxView> {
    const entry = this.#entry(caller, id, fence);
    await this.#reg.command(id, entry, { type: 'PAUSE' });
    return view(entry.actor.getSnapshot(), entry.incarnation);
  }

  async resume(caller: Caller, id: string, opts?: { timeoutSec?: number } & Fence): Promise<SandboxView> {
    const entry = this.#entry(caller, id, opts);
    if (this.#draining) throw new SandboxdError('draining');
    const event: Omit<Extract<SandboxEvent, { type: 'RESUME' }>, 'opId'> = { type: 'RESUME' };
    if (opts?.timeoutSec !== undefined) event.timeoutSec = normalizeTimeout(opts.timeoutSec);
    await this.#reg.command(id, entry, event);
    return view(entry.actor.getSnapshot(), entry.incarnation);
  }

  async destroy(caller: Caller, id: string, fence?: Fence): Promise<void> {
    await this.#reg.command(id, this.#entry(caller, id, fence), { type: 'DESTROY' });
  }

  async snapshot(caller: Caller, id: string, target: { templateId: string; name?: string } & Fence): Promise<TemplateView> {
    const entry = this.#entry(caller, id, target);
    const templateId = assertNameId('template', target.templateId);
    const event: Omit<Extract<SandboxEvent, { type: 'SNAPSHOT' }>, 'opId'> = { type: 'SNAPSHOT', teamId: entry.teamId, templateId };
    if (target.name !== undefined) event.name = target.name;
    await this.#reg.command(id, entry, event);
    return this.#produced(entry);
  }

  async flatten(caller: Caller, id: string, target: { templateId: string } & Fence): Promise<TemplateView> {
    const entry = this.#entry(caller, id, target);
    const templateId = assertNameId('template', target.templateId);
    await this.#reg.command(id, entry, { type: 'FLATTEN', teamId: entry.teamId, templateId });
    return this.#produced(entry);
  }

  ping(caller: Caller, id: string): void {
    this.#touchRunning(this.#entry(caller, id));
  }

  setTimeout(caller: Caller, id: string, timeoutSec: number): void {
    const entry = this.#entry(caller, id);
    entry.actor.send({ type: 'SET_TIMEOUT', opId: newOpId(), timeoutSec: normalizeTimeout(timeoutSec) });
  }

  async exec(caller: Caller, id: string, req: ExecRequest): Promise<ExecResult> {
    const entry = this.#entry(caller, id);
    const vm = this.#touchRunning(entry).res.vm;
    if (vm === null) throw new SandboxdError('not_running');
    const bound = AbortSignal.timeout((req.timeoutMs ?? 60_000) + 5_000);
    return this.#drivers.envd.exec(vm.envdUrl, req, { signal: bound });
  }

  // ---- guest streams: Running only, each call counts as activity ----

  async execStream(caller: Caller, id: string, req: ExecRequest): Promise<ProcessStream> {
    const g = this.#guest(caller, id);
    return this.#adopt(id, await g.envd.execStream(g.url, req, { signal: g.signal }));
  }

  async ptyStart(caller: Caller, id: string, req: PtyStartRequest): Promise<ProcessStream> {
    const g = this.#guest(caller, id);
    return this.#adopt(id, await g.envd.ptyStart(g.url, req, { signal: g.signal }));
  }

  async ptyAttach(caller: Caller, id: string, process: ProcessSelector): Promise<ProcessStream> {
    const g = this.#guest(caller, id);
    return this.#adopt(id, await g.envd.ptyAttach(g.url, process, { signal: g.signal }));
  }

  async ptyInput(caller: Caller, id: string, process: ProcessSelector, data: Buffer): Promise<void> {
    const g = this.#guest(caller, id, GUEST_CALL_MS);
    await g.envd.ptyInput(g.url, process, data, { signal: g.signal });
  }

  async ptyResize(caller: Caller, id: string, process: ProcessSelector, size: PtySize): Promise<void> {
    const g = this.#guest(caller, id, GUEST_CALL_MS);
    await g.envd.ptyResize(g.url, process, size, { signal: g.signal });
  }

  async ptyKill(caller: Caller, id: string, process: ProcessSelector): Promise<void> {
    const g = this.#guest(caller, id, GUEST_CALL_MS);
    await g.envd.ptyKill(g.url, process, { signal: g.signal });
  }

  async processStart(caller: Caller, id: string, req: ProcessStartRequest): Promise<{ pid: number }> {
    const g = this.#guest(caller, id, GUEST_CALL_MS);
    return g.envd.processStart(g.url, req, { signal: g.signal });
  }

  async processConnect(caller: Caller, id: string, process: ProcessSelector): Promise<ProcessStream> {
    const g = this.#guest(caller, id);
    return this.#adopt(id, await g.envd.processConnect(g.url, process, { signal: g.signal }));
  }

  async processList(caller: Caller, id: string): Promise<GuestProcess[]> {
    const g = this.#guest(caller, id, GUEST_CALL_MS);
    return g.envd.processList(g.url, { signal: g.signal });
  }

  async processKill(caller: Caller, id: string, process: ProcessSelector, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const g = this.#guest(caller, id, GUEST_CALL_MS);
    await g.envd.processKill(g.url, process, signal, { signal: g.signal });
  }

  proxyConnect(caller: Caller, id: string, conn: TrackedConnection): ProxyTarget {
    const entry = this.#entry(caller, id);
    const release = this.connections.track(id, conn);
    if (release === null) throw new SandboxdError('draining', `sandbox ${id} is draining its connections for a pause`);
    try {
      const hostIp = this.#touchRunning(entry).res.network?.hostIp;
      if (hostIp === undefined) throw new SandboxdError('not_running', `sandbox ${id} has no network`);
      return { hostIp, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  async importTemplate(caller: Caller, params: ImportTemplateParams): Promise<TemplateView> {
    if (caller.teamId !== null) throw new SandboxdError('invalid_argument', 'template.import is admin only');
    const teamId = assertNameId('team', params.teamId ?? SYSTEM_TEAM);
    const templateId = assertNameId('template', params.templateId);
    const path = params.path;
    if (typeof path !== 'string' || !isAbsolute(path) || path.includes('\0')) {
      throw new SandboxdError('invalid_argument', `template image path must be absolute: ${JSON.stringify(path)}`);
    }
    const st = await stat(path).catch(() => null);
    if (st === null) throw new SandboxdError('not_found', `template image ${path} not found`);
    if (!st.isFile()) throw new SandboxdError('invalid_argument', `template image ${path} is not a regular file`);
    const t = await this.#drivers.templates.importRootfs(teamId, templateId, path, { signal: AbortSignal.timeout(30 * 60_000) });
    return { teamId: t.teamId, templateId: t.templateId, kind: t.kind, sizeBytes: t.sizeBytes };
  }

  metrics(caller: Caller, id: string, range: string): MetricPoint[] {
    if (!isMetricRange(range)) {
      throw new SandboxdError('invalid_range', `invalid range ${JSON.stringify(range)}: use one of ${Object.keys(RANGES).join(', ')}`);
    }
    this.#entry(caller, id);
    const source = this.#opts.metrics;
    // A sandbox that is not running has no rings: no points, not an error.
    return source?.has(id) ? source.points(id, range) : [];
  }

  flushMetrics(caller: Caller, id: string): FlushedMetrics {
    this.#entry(caller, id);
    const source = this.#opts.metrics;
    return source?.has(id) ? source.flush(id) : { points10m: [], points2h: [], points24h: [] };
  }

  async listTemplates(caller: Caller): Promise<TemplateView[]> {
    const all = await this.#drivers.templates.list(caller.teamId, { signal: AbortSignal.timeout(30_000) });
    return all.map((t) => ({ teamId: t.teamId, templateId: t.templateId, kind: t.kind, sizeBytes: t.sizeBytes }));
  }

  async deleteTemplate(caller: Caller, templateId: string): Promise<void> {
    const teamId = this.#teamFor(caller, undefined);
    const id = assertNameId('template', templateId);
    const signal = AbortSignal.timeout(60_000);
    const template = await this.#drivers.templates.resolve(teamId, id, { signal });
    if (template.teamId !== teamId && caller.teamId !== null) throw new SandboxdError('not_found', `template ${id} not found`);
    const users = this.#reg.entries()
      .filter(([, e]) => {
        const c = e.actor.getSnapshot().context;
        return c.template?.dir === template.dir || c.res.originPath === template.rootfsPath;
      })
      .map(([sid]) => sid);
    if (users.length > 0) throw new SandboxdError('template_in_use', `template ${id} is used by ${users.join(', ')}`);
    await this.#drivers.templates.remove(template.teamId, id, { signal });
  }

  info(): AgentInfo {
    const sandboxes: Partial<Record<SandboxStatus, number>> = {};
    for (const entry of this.#reg.entries().map(([, e]) => e)) {
      const s = status(entry.actor.getSnapshot());
      sandboxes[s] = (sandboxes[s] ?? 0) + 1;
    }
    return {
      version: this.#opts.version ?? '0.1.0',
      draining: this.#draining,
      sandboxes,
      capacity: { slots: this.slots.capacity, slotsInUse: this.slots.inUse },
      backends: { disk: this.#drivers.disk.kind, network: this.#drivers.network.kind },
      reconciled: this.#reconciled,
    };
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** lifecycle.md's Shutdown (actors/shutdown.ts); paused sandboxes stay on disk. */
  async shutdown(): Promise<void> {
    this.#draining = true;
    await shutdownAll(this.#reg, this.loops);
    this.halt();
  }

  /**
   * Stops every actor where it stands, running no step, reply or release:
   * what a killed agent leaves of its sandboxes is their records and the host.
   */
  halt(): void {
    this.#draining = true;
    this.#halted.abort(new SandboxdError('cancelled', 'the agent stopped'));
    for (const [, entry] of this.#reg.entries()) entry.actor.stop();
  }

  /**
   * Start-up (lifecycle.md): brings back every sandbox paused on disk, with
   * its slot reserved again, before any command is served. A pause dir whose
   * metadata cannot be read is reported and left alone.
   */
  /** Whether start-up reconciliation has finished (what `/readyz` reports, with draining). */
  get ready(): boolean {
    return !this.#starting;
  }

  /**
   * Start-up reconciliation (actors/reconcile.ts): rebuild every recorded
   * sandbox and take it where the README's table says, bring back unrecorded
   * pause dirs, sweep the host of orphans. Commands wait for it.
   */
  async reconcile(signal: AbortSignal): Promise<ReconcileReport> {
    const report = await reconcileAll(
      {
        reg: this.#reg,
        logic: this.#logic,
        drivers: this.#drivers,
        slots: this.slots,
        loops: this.loops,
        log: this.#log,
        recoverPaused: (s) => this.recoverPaused(s),
      },
      AbortSignal.any([signal, this.#halted.signal]),
    );
    this.#starting = false;
    const swept = Object.fromEntries(Object.entries(report.orphans).map(([kind, names]) => [kind, names.length]));
    const outcomes: Record<string, number> = {};
    for (const o of report.outcomes) outcomes[o.to] = (outcomes[o.to] ?? 0) + 1;
    this.#reconciled = { ms: report.ms, outcomes, orphansRemoved: swept };
    this.#log.info({ sandboxes: report.outcomes.length, pausedFromDisk: report.pausedFromDisk.length, swept, ms: report.ms }, 'reconciled');
    return report;
  }

  async recoverPaused(signal: AbortSignal): Promise<{ recovered: string[]; unreadable: Array<{ sandboxId: string; error: string }> }> {
    const recovered: string[] = [];
    const unreadable: Array<{ sandboxId: string; error: string }> = [];
    for (const found of await this.#drivers.files.listPaused({ signal })) {
      if ('error' in found) {
        this.#reg.logFor(found.sandboxId).warn({ step: 'recover', err: found.error }, 'pause snapshot unreadable; left on disk');
        unreadable.push(found);
        continue;
      }
      const { sandboxId: id, meta } = found;
      if (this.#reg.has(id)) continue;
      if (meta.slot !== undefined) this.slots.reserve(meta.slot, id);
      const { input, snapshot } = pausedFromDisk(id, meta, {
        diskSizeMB: this.#opts.defaultDiskSizeMB ?? 4096,
        cowPath: this.#drivers.files.cowPath(id),
      });
      this.#reg.start(this.#logic, input, snapshot);
      recovered.push(id);
    }
    return { recovered, unreadable };
  }

  onState(listener: (change: StateChange) => void): () => void {
    return this.#reg.onState(listener);
  }

  onEvent(listener: (event: LifecycleEvent) => void): () => void {
    return this.#reg.onEvent(listener);
  }

  /** The raw machine snapshot, for tests and the inspector. */
  snapshotOf(id: string): SandboxSnapshot | undefined {
    return this.#reg.get(id)?.actor.getSnapshot();
  }

  ids(): string[] {
    return this.#reg.entries().map(([id]) => id);
  }

  // ---- internals ----

  #entry(caller: Caller, id: string, fence?: Fence): Entry {
    this.#admitted();
    assertSandboxId(id);
    const entry = this.#reg.get(id);
    // Another team's sandbox is "not found", never "forbidden": ids do not leak.
    if (entry === undefined || (caller.teamId !== null && entry.teamId !== caller.teamId)) {
      throw new SandboxdError('not_found', `sandbox ${id} not found`);
    }
    if (fence?.incarnation !== undefined && fence.incarnation !== entry.incarnation) {
      throw new SandboxdError('stale_incarnation', `sandbox ${id} is incarnation ${entry.incarnation}, not ${fence.incarnation}`);
    }
    return entry;
  }

  #admitted(): void {
    if (this.#starting) throw new SandboxdError('starting');
  }

  #teamFor(caller: Caller, requested: string | undefined): string {
    if (caller.teamId === null) {
      if (requested === undefined) throw new SandboxdError('invalid_argument', 'an admin must name the team');
      return assertNameId('team', requested);
    }
    if (requested !== undefined && requested !== caller.teamId) {
      throw new SandboxdError('invalid_argument', 'teamId may only be given by an admin');
    }
    return caller.teamId;
  }

  #touchRunning(entry: Entry): SandboxContext {
    const snapshot = entry.actor.getSnapshot();
    if (status(snapshot) !== 'running') throw new SandboxdError('not_running');
    const at = Date.now();
    // More activity in the same millisecond changes nothing the machine keeps (the timer runs from lastActiveAt).
    if (at !== snapshot.context.lastActiveAt) entry.actor.send({ type: 'ACTIVITY', at });
    return snapshot.context;
  }

  /** Tracks a guest stream; its output counts as activity (at most one ACTIVITY a second). */
  #adopt(id: string, stream: ProcessStream): ProcessStream {
    let last = 0;
    return this.guestStreams.adopt(id, stream, () => {
      const now = Date.now();
      if (now - last < STREAM_ACTIVITY_EVERY_MS) return;
      last = now;
      const entry = this.#reg.get(id);
      if (entry !== undefined && status(entry.actor.getSnapshot()) === 'running') entry.actor.send({ type: 'ACTIVITY', at: now });
    });
  }

  /** A guest call on a Running sandbox: activity, its envd, and a signal that ends with Running (and `boundMs`). */
  #guest(caller: Caller, id: string, boundMs?: number): { envd: EnvdDriver & EnvdStreams; url: string; signal: AbortSignal } {
    const entry = this.#entry(caller, id);
    const envd = this.#drivers.envd;
    if (!hasStreams(envd)) throw new SandboxdError('operation_failed', 'this agent\'s envd driver has no process streams');
    const vm = this.#touchRunning(entry).res.vm;
    if (vm === null) throw new SandboxdError('not_running');
    const running = this.guestStreams.signal(id);
    const signal = boundMs === undefined ? running : AbortSignal.any([running, AbortSignal.timeout(boundMs)]);
    return { envd, url: vm.envdUrl, signal };
  }

  #produced(entry: Entry): TemplateView {
    const t = entry.actor.getSnapshot().context.producedTemplate;
    if (t === null) throw new SandboxdError('internal', 'operation reported success without a template');
    return { teamId: t.teamId, templateId: t.templateId, kind: t.kind, sizeBytes: t.sizeBytes };
  }

}

export function createSupervisor(opts: SupervisorOptions): Supervisor {
  return new Supervisor(opts);
}
