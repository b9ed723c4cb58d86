import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMachine, fromPromise, setup, and, type AnyStateMachine } from 'xstate';
import { sandboxMachine } from '../../machines/sandbox/machine.ts';
import { machineDefinition } from '../../server/inspect/definition.ts';
import { machineGraph, type MachineGraph } from '../../server/inspect/graph.ts';

// A chart that silently drops a kind of transition shows operators a machine
// that cannot do what the real one does. These tests compare the graph with
// the live state nodes, which the conversion never reads from directly for `on`.

interface LiveNode {
  id: string;
  states: Record<string, LiveNode>;
  transitions: Map<string, { target?: readonly { id: string }[] }[]>;
  always?: { target?: readonly { id: string }[] }[];
}

function liveNodes(machine: AnyStateMachine): LiveNode[] {
  const out: LiveNode[] = [];
  const walk = (n: LiveNode) => {
    out.push(n);
    for (const c of Object.values(n.states)) walk(c);
  };
  walk(machine.root as unknown as LiveNode);
  return out;
}

function has(graph: MachineGraph, source: string, target: string, event: string): boolean {
  return graph.edges.some((e) => e.source === source && e.target === target && e.event === event);
}

test('sandbox machine: a state missing from the chart', () => {
  const graph = machineGraph(machineDefinition(sandboxMachine));
  const ids = new Set(graph.nodes.map((n) => n.id));
  const live = liveNodes(sandboxMachine);
  assert.equal(graph.nodes.length, live.length);
  for (const n of live) assert.ok(ids.has(n.id), `state ${n.id} missing`);
  // Parent links make nested states boxes inside their parents.
  for (const n of graph.nodes) if (n.parent !== null) assert.ok(ids.has(n.parent), `${n.id} has unknown parent ${n.parent}`);
});

test('sandbox machine: a transition missing from the chart (event, invoke done/error, after, always)', () => {
  const graph = machineGraph(machineDefinition(sandboxMachine));
  let expected = 0;
  const targetless = new Map(graph.nodes.map((n) => [n.id, n.internal.length]));
  let internal = 0;
  for (const node of liveNodes(sandboxMachine)) {
    const all = [...[...node.transitions.entries()].flatMap(([event, ts]) => ts.map((t) => ({ event, t }))), ...(node.always ?? []).map((t) => ({ event: '', t }))];
    for (const { event, t } of all) {
      if (t.target === undefined || t.target.length === 0) {
        internal++;
        continue;
      }
      for (const target of t.target) {
        expected++;
        assert.ok(has(graph, node.id, target.id, event), `edge ${node.id} --${event || 'always'}--> ${target.id} missing`);
      }
    }
  }
  assert.equal(graph.edges.length, expected, 'no invented edges');
  assert.equal([...targetless.values()].reduce((a, b) => a + b, 0), internal, 'targetless transitions kept on their states');
  const kinds = new Set(graph.edges.map((e) => e.kind));
  for (const k of ['event', 'done', 'error', 'after', 'always', 'stateDone'] as const) assert.ok(kinds.has(k), `no ${k} edge at all`);
  // Spot checks of the behaviour the chart must show.
  assert.ok(has(graph, 'sandbox.pausing.probeVm', 'sandbox.pausing.rollback', 'xstate.error.actor.probeVm'));
  assert.ok(has(graph, 'sandbox.pausing.probeVm', 'sandbox.pausing.pauseVm', 'xstate.done.actor.probeVm'));
  assert.ok(has(graph, 'sandbox.paused', 'sandbox.destroying', ''));
  assert.ok(has(graph, 'sandbox.running.inactivity.armed', 'sandbox.pausing', 'xstate.after.inactivity.sandbox.running.inactivity.armed'));
  const commit = graph.edges.find((e) => e.source === 'sandbox.pausing.commit.releaseRuntime' && e.target === 'sandbox.destroying');
  assert.equal(commit?.guard, 'and(releaseFailed, autoPause)', 'and() guards keep their names though toJSON drops them');
});

test('small machine: invoke onDone/onError, always, after, parallel regions and initial states all appear', () => {
  const m = setup({
    actors: { work: fromPromise(async () => 1) },
    guards: { ok: () => true, ready: () => true },
    delays: { slow: 500 },
  }).createMachine({
    id: 'm',
    initial: 'idle',
    on: { RESET: '.idle', NOTE: { actions: [] } },
    states: {
      idle: { on: { GO: 'busy' }, always: { guard: and(['ok', 'ready']), target: 'both' } },
      busy: { invoke: { id: 'w', src: 'work', onDone: 'idle', onError: { target: 'failed' } }, after: { slow: 'failed', 1000: 'idle' } },
      both: {
        type: 'parallel',
        states: { a: { initial: 'a1', states: { a1: { on: { NEXT: 'a2' } }, a2: {} } }, b: { initial: 'b1', states: { b1: {} } } },
        onDone: 'idle',
      },
      failed: { type: 'final' },
    },
  });
  const g = machineGraph(machineDefinition(m));
  assert.deepEqual(g.nodes.map((n) => n.id).sort(), ['m', 'm.both', 'm.both.a', 'm.both.a.a1', 'm.both.a.a2', 'm.both.b', 'm.both.b.b1', 'm.busy', 'm.failed', 'm.idle']);
  const label = (s: string, t: string) => g.edges.filter((e) => e.source === `m.${s}` && e.target === `m.${t}`).map((e) => e.label).sort();
  assert.deepEqual(label('busy', 'idle'), ['after 1000 ms', 'done: w']);
  assert.deepEqual(label('busy', 'failed'), ['after slow', 'error: w']);
  assert.deepEqual(label('idle', 'both'), ['always [and(ok, ready)]']);
  assert.deepEqual(label('idle', 'busy'), ['GO']);
  assert.deepEqual(label('both', 'idle'), ['onDone']);
  assert.deepEqual(label('both.a.a1', 'both.a.a2'), ['NEXT']);
  assert.equal(g.edges.find((e) => e.source === 'm' && e.target === 'm.idle')?.label, 'RESET');
  assert.deepEqual(g.nodes.find((n) => n.id === 'm')?.internal, ['NOTE']);
  assert.deepEqual(g.nodes.filter((n) => n.initial).map((n) => n.id).sort(), ['m.both.a.a1', 'm.both.b.b1', 'm.idle']);
  assert.equal(g.nodes.find((n) => n.id === 'm.both')?.type, 'parallel');
  assert.deepEqual(g.nodes.find((n) => n.id === 'm.busy')?.invokes, ['work']);
});

test('a machine without always/after transitions yields none (no phantom edges)', () => {
  const m = createMachine({ id: 'x', initial: 'a', states: { a: { on: { T: 'b' } }, b: {} } });
  const g = machineGraph(machineDefinition(m));
  assert.deepEqual(g.edges.map((e) => [e.source, e.target, e.kind]), [['x.a', 'x.b', 'event']]);
});
