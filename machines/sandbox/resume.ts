import { region, releaseChain, releaseRuntime, step, type StateConfig } from './build.ts';

const cancelTo = 'rollback';

/**
 * Resume: rebuild disk and network around the kept CoW and slot, restore the
 * VM from the pause dir. Any failure gives back what this resume acquired and
 * leaves the sandbox Paused, pause dir and slot intact, so it can be retried.
 */
export const resuming: StateConfig = {
  description: 'Resume: re-attach the CoW, rebuild the slot network, restore the VM',
  tags: ['busy'],
  initial: 'readPauseMeta',
  on: { DESTROY: { actions: ['queueDestroy', 'cancelInFlight'] } },
  states: {
    readPauseMeta: step('readPauseMeta', {
      next: 'provision',
      onError: 'rollback',
      cancelTo,
      description: 'snapshot.json names the base rootfs, the CoW and the VMM sandbox dir',
    }),
    provision: {
      type: 'parallel',
      description: 'Disk and network do not depend on each other',
      states: {
        disk: region([
          ['acquireLoop', 'Shared read-only loop over the base rootfs'],
          ['readOriginSize', 'The device spans the origin'],
          ['attachDisk', 'Snapshot device over the existing CoW'],
        ]),
        network: region([['createNetwork', 'The same slot as before the pause: same host IP']]),
      },
      onDone: [
        { guard: 'failed', target: 'rollback' },
        { guard: 'destroyRequested', target: 'rollback', actions: 'markCancelled' },
        { target: 'restoreVm' },
      ],
    },
    restoreVm: step('restoreVm', {
      next: 'resumeVm',
      onError: 'rollback',
      cancelTo,
      description: 'Memory on demand from the pause dir, with the recorded sandbox dir',
    }),
    resumeVm: step('resumeVm', { next: 'waitEnvd', onError: 'rollback', cancelTo, description: 'Unfreeze the vCPUs' }),
    waitEnvd: step('waitEnvd', { next: 'deflateBalloon', onError: 'rollback', cancelTo, description: 'envd answers again' }),
    deflateBalloon: step('deflateBalloon', {
      next: 'initEnvd',
      onError: 'continue',
      cancelTo,
      description: 'Best effort',
    }),
    initEnvd: step('initEnvd', {
      next: 'startMemoryLoader',
      onError: 'continue',
      cancelTo,
      description: 'Clock and defaults; a failure only warns',
    }),
    startMemoryLoader: step('startMemoryLoader', {
      next: '#sandbox.running',
      onError: 'continue',
      cancelTo,
      description: 'After init, which resets what the loader arms',
    }),
    rollback: {
      ...releaseChain(releaseRuntime, 'Give back what this resume acquired; keep CoW, slot and pause dir'),
      onDone: [{ guard: 'releaseFailed', target: '#sandbox.error' }, { target: '#sandbox.paused' }],
    },
  },
};
