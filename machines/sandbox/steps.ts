/**
 * Every side effect the sandbox machine can ask for, by name. The machine only
 * names them; actors/ provides their implementations with real or fake drivers.
 */
export const forwardSteps = [
  // create
  'resolveTemplate',
  'acquireLoop',
  'readOriginSize',
  'makeSandboxDir',
  'createDisk',
  'allocateSlot',
  'createNetwork',
  'bootVm',
  'restoreVm',
  'resumeVm',
  'waitEnvd',
  'readEnvdVersion',
  'initEnvd',
  'deflateBalloon',
  'startMemoryLoader',
  // pause, snapshot, flatten
  'waitMemoryLoader',
  'quiesce',
  'probeVm',
  'pauseVm',
  'makeStaging',
  'snapshotVm',
  'punchZeroPages',
  'writePauseMeta',
  'stageCow',
  'swapIn',
  'checkTarget',
  'flattenDisk',
  'flattenPausedDisk',
  'linkMemoryFiles',
  'writeTemplateMeta',
  'promoteTemplate',
  'ensureRunning',
  // resume
  'readPauseMeta',
  'attachDisk',
] as const;

/** Undo steps, in the order a full teardown runs them (reverse of acquisition). */
export const releaseSteps = [
  'removeStaging',
  'stopVm',
  'removeNetwork',
  'releaseSlot',
  'removeDisk',
  'discardCow',
  'releaseLoop',
  'removeSandboxDir',
] as const;

export type ForwardStep = (typeof forwardSteps)[number];
export type ReleaseStep = (typeof releaseSteps)[number];
export type StepName = ForwardStep | ReleaseStep;
export const allSteps: readonly StepName[] = [...forwardSteps, ...releaseSteps];
