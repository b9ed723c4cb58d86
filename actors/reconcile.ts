import { forEachLimited } from '../core/each-limited.ts';
import type { Logger } from '../core/log.ts';
import type { Holdings, Swept } from '../drivers/host/sweeper.ts';
import type { Drivers } from '../drivers/index.ts';
import { StoreError } from '../drivers/store/store-error.ts';
import type { SandboxRecord } from '../drivers/store/store.ts';
import type { VmHandle } from '../drivers/vmm/vmm.ts';
import type { Recovery, RecoveryTarget, Resources, SandboxContext, SandboxInput } from '../machines/sandbox/context.ts';
import { sandboxMachine } from '../machines/sandbox/machine.ts';
import type { SandboxStatus } from './api.ts';
import type { LoopRegistry } from './loop-registry.ts';
import type { SandboxRegistry } from './sandbox-registry.ts';
import type { SlotAllocator } from './slots.ts';
import { deviceNameOf } from './steps.ts';
import { status, type SandboxSnapshot } from './view.ts';

/**
 * Start-up reconciliation, the pure part: where a sandbox found in the store
 * goes, given the state it was recorded in and what became of its VMM. The
 * README's reconciliation table is this function in prose. The rules are the
 * machine's own points of no return: an operation that had not passed one is
 * undone, one that had is finished.
 */

/** What the agent found of the sandbox's VMM: none recorded, gone, or alive in a VM state. */
export type VmFound = 'none' | 'gone' | 'Running' | 'Paused' | 'other';

/** Resume steps reached only once the guest has run again: undoing them would pair old memory with a newer disk. */
const GUEST_RAN = ['waitEnvd', 'deflateBalloon', 'initEnvd', 'startMemoryLoader'];

export function decideRecovery(step: string, vm: VmFound): Recovery {
  const leaves = step.split('+').map((leaf) => leaf.split('.'));
  const top = leaves[0]![0]!;
  const at = (name: string) => leaves.some((path) => path.includes(name));
  const alive = vm === 'Running' || vm === 'Paused';
  const go = (to: RecoveryTarget, reason: string): Recovery => ({ to, reason: `${reason} (recorded in ${step})` });
  // Operations that end with the VM running need it to have survived the agent.
  const withVm = (to: RecoveryTarget, reason: string): Recovery =>
    alive ? go(to, reason) : go('crashed', `the VMM did not survive the agent restart`);

  switch (top) {
    case 'paused':
      return go('paused', 'paused: nothing was under way');
    case 'error':
      return go('error', 'kept in Error: a destroy retries its release');
    case 'running':
      // A VM found paused while its record says Running: make it run, through the step that does.
      return vm === 'Paused' ? go('pausing.rollback', 'running, VM found paused: resume it') : withVm('running', 'running: VMM adopted');
    case 'creating':
      return go('creating.rollback', 'create interrupted: rolled back');
    case 'pausing':
      // swapIn is re-run on its own: once it has moved staging in, stageCow could not find it again.
      if (at('swapIn')) return go('pausing.commit.swapIn', 'pause in its final swap: finished');
      return at('commit')
        ? go('pausing.commit', 'pause past its point of no return: finished')
        : withVm('pausing.rollback', 'pause before its point of no return: VM resumed');
    case 'resuming':
      if (!at('rollback') && vm === 'Running' && (GUEST_RAN.some(at) || at('resumeVm'))) {
        return go('resuming.waitEnvd', 'resume after the guest ran again: finished');
      }
      return go('resuming.rollback', 'resume interrupted: rolled back to Paused');
    case 'snapshotting':
      return at('initEnvd') ? withVm('running', 'snapshot done: running') : withVm('snapshotting.rollback', 'snapshot interrupted: staging removed, VM resumed');
    case 'flattening':
      return withVm('flattening.rollback', 'flatten interrupted: staging removed, VM resumed');
    case 'snapshottingPaused':
      return go('snapshottingPaused.rollback', 'paused snapshot interrupted: staging removed, loop released');
    case 'destroying':
    case 'crashed':
      return go('destroying', 'release interrupted: run again');
    default:
      return go('error', `unknown recorded state`);
  }
}

/** Targets whose path starts by resuming the VM: a crash is no failure of the pause, so no auto-pause rule applies. */
const UNDOES_PAUSE = new Set<RecoveryTarget>(['pausing.rollback', 'snapshotting.rollback', 'flattening.rollback']);

/**
 * The machine snapshot a recorded sandbox restarts from: the `recovering`
 * state, its recorded context, and where RECOVER will take it. `vm` replaces
 * the recorded VM handle (the adopted process), or drops it when gone.
 */
export function rebuild(record: SandboxRecord, recovery: Recovery): { input: SandboxInput; snapshot: SandboxSnapshot } {
  const saved = record.machine.context as unknown as SandboxContext;
  if (saved.id !== record.id || typeof saved.res !== 'object' || saved.res === null || typeof saved.teamId !== 'string') {
    throw new StoreError('bad_record', `record of ${record.id}: its machine context does not belong to it`);
  }
  const input: SandboxInput = {
    id: record.id,
    teamId: saved.teamId,
    templateId: saved.templateId,
    vcpus: saved.vcpus,
    memoryMB: saved.memoryMB,
    diskSizeMB: saved.diskSizeMB,
    timeoutSec: saved.timeoutSec,
    opId: '',
    now: Date.now(),
  };
  const op = saved.op !== null && UNDOES_PAUSE.has(recovery.to) ? { ...saved.op, auto: false } : saved.op;
  const context: SandboxContext = {
    ...saved,
    op,
    // Error's entry reads the cause from here.
    failure: recovery.to === 'error' ? (saved.failure ?? saved.lastError) : saved.failure,
    recovery,
  };
  return { input, snapshot: sandboxMachine.resolveState({ value: 'recovering', context }) };
}

export interface ReconcileOutcome {
  sandboxId: string;
  /** The recorded state, e.g. "pausing.snapshotVm". */
  from: string;
  /** Where the rules sent it. */
  via: RecoveryTarget;
  /** Where it settled: a status, or "destroyed". */
  to: SandboxStatus;
  reason: string;
}

export interface ReconcileReport {
  outcomes: ReconcileOutcome[];
  /** Pause dirs with no record (an agent that kept no store) brought back as Paused. */
  pausedFromDisk: string[];
  unreadable: Array<{ sandboxId: string; error: string }>;
  /** What the host held that no sandbox does, removed, by kind. */
  orphans: Swept;
  ms: number;
}

export interface ReconcileDeps {
  reg: SandboxRegistry;
  logic: typeof sandboxMachine;
  drivers: Drivers;
  slots: SlotAllocator;
  loops: LoopRegistry;
  log: Logger;
  recoverPaused(signal: AbortSignal): Promise<{ recovered: string[]; unreadable: Array<{ sandboxId: string; error: string }> }>;
}

/** Sandboxes rebuilt at once: each may wait on its VMM's API and then run a rollback. */
const RECONCILE_CONCURRENCY = 8;

/**
 * Start-up reconciliation: every recorded sandbox is rebuilt, its VMM adopted
 * if it is alive and answering, and sent where decideRecovery says; once all
 * have settled, pause dirs without a record come back as Paused, and the host
 * is swept of whatever no live sandbox holds.
 */
export async function reconcileAll(d: ReconcileDeps, signal: AbortSignal): Promise<ReconcileReport> {
  const started = performance.now();
  const outcomes: ReconcileOutcome[] = [];
  const records = d.drivers.store.loadAll();
  await forEachLimited(records, RECONCILE_CONCURRENCY, async (rec) => {
    if (d.reg.has(rec.id)) return;
    const saved = rec.machine.context as unknown as SandboxContext;
    const res = presumeInterrupted(rec.step, { ...saved.res }, rec.id, d.drivers);
    const vm = await findVm(d.drivers, rec.id, res, rec.step, signal);
    const recovery = decideRecovery(rec.step, vm.found);
    if (res.slot !== null) d.slots.reserve(res.slot, rec.id);
    if (res.loopDevice !== null && res.originPath !== null) {
      // The registry starts empty: each holder takes its reference again (the attachment is reused).
      try {
        res.loopDevice = await d.loops.acquire(res.originPath, signal);
      } catch (err) {
        d.reg.logFor(rec.id).warn({ step: 'reconcile', err: (err as Error).message }, 'origin loop not attached again; left to the sweep');
        res.loopDevice = null;
      }
    }
    res.vm = vm.handle;
    const exited = vm.found === 'gone' || vm.found === 'other';
    const record = { ...rec, machine: { ...rec.machine, context: { ...rec.machine.context, res, vmExited: exited || saved.vmExited } } };
    const { input, snapshot } = rebuild(record, recovery);
    d.reg.logFor(rec.id).info({ step: 'reconcile', from: rec.step, vm: vm.found, to: recovery.to }, recovery.reason);
    const entry = d.reg.start(d.logic, input, snapshot);
    if (!exited && vm.handle !== null) d.reg.watchVm(rec.id);
    entry.actor.send({ type: 'RECOVER' });
    await d.reg.settled(entry);
    signal.throwIfAborted();
    outcomes.push({ sandboxId: rec.id, from: rec.step, via: recovery.to, to: status(entry.actor.getSnapshot()), reason: recovery.reason });
  });
  signal.throwIfAborted();
  const { recovered, unreadable } = await d.recoverPaused(signal);
  signal.throwIfAborted();
  const orphans = await d.drivers.sweeper.sweep(holdings(d.reg), { signal });
  return { outcomes, pausedFromDisk: recovered, unreadable, orphans, ms: Math.round(performance.now() - started) };
}

/**
 * A step the agent died in may have made its resource without the record
 * saying so. Where a later undo would trip over it (a loop still under a
 * disk), the resource is presumed held: every undo step accepts what is
 * already gone, so presuming costs nothing when the step had not acted.
 * What no undo depends on (a dir, a network, a staging dir) is left to the sweep.
 */
function presumeInterrupted(step: string, res: Resources, id: string, drivers: Drivers): Resources {
  const leaf = (name: string) => step.split('+').some((l) => l.endsWith(`.${name}`));
  if ((leaf('createDisk') || leaf('attachDisk')) && res.disk === null) {
    const cowPath = res.cowPath ?? drivers.files.cowPath(id);
    const name = deviceNameOf(drivers.disk, id);
    // Removal goes by name; the path is the driver's business once it exists.
    return { ...res, disk: { name, devicePath: '', cowPath }, cowPath };
  }
  return res;
}

/** Steps that start a VMM: one may be running that the record does not name yet. */
const STARTS_VM = /\.(bootVm|restoreVm)(\+|$)/;

/** The sandbox's VMM, adopted when it is alive and answers; a recorded handle is kept either way so stopVm can clean up after it. */
async function findVm(
  drivers: Drivers,
  id: string,
  res: Resources,
  step: string,
  signal: AbortSignal,
): Promise<{ found: VmFound; handle: VmHandle | null }> {
  if (res.vm === null && !STARTS_VM.test(step)) return { found: 'none', handle: null };
  const adopted = res.network === null ? null : await drivers.vmm.adopt(id, res.network, { signal });
  if (adopted === null) return res.vm === null ? { found: 'none', handle: null } : { found: 'gone', handle: res.vm };
  // The recorded handle knows what the process cannot tell (was memory restored lazily?).
  const handle = { ...adopted, ...res.vm, pid: adopted.pid, apiSocket: adopted.apiSocket, envdUrl: adopted.envdUrl };
  try {
    const { state } = await drivers.vmm.info(id, { signal: AbortSignal.any([signal, AbortSignal.timeout(3_000)]) });
    return { found: state === 'Running' || state === 'Paused' ? state : 'other', handle };
  } catch {
    return { found: 'other', handle };
  }
}

/** What the live sandboxes hold, for the sweep. */
function holdings(reg: SandboxRegistry): Holdings {
  const h = {
    sandboxes: new Set<string>(),
    sandboxDirs: new Set<string>(),
    stagingDirs: new Set<string>(),
    vms: new Set<string>(),
    vmDirs: new Set<string>(),
    disks: new Set<string>(),
    cows: new Set<string>(),
    diskCows: new Set<string>(),
    origins: new Set<string>(),
    networks: new Set<number>(),
  };
  for (const [id, entry] of reg.entries()) {
    const c = entry.actor.getSnapshot().context;
    const r = c.res;
    h.sandboxes.add(id);
    if (r.sandboxDir) h.sandboxDirs.add(id);
    if (r.stagingDir !== null) h.stagingDirs.add(r.stagingDir);
    if (r.vm !== null && !c.vmExited) h.vms.add(id);
    if (c.vmSandboxDir !== null) h.vmDirs.add(c.vmSandboxDir);
    if (r.disk !== null) {
      h.disks.add(r.disk.name);
      h.diskCows.add(r.disk.cowPath);
    }
    if (r.cowPath !== null) h.cows.add(r.cowPath);
    if (r.loopDevice !== null && r.originPath !== null) h.origins.add(r.originPath);
    if (r.network !== null) h.networks.add(r.network.slot);
  }
  return h;
}
