import type {
  AgentInfo, Caller, CreateParams, ImportTemplateParams, LifecycleEvent, ProxyTarget, SandboxStatus, SandboxView, StateChange, SupervisorApi, TemplateView,
} from '../../../actors/api.ts';
import { isErrorCode, SandboxdError } from '../../../core/errors.ts';
import { newSandboxId } from '../../../core/ids.ts';
import type { ExecRequest, ExecResult, GuestProcess, ProcessStream } from '../../../drivers/envd/envd.ts';

/**
 * A small in-memory SupervisorApi for server tests that must not depend on the
 * runtime: team isolation, the status rules of lifecycle.md, a step
 * notification per phase, and a hook to hold an operation open.
 */
export class FakeSupervisor implements SupervisorApi {
  readonly sandboxes = new Map<string, SandboxView>();
  readonly templates: TemplateView[] = [{ teamId: 'system', templateId: 'base', kind: 'base', sizeBytes: 1 << 30 }];
  draining = false;
  /** When set, every lifecycle operation waits for this promise before finishing. */
  gate: Promise<void> | null = null;
  private readonly stateListeners = new Set<(c: StateChange) => void>();
  private readonly eventListeners = new Set<(e: LifecycleEvent) => void>();
  private seq = new Map<string, number>();

  async create(caller: Caller, p: CreateParams) {
    if (this.draining) throw new SandboxdError('draining');
    const teamId = caller.teamId ?? p.teamId ?? 'admin';
    if (!this.templates.some((t) => t.templateId === p.templateId && (t.teamId === 'system' || t.teamId === teamId))) {
      throw new SandboxdError('not_found', `template ${p.templateId} not found`);
    }
    const id = p.id ?? newSandboxId();
    if (this.sandboxes.has(id)) throw new SandboxdError('already_exists', `sandbox ${id} exists`);
    const now = new Date().toISOString();
    const sb: SandboxView = {
      id, incarnation: 1, teamId, templateId: p.templateId, vcpus: p.vcpus ?? 1, memoryMB: p.memoryMB ?? 512, diskSizeMB: p.diskSizeMB ?? 2048,
      timeoutSec: p.timeoutSec ?? 0, status: 'creating', step: 'creating.start', slot: this.sandboxes.size, hostIp: '10.11.0.1',
      createdAt: now, lastActiveAt: now, metadata: {}, error: null,
    };
    this.sandboxes.set(id, sb);
    await this.walk(sb, ['creating.cow', 'creating.network', 'creating.bootVm', 'creating.waitEnvd'], 'running');
    return { sandbox: { ...sb }, diskSizeBytes: sb.diskSizeMB * 1024 * 1024 };
  }

  get(caller: Caller, id: string): SandboxView {
    return { ...this.own(caller, id) };
  }

  list(caller: Caller, filter?: { status?: SandboxStatus }): SandboxView[] {
    return [...this.sandboxes.values()]
      .filter((s) => caller.teamId === null || s.teamId === caller.teamId)
      .filter((s) => filter?.status === undefined || s.status === filter.status)
      .map((s) => ({ ...s }));
  }

  async pause(caller: Caller, id: string) {
    const sb = this.own(caller, id);
    if (sb.status === 'paused') return { ...sb };
    if (sb.status !== 'running') throw new SandboxdError('not_running');
    await this.walk(sb, ['pausing.quiesce', 'pausing.snapshotVm', 'pausing.release'], 'paused');
    return { ...sb };
  }

  async resume(caller: Caller, id: string, opts?: { timeoutSec?: number }) {
    const sb = this.own(caller, id);
    if (this.draining) throw new SandboxdError('draining');
    if (sb.status === 'running') return { ...sb };
    if (sb.status !== 'paused') throw new SandboxdError('not_paused');
    await this.walk(sb, ['resuming.restoreVm', 'resuming.waitEnvd'], 'running');
    if (opts?.timeoutSec !== undefined) sb.timeoutSec = opts.timeoutSec;
    return { ...sb };
  }

  async destroy(caller: Caller, id: string) {
    const sb = this.own(caller, id);
    await this.walk(sb, ['destroying.release'], 'destroyed');
    this.sandboxes.delete(id);
  }

  async snapshot(caller: Caller, id: string, target: { templateId: string; name?: string }) {
    const sb = this.own(caller, id);
    if (sb.status !== 'running' && sb.status !== 'paused') throw new SandboxdError('not_running');
    if (this.templates.some((t) => t.teamId === sb.teamId && t.templateId === target.templateId)) throw new SandboxdError('already_exists');
    const back = sb.status;
    await this.walk(sb, ['snapshotting.pauseVm', 'snapshotting.flatten', 'snapshotting.promote'], back);
    const t: TemplateView = { teamId: sb.teamId, templateId: target.templateId, kind: 'snapshot', sizeBytes: 4096 };
    this.templates.push(t);
    return t;
  }

  async flatten(caller: Caller, id: string, target: { templateId: string }) {
    const sb = this.own(caller, id);
    if (sb.status !== 'running') throw new SandboxdError('not_running');
    await this.walk(sb, ['flattening.flatten'], 'running');
    const t: TemplateView = { teamId: sb.teamId, templateId: target.templateId, kind: 'base', sizeBytes: 2048 };
    this.templates.push(t);
    return t;
  }

  ping(caller: Caller, id: string) {
    const sb = this.own(caller, id);
    if (sb.status !== 'running') throw new SandboxdError('not_running');
    sb.lastActiveAt = new Date().toISOString();
  }

  setTimeout(caller: Caller, id: string, timeoutSec: number) {
    this.own(caller, id).timeoutSec = timeoutSec;
  }

  async exec(caller: Caller, id: string, req: ExecRequest): Promise<ExecResult> {
    const sb = this.own(caller, id);
    if (sb.status !== 'running') throw new SandboxdError('not_running');
    if (req.cmd === 'crash') throw new Error('a bug with a secret stack');
    if (req.cmd === 'fail') throw new SandboxdError('operation_failed', 'envd exec failed', { step: 'exec' });
    if (req.cmd === 'slow') throw new SandboxdError('timeout', 'exec ran out of time');
    if (req.cmd === 'raise' && isErrorCode(req.args[0])) throw new SandboxdError(req.args[0], `raised ${req.args[0]}`, { step: 'raise' });
    const exitCode = req.cmd === 'exit' ? Number(req.args[0] ?? 0) : 0;
    return { exitCode, stdout: `${req.cmd} ${req.args.join(' ')}\n`, stderr: '' };
  }

  // Guest streams: this fake has no guest; a running sandbox of the caller's team answers operation_failed.
  #noGuest(caller: Caller, id: string): never {
    if (this.own(caller, id).status !== 'running') throw new SandboxdError('not_running');
    throw new SandboxdError('operation_failed', 'the fake supervisor has no guest streams');
  }
  async execStream(caller: Caller, id: string): Promise<ProcessStream> { this.#noGuest(caller, id); }
  async ptyStart(caller: Caller, id: string): Promise<ProcessStream> { this.#noGuest(caller, id); }
  async ptyAttach(caller: Caller, id: string): Promise<ProcessStream> { this.#noGuest(caller, id); }
  async ptyInput(caller: Caller, id: string): Promise<void> { this.#noGuest(caller, id); }
  async ptyResize(caller: Caller, id: string): Promise<void> { this.#noGuest(caller, id); }
  async ptyKill(caller: Caller, id: string): Promise<void> { this.#noGuest(caller, id); }
  async processStart(caller: Caller, id: string): Promise<{ pid: number }> { this.#noGuest(caller, id); }
  async processConnect(caller: Caller, id: string): Promise<ProcessStream> { this.#noGuest(caller, id); }
  async processList(caller: Caller, id: string): Promise<GuestProcess[]> { this.#noGuest(caller, id); }
  async processKill(caller: Caller, id: string): Promise<void> { this.#noGuest(caller, id); }

  proxyConnect(caller: Caller, id: string): ProxyTarget {
    const sb = this.own(caller, id);
    if (sb.status !== 'running') throw new SandboxdError('not_running');
    sb.lastActiveAt = new Date().toISOString();
    return { hostIp: '127.0.0.1', release: () => undefined };
  }

  async importTemplate(caller: Caller, p: ImportTemplateParams): Promise<TemplateView> {
    if (caller.teamId !== null) throw new SandboxdError('invalid_argument', 'template.import is admin only');
    const t: TemplateView = { teamId: p.teamId ?? 'system', templateId: p.templateId, kind: 'base', sizeBytes: 1 };
    this.templates.push(t);
    return t;
  }

  metrics(caller: Caller, id: string, range: string) {
    this.own(caller, id);
    if (!['5m', '10m', '1h', '2h', '6h', '12h', '24h'].includes(range)) throw new SandboxdError('invalid_range');
    return [];
  }

  flushMetrics(caller: Caller, id: string) {
    this.own(caller, id);
    return { points10m: [], points2h: [], points24h: [] };
  }

  async listTemplates(caller: Caller) {
    return this.templates.filter((t) => caller.teamId === null || t.teamId === 'system' || t.teamId === caller.teamId);
  }

  async deleteTemplate(caller: Caller, templateId: string) {
    const i = this.templates.findIndex((t) => t.templateId === templateId && (caller.teamId === null || t.teamId === caller.teamId));
    if (i < 0) throw new SandboxdError('not_found', `template ${templateId} not found`);
    if ([...this.sandboxes.values()].some((s) => s.templateId === templateId)) throw new SandboxdError('template_in_use');
    this.templates.splice(i, 1);
  }

  info(): AgentInfo {
    const sandboxes: Partial<Record<SandboxStatus, number>> = {};
    for (const s of this.sandboxes.values()) sandboxes[s.status] = (sandboxes[s.status] ?? 0) + 1;
    return { version: 'fake', draining: this.draining, sandboxes, capacity: { slots: 64, slotsInUse: this.sandboxes.size }, backends: { disk: 'fake', network: 'fake' }, reconciled: { ms: 1, outcomes: {}, orphansRemoved: { vmm: 1, network: 2 } } };
  }

  async shutdown() {
    this.draining = true;
    for (const sb of this.sandboxes.values()) {
      if (sb.status === 'running') {
        await this.walk(sb, ['pausing.snapshotVm'], 'paused');
        this.emitEvent({ sandboxId: sb.id, teamId: sb.teamId, type: 'auto_paused' });
      }
    }
  }

  onState(l: (c: StateChange) => void) {
    this.stateListeners.add(l);
    return () => void this.stateListeners.delete(l);
  }

  onEvent(l: (e: LifecycleEvent) => void) {
    this.eventListeners.add(l);
    return () => void this.eventListeners.delete(l);
  }

  emitEvent(e: LifecycleEvent) {
    for (const l of this.eventListeners) l(e);
  }

  /** Announces a state change without an operation (tests of notification plumbing). */
  announce(sb: SandboxView, status: SandboxStatus, step: string) {
    sb.status = status;
    sb.step = step;
    const seq = (this.seq.get(sb.id) ?? 0) + 1;
    this.seq.set(sb.id, seq);
    const change: StateChange = { sandboxId: sb.id, teamId: sb.teamId, status, step, at: new Date().toISOString(), seq };
    for (const l of this.stateListeners) l(change);
  }

  private async walk(sb: SandboxView, steps: string[], end: SandboxStatus) {
    for (const step of steps) {
      this.announce(sb, step.split('.')[0] as SandboxStatus, step);
      await new Promise((r) => setImmediate(r));
    }
    if (this.gate !== null) await this.gate;
    this.announce(sb, end, end);
  }

  private own(caller: Caller, id: string): SandboxView {
    const sb = this.sandboxes.get(id);
    if (sb === undefined || (caller.teamId !== null && sb.teamId !== caller.teamId)) {
      throw new SandboxdError('not_found', `sandbox ${id} not found`);
    }
    return sb;
  }
}

/** Wraps a supervisor so a test can see every call that reached it. */
export function recordCalls<T extends object>(target: T): { supervisor: T; calls: string[] } {
  const calls: string[] = [];
  const supervisor = new Proxy(target, {
    get(obj, prop) {
      const value = Reflect.get(obj, prop, obj);
      if (typeof value !== 'function') return value;
      // Bound to the target: class private fields are not reachable through a proxy.
      if (prop === 'onState' || prop === 'onEvent' || prop === 'info') return (value as () => unknown).bind(obj);
      return (...args: unknown[]) => {
        calls.push(String(prop));
        return (value as (...a: unknown[]) => unknown).apply(obj, args);
      };
    },
  });
  return { supervisor, calls };
}
