import type { AnyStateMachine } from 'xstate';

/**
 * A machine's definition as plain JSON: `machine.toJSON()` plus what that
 * leaves out. toJSON drops `always` transitions entirely and any guard built
 * with and()/or()/not() (a function), so both are read back from the live
 * state nodes. The per-state `transitions` list is dropped: it repeats `on`
 * with whole state nodes as targets.
 */

export interface DefTransition {
  eventType: string;
  target?: string[];
  guard?: string;
  delay?: string | number;
  reenter?: boolean;
}

export interface DefNode {
  id: string;
  key: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  initial?: { target: string[] };
  states: Record<string, DefNode>;
  on: Record<string, DefTransition[]>;
  always: DefTransition[];
  invoke: { id: string; src: string }[];
  description?: string;
  tags: string[];
}

/** The live pieces of a state node this module reads (xstate's StateNode, narrowed). */
interface LiveTransition {
  eventType: string;
  target?: readonly { id: string }[] | undefined;
  guard?: unknown;
}
interface LiveNode {
  id: string;
  states: Record<string, LiveNode>;
  on: Record<string, readonly LiveTransition[]>;
  always?: readonly LiveTransition[] | undefined;
}

export function machineDefinition(machine: AnyStateMachine): DefNode {
  const json = JSON.parse(JSON.stringify(machine.toJSON())) as RawNode;
  return convert(json, machine.root as unknown as LiveNode);
}

interface RawNode extends Omit<DefNode, 'states' | 'on' | 'always' | 'invoke' | 'initial'> {
  states?: Record<string, RawNode>;
  on?: Record<string, (DefTransition & { guard?: unknown; target?: string[] })[]>;
  invoke?: { id: string; src: unknown }[];
  initial?: { target?: string[] };
}

function convert(raw: RawNode, live: LiveNode): DefNode {
  const on: Record<string, DefTransition[]> = {};
  for (const [event, list] of Object.entries(raw.on ?? {})) {
    const liveList = live.on[event] ?? [];
    on[event] = list.map((t, i) => transition(t.eventType ?? event, t.target, liveList[i]?.guard ?? t.guard, t.delay, t.reenter));
  }
  const always = (live.always ?? []).map((t) =>
    transition('', t.target?.map((n) => `#${n.id}`), t.guard, undefined, undefined),
  );
  const states: Record<string, DefNode> = {};
  for (const [key, child] of Object.entries(raw.states ?? {})) {
    const liveChild = live.states[key];
    if (liveChild === undefined) throw new Error(`state ${raw.id}.${key} has no live node`);
    states[key] = convert(child, liveChild);
  }
  const node: DefNode = {
    id: raw.id,
    key: raw.key,
    type: raw.type,
    states,
    on,
    always,
    invoke: (raw.invoke ?? []).map((inv) => ({ id: inv.id, src: typeof inv.src === 'string' ? inv.src : inv.id })),
    tags: raw.tags ?? [],
  };
  if (raw.initial?.target !== undefined && raw.initial.target.length > 0) node.initial = { target: raw.initial.target };
  if (typeof raw.description === 'string') node.description = raw.description;
  return node;
}

function transition(
  eventType: string,
  target: readonly string[] | undefined,
  guard: unknown,
  delay: unknown,
  reenter: unknown,
): DefTransition {
  const t: DefTransition = { eventType };
  if (target !== undefined && target.length > 0) t.target = [...target];
  const g = guardName(guard);
  if (g !== undefined) t.guard = g;
  if (typeof delay === 'string' || typeof delay === 'number') t.delay = delay;
  if (reenter === true) t.reenter = true;
  return t;
}

/** A readable name for a guard: `name`, `{type}`, and()/or()/not() of those. */
export function guardName(guard: unknown): string | undefined {
  if (guard === undefined || guard === null) return undefined;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    const parts = (guard as { guards?: unknown }).guards;
    const name = (guard as { name?: string }).name ?? 'guard';
    if (Array.isArray(parts)) return `${name}(${parts.map((p) => guardName(p) ?? '?').join(', ')})`;
    if (parts !== undefined) return `${name}(${guardName(parts) ?? '?'})`;
    return name === '' ? 'guard' : name;
  }
  if (typeof guard === 'object' && typeof (guard as { type?: unknown }).type === 'string') {
    const g = guard as { type: string; params?: unknown };
    const params = g.params;
    if (params !== null && typeof params === 'object') {
      const values = Object.values(params).filter((v) => typeof v === 'string' || typeof v === 'number');
      if (values.length > 0) return `${g.type}(${values.join(', ')})`;
    }
    return g.type;
  }
  return 'guard';
}
