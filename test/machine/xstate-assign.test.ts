import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assign, createActor, setup } from 'xstate';

// The xstate patch leaves the snapshot as it is for an assignment that changes
// no value (patches/xstate+5.33.3.patch, resolveAssign); every other
// assignment must still copy the context with its changes.

const tag = Symbol('tag');
type Ctx = { n: number; s: string | null; [tag]?: string };

const machine = setup({ types: { context: {} as Ctx, events: {} as { type: 'SAME' } | { type: 'INC' } | { type: 'NONE' } | { type: 'SYMBOL' } | { type: 'GO' } } }).createMachine({
  context: { n: 0, s: null },
  initial: 'a',
  states: {
    a: {
      on: {
        SAME: { actions: assign(({ context }) => ({ n: context.n, s: context.s })) },
        INC: { actions: assign({ n: ({ context }) => context.n + 1 }) },
        NONE: { actions: assign(() => ({})) },
        SYMBOL: { actions: assign(() => ({ [tag]: 'set' }) as Partial<Ctx>) },
        GO: { target: 'b', actions: assign({ n: ({ context }) => context.n }) },
      },
    },
    b: {},
  },
});

test('an assignment that changes nothing keeps the context object; one that changes a value copies it', () => {
  const actor = createActor(machine).start();
  const first = actor.getSnapshot().context;
  actor.send({ type: 'SAME' });
  actor.send({ type: 'NONE' });
  assert.equal(actor.getSnapshot().context, first);
  actor.send({ type: 'INC' });
  const second = actor.getSnapshot().context;
  assert.notEqual(second, first);
  assert.deepEqual(second, { n: 1, s: null });
  assert.deepEqual(first, { n: 0, s: null }, 'the earlier context is not mutated');
  actor.send({ type: 'GO' });
  assert.equal(actor.getSnapshot().value, 'b', 'a transition whose assignment changes nothing still moves');
  assert.equal(actor.getSnapshot().context, second);
});

test('an assignment of a symbol key is applied, as the spread it replaces would', () => {
  const actor = createActor(machine).start();
  actor.send({ type: 'SYMBOL' });
  assert.equal(actor.getSnapshot().context[tag], 'set');
});
