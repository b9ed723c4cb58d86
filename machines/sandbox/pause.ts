import { and } from 'xstate';
import { releaseChain, releaseRuntime, step, type StateConfig } from './build.ts';

const cancelTo = 'rollback';
/** A failed auto-pause destroys the sandbox instead of leaving it running idle. */
const toRunning = [
  { guard: 'autoPause', target: '#sandbox.destroying', actions: 'emitStopped' },
  { target: '#sandbox.running' },
];
const toError = [
  { guard: 'autoPause', target: '#sandbox.destroying', actions: 'emitStopped' },
  { target: '#sandbox.error' },
];

/**
 * Pause: snapshot the VM into a fresh staging dir, tear the VM down keeping the
 * CoW and the slot, then swap staging in as the pause dir. Until `commit` a
 * failure resumes the VM; from `commit` on there is no VM to go back to, so a
 * failure ends in Error with the staging dir kept for forensics.
 */
export const pausing: StateConfig = {
  description: 'Pause: snapshot, release the runtime, swap the pause dir in',
  tags: ['busy'],
  initial: 'waitMemoryLoader',
  on: { DESTROY: { actions: ['queueDestroy', 'cancelInFlight'] } },
  states: {
    waitMemoryLoader: step('waitMemoryLoader', {
      next: 'quiesce',
      onError: 'rollback',
      cancelTo,
      description: 'Pages not yet faulted in after a lazy restore would be lost from the snapshot',
    }),
    quiesce: step('quiesce', {
      next: 'probeVm',
      onError: 'continue',
      cancelTo,
      description: 'Drain proxy connections (5 s), then envd sync and drop caches (5 s, best effort)',
    }),
    probeVm: step('probeVm', {
      next: 'pauseVm',
      onError: 'rollback',
      cancelTo,
      description: 'vm.info within 3 s must say Running: a dead VMM fails here, not in a 30 s pause',
    }),
    pauseVm: step('pauseVm', { next: 'makeStaging', onError: 'rollback', cancelTo, description: 'Freeze the vCPUs (30 s bound)' }),
    makeStaging: step('makeStaging', {
      next: 'snapshotVm',
      onError: 'rollback',
      cancelTo,
      description: 'Never write over the previous generation: a resumed VMM still reads it lazily',
    }),
    snapshotVm: step('snapshotVm', { next: 'punchZeroPages', onError: 'rollback', cancelTo, description: 'VMM snapshot into staging' }),
    punchZeroPages: step('punchZeroPages', {
      next: 'writePauseMeta',
      onError: 'continue',
      cancelTo,
      description: 'Best effort: only costs disk space when it fails',
    }),
    writePauseMeta: step('writePauseMeta', {
      next: 'commit',
      onError: 'rollback',
      cancelTo,
      description: 'Without metadata a resume cannot rebuild the sandbox: fatal',
    }),
    commit: {
      description: 'Point of no return: the VM is torn down; failures end in Error, staging kept',
      initial: 'releaseRuntime',
      on: { DESTROY: { actions: 'queueDestroy' } },
      states: {
        releaseRuntime: {
          ...releaseChain(releaseRuntime, 'Stop VM, remove network and disk device, release the loop; keep CoW and slot'),
          onDone: [
            { guard: and(['releaseFailed', 'autoPause']), target: '#sandbox.destroying', actions: 'emitStopped' },
            { guard: 'releaseFailed', target: '#sandbox.error' },
            { target: 'stageCow' },
          ],
        },
        stageCow: step('stageCow', { next: 'swapIn', onError: toError, description: 'Move the CoW into staging' }),
        swapIn: step('swapIn', {
          next: [
            { guard: 'autoPause', target: '#sandbox.paused', actions: 'emitAutoPaused' },
            { target: '#sandbox.paused' },
          ],
          onError: toError,
          description: 'Old dir to trash, staging in, trash removed; old restored if the rename fails',
        }),
      },
    },
    rollback: {
      description: 'Before the point of no return: drop staging, make sure the VM runs',
      initial: 'cleanup',
      states: {
        cleanup: { ...releaseChain(['removeStaging'], 'Remove the staging dir'), onDone: 'ensureRunning' },
        ensureRunning: step('ensureRunning', {
          next: toRunning,
          onError: toError,
          description: 'Resume the VM if it is paused; one that cannot run again is Error',
        }),
      },
    },
  },
};
