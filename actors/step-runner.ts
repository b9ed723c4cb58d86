import { SandboxdError } from '../core/errors.ts';
import { ControllerPool } from './controller-pool.ts';
import { StepDeadlines } from './step-deadlines.ts';
import type { Logger } from '../core/log.ts';
import type { StepInput, StepOutput } from '../machines/sandbox/context.ts';
import { stepActor, type StepActorLogic } from '../machines/sandbox/step-actor.ts';
import { allSteps, type StepName } from '../machines/sandbox/steps.ts';
import type { StepImpl } from './steps.ts';

/**
 * Upper bounds per step. A bound turns a wedged driver call into a step
 * failure the machine knows how to handle, instead of a sandbox stuck forever.
 */
const stepTimeoutMs: Partial<Record<StepName, number>> = {
  probeVm: 3_000,
  quiesce: 12_000,
  pauseVm: 30_000,
  waitEnvd: 30 * 60_000, // the real budget is computed per sandbox inside the step
  waitMemoryLoader: 5 * 60_000,
  snapshotVm: 10 * 60_000,
  flattenDisk: 30 * 60_000,
  flattenPausedDisk: 30 * 60_000,
  linkMemoryFiles: 10 * 60_000,
  restoreVm: 5 * 60_000,
};
const defaultTimeoutMs = 2 * 60_000;

/** What ties a step to its sandbox's durable record and incarnation. */
export interface StepFence {
  /** Makes the record, naming this step, durable before the step acts; returns the sandbox's incarnation. */
  beforeStep(sandboxId: string): number;
  /** The incarnation now registered under the id (undefined once gone). */
  incarnationOf(sandboxId: string): number | undefined;
}

/**
 * Runs the machine's steps: gives each a signal that aborts when the machine
 * leaves the step, when the step's bound runs out, or when the sandbox's
 * in-flight steps are cancelled (a destroy during create), and logs each with
 * the sandbox id and the step.
 */
export class StepRunner {
  readonly #inFlight = new Map<string, Set<AbortController>>();
  readonly #controllers = new ControllerPool();
  readonly #deadlines = new StepDeadlines();

  constructor(
    private readonly impls: Record<StepName, StepImpl>,
    private readonly logFor: (sandboxId: string) => Logger,
    private readonly boundOf: (name: StepName) => number = (name) => stepTimeoutMs[name] ?? defaultTimeoutMs,
    private readonly fence: StepFence = { beforeStep: () => 0, incarnationOf: () => 0 },
  ) {}

  /** The step actors to `provide()` to the sandbox machine. */
  actors(): Record<StepName, StepActorLogic> {
    return Object.fromEntries(allSteps.map((name) => [name, stepActor((input, ctl) => this.run(name, input, ctl), this.#controllers)])) as Record<
      StepName,
      StepActorLogic
    >;
  }

  /** The sandbox is gone: its (empty) set of steps in flight goes too. */
  forget(sandboxId: string): void {
    this.#inFlight.delete(sandboxId);
  }

  cancel(sandboxId: string): void {
    const set = this.#inFlight.get(sandboxId);
    if (set === undefined) return;
    for (const ctl of set) ctl.abort(new SandboxdError('cancelled', 'cancelled by destroy'));
  }

  inFlight(sandboxId: string): number {
    return this.#inFlight.get(sandboxId)?.size ?? 0;
  }

  /** `ctl` is the step actor's: it aborts when the machine leaves the step. */
  async run(name: StepName, input: StepInput, ctl: AbortController): Promise<StepOutput> {
    const { context } = input;
    const incarnation = this.fence.beforeStep(context.id);
    let set = this.#inFlight.get(context.id);
    if (set === undefined) this.#inFlight.set(context.id, (set = new Set()));
    set.add(ctl);
    const deadline = this.#deadlines.add(ctl, name, this.boundOf(name));
    const started = performance.now();
    try {
      const output = (await this.impls[name](context, ctl.signal)) ?? {};
      if (this.fence.incarnationOf(context.id) !== incarnation) {
        throw new SandboxdError('stale_incarnation', `${name} finished for an earlier incarnation of ${context.id}; result refused`);
      }
      const log = this.logFor(context.id);
      if (log.isLevelEnabled('debug')) log.debug({ step: name, ms: Math.round(performance.now() - started) }, 'step done');
      return output;
    } catch (err) {
      // A driver that gave up because of the abort reports the abort's reason, not its own wording.
      const reason = ctl.signal.aborted ? ctl.signal.reason : err;
      this.logFor(context.id).warn({ step: name, err: reason instanceof Error ? reason.message : String(reason) }, 'step failed');
      throw reason;
    } finally {
      this.#deadlines.remove(deadline);
      // The set stays until forget(): a sandbox runs one step after another, and a map entry made and dropped per step was 2% of a create.
      set.delete(ctl);
    }
  }
}
