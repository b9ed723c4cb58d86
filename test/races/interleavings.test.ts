// Races: random interleavings of every command, VM crashes, inactivity expiry
// and shutdown over several sandboxes, with random faults, ordered step by
// step by fast-check's scheduler. Whatever the order, once everything settles
// no sandbox is stuck mid-operation, the ledger matches the states, a destroy
// that succeeded is never undone, and destroying everything leaves nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FAKE_METHODS, type FakeMethod } from '../../drivers/fake/index.ts';
import { assertHoldsForStatus, assertLedgerMatches, harness, settle, TEAM, type Harness } from '../support/harness.ts';

const IDS = ['sb-race-a', 'sb-race-b', 'sb-race-c'];

type Op =
  | { kind: 'create' | 'destroy' | 'pause' | 'resume' | 'snapshot' | 'crash' | 'expire' | 'exec'; sandbox: number }
  | { kind: 'shutdown' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ kind: fc.constantFrom('create', 'destroy', 'pause', 'resume', 'snapshot', 'crash', 'expire', 'exec'), sandbox: fc.nat(IDS.length - 1) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'shutdown' as const }) },
) as fc.Arbitrary<Op>;

const faultArb = fc.record({ method: fc.constantFrom(...FAKE_METHODS), after: fc.nat(3), times: fc.integer({ min: 1, max: 2 }) });

const busy = (h: Harness) => h.sup.ids().some((id) => h.sup.snapshotOf(id)!.hasTag('busy'));

let templateSeq = 0;
function run(h: Harness, op: Op, destroyed: Set<string>): Promise<unknown> {
  if (op.kind === 'shutdown') return h.sup.shutdown();
  const id = IDS[op.sandbox]!;
  switch (op.kind) {
    case 'create':
      return h.sup.create(TEAM, { id, templateId: op.sandbox === 2 ? 'snap' : 'base', diskSizeMB: 64 });
    case 'destroy':
      return h.sup.destroy(TEAM, id).then(() => destroyed.add(id));
    case 'pause':
      return h.sup.pause(TEAM, id);
    case 'resume':
      return h.sup.resume(TEAM, id);
    case 'snapshot':
      return h.sup.snapshot(TEAM, id, { templateId: `race-${templateSeq++}` });
    case 'crash':
      return Promise.resolve(h.host.crashVm(id));
    case 'expire':
      // With the test's inactivity delay of 1 ms, any positive timeout expires at once.
      return Promise.resolve(h.sup.setTimeout(TEAM, id, 60));
    case 'exec':
      return h.sup.exec(TEAM, id, { cmd: 'kv', args: ['set', 'k', 'v'] });
  }
}

let runs = 0;
let operations = 0;
let succeeded = 0;

test('random interleavings of commands, crashes, expiry and shutdown with random faults settle cleanly', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.scheduler(),
      fc.array(opArb, { minLength: 1, maxLength: 14 }),
      fc.array(faultArb, { maxLength: 3 }),
      async (s, ops, faults) => {
        runs++;
        const h = harness({
          supervisor: {
            // Every step waits for the scheduler: fast-check decides which sandbox moves next.
            wrapStep: (name, impl) => (ctx, signal) => s.schedule(Promise.resolve(), `${ctx.id}:${name}`).then(() => impl(ctx, signal)),
            inactivityDelayMs: () => 1,
          },
        });
        for (const f of faults) h.host.faults.fail(f.method as FakeMethod, { after: f.after, times: f.times });
        const destroyed = new Set<string>();
        // Every sandbox is created once, racing whatever else happens to it.
        const all: Op[] = [...IDS.map((_, sandbox) => ({ kind: 'create' as const, sandbox })), ...ops];
        const outcomes = all.map((op) => settle(s.schedule(Promise.resolve(), JSON.stringify(op)).then(() => run(h, op, destroyed))));

        // Settle: scheduled steps, then timers (inactivity), until nothing moves.
        for (let round = 0; round < 200; round++) {
          await s.waitAll();
          if (!busy(h) && s.count() === 0) {
            await new Promise((r) => setTimeout(r, 2));
            if (!busy(h) && s.count() === 0) break;
          }
        }
        const results = await Promise.all(outcomes);
        operations += results.length;
        succeeded += results.filter((r) => !(r instanceof Error)).length;

        assert.equal(busy(h), false, `stuck: ${h.sup.ids().map((id) => JSON.stringify(h.sup.snapshotOf(id)!.value)).join(', ')}`);
        assertLedgerMatches(h, 'after settling');
        for (const id of IDS) assertHoldsForStatus(h, id);
        for (const id of destroyed) {
          // A destroy that answered success is final; a later create may reuse the id only as a new sandbox.
          if (!ops.some((o) => o.kind === 'create' && IDS[o.sandbox] === id)) assert.equal(h.sup.snapshotOf(id), undefined, `${id} came back`);
        }

        // Faults gone: one destroy each releases everything.
        h.host.faults.clear();
        s.waitAll();
        const teardown = h.sup.ids().map((id) => settle(h.sup.destroy(TEAM, id)));
        for (let round = 0; round < 200 && h.sup.ids().length > 0; round++) await s.waitAll();
        await Promise.all(teardown);
        assert.deepEqual(h.sup.ids(), []);
        assert.ok(h.host.ledger.isEmpty(), `leaked: ${JSON.stringify(h.host.ledger.snapshot())}`);
        assert.equal(h.sup.slots.inUse, 0);
        assert.equal(h.sup.loops.held().size, 0);
      },
    ),
    { numRuns: 200, seed: Number(process.env.RACE_SEED ?? 20261123) },
  );
  console.log(`races: ${runs} runs, ${operations} operations, ${succeeded} succeeded`);
  assert.ok(succeeded > operations / 4, 'most operations failed: the interleavings test little');
});
