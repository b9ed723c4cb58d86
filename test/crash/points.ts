// The crash points of the matrix, read from the sandbox machine itself: each
// operation is walked along its success path with pure xstate transitions (no
// actor runs, no step is provided), every invoked step answering with an
// output shaped like the real one, so a step added to or removed from the
// machine changes the matrix without anyone editing this list.
import { initialTransition, transition, type AnyEventObject } from 'xstate';
import type { SandboxSnapshot } from '../../actors/view.ts';
import type { SandboxEvent } from '../../machines/sandbox/events.ts';
import { sandboxMachine } from '../../machines/sandbox/machine.ts';
import type { StepName } from '../../machines/sandbox/steps.ts';
import { cannedOutput, stepOfInvoke } from '../machine/paths.ts';

/** The operations of the matrix; `destroy*` run the release chain. */
export type OpName =
  | 'create-base'
  | 'create-snapshot'
  | 'pause'
  | 'resume'
  | 'snapshot-live'
  | 'snapshot-paused'
  | 'flatten'
  | 'destroy-running'
  | 'destroy-paused';

/** What the agent child calls the operation a step runs under (SandboxContext.op.kind, 'destroy' or 'none'). */
export type OpKind = 'create' | 'pause' | 'resume' | 'snapshot' | 'flatten' | 'destroy' | 'none';

export interface CrashPoint {
  op: OpName;
  /** The op kind the step runs under, as the child sees it. */
  kind: OpKind;
  step: StepName;
  /** 1 for the step's first run in this operation, 2 for its second (resumeVm in a snapshot …). */
  nth: number;
  when: 'before' | 'after';
  /** The state path the step runs in, e.g. "pausing.commit.swapIn". */
  state: string;
}

export const pointName = (p: CrashPoint) => `${p.op} ${p.step}${p.nth > 1 ? `:${p.nth}` : ''} ${p.when}`;
/** The child's --crash-at argument. */
export const crashArg = (id: string, p: CrashPoint) => `${id}:${p.kind}:${p.step}#${p.nth}:${p.when}`;

const ID = 'sb-points';
const topOf = (s: SandboxSnapshot) => (typeof s.value === 'string' ? s.value : Object.keys(s.value)[0]!);

function leafPath(value: unknown, prefix = ''): string[] {
  if (typeof value === 'string') return [prefix === '' ? value : `${prefix}.${value}`];
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => leafPath(v, prefix === '' ? k : `${prefix}.${k}`));
}

function kindOf(s: SandboxSnapshot): OpKind {
  const c = s.context;
  return c.op?.kind ?? (c.destroyOps.length > 0 ? 'destroy' : 'none');
}

interface Ran {
  step: StepName;
  kind: OpKind;
  state: string;
}

/**
 * Answers every step the machine invokes until it rests in a state with no
 * step in flight (Running with its loader done, Paused, gone). Returns the
 * steps in the order they were invoked; a parallel state's regions run one
 * after the other, disk region first.
 */
function settle(start: SandboxSnapshot, templateKind: 'base' | 'snapshot', out: Ran[]): SandboxSnapshot {
  let s = start;
  for (let guard = 0; guard < 200; guard++) {
    if (s.status === 'done') return s;
    const invoked = Object.keys(s.children).map((id) => [id, stepOfInvoke(id)] as const).filter(([, step]) => step !== undefined);
    if (invoked.length === 0) return s;
    const [id, step] = invoked[0]!;
    const state = leafPath(s.value).find((p) => p.split('.').includes(id === 'watchMemoryLoader' ? 'loading' : id)) ?? leafPath(s.value).join('+');
    out.push({ step: step!, kind: kindOf(s), state });
    const event = { type: `xstate.done.actor.${id}`, output: cannedOutput(step!, s, templateKind), actorId: id } as AnyEventObject;
    [s] = transition(sandboxMachine, s, event as never) as unknown as [SandboxSnapshot];
  }
  throw new Error(`the walk of the machine did not settle (at ${JSON.stringify(s.value)})`);
}

function send(s: SandboxSnapshot, event: Omit<SandboxEvent, 'opId'> & { type: string }): SandboxSnapshot {
  return (transition(sandboxMachine, s, { opId: 'op', ...event } as never) as unknown as [SandboxSnapshot])[0];
}

const input = { id: ID, teamId: 'acme', templateId: 'base', vcpus: 1, memoryMB: 128, diskSizeMB: 64, timeoutSec: 0, opId: 'create', now: 0 };

function created(templateKind: 'base' | 'snapshot', out: Ran[] = []): SandboxSnapshot {
  const [s0] = initialTransition(sandboxMachine, input) as unknown as [SandboxSnapshot];
  const s = settle(s0, templateKind, out);
  if (topOf(s) !== 'running') throw new Error(`create settled in ${JSON.stringify(s.value)}`);
  return s;
}

function paused(): SandboxSnapshot {
  const s = settle(send(created('base'), { type: 'PAUSE' }), 'base', []);
  if (topOf(s) !== 'paused') throw new Error(`pause settled in ${JSON.stringify(s.value)}`);
  return s;
}

/** Each operation's steps in invocation order, from the machine. */
export function operationSteps(): Record<OpName, Ran[]> {
  const run = (from: () => SandboxSnapshot, event: { type: string; [k: string]: unknown }, want: string): Ran[] => {
    const out: Ran[] = [];
    const s = settle(send(from(), event as never), 'base', out);
    const top = s.status === 'done' ? 'destroyed' : topOf(s);
    if (top !== want) throw new Error(`${event.type} settled in ${top}, not ${want}`);
    return out;
  };
  const createSnapshot: Ran[] = [];
  created('snapshot', createSnapshot);
  const createBase: Ran[] = [];
  created('base', createBase);
  const target = { teamId: 'acme', templateId: 'crash-tmpl' };
  return {
    'create-base': createBase,
    'create-snapshot': createSnapshot,
    pause: run(() => created('base'), { type: 'PAUSE' }, 'paused'),
    resume: run(paused, { type: 'RESUME' }, 'running'),
    'snapshot-live': run(() => created('base'), { type: 'SNAPSHOT', ...target }, 'running'),
    'snapshot-paused': run(paused, { type: 'SNAPSHOT', ...target }, 'paused'),
    flatten: run(() => created('base'), { type: 'FLATTEN', ...target }, 'running'),
    'destroy-running': run(() => created('base'), { type: 'DESTROY' }, 'destroyed'),
    'destroy-paused': run(paused, { type: 'DESTROY' }, 'destroyed'),
  };
}

/** Before and after every step of every operation. */
export function crashPoints(): CrashPoint[] {
  const out: CrashPoint[] = [];
  for (const [op, steps] of Object.entries(operationSteps()) as Array<[OpName, Ran[]]>) {
    const seen = new Map<string, number>();
    for (const { step, kind, state } of steps) {
      const key = `${kind}:${step}`;
      const nth = (seen.get(key) ?? 0) + 1;
      seen.set(key, nth);
      for (const when of ['before', 'after'] as const) out.push({ op, kind, step, nth, when, state });
    }
  }
  return out;
}
