import type { DefNode, DefTransition } from './definition.ts';

/**
 * Definition → graph for drawing: one node per state (children point at their
 * parent, so compound and parallel states become boxes around their children),
 * one edge per (transition, target). Pure data, no layout: the page hands it
 * to elkjs. Transitions without a target (they only run actions) stay on their
 * state as `internal` so nothing of the definition is lost.
 */

export type EdgeKind = 'event' | 'done' | 'error' | 'after' | 'always' | 'stateDone';

export interface GraphNode {
  id: string;
  key: string;
  parent: string | null;
  type: DefNode['type'];
  /** Entered first when the parent is entered. */
  initial: boolean;
  description: string | null;
  tags: string[];
  /** Actors invoked while in this state. */
  invokes: string[];
  /** Targetless transitions: `EVENT [guard]`. */
  internal: string[];
}

export interface GraphEdge {
  id: string;
  source: string;
  target: string;
  /** The event type as xstate sends it ('' for always). */
  event: string;
  kind: EdgeKind;
  /** Short text: `PAUSE`, `done: quiesce`, `after inactivity`, `always`, with ` [guard]`. */
  label: string;
  guard: string | null;
  /** Order among the transitions of its source for this event (guards are tried in order). */
  order: number;
}

export interface MachineGraph {
  root: string;
  nodes: GraphNode[];
  edges: GraphEdge[];
}

export function machineGraph(def: DefNode): MachineGraph {
  const nodes: GraphNode[] = [];
  const edges: GraphEdge[] = [];
  const walk = (node: DefNode, parent: DefNode | null) => {
    const internal: string[] = [];
    const add = (t: DefTransition, order: number) => {
      const { kind, text } = describe(t.eventType, t);
      const label = t.guard === undefined ? text : `${text} [${t.guard}]`;
      if (t.target === undefined || t.target.length === 0) {
        internal.push(label);
        return;
      }
      for (const target of t.target) {
        const targetId = target.startsWith('#') ? target.slice(1) : target;
        edges.push({
          id: `e${edges.length}`,
          source: node.id,
          target: targetId,
          event: t.eventType,
          kind,
          label,
          guard: t.guard ?? null,
          order,
        });
      }
    };
    for (const [event, list] of Object.entries(node.on)) list.forEach((t, i) => add({ ...t, eventType: t.eventType || event }, i));
    node.always.forEach((t, i) => add({ ...t, eventType: '' }, i));
    const initialOfParent = parent?.initial?.target.map((t) => t.replace(/^#/, '')) ?? [];
    nodes.push({
      id: node.id,
      key: node.key,
      parent: parent?.id ?? null,
      type: node.type,
      initial: initialOfParent.includes(node.id),
      description: node.description ?? null,
      tags: node.tags,
      invokes: node.invoke.map((i) => i.src),
      internal,
    });
    for (const child of Object.values(node.states)) walk(child, node);
  };
  walk(def, null);
  return { root: def.id, nodes, edges };
}

function describe(eventType: string, t: DefTransition): { kind: EdgeKind; text: string } {
  if (eventType === '') return { kind: 'always', text: 'always' };
  let m = /^xstate\.done\.actor\.(.+)$/.exec(eventType);
  if (m) return { kind: 'done', text: `done: ${m[1]}` };
  m = /^xstate\.error\.actor\.(.+)$/.exec(eventType);
  if (m) return { kind: 'error', text: `error: ${m[1]}` };
  if (eventType.startsWith('xstate.after.')) {
    const delay = t.delay ?? /^xstate\.after\.([^.]+)\./.exec(eventType)?.[1] ?? '?';
    return { kind: 'after', text: `after ${typeof delay === 'number' ? `${delay} ms` : delay}` };
  }
  if (eventType.startsWith('xstate.done.state.')) return { kind: 'stateDone', text: 'onDone' };
  return { kind: 'event', text: eventType };
}

/** The ids of a state and all its ancestors, e.g. `a.b.c` → `a`, `a.b`, `a.b.c`. */
export function selfAndAncestors(id: string): string[] {
  const parts = id.split('.');
  return parts.map((_, i) => parts.slice(0, i + 1).join('.'));
}
