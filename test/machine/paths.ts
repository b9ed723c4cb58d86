import type { AnyEventObject } from 'xstate';
import { getShortestPaths, getSimplePaths } from 'xstate/graph';
import type { SandboxSnapshot } from '../../actors/view.ts';
import type { StepOutput } from '../../machines/sandbox/context.ts';
import { sandboxMachine } from '../../machines/sandbox/machine.ts';
import { allSteps, type StepName } from '../../machines/sandbox/steps.ts';

// Paths through the real sandbox machine, found by xstate/graph. Step
// completions and failures are events of the traversal, so every path says,
// step by step, which step succeeds and which fails.

const disk = { name: 'sbxd-sb-model', devicePath: '/dev/mapper/sbxd-sb-model', cowPath: '/d/sandboxes/sb-model/rootfs.cow' };
const network = { slot: 0, namespace: 'ns', tapName: 'tap0', guestMac: 'm', guestIp: 'g', hostIp: 'h' };
const vm = { sandboxId: 'sb-model', pid: 1, apiSocket: 's', envdUrl: 'fake://sb-model', lazyMemory: true };
const meta = {
  version: 1 as const,
  kind: 'pause' as const,
  teamId: 't',
  templateId: 'base',
  vcpus: 1,
  memoryMB: 512,
  timeoutSec: 0,
  baseTemplatePath: '/b',
  sandboxDir: '/v',
  createdAt: '',
};

/** What each step reports on success, close enough to the real one for every guard the machine has. */
export function cannedOutput(step: StepName, s: SandboxSnapshot, templateKind: 'base' | 'snapshot'): StepOutput {
  const staging = s.context.res.stagingDir;
  switch (step) {
    case 'resolveTemplate':
      return { template: { kind: templateKind, dir: '/t', rootfsPath: '/t/rootfs.ext4', meta: null }, res: { originPath: '/t/rootfs.ext4' } };
    case 'acquireLoop':
      return { res: { loopDevice: '/dev/loop0' } };
    case 'readOriginSize':
      return { res: { originSizeBytes: 1 } };
    case 'makeSandboxDir':
      return { res: { sandboxDir: true } };
    case 'createDisk':
      return { res: { disk, cowPath: disk.cowPath } };
    case 'attachDisk':
      return { res: { disk } };
    case 'allocateSlot':
      return { res: { slot: 0 } };
    case 'createNetwork':
      return { res: { network } };
    case 'bootVm':
      return { res: { vm: { ...vm, lazyMemory: false } } };
    case 'restoreVm':
      return { res: { vm } };
    case 'startMemoryLoader':
      return { memoryLoader: s.context.res.vm?.lazyMemory ? 'running' : 'none' };
    case 'waitMemoryLoader':
      return s.context.memoryLoader === 'running' ? { memoryLoader: 'done' } : {};
    case 'makeStaging':
      return { res: { stagingDir: '/d/sandboxes/sb-model.staging-1' } };
    case 'stageCow':
      return { res: { cowPath: `${staging}/rootfs.cow` } };
    case 'swapIn':
      return { res: { stagingDir: null, cowPath: disk.cowPath } };
    case 'readPauseMeta':
      return { pauseMeta: meta, res: { originPath: '/t/rootfs.ext4' } };
    case 'promoteTemplate':
      return { res: { stagingDir: null } };
    case 'removeStaging':
      return { res: s.context.res.cowPath?.startsWith(`${staging}/`) ? { stagingDir: null, cowPath: null } : { stagingDir: null } };
    case 'stopVm':
      return { res: { vm: null } };
    case 'removeNetwork':
      return { res: { network: null } };
    case 'releaseSlot':
      return { res: { slot: null } };
    case 'removeDisk':
      return { res: { disk: null } };
    case 'discardCow':
      return { res: { cowPath: null } };
    case 'releaseLoop':
      return { res: { loopDevice: null } };
    case 'removeSandboxDir':
      return { res: { sandboxDir: false, cowPath: null } };
    default:
      return {};
  }
}

const stepSet = new Set<string>(allSteps);
/** The step an invoke runs: the watcher in Running is the memory loader wait. */
export const stepOfInvoke = (id: string): StepName | undefined =>
  id === 'watchMemoryLoader' ? 'waitMemoryLoader' : stepSet.has(id) ? (id as StepName) : undefined;

const stable = new Set(['running', 'paused', 'error']);
const topOf = (s: SandboxSnapshot) => (typeof s.value === 'string' ? s.value : Object.keys(s.value)[0]!);

function events(s: SandboxSnapshot): AnyEventObject[] {
  const out: AnyEventObject[] = [];
  for (const id of Object.keys(s.children)) {
    const step = stepOfInvoke(id);
    if (step === undefined) continue;
    const kinds: Array<'base' | 'snapshot'> = step === 'resolveTemplate' ? ['base', 'snapshot'] : ['base'];
    for (const kind of kinds) out.push({ type: `xstate.done.actor.${id}`, output: cannedOutput(step, s, kind), actorId: id });
    out.push({ type: `xstate.error.actor.${id}`, error: { message: 'injected' }, actorId: id });
  }
  const top = topOf(s);
  if (stable.has(top)) {
    out.push({ type: 'PAUSE', opId: 'p' }, { type: 'RESUME', opId: 'r' });
    out.push({ type: 'SNAPSHOT', opId: 's', teamId: 'acme', templateId: 'model-tmpl' });
    out.push({ type: 'FLATTEN', opId: 'f', teamId: 'acme', templateId: 'model-flat' });
  }
  if (top === 'running') out.push({ type: 'VM_EXITED', reason: 'killed' });
  out.push({ type: 'DESTROY', opId: 'd' });
  return out;
}

/** Machine state plus the context facts the guards read: two states differ when their futures can. */
export function serialize(s: SandboxSnapshot): string {
  const c = s.context;
  const r = c.res;
  return JSON.stringify([
    s.status,
    s.value,
    [r.loopDevice, r.disk, r.cowPath, r.slot, r.network, r.vm, r.stagingDir].map((x) => x !== null),
    r.sandboxDir,
    c.destroyOps.length > 0,
    c.failure !== null,
    c.releaseFailures.length > 0,
    c.template?.kind,
    c.memoryLoader === 'running',
    c.op?.auto === true,
  ]);
}

const input = {
  id: 'sb-model',
  teamId: 'acme',
  templateId: 'base',
  vcpus: 1,
  memoryMB: 512,
  diskSizeMB: 64,
  timeoutSec: 0,
  opId: 'create',
  now: 0,
};

/** Every simple path through one operation, with step completions and failures as the only events. */
export function operationPaths(fromCommands: AnyEventObject[], inOperation: (s: SandboxSnapshot) => boolean) {
  return getSimplePaths(sandboxMachine, {
    input,
    events: (s) => {
      const snapshot = s as SandboxSnapshot;
      const stepEvents = events(snapshot).filter((e) => e.type.startsWith('xstate.'));
      const stable = !inOperation(snapshot) && snapshot.status === 'active';
      return (stable ? fromCommands : stepEvents) as never;
    },
    serializeState: (s) => serialize(s as SandboxSnapshot) as never,
    serializeEvent: (e) => JSON.stringify(e) as never,
    toState: (s) => !inOperation(s as SandboxSnapshot),
  });
}

export function machinePaths() {
  return getShortestPaths(sandboxMachine, {
    input,
    events: (s) => events(s as SandboxSnapshot) as never,
    serializeState: (s) => serialize(s as SandboxSnapshot) as never,
    serializeEvent: (e) => JSON.stringify(e) as never,
  });
}
