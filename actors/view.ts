import type { SnapshotFrom, StateValue } from 'xstate';
import type { SandboxRecord } from '../drivers/store/store.ts';
import type { sandboxMachine } from '../machines/sandbox/machine.ts';
import type { SandboxStatus, SandboxView } from './api.ts';
import { ledgerRows, type ResourceNames } from './ledger-rows.ts';

export type SandboxSnapshot = SnapshotFrom<typeof sandboxMachine>;

/** Top-level states that callers see under another name. */
const statusOf: Record<string, SandboxStatus> = {
  snapshottingPaused: 'snapshotting',
  crashed: 'destroying',
};

/**
 * Steps by state value. xstate (as patched) makes one value object per
 * configuration of the machine and every snapshot in it shares that object,
 * so each step name is built once, not on every record of every sandbox.
 */
const steps = new WeakMap<object, string>();

/** Active leaves as dotted paths, e.g. "pausing.snapshotVm"; parallel regions joined with "+". */
export function stepOf(value: StateValue): string {
  if (typeof value === 'string') return value;
  let step = steps.get(value);
  if (step === undefined) {
    const leaves: string[] = [];
    addLeaves(value, '', leaves);
    steps.set(value, (step = leaves.join('+')));
  }
  return step;
}

function addLeaves(value: StateValue, prefix: string, out: string[]): void {
  if (typeof value === 'string') {
    out.push(prefix + value);
    return;
  }
  const before = out.length;
  for (const key in value) addLeaves(value[key] as StateValue, `${prefix}${key}.`, out);
  if (out.length === before && prefix !== '') out.push(prefix);
}

export function status(snapshot: SandboxSnapshot): SandboxStatus {
  if (snapshot.status === 'done') return 'destroyed';
  if (snapshot.status === 'error') return 'error';
  const value = snapshot.value;
  let top = typeof value === 'string' ? value : Object.keys(value)[0]!;
  // Rebuilt after a restart, for the instant before RECOVER: shown as where it is going.
  if (top === 'recovering') top = snapshot.context.recovery?.to.split('.')[0] ?? 'error';
  return statusOf[top] ?? (top as SandboxStatus);
}

/**
 * ISO text of recent instants. Every record of a sandbox repeats its two
 * instants, and sandboxes made together share them: formatting them anew was
 * about 3% of a create's CPU.
 */
const isoText = new Map<number, string>();
function iso(ms: number): string {
  let text = isoText.get(ms);
  if (text === undefined) {
    if (isoText.size >= 4096) isoText.clear();
    isoText.set(ms, (text = new Date(ms).toISOString()));
  }
  return text;
}

const views = new WeakMap<SandboxSnapshot, SandboxView>();

/** What callers see of a sandbox; made once per snapshot (an actor's incarnation never changes), each caller gets its own copy. */
export function view(snapshot: SandboxSnapshot, incarnation: number): SandboxView {
  let v = views.get(snapshot);
  if (v === undefined) views.set(snapshot, (v = makeView(snapshot, incarnation, stepOf(snapshot.value))));
  return { ...v };
}

function makeView(snapshot: SandboxSnapshot, incarnation: number, step: string): SandboxView {
  const c = snapshot.context;
  return {
    id: c.id,
    incarnation,
    teamId: c.teamId,
    templateId: c.templateId,
    vcpus: c.vcpus,
    memoryMB: c.memoryMB,
    diskSizeMB: c.diskSizeMB,
    timeoutSec: c.timeoutSec,
    status: status(snapshot),
    step,
    slot: c.res.slot,
    hostIp: c.res.network?.hostIp ?? null,
    createdAt: iso(c.createdAt),
    lastActiveAt: iso(c.lastActiveAt),
    metadata: c.envdVersion === null ? {} : { envdVersion: c.envdVersion },
    error: c.lastError,
  };
}

/** The durable record of a snapshot; `step` is its stepOf, when the caller has it already. */
export function record(snapshot: SandboxSnapshot, incarnation: number, names: ResourceNames, step = stepOf(snapshot.value)): SandboxRecord {
  const v = makeView(snapshot, incarnation, step);
  const c = snapshot.context;
  return {
    id: v.id,
    teamId: v.teamId,
    templateId: v.templateId,
    vcpus: v.vcpus,
    memoryMB: v.memoryMB,
    diskSizeMB: v.diskSizeMB,
    timeoutSec: v.timeoutSec,
    status: v.status,
    step: v.step,
    opId: c.op?.id ?? null,
    incarnation,
    slot: v.slot,
    hostIp: v.hostIp,
    rootfsDevice: c.res.disk?.devicePath ?? null,
    resources: { ...c.res },
    createdAt: v.createdAt,
    lastActiveAt: v.lastActiveAt,
    metadata: v.metadata,
    machine: { value: snapshot.value, context: c as unknown as Record<string, unknown> },
    ledger: ledgerRows(c, v.step, names),
  };
}
