import { region, releaseAll, releaseChain, step, type StateConfig } from './build.ts';

/**
 * Create: from a base template (boot) or a snapshot template (restore memory).
 * The disk and the network are provisioned in parallel. Any failure, and a
 * destroy that arrives meanwhile, leads to `rollback`, which undoes in reverse
 * order whatever was acquired.
 */
const cancelTo = 'rollback';

export const creating: StateConfig = {
  description: 'Create: provision disk and network, start the VM, wait for envd',
  tags: ['busy'],
  initial: 'resolveTemplate',
  on: { DESTROY: { actions: ['queueDestroy', 'cancelInFlight'] } },
  states: {
    resolveTemplate: step('resolveTemplate', {
      next: 'provision',
      onError: 'rollback',
      cancelTo,
      description: 'The template must exist; a snapshot template must name its VMM sandbox dir',
    }),
    provision: {
      type: 'parallel',
      description: 'Disk and network do not depend on each other',
      states: {
        disk: region([
          ['acquireLoop', 'Shared read-only loop over the template rootfs (refcounted)'],
          ['readOriginSize', 'CoW size = max(diskSizeMB, origin size)'],
          ['makeSandboxDir', 'sandboxes/{id}/ holds the CoW'],
          ['createDisk', 'Zero-started CoW file and the snapshot device over the loop'],
        ]),
        network: region([
          ['allocateSlot', 'The slot fixes namespace, tap, MAC and host IP; held until destroy'],
          ['createNetwork', "The slot's namespace, veth, tap, routes and NAT"],
        ]),
      },
      onDone: [
        { guard: 'failed', target: 'rollback' },
        { guard: 'destroyRequested', target: 'rollback', actions: 'markCancelled' },
        { guard: 'snapshotTemplate', target: 'restoreVm' },
        { target: 'bootVm' },
      ],
    },
    bootVm: step('bootVm', {
      next: 'waitEnvd',
      onError: 'rollback',
      cancelTo,
      description: 'Start the VMM on the CoW device in the slot network',
    }),
    restoreVm: step('restoreVm', {
      next: 'resumeVm',
      onError: 'rollback',
      cancelTo,
      description: "Restore the template's memory on demand, with its recorded sandbox dir",
    }),
    resumeVm: step('resumeVm', {
      next: 'waitEnvd',
      onError: 'rollback',
      cancelTo,
      description: 'A restored VM comes up paused',
    }),
    waitEnvd: step('waitEnvd', {
      next: 'readEnvdVersion',
      onError: 'rollback',
      cancelTo,
      description: 'Budget: 8 s per GiB of RAM, at least 120 s',
    }),
    readEnvdVersion: step('readEnvdVersion', {
      next: [{ guard: 'snapshotTemplate', target: 'deflateBalloon' }, { target: 'initEnvd' }],
      onError: 'continue',
      cancelTo,
      description: 'Best effort: recorded in the metadata',
    }),
    deflateBalloon: step('deflateBalloon', {
      next: 'initEnvd',
      onError: 'continue',
      cancelTo,
      description: 'Best effort: give a restored guest its memory back',
    }),
    initEnvd: step('initEnvd', {
      next: [{ guard: 'snapshotTemplate', target: 'startMemoryLoader' }, { target: '#sandbox.running' }],
      onError: 'continue',
      cancelTo,
      description: 'Default user and env; a failure only warns',
    }),
    startMemoryLoader: step('startMemoryLoader', {
      next: '#sandbox.running',
      onError: 'continue',
      cancelTo,
      description: 'After init, which resets what the loader arms: touches every page so a later snapshot is whole',
    }),
    rollback: {
      ...releaseChain(releaseAll, 'Undo what was acquired, in reverse order'),
      onDone: [{ guard: 'releaseFailed', target: '#sandbox.error' }, { target: '#sandbox.destroyed' }],
    },
  },
};
