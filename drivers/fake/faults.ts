import { SandboxdError } from '../../core/errors.ts';

/**
 * Scripted faults and latency for the fake drivers. Every fake method awaits
 * `gate('<driver>.<method>', sandboxId, signal)` before it touches any state,
 * so an injected failure, hang or abort leaves the host exactly as it was.
 */
export interface FaultOptions {
  /** Only calls made for this sandbox match (calls that name no sandbox never do). */
  sandboxId?: string;
  /** How many matching calls the rule acts on; default: every one. */
  times?: number;
  /** Lets the first N matching calls through before the rule acts. */
  after?: number;
}

export type FaultKind = 'fail' | 'hang' | 'delay';

/** Every gated method of the fakes; a typo in a test is a type error. */
export const FAKE_METHODS = [
  'vmm.boot', 'vmm.restore', 'vmm.info', 'vmm.pause', 'vmm.resume', 'vmm.snapshot', 'vmm.setBalloon', 'vmm.destroy', 'vmm.adopt',
  'envd.waitHealthy', 'envd.version', 'envd.init', 'envd.prepareSnapshot', 'envd.startMemoryLoader',
  'envd.memoryLoaderStatus', 'envd.usage', 'envd.exec',
  'loop.attach', 'loop.detach', 'loop.sizeBytes',
  'disk.create', 'disk.attach', 'disk.remove', 'disk.discard', 'disk.flatten', 'disk.flattenDetached',
  'network.create', 'network.remove',
  'files.makeSandboxDir', 'files.removeSandboxDir', 'files.makeStaging', 'files.removeStaging',
  'files.punchZeroPages', 'files.writeMeta', 'files.readMeta', 'files.stageCow', 'files.swapIn',
  'files.linkMemoryFiles', 'files.cleanupOrphans', 'files.listPaused',
  'templates.resolve', 'templates.exists', 'templates.list', 'templates.promote', 'templates.remove',
  'templates.importRootfs',
] as const;

export type FakeMethod = (typeof FAKE_METHODS)[number];

const KNOWN = new Set<string>(FAKE_METHODS);

export interface FaultRule {
  readonly method: FakeMethod;
  readonly kind: FaultKind;
  readonly ms: number;
  readonly sandboxId: string | undefined;
  /** Matching calls seen so far (including skipped ones). */
  seen: number;
  /** Calls the rule acted on. */
  fired: number;
  readonly times: number;
  readonly after: number;
}

export interface GateCall {
  method: string;
  sandboxId: string | undefined;
}

// One settled promise shared by every call that has nothing to wait for, so
// the no-fault path allocates nothing and schedules no timer.
const PASS: Promise<void> = Promise.resolve();

/** The error a cancelled call rejects with: the signal's reason when it is an Error. */
export function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new DOMException('The operation was aborted', 'AbortError');
}

/** Resolves after `ms`, or rejects promptly when `signal` aborts. ms = Infinity never resolves. */
function wait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      reject(abortReason(signal));
    };
    if (Number.isFinite(ms)) {
      timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
    }
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export class FaultPlan {
  /** Calls per method, counted as they reach the gate (also the ones that then fail). */
  readonly calls = new Map<string, number>();
  /** Set to [] to record every gated call in order; null (the default) records nothing. */
  callLog: GateCall[] | null = null;
  #rules: FaultRule[] = [];
  readonly #latency = new Map<string, number>();

  fail(method: FakeMethod, opts?: FaultOptions): FaultRule {
    return this.#add(method, 'fail', 0, opts);
  }

  /** The call never completes until its signal aborts. */
  hang(method: FakeMethod, opts?: FaultOptions): FaultRule {
    return this.#add(method, 'hang', Infinity, opts);
  }

  /** The call waits `ms` (abortable), then proceeds normally. */
  delay(method: FakeMethod, ms: number, opts?: FaultOptions): FaultRule {
    if (!(ms >= 0)) throw new SandboxdError('invalid_argument', `delay must be >= 0 ms, got ${ms}`);
    return this.#add(method, 'delay', ms, opts);
  }

  /** Fixed latency on every call of `method` ('*': every method without its own). 0 removes it. */
  latency(method: FakeMethod | '*', ms: number): void {
    if (method !== '*') this.#check(method);
    if (!(ms >= 0)) throw new SandboxdError('invalid_argument', `latency must be >= 0 ms, got ${ms}`);
    if (ms === 0) this.#latency.delete(method);
    else this.#latency.set(method, ms);
  }

  remove(rule: FaultRule): void {
    this.#rules = this.#rules.filter((r) => r !== rule);
  }

  /** Removes every rule and every latency. */
  clear(): void {
    this.#rules = [];
    this.#latency.clear();
  }

  get rules(): readonly FaultRule[] {
    return this.#rules;
  }

  count(method: FakeMethod): number {
    return this.calls.get(method) ?? 0;
  }

  gate(method: FakeMethod, sandboxId: string | undefined, signal: AbortSignal): Promise<void> {
    this.calls.set(method, (this.calls.get(method) ?? 0) + 1);
    this.callLog?.push({ method, sandboxId });
    // A real driver handed an already-aborted signal fails before doing anything.
    if (signal.aborted) return Promise.reject(abortReason(signal));
    const rule = this.#rules.length === 0 ? undefined : this.#match(method, sandboxId);
    const latency = this.#latency.size === 0 ? 0 : (this.#latency.get(method) ?? this.#latency.get('*') ?? 0);
    if (rule === undefined && latency === 0) return PASS;
    return this.#slowPath(method, rule, latency, signal);
  }

  async #slowPath(method: string, rule: FaultRule | undefined, latency: number, signal: AbortSignal): Promise<void> {
    if (latency > 0) await wait(latency, signal);
    if (rule === undefined) return;
    if (rule.kind === 'fail') throw new SandboxdError('operation_failed', `injected fault: ${method}`);
    await wait(rule.ms, signal);
  }

  /** Counts the call against every rule it matches and returns the first one that acts on it. */
  #match(method: string, sandboxId: string | undefined): FaultRule | undefined {
    let chosen: FaultRule | undefined;
    for (const rule of this.#rules) {
      if (rule.method !== method) continue;
      if (rule.sandboxId !== undefined && rule.sandboxId !== sandboxId) continue;
      rule.seen++;
      if (chosen !== undefined || rule.seen <= rule.after || rule.fired >= rule.times) continue;
      rule.fired++;
      chosen = rule;
    }
    return chosen;
  }

  #add(method: FakeMethod, kind: FaultKind, ms: number, opts: FaultOptions | undefined): FaultRule {
    this.#check(method);
    const times = opts?.times ?? Infinity;
    const after = opts?.after ?? 0;
    if (!(times >= 0) || !(after >= 0)) throw new SandboxdError('invalid_argument', 'times and after must be >= 0');
    const rule: FaultRule = { method, kind, ms, sandboxId: opts?.sandboxId, seen: 0, fired: 0, times, after };
    this.#rules.push(rule);
    return rule;
  }

  #check(method: string): void {
    if (!KNOWN.has(method)) throw new SandboxdError('invalid_argument', `unknown fake method: ${method}`);
  }
}
