import { assign, emit, setup, type ActorLogicFrom } from 'xstate';
import { ErrorCodes, type ErrorCode, type ErrorInfo } from '../../core/errors.ts';
import type { Op, RecoveryTarget, SandboxContext, SandboxInput, StepOutput, Resources } from './context.ts';
import { initialContext } from './context.ts';
import { applyOutput, stepFailure } from './outcome.ts';
import type { SandboxEmitted, SandboxEvent } from './events.ts';
import { stepActor, type StepActorLogic } from './step-actor.ts';
import { allSteps, type ReleaseStep, type StepName } from './steps.ts';

/** A step the runtime did not provide fails loudly instead of doing nothing. */
const unprovided = (name: StepName) =>
  stepActor(async () => {
    throw new Error(`step ${name} is not provided`);
  });

const stepActors = Object.fromEntries(allSteps.map((name) => [name, unprovided(name)])) as Record<StepName, StepActorLogic>;

/**
 * When each undo step runs: while its resource is held, and never from under
 * something still using it (a CoW under a live device, a tap under a live VM).
 * A blocked undo is left for the next teardown, with the sandbox in Error.
 */
const releases: Record<ReleaseStep, (res: Resources) => boolean> = {
  removeStaging: (r) => r.stagingDir !== null,
  stopVm: (r) => r.vm !== null,
  removeNetwork: (r) => r.network !== null && r.vm === null,
  releaseSlot: (r) => r.slot !== null && r.network === null,
  removeDisk: (r) => r.disk !== null && r.vm === null,
  discardCow: (r) => r.cowPath !== null && r.disk === null,
  releaseLoop: (r) => r.loopDevice !== null && r.disk === null,
  removeSandboxDir: (r) => r.sandboxDir && r.disk === null,
};

const reply = (opIds: string[], error: ErrorInfo | null): SandboxEmitted =>
  error === null ? { type: 'reply', opIds, ok: true } : { type: 'reply', opIds, ok: false, error };

/** The operation a command starts. */
function opFor(event: SandboxEvent): Op | null {
  switch (event.type) {
    case 'PAUSE':
      return { id: event.opId, kind: 'pause' };
    case 'RESUME':
      return event.timeoutSec === undefined
        ? { id: event.opId, kind: 'resume' }
        : { id: event.opId, kind: 'resume', timeoutSec: event.timeoutSec };
    case 'SNAPSHOT':
      return {
        id: event.opId,
        kind: 'snapshot',
        target: event.name === undefined
          ? { teamId: event.teamId, templateId: event.templateId }
          : { teamId: event.teamId, templateId: event.templateId, name: event.name },
      };
    case 'FLATTEN':
      return { id: event.opId, kind: 'flatten', target: { teamId: event.teamId, templateId: event.templateId } };
    default:
      return null;
  }
}

/** The inactivity limit of a sandbox in ms: timeoutSec, unless the runtime provides another (tests shorten it). */
export type InactivityLimit = (context: SandboxContext) => number;

/**
 * The inactivity timer's delays and guard, all from one limit. Entering
 * `armed` sets the timer for the whole limit; activity only records its time
 * (lastActiveAt, wall clock); a timer that fires after activity re-arms for
 * what is left of the limit counted from the last activity.
 */
export function inactivityTimer(limitMs: InactivityLimit) {
  const leftMs = (context: SandboxContext) => limitMs(context) - (Date.now() - context.lastActiveAt);
  return {
    delays: {
      inactivity: ({ context }: { context: SandboxContext }) => limitMs(context),
      inactivityLeft: ({ context }: { context: SandboxContext }) => Math.min(limitMs(context), Math.max(0, leftMs(context))),
    },
    guards: {
      /** When the timer fires: the last activity is less than the limit ago (it came after the timer was set). */
      activeWithinLimit: ({ context }: { context: SandboxContext }) => leftMs(context) > 0,
    },
  };
}

const timer = inactivityTimer((context) => context.timeoutSec * 1000);

export const sandboxSetup = setup({
  types: {
    context: {} as SandboxContext,
    events: {} as SandboxEvent,
    input: {} as SandboxInput,
    emitted: {} as SandboxEmitted,
    tags: {} as 'busy',
  },
  actors: stepActors,
  actions: {
    /** Aborts the steps in flight (the runtime holds their AbortControllers). */
    cancelInFlight: () => {},
    /** Entering Running: the runtime starts the metrics sampler and the crash watcher. */
    startBackground: () => {},
    /** Leaving Running: the runtime stops them before anything is torn down. */
    stopBackground: () => {},
    /** Answers a command that needs no work in this state. */
    ack: emit(({ event }) => reply('opId' in event ? [event.opId] : [], null)),
    /** Refuses a command this state does not accept; nothing changes. */
    reject: emit(({ event }, params: { code: ErrorCode }) =>
      reply('opId' in event ? [event.opId] : [], { code: params.code, message: ErrorCodes[params.code].message }),
    ),
    beginOp: assign(({ event }) => ({ op: opFor(event), failure: null, producedTemplate: null })),
    beginAutoPause: assign({ op: { id: 'auto-pause', kind: 'pause' as const, auto: true }, failure: null }),
    setTimeout: assign({ timeoutSec: ({ context, event }) => (event.type === 'SET_TIMEOUT' ? event.timeoutSec : context.timeoutSec) }),
    /** A resume may carry a new inactivity timeout, applied once the sandbox runs. */
    applyResumeTimeout: assign({
      timeoutSec: ({ context }) =>
        context.op?.kind === 'resume' && context.failure === null && context.op.timeoutSec !== undefined
          ? context.op.timeoutSec
          : context.timeoutSec,
    }),
    queueDestroy: assign({
      destroyOps: ({ context, event }) => (event.type === 'DESTROY' ? [...context.destroyOps, event.opId] : context.destroyOps),
    }),
    touch: assign({ lastActiveAt: ({ context, event }) => (event.type === 'ACTIVITY' ? event.at : context.lastActiveAt) }),
    beginRelease: assign({ releaseFailures: [] }),
    /** Records what a step acquired or released. */
    record: assign(({ context }, params: { output: StepOutput }) => applyOutput(context, params.output)),
    /** Records why the operation fails; the first cause wins (later ones are often its echoes). */
    fail: assign(({ context }, params: { step: StepName; error: unknown }) => ({
      failure: context.failure ?? stepFailure(params.step, params.error),
    })),
    /** Entering Error: an operation that got here failed, if not at a step then at an undo. */
    failFromRelease: assign(({ context }) => ({
      failure: context.failure ??
        context.releaseFailures[0] ?? { code: 'internal' as const, message: 'sandbox entered Error without a recorded cause' },
    })),
    /** A destroy cut the operation short. */
    markCancelled: assign(({ context }) => ({
      failure: context.failure ?? { code: 'cancelled' as const, message: 'cancelled by destroy' },
    })),
    /** Records an undo that failed; its resource stays held. */
    failRelease: assign(({ context }, params: { step: ReleaseStep; error: unknown }) => ({
      releaseFailures: [...context.releaseFailures, stepFailure(params.step, params.error)],
    })),
    /** Replies to the operation in flight: failed if a step recorded a failure. */
    replyOp: emit(({ context }) => reply(context.op === null ? [] : [context.op.id], context.failure)),
    /** Forgets the settled operation; its failure stays visible as lastError. */
    endOp: assign(({ context }) => ({ op: null, failure: null, lastError: context.failure ?? context.lastError })),
    /** Replies to every waiting destroy: failed when an undo step failed. */
    replyDestroys: emit(({ context }) => reply(context.destroyOps, context.releaseFailures[0] ?? null)),
    clearDestroys: assign({ destroyOps: [] }),

    emitAutoPaused: emit({ type: 'lifecycle', kind: 'auto_paused' } as SandboxEmitted),
    emitStopped: emit(({ context }) => ({
      type: 'lifecycle' as const,
      kind: 'stopped' as const,
      reason: context.failure?.message ?? 'auto-pause failed',
    })),
    noteVmExited: assign({ vmExited: true }),
    /** Recovery released a sandbox whose VMM did not survive the agent. */
    emitRecoveryError: emit(({ context }) => ({
      type: 'lifecycle' as const,
      kind: 'error' as const,
      reason: context.recovery?.reason ?? 'lost in an agent restart',
    })),
    endRecovery: assign({ recovery: null }),
    emitCrashed: emit(({ event }) => ({
      type: 'lifecycle' as const,
      kind: 'error' as const,
      reason: event.type === 'VM_EXITED' ? event.reason : 'vm exited',
    })),
  },
  guards: {
    destroyRequested: ({ context }) => context.destroyOps.length > 0,
    failed: ({ context }) => context.failure !== null,
    /** A parallel region stops after its current step once the other region failed or a destroy waits. */
    stopProvisioning: ({ context }) => context.failure !== null || context.destroyOps.length > 0,
    releaseFailed: ({ context }) => context.releaseFailures.length > 0,
    autoPause: ({ context }) => context.op?.auto === true,
    snapshotTemplate: ({ context }) => context.template?.kind === 'snapshot',
    hasTimeout: ({ context }) => context.timeoutSec > 0,
    memoryLoaderRunning: ({ context }) => context.memoryLoader === 'running',
    recoverTo: ({ context }, params: { to: RecoveryTarget }) => context.recovery?.to === params.to,
    /** An undo step runs while its resource is held and it has not already failed in this pass. */
    needsRelease: ({ context }, params: { step: ReleaseStep }) =>
      releases[params.step](context.res) && !context.releaseFailures.some((f) => f.step === params.step),
    ...timer.guards,
  },
  delays: timer.delays,
});

export type SandboxLogic = ActorLogicFrom<ReturnType<typeof sandboxSetup.createMachine>>;
export { initialContext };
