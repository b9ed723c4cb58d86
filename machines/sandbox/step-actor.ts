import type { ActorLogic, ActorSystem, EventObject, PromiseSnapshot } from 'xstate';
import type { StepInput, StepOutput } from './context.ts';

/**
 * The actor logic of one invoked step: a promise, like xstate's `fromPromise`,
 * but the AbortController it makes is the one the step's driver calls get.
 * `fromPromise` makes its own (kept in a WeakMap) that the runner would have to
 * forward into a second one; a create runs a dozen steps, so the second
 * controller, the map and the forwarding listener were a tenth of its CPU.
 */
type StepSnapshot = PromiseSnapshot<StepOutput, StepInput> & {
  /** Aborted when the machine leaves the step (xstate stops the actor). */
  readonly ctl: AbortController | undefined;
};
type StepActorEvent =
  | { type: 'xstate.promise.resolve'; data: StepOutput }
  | { type: 'xstate.promise.reject'; data: unknown }
  | { type: 'xstate.stop' };

export type StepActorLogic = ActorLogic<StepSnapshot, StepActorEvent, StepInput, ActorSystem<any>, EventObject>;

/**
 * Where step actors get their AbortControllers. A controller is handed back
 * when its step settled by itself (never when the step was stopped, which
 * aborts it); `giveBack` decides whether it can serve again.
 */
export interface StepControllers {
  take(): AbortController;
  giveBack(ctl: AbortController): void;
}

/**
 * Why a step's signal aborts when the machine leaves the step: the AbortError
 * an abort without a reason would make, made once. Made per stop, it captured
 * a stack each time, which cost more than the rest of stopping the step. It is
 * not a 'cancelled' error: that is a destroy cancelling the step (StepRunner).
 */
const leftStep = new DOMException('the sandbox left this step', 'AbortError');

const freshControllers: StepControllers = { take: () => new AbortController(), giveBack: () => {} };

export function stepActor(
  run: (input: StepInput, ctl: AbortController) => Promise<StepOutput>,
  controllers: StepControllers = freshControllers,
): StepActorLogic {
  return {
    config: run,
    getInitialSnapshot: (_scope, input) => ({ status: 'active', output: undefined, error: undefined, input, ctl: undefined }),
    start(snapshot, { self }) {
      if (snapshot.status !== 'active') return;
      const ctl = controllers.take();
      // The snapshot is this actor's own object, made by getInitialSnapshot: the
      // controller rides on it so stop can find it without a side table.
      (snapshot as { ctl: AbortController | undefined }).ctl = ctl;
      run(snapshot.input!, ctl).then(
        (data) => {
          if (self.getSnapshot().status === 'active') self.send({ type: 'xstate.promise.resolve', data });
        },
        (data: unknown) => {
          if (self.getSnapshot().status === 'active') self.send({ type: 'xstate.promise.reject', data });
        },
      );
    },
    transition(snapshot, event) {
      if (snapshot.status !== 'active') return snapshot;
      switch (event.type) {
        // Handed back here, not when the promise settles: until this event is
        // processed, a stop would still abort the controller.
        case 'xstate.promise.resolve':
          if (snapshot.ctl !== undefined) controllers.giveBack(snapshot.ctl);
          return { status: 'done', output: event.data, error: undefined, input: undefined, ctl: undefined };
        case 'xstate.promise.reject':
          if (snapshot.ctl !== undefined) controllers.giveBack(snapshot.ctl);
          return { status: 'error', output: undefined, error: event.data, input: undefined, ctl: undefined };
        case 'xstate.stop':
          snapshot.ctl?.abort(leftStep);
          return { status: 'stopped', output: undefined, error: undefined, input: undefined, ctl: undefined };
        default:
          return snapshot;
      }
    },
    getPersistedSnapshot: ({ ctl: _ctl, ...rest }) => rest as StepSnapshot,
    restoreSnapshot: (persisted) => ({ ...(persisted as StepSnapshot), ctl: undefined }),
  };
}
