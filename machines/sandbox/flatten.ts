import { step, type StateConfig } from './build.ts';
import { resumeRollback } from './snapshot.ts';

const cancelTo = 'rollback';

/** Flatten: publish the running sandbox's disk as a base template (no memory). */
export const flattening: StateConfig = {
  description: "Flatten a running sandbox's disk into a base template",
  tags: ['busy'],
  initial: 'checkTarget',
  on: { DESTROY: { actions: ['queueDestroy', 'cancelInFlight'] } },
  states: {
    checkTarget: step('checkTarget', {
      next: 'quiesce',
      onError: '#sandbox.running',
      cancelTo: '#sandbox.running',
      description: 'A template is never overwritten',
    }),
    quiesce: step('quiesce', {
      next: 'probeVm',
      onError: 'continue',
      cancelTo,
      description: 'envd sync first, or files still in the guest page cache are missing from the image',
    }),
    probeVm: step('probeVm', { next: 'pauseVm', onError: 'rollback', cancelTo, description: 'The VMM must say Running' }),
    pauseVm: step('pauseVm', { next: 'makeStaging', onError: 'rollback', cancelTo, description: 'Consistent disk' }),
    makeStaging: step('makeStaging', { next: 'flattenDisk', onError: 'rollback', cancelTo, description: 'Fresh staging dir' }),
    flattenDisk: step('flattenDisk', { next: 'resumeVm', onError: 'rollback', cancelTo, description: 'Device into rootfs.ext4' }),
    resumeVm: step('resumeVm', { next: 'promoteTemplate', onError: 'rollback', description: 'Always resumed' }),
    promoteTemplate: step('promoteTemplate', { next: '#sandbox.running', onError: 'rollback', description: 'Into the template dir' }),
    rollback: resumeRollback,
  },
};
