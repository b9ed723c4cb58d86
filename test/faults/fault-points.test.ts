// A failure at any step of any operation must end in the documented state
// (rolled back, or Error holding what it could not release), and nothing may
// leak: pin every fault point the operations have, and every failing undo.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { SandboxStatus } from '../../actors/api.ts';
import { SandboxdError } from '../../core/errors.ts';
import type { FakeMethod } from '../../drivers/fake/index.ts';
import { assertHoldsForStatus, assertLedgerMatches, harness, TEAM, type Harness } from '../support/harness.ts';

const ID = 'sb-fault';

interface Operation {
  name: string;
  /** Brings the sandbox to where the operation starts. */
  setup(h: Harness): Promise<void>;
  run(h: Harness): Promise<unknown>;
  ok: SandboxStatus | 'gone';
  /** Where a failure at `step` leaves the sandbox. */
  failed(step: string): SandboxStatus | 'gone';
}

const create = (templateId: string) => (h: Harness) => h.sup.create(TEAM, { id: ID, templateId, diskSizeMB: 64 });
const running = async (h: Harness) => void (await create('base')(h));
const paused = async (h: Harness) => {
  await running(h);
  await h.sup.pause(TEAM, ID);
};
const pauseCommit = new Set(['stopVm', 'removeNetwork', 'removeDisk', 'releaseLoop', 'stageCow', 'swapIn']);

const operations: Operation[] = [
  { name: 'create from base', setup: async () => {}, run: create('base'), ok: 'running', failed: () => 'gone' },
  { name: 'create from snapshot', setup: async () => {}, run: create('snap'), ok: 'running', failed: () => 'gone' },
  {
    name: 'pause',
    setup: running,
    run: (h) => h.sup.pause(TEAM, ID),
    ok: 'paused',
    failed: (step) => (pauseCommit.has(step) ? 'error' : 'running'),
  },
  { name: 'resume', setup: paused, run: (h) => h.sup.resume(TEAM, ID), ok: 'running', failed: () => 'paused' },
  {
    name: 'live snapshot',
    setup: running,
    run: (h) => h.sup.snapshot(TEAM, ID, { templateId: 'fault-tmpl' }),
    ok: 'running',
    failed: () => 'running',
  },
  {
    name: 'paused snapshot',
    setup: paused,
    run: (h) => h.sup.snapshot(TEAM, ID, { templateId: 'fault-tmpl' }),
    ok: 'paused',
    // The loop held for the flatten could not be given back: Error, so a destroy retries it.
    failed: (step) => (step === 'releaseLoop' ? 'error' : 'paused'),
  },
  { name: 'flatten', setup: running, run: (h) => h.sup.flatten(TEAM, ID, { templateId: 'fault-flat' }), ok: 'running', failed: () => 'running' },
  { name: 'destroy running', setup: running, run: (h) => h.sup.destroy(TEAM, ID), ok: 'gone', failed: () => 'error' },
  { name: 'destroy paused', setup: paused, run: (h) => h.sup.destroy(TEAM, ID), ok: 'gone', failed: () => 'error' },
];

const statusOf = (h: Harness): SandboxStatus | 'gone' => (h.sup.snapshotOf(ID) === undefined ? 'gone' : h.sup.get(TEAM, ID).status);

/** The driver calls an operation makes, in order, each with its occurrence index. */
async function callsOf(op: Operation): Promise<Array<{ method: FakeMethod; nth: number }>> {
  const h = harness();
  await op.setup(h);
  h.host.faults.callLog = [];
  await op.run(h);
  const seen = new Map<string, number>();
  return h.host.faults.callLog.map(({ method }) => {
    const nth = seen.get(method) ?? 0;
    seen.set(method, nth + 1);
    return { method: method as FakeMethod, nth };
  });
}

/** Runs the operation with the given faults; returns what the caller saw and where the sandbox is. */
async function runWithFaults(op: Operation, faults: Array<{ method: FakeMethod; nth: number }>) {
  const h = harness();
  await op.setup(h);
  for (const f of faults) h.host.faults.fail(f.method, { after: f.nth, times: 1 });
  h.host.faults.callLog = [];
  const outcome = await op.run(h).then(
    () => null,
    (err: unknown) => err,
  );
  return { h, outcome, at: statusOf(h) };
}

/** After any outcome the ledger matches the state, and one destroy (faults gone) releases everything. */
async function assertCleanAfter(h: Harness, where: string): Promise<void> {
  assertLedgerMatches(h, where);
  if (h.sup.snapshotOf(ID) !== undefined) assertHoldsForStatus(h, ID);
  h.host.faults.clear();
  if (h.sup.snapshotOf(ID) !== undefined) await h.sup.destroy(TEAM, ID);
  assert.ok(h.host.ledger.isEmpty(), `${where}: leaked ${JSON.stringify(h.host.ledger.snapshot())}`);
  assert.equal(h.sup.slots.inUse, 0, `${where}: slot leaked`);
  assert.equal(h.sup.loops.held().size, 0, `${where}: loop leaked`);
}

let forwardPoints = 0;
let undoPoints = 0;
after(() => console.log(`fault points: ${forwardPoints} step failures, ${undoPoints} step+undo failures`));

for (const op of operations) {
  test(`${op.name}: a failure at each step ends in the documented state and leaks nothing`, async () => {
    const calls = await callsOf(op);
    assert.ok(calls.length > 0);
    for (const call of calls) {
      const { h, outcome, at } = await runWithFaults(op, [call]);
      const where = `${op.name}, ${call.method} #${call.nth}`;
      if (outcome === null) {
        // Only best-effort steps may fail without failing the operation.
        assert.equal(at, op.ok, `${where}: succeeded but ended ${at}`);
      } else {
        assert.ok(outcome instanceof SandboxdError, `${where}: ${String(outcome)}`);
        const step = outcome.step ?? h.sup.snapshotOf(ID)?.context.lastError?.step ?? '';
        assert.equal(at, op.failed(step), `${where}: failed at ${step} (${outcome.message}) and ended ${at}`);
      }
      await assertCleanAfter(h, where);
      forwardPoints++;
    }
  });

  test(`${op.name}: a failing undo after a failing step leaves Error holding what it kept, and a destroy finishes`, async () => {
    const calls = await callsOf(op);
    for (const call of calls) {
      // Which undo calls does the rollback of this failure make?
      const first = await runWithFaults(op, [call]);
      const undoCalls = (first.h.host.faults.callLog ?? []).filter((c) => /\.(destroy|remove|detach|discard|removeStaging|removeSandboxDir)$/.test(c.method));
      await assertCleanAfter(first.h, 'probe');
      const counted = new Map<string, number>();
      for (const u of undoCalls) {
        const nth = counted.get(u.method) ?? 0;
        counted.set(u.method, nth + 1);
        const { h, at } = await runWithFaults(op, [call, { method: u.method as FakeMethod, nth }]);
        const where = `${op.name}, ${call.method} #${call.nth} then undo ${u.method} #${nth}`;
        assert.ok(at === 'error' || at === op.ok || at === op.failed(''), `${where}: ended ${at}`);
        await assertCleanAfter(h, where);
        undoPoints++;
      }
    }
  });
}
