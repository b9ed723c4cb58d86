// The step actor logic: what the machine relies on when it invokes a step.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createActor, setup, waitFor } from 'xstate';
import type { StepInput, StepOutput } from '../../machines/sandbox/context.ts';
import { stepActor } from '../../machines/sandbox/step-actor.ts';

function machineWith(run: (input: StepInput, ctl: AbortController) => Promise<StepOutput>) {
  return setup({ actors: { work: stepActor(run) } }).createMachine({
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
  finish();
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.equal(actor.getSnapshot().value, 'left');
  assert.deepEqual(outputs, [], 'no onDone after the machine left');
});
