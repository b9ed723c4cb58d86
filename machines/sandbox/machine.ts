import { initialContext, RECOVERY_TARGETS } from './context.ts';
import { creating } from './create.ts';
import { flattening } from './flatten.ts';
import { pausing } from './pause.ts';
import { resuming } from './resume.ts';
import { running } from './running.ts';
import { sandboxSetup } from './setup.ts';
import { snapshotting, snapshottingPaused } from './snapshot.ts';
import { crashed, destroying } from './teardown.ts';

/**
 * One sandbox's life. Top-level states are the statuses callers see; their
 * children are the steps. A command in a state that has no transition for it
 * is answered by the defaults at the root: Pause and Snapshot need Running,
 * Resume needs Paused. A destroy is always accepted: it cancels a create, lets
 * any other operation settle, then tears everything down.
 */
export const sandboxMachine = sandboxSetup.createMachine({
  id: 'sandbox',
  context: ({ input }) => initialContext(input),
  initial: 'creating',
  on: {
    PAUSE: { actions: { type: 'reject', params: { code: 'not_running' } } },
    SNAPSHOT: { actions: { type: 'reject', params: { code: 'not_running' } } },
    FLATTEN: { actions: { type: 'reject', params: { code: 'not_running' } } },
    RESUME: { actions: { type: 'reject', params: { code: 'not_paused' } } },
    SET_TIMEOUT: { actions: ['setTimeout', 'ack'] },
  },
  states: {
    creating: creating,
    running: running,
    pausing: pausing,
    paused: {
      description: 'VM torn down; CoW, slot and pause snapshot kept',
      entry: ['replyOp', 'endOp'],
      always: { guard: 'destroyRequested', target: 'destroying' },
      on: {
        PAUSE: { actions: 'ack' },
        RESUME: { target: 'resuming', actions: 'beginOp' },
        SNAPSHOT: { target: 'snapshottingPaused', actions: 'beginOp' },
        DESTROY: { target: 'destroying', actions: 'queueDestroy' },
      },
    },
    resuming: resuming,
    snapshotting: snapshotting,
    snapshottingPaused: snapshottingPaused,
    flattening: flattening,
    crashed,
    destroying,
    error: {
      description: 'Holds whatever could not be released or recovered; destroy retries the release',
      entry: ['failFromRelease', 'replyOp', 'endOp'],
      always: { guard: 'destroyRequested', target: 'destroying' },
      on: { DESTROY: { target: 'destroying', actions: 'queueDestroy' } },
    },
    destroyed: { type: 'final', entry: ['replyOp', 'replyDestroys'] },
    recovering: {
      description: 'Rebuilt from its durable record after an agent crash: continue or undo the interrupted operation',
      tags: ['busy'],
      on: {
        RECOVER: RECOVERY_TARGETS.map((to) => ({
          guard: { type: 'recoverTo' as const, params: { to } },
          target: `#sandbox.${to}`,
          actions: to === 'crashed' ? ['emitRecoveryError', 'endRecovery'] : 'endRecovery',
        })),
        DESTROY: { actions: 'queueDestroy' },
      },
    },
  },
});
