import type { AnyStateNodeConfig } from 'xstate';
import type { StepOutput } from './context.ts';
import { releaseSteps, type ForwardStep, type ReleaseStep, type StepName } from './steps.ts';

// Builders for the two shapes every operation is made of: a chain of forward
// steps, and the release chain that undoes what is held. They keep each
// operation's file a plain list of its steps.
//
// Their configs are checked by the model-based tests rather than by
// TypeScript: xstate cannot type an invoke whose src is a union of names.
export type StateConfig = AnyStateNodeConfig;
type StepEvent = { event: { output?: StepOutput; error?: unknown } };

const record = { type: 'record', params: ({ event }: StepEvent) => ({ output: event.output }) };
const fail = (type: 'fail' | 'failRelease', step: StepName) => ({
  type,
  params: ({ event }: StepEvent) => ({ step, error: event.error }),
});

/** A target, or guarded targets tried in order (the last without a guard). */
export type Route = string | Array<{ guard?: string; target: string; actions?: string | string[] }>;

const withActions = (route: Route, actions: unknown) =>
  (typeof route === 'string' ? [{ target: route }] : route).map((r) => ({
    ...r,
    actions: [...[actions].flat(), ...[r.actions ?? []].flat()],
  }));

export interface StepOptions {
  /** Where to go when the step succeeds. */
  next: Route;
  /** Where a failure goes; 'continue' marks a best-effort step whose failure is only logged. */
  onError: Route | 'continue';
  /** Where to go instead of `next` once a destroy is waiting (the operation's rollback). */
  cancelTo?: string;
  /** In a parallel region: where to stop once a destroy waits or the other region failed. */
  stopTo?: string;
  description: string;
}

export function step(src: ForwardStep, opts: StepOptions): StateConfig {
  const cancel: Exclude<Route, string> =
    opts.cancelTo !== undefined
      ? [{ guard: 'destroyRequested', target: opts.cancelTo, actions: 'markCancelled' }]
      : opts.stopTo !== undefined
        ? [{ guard: 'stopProvisioning', target: opts.stopTo }]
        : [];
  return {
    description: opts.description,
    invoke: {
      id: src,
      src,
      input: ({ context }: { context: unknown }) => ({ context }),
      onDone: [...withActions(cancel, record), ...withActions(opts.next, record)],
      onError:
        opts.onError === 'continue'
          ? [...cancel, ...withActions(opts.next, [])]
          : withActions(opts.onError, fail('fail', src)),
    },
  };
}

/**
 * One region of a parallel provisioning state: its steps in order, ending in
 * `done`, or in `failed` at the first failure. Once the other region failed or
 * a destroy waits, it stops after its current step: nothing is torn out from
 * under a step in flight.
 */
export function region(steps: ReadonlyArray<readonly [ForwardStep, string]>): StateConfig {
  const states: Record<string, StateConfig> = { done: { type: 'final' }, failed: { type: 'final' } };
  steps.forEach(([name, description], i) => {
    states[name] = step(name, { next: steps[i + 1]?.[0] ?? 'done', onError: 'failed', stopTo: 'failed', description });
  });
  return { initial: steps[0]![0], states };
}

/**
 * Undoes, in `order`, each resource that is still held. A failed undo is recorded
 * and the chain goes on with the rest; the enclosing state's `onDone` sees
 * `releaseFailed`. Reaches its final state `released` either way.
 */
export function releaseChain(order: readonly ReleaseStep[], description: string): StateConfig {
  const states: Record<string, StateConfig> = {
    route: {
      always: [
        ...order.map((s) => ({ guard: { type: 'needsRelease', params: { step: s } }, target: s })),
        { target: 'released' },
      ],
    },
    released: { type: 'final' },
  };
  for (const s of order) {
    states[s] = {
      invoke: {
        id: s,
        src: s,
        input: ({ context }: { context: unknown }) => ({ context }),
        onDone: { target: 'route', actions: record },
        onError: { target: 'route', actions: fail('failRelease', s) },
      },
    };
  }
  return { description, initial: 'route', entry: 'beginRelease', states };
}

/** Full teardown: everything, staging first (it may hold the CoW), the sandbox dir last. */
export const releaseAll: readonly ReleaseStep[] = releaseSteps;

/** The VM's runtime only: what a pause or a failed resume gives back, keeping slot, CoW and dir. */
export const releaseRuntime: readonly ReleaseStep[] = ['stopVm', 'removeNetwork', 'removeDisk', 'releaseLoop'];
