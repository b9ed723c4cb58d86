import assert from 'node:assert/strict';
import type { AnyEventObject } from 'xstate';
import type { SandboxSnapshot } from '../../actors/view.ts';
import { assertHoldsForStatus, assertLedgerMatches, harness, settle, StepGate, TEAM, waitFor, type Harness } from '../support/harness.ts';
import { stepOfInvoke } from './paths.ts';

interface PathStep {
  event: AnyEventObject;
  state: SandboxSnapshot;
}

const ID = 'sb-model';
const valueOf = (s: SandboxSnapshot | undefined) => (s === undefined ? 'gone' : s.status === 'done' ? 'gone' : JSON.stringify(s.value));

/**
 * Drives a real sandbox actor, on the fake drivers, along one machine path:
 * each step completion is let run for real, each step failure is injected,
 * each command is sent through the supervisor. After every event the actor
 * must be in the path's state and the host ledger must match its resources.
 */
export async function walk(steps: PathStep[]): Promise<void> {
  const gate = new StepGate();
  const h: Harness = harness({ supervisor: { wrapStep: gate.wrap } });
  const first = steps.find((s) => s.event.type === 'xstate.done.actor.resolveTemplate');
  const snapshotTemplate = (first?.event.output as { template?: { kind: string } } | undefined)?.template?.kind === 'snapshot';
  const pending: Array<Promise<unknown>> = [settle(h.sup.create(TEAM, { id: ID, templateId: snapshotTemplate ? 'snap' : 'base', diskSizeMB: 64 }))];

  for (const [i, { event, state }] of steps.entries()) {
    if (event.type === 'xstate.init') continue;
    const where = `after event ${i} ${event.type}`;
    await dispatch(h, gate, event, pending);
    const want = state.status === 'done' ? 'gone' : JSON.stringify(state.value);
    await waitFor(h, ID, (s) => valueOf(s) === want, `${want} ${where}`);
    assertLedgerMatches(h, where);
    assertHoldsForStatus(h, ID);
  }

  // Whatever the path left, a destroy (with undo faults gone) releases everything.
  // A teardown that ran into the path's injected undo failures ends in Error; the next destroy retries.
  gate.releaseAll();
  for (let attempt = 0; attempt < 3 && h.sup.snapshotOf(ID) !== undefined; attempt++) {
    await settle(h.sup.destroy(TEAM, ID));
  }
  await Promise.all(pending);
  assert.equal(h.sup.snapshotOf(ID), undefined, 'sandbox still registered after destroy');
  assert.ok(h.host.ledger.isEmpty(), `ledger not empty: ${JSON.stringify(h.host.ledger.snapshot())}`);
  assert.equal(h.sup.slots.inUse, 0);
  assert.equal(h.sup.loops.held().size, 0);
}

async function dispatch(h: Harness, gate: StepGate, event: AnyEventObject, pending: Array<Promise<unknown>>): Promise<void> {
  const done = /^xstate\.done\.actor\.(.+)$/.exec(event.type);
  const failed = /^xstate\.error\.actor\.(.+)$/.exec(event.type);
  if (done !== null || failed !== null) {
    const step = stepOfInvoke((done ?? failed)![1]!);
    assert.ok(step !== undefined, `unknown step event ${event.type}`);
    const held = await gate.take(ID, step);
    if (done !== null) held.run();
    else held.fail(new Error('injected'));
    return;
  }
  switch (event.type) {
    case 'PAUSE':
      pending.push(settle(h.sup.pause(TEAM, ID)));
      return;
    case 'RESUME':
      pending.push(settle(h.sup.resume(TEAM, ID)));
      return;
    // Each template name once: the model does not know which templates exist.
    case 'SNAPSHOT':
      pending.push(settle(h.sup.snapshot(TEAM, ID, { templateId: `model-tmpl-${pending.length}` })));
      return;
    case 'FLATTEN':
      pending.push(settle(h.sup.flatten(TEAM, ID, { templateId: `model-flat-${pending.length}` })));
      return;
    case 'DESTROY':
      pending.push(settle(h.sup.destroy(TEAM, ID)));
      return;
    case 'VM_EXITED':
      h.host.crashVm(ID);
      return;
    default:
      throw new Error(`no way to cause ${event.type}`);
  }
}

