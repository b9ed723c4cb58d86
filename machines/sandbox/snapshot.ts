import { releaseChain, step, type StateConfig } from './build.ts';

const cancelTo = 'rollback';

/** Before the VM runs again: drop staging, make sure it runs; one that cannot is Error. */
const resumeRollback: StateConfig = {
  description: 'Drop staging, make sure the VM runs',
  initial: 'cleanup',
  states: {
    cleanup: { ...releaseChain(['removeStaging'], 'Remove the staging dir'), onDone: 'ensureRunning' },
    ensureRunning: step('ensureRunning', {
      next: '#sandbox.running',
      onError: '#sandbox.error',
      description: 'Resume the VM if it is paused',
    }),
  },
};

/**
 * Live snapshot to a template: the sandbox keeps running. The VM is paused
 * only from `pauseVm` to `resumeVm`; every failure before the resume goes
 * through `rollback`, which resumes first.
 */
export const snapshotting: StateConfig = {
  description: 'Snapshot a running sandbox into a new template',
  tags: ['busy'],
  initial: 'checkTarget',
  on: { DESTROY: { actions: ['queueDestroy', 'cancelInFlight'] } },
  states: {
    checkTarget: step('checkTarget', {
      next: 'waitMemoryLoader',
      onError: '#sandbox.running',
      cancelTo: '#sandbox.running',
      description: 'A template is never overwritten',
    }),
    waitMemoryLoader: step('waitMemoryLoader', {
      next: 'quiesce',
      onError: '#sandbox.running',
      cancelTo: '#sandbox.running',
      description: 'The template must hold every page',
    }),
    quiesce: step('quiesce', { next: 'probeVm', onError: 'continue', cancelTo, description: 'Drain connections, envd sync' }),
    probeVm: step('probeVm', { next: 'pauseVm', onError: 'rollback', cancelTo, description: 'The VMM must say Running' }),
    pauseVm: step('pauseVm', { next: 'makeStaging', onError: 'rollback', cancelTo, description: 'Freeze the vCPUs' }),
    makeStaging: step('makeStaging', { next: 'snapshotVm', onError: 'rollback', cancelTo, description: 'Fresh staging dir' }),
    snapshotVm: step('snapshotVm', { next: 'punchZeroPages', onError: 'rollback', cancelTo, description: 'VMM snapshot into staging' }),
    punchZeroPages: step('punchZeroPages', { next: 'flattenDisk', onError: 'continue', cancelTo, description: 'Best effort' }),
    flattenDisk: step('flattenDisk', {
      next: 'writeTemplateMeta',
      onError: 'rollback',
      cancelTo,
      description: 'The disk device into rootfs.ext4, while the VM is frozen',
    }),
    writeTemplateMeta: step('writeTemplateMeta', {
      next: 'resumeVm',
      onError: 'rollback',
      cancelTo,
      description: 'No slot (each launch gets one); the VMM sandbox dir is recorded',
    }),
    resumeVm: step('resumeVm', { next: 'promoteTemplate', onError: 'rollback', description: 'The sandbox runs on' }),
    promoteTemplate: step('promoteTemplate', {
      next: 'initEnvd',
      onError: 'rollback',
      description: 'Staging into the template dir, file by file',
    }),
    initEnvd: step('initEnvd', { next: '#sandbox.running', onError: 'continue', description: 'Refresh the guest clock' }),
    rollback: resumeRollback,
  },
};

/**
 * Snapshot of a paused sandbox: built from its pause dir without reviving the
 * VM. The base rootfs loop is held only for the flatten, and given back on
 * every way out.
 */
export const snapshottingPaused: StateConfig = {
  description: 'Snapshot a paused sandbox into a new template; it stays Paused',
  tags: ['busy'],
  initial: 'checkTarget',
  on: { DESTROY: { actions: ['queueDestroy', 'cancelInFlight'] } },
  states: {
    checkTarget: step('checkTarget', {
      next: 'readPauseMeta',
      onError: '#sandbox.paused',
      cancelTo: '#sandbox.paused',
      description: 'A template is never overwritten',
    }),
    readPauseMeta: step('readPauseMeta', { next: 'acquireLoop', onError: 'rollback', cancelTo, description: 'Base rootfs and CoW' }),
    acquireLoop: step('acquireLoop', { next: 'makeStaging', onError: 'rollback', cancelTo, description: 'The base rootfs, for the flatten' }),
    makeStaging: step('makeStaging', { next: 'flattenPausedDisk', onError: 'rollback', cancelTo, description: 'Fresh staging dir' }),
    flattenPausedDisk: step('flattenPausedDisk', {
      next: 'linkMemoryFiles',
      onError: 'rollback',
      cancelTo,
      description: 'Base + CoW through a temporary device; the CoW is left intact',
    }),
    linkMemoryFiles: step('linkMemoryFiles', {
      next: 'writeTemplateMeta',
      onError: 'rollback',
      cancelTo,
      description: 'Hardlink the VMM memory files (never rewritten in place), or copy sparsely',
    }),
    writeTemplateMeta: step('writeTemplateMeta', { next: 'promoteTemplate', onError: 'rollback', cancelTo, description: 'Template metadata' }),
    promoteTemplate: step('promoteTemplate', { next: 'finish', onError: 'rollback', description: 'Into the template dir' }),
    finish: {
      ...releaseChain(['releaseLoop'], 'Give the base rootfs loop back'),
      onDone: [{ guard: 'releaseFailed', target: '#sandbox.error' }, { target: '#sandbox.paused' }],
    },
    rollback: {
      ...releaseChain(['removeStaging', 'releaseLoop'], 'Remove staging, give the loop back'),
      onDone: [{ guard: 'releaseFailed', target: '#sandbox.error' }, { target: '#sandbox.paused' }],
    },
  },
};

export { resumeRollback };
