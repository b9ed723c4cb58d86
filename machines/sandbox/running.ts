import type { StateConfig } from './build.ts';

/**
 * Running: two regions. `inactivity` auto-pauses after timeoutSec without
 * activity (never while the memory loader runs); activity does not reset the
 * timer, which checks when it fires whether activity moved the deadline.
 * `memoryLoader` watches the background loader started after a lazy restore.
 */
export const running: StateConfig = {
  description: 'The VM runs; guest calls are served',
  type: 'parallel',
  entry: ['applyResumeTimeout', 'replyOp', 'endOp', 'startBackground'],
  exit: 'stopBackground',
  always: { guard: 'destroyRequested', target: '#sandbox.destroying' },
  on: {
    PAUSE: { target: '#sandbox.pausing', actions: 'beginOp' },
    SNAPSHOT: { target: '#sandbox.snapshotting', actions: 'beginOp' },
    FLATTEN: { target: '#sandbox.flattening', actions: 'beginOp' },
    RESUME: { actions: 'ack' },
    DESTROY: { target: '#sandbox.destroying', actions: 'queueDestroy' },
    VM_EXITED: { target: '#sandbox.crashed', actions: ['noteVmExited', 'emitCrashed'] },
    ACTIVITY: { actions: 'touch' },
    SET_TIMEOUT: { target: '.inactivity', actions: ['setTimeout', 'ack'] },
    STOP_TIMERS: { target: '.inactivity.off' },
  },
  states: {
    inactivity: {
      initial: 'decide',
      states: {
        decide: { always: [{ guard: 'hasTimeout', target: 'armed' }, { target: 'off' }] },
        armed: {
          description: 'The timer runs for the whole limit; activity only records its time',
          after: {
            inactivity: [
              { guard: 'memoryLoaderRunning', target: 'armed', reenter: true },
              { guard: 'activeWithinLimit', target: 'extended' },
              { target: '#sandbox.pausing', actions: 'beginAutoPause' },
            ],
          },
        },
        extended: {
          description: 'Activity came while armed: the timer runs for what is left of the limit after the last activity',
          after: {
            inactivityLeft: [
              { guard: 'memoryLoaderRunning', target: 'armed' },
              { guard: 'activeWithinLimit', target: 'extended', reenter: true },
              { target: '#sandbox.pausing', actions: 'beginAutoPause' },
            ],
          },
        },
        off: { description: 'timeoutSec 0: no inactivity limit' },
      },
    },
    memoryLoader: {
      initial: 'check',
      states: {
        check: { always: [{ guard: 'memoryLoaderRunning', target: 'loading' }, { target: 'idle' }] },
        loading: {
          invoke: {
            id: 'watchMemoryLoader',
            src: 'waitMemoryLoader',
            input: ({ context }: { context: unknown }) => ({ context }),
            onDone: { target: 'idle', actions: { type: 'record', params: ({ event }: { event: { output: unknown } }) => ({ output: event.output }) } },
            onError: { target: 'idle' },
          },
        },
        idle: {},
      },
    },
  },
};
