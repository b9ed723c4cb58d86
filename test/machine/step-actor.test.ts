// The step actor logic: what the machine relies on when it invokes a step.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createActor, setup, waitFor } from 'xstate';
import type { StepInput, StepOutput } from '../../machines/sandbox/context.ts';
import { stepActor, type StepControllers } from '../../machines/sandbox/step-actor.ts';
import { ControllerPool } from '../../actors/controller-pool.ts';

function machineWith(run: (input: StepInput, ctl: AbortController) => Promise<StepOutput>, controllers?: StepControllers) {
  return setup({ actors: { work: stepActor(run, controllers) } }).createMachine({
    initial: 'working',
    states: {
      working: {
        invoke: {
          src: 'work',
          input: () => ({ context: { id: 'sb-step' } as StepInput['context'] }),
          onDone: { target: 'done', actions: ({ event }) => outputs.push(event.output) },
          onError: { target: 'failed', actions: ({ event }) => errors.push(event.error) },
        },
        on: { LEAVE: 'left' },
      },
      done: {},
      failed: {},
      left: {},
    },
  });
}
const outputs: unknown[] = [];
const errors: unknown[] = [];

test('a step that resolves hands its output to onDone; one that rejects hands its error to onError', async () => {
  outputs.length = 0;
  errors.length = 0;
  const ok = createActor(machineWith(async (input) => ({ envdVersion: input.context.id }))).start();
  await waitFor(ok, (s) => s.value === 'done');
  assert.deepEqual(outputs, [{ envdVersion: 'sb-step' }]);
  const boom = new Error('boom');
  const ko = createActor(
    machineWith(async () => {
      throw boom;
    }),
  ).start();
  await waitFor(ko, (s) => s.value === 'failed');
  assert.deepEqual(errors, [boom]);
});

test("leaving the step aborts the step's own controller, and its late result changes nothing", async () => {
  outputs.length = 0;
  errors.length = 0;
  let ctlSeen: AbortController | undefined;
  let finish: () => void = () => {};
  const actor = createActor(
    machineWith(
      (_input, ctl) =>
        new Promise<StepOutput>((resolve) => {
          ctlSeen = ctl;
          finish = () => resolve({ envdVersion: 'late' });
        }),
    ),
  ).start();
  assert.equal(ctlSeen?.signal.aborted, false, 'the step runs with a live signal');
  actor.send({ type: 'LEAVE' });
  assert.equal(actor.getSnapshot().value, 'left');
  assert.equal(ctlSeen?.signal.aborted, true, 'leaving aborted the signal the step was given');
  // An AbortError, not the 'cancelled' of a destroy: drivers and the harness tell the two apart.
  assert.equal((ctlSeen?.signal.reason as Error).name, 'AbortError');
  assert.notEqual((ctlSeen?.signal.reason as { code?: unknown }).code, 'cancelled');
  finish();
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.equal(actor.getSnapshot().value, 'left');
  assert.deepEqual(outputs, [], 'no onDone after the machine left');
});

/** A pool that records what the step actors hand back. */
function watchedPool() {
  const pool = new ControllerPool();
  const given: AbortController[] = [];
  const controllers: StepControllers = {
    take: () => pool.take(),
    giveBack: (ctl) => {
      given.push(ctl);
      pool.giveBack(ctl);
    },
  };
  return { pool, given, controllers };
}

test('a step that settles by itself hands its controller back, and the next step gets it with a live signal', async () => {
  const { pool, given, controllers } = watchedPool();
  const seen: AbortController[] = [];
  const run = async (_input: StepInput, ctl: AbortController) => (seen.push(ctl), {});
  for (let i = 0; i < 2; i++) await waitFor(createActor(machineWith(run, controllers)).start(), (s) => s.value === 'done');
  assert.deepEqual(given, seen, 'each settled step handed back the controller it ran with');
  assert.equal(seen[1], seen[0], 'the second step reused the first one');
  assert.equal(seen[1]!.signal.aborted, false);
  assert.equal(pool.idle, 1);
});

test('a step left while in flight aborts its controller and never hands it back', async () => {
  const { pool, given, controllers } = watchedPool();
  let ctlSeen: AbortController | undefined;
  const actor = createActor(machineWith((_input, ctl) => ((ctlSeen = ctl), new Promise<StepOutput>(() => {})), controllers)).start();
  actor.send({ type: 'LEAVE' });
  assert.equal(ctlSeen?.signal.aborted, true);
  assert.deepEqual(given, []);
  assert.notEqual(pool.take(), ctlSeen, 'a fresh controller, not the aborted one');
});

test('the pool keeps no controller whose signal aborted or still has a listener, and at most its bound', () => {
  const pool = new ControllerPool(2);
  const aborted = new AbortController();
  aborted.abort();
  pool.giveBack(aborted);
  const listened = new AbortController();
  listened.signal.addEventListener('abort', () => {});
  pool.giveBack(listened);
  assert.equal(pool.idle, 0);
  const clean = [new AbortController(), new AbortController(), new AbortController()];
  for (const ctl of clean) pool.giveBack(ctl);
  assert.equal(pool.idle, 2, 'bounded');
  const taken = [pool.take(), pool.take(), pool.take()];
  assert.ok(taken.slice(0, 2).every((c) => clean.includes(c)));
  assert.ok(!clean.includes(taken[2]!) && taken[2] !== aborted && taken[2] !== listened, 'an empty pool makes a new one');
});
