// The agent dies at every step boundary of every operation (on the fakes, in
// process): before a step's side effect (its intent is on record, nothing was
// done) and after it (done, but the outcome never recorded). A new supervisor
// on the same host and store reconciles; the sandbox must end where the
// README's reconciliation table says, keep its guest data where it survives,
// hold exactly what the host holds, and release everything on destroy.
// The real-process version (SIGKILL, real backends) is test/crash/.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { SandboxStatus } from '../../actors/api.ts';
import type { StepImpl } from '../../actors/steps.ts';
import { Supervisor } from '../../actors/supervisor.ts';
import { MemoryStore } from '../../drivers/store/memory-store.ts';
import type { SandboxStore } from '../../drivers/store/store.ts';
import type { StepName } from '../../machines/sandbox/steps.ts';
import { createFakeDrivers } from '../../drivers/fake/index.ts';
import { assertHoldsForStatus, assertLedgerMatches, TEAM, type Harness } from '../support/harness.ts';
import { status } from '../../actors/view.ts';

const ID = 'sb-crash';

interface Operation {
  name: string;
  setup(sup: Supervisor): Promise<void>;
  run(sup: Supervisor): Promise<unknown>;
  /** Where the restarted agent must leave the sandbox when this op died at `step` (`done`: the side effect happened). */
  expect(step: StepName, done: boolean): SandboxStatus | 'gone';
}

const kv = (sup: Supervisor, ...args: string[]) => sup.exec(TEAM, ID, { cmd: 'kv', args });
const running = async (sup: Supervisor) => {
  await sup.create(TEAM, { id: ID, templateId: 'base', diskSizeMB: 64, timeoutSec: 0 });
  await kv(sup, 'set', 'kept', 'yes');
};
const paused = async (sup: Supervisor) => {
  await running(sup);
  await sup.pause(TEAM, ID);
};
const pauseCommit = new Set<StepName>(['stopVm', 'removeNetwork', 'removeDisk', 'releaseLoop', 'stageCow', 'swapIn']);
// waitMemoryLoader here is Running's watch of the loader a lazy restore started: the operation had finished.
const resumeGuestRan = new Set<StepName>(['waitEnvd', 'deflateBalloon', 'initEnvd', 'startMemoryLoader', 'waitMemoryLoader']);

const operations: Operation[] = [
  {
    name: 'create from base',
    setup: async () => {},
    run: (sup) => sup.create(TEAM, { id: ID, templateId: 'base', diskSizeMB: 64, timeoutSec: 0 }),
    expect: () => 'gone',
  },
  {
    name: 'create from snapshot',
    setup: async () => {},
    run: (sup) => sup.create(TEAM, { id: ID, templateId: 'snap', diskSizeMB: 64, timeoutSec: 0 }),
    expect: (step) => (step === 'waitMemoryLoader' ? 'running' : 'gone'),
  },
  { name: 'pause', setup: running, run: (sup) => sup.pause(TEAM, ID), expect: (step) => (pauseCommit.has(step) ? 'paused' : 'running') },
  {
    name: 'resume',
    setup: paused,
    run: (sup) => sup.resume(TEAM, ID),
    expect: (step, done) => (resumeGuestRan.has(step) || (step === 'resumeVm' && done) ? 'running' : 'paused'),
  },
  { name: 'live snapshot', setup: running, run: (sup) => sup.snapshot(TEAM, ID, { templateId: 'crash-tmpl' }), expect: () => 'running' },
  { name: 'paused snapshot', setup: paused, run: (sup) => sup.snapshot(TEAM, ID, { templateId: 'crash-tmpl' }), expect: () => 'paused' },
  { name: 'flatten', setup: running, run: (sup) => sup.flatten(TEAM, ID, { templateId: 'crash-flat' }), expect: () => 'running' },
  { name: 'destroy running', setup: running, run: (sup) => sup.destroy(TEAM, ID), expect: () => 'gone' },
  { name: 'destroy paused', setup: paused, run: (sup) => sup.destroy(TEAM, ID), expect: () => 'gone' },
];

/** A step never settles once the agent is dead, as if the process had gone. */
const never = (signal: AbortSignal) => new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));

type Boundary = 'before' | 'after';

/**
 * A fake-driver agent that can die at one step boundary: from then on no step
 * runs or reports, and nothing more reaches the store. `arm` names the
 * boundary by the steps seen since it was called.
 */
function mortalAgent(store: MemoryStore, fakes: ReturnType<typeof createFakeDrivers>, opts: { reconciling?: boolean } = {}) {
  let dieAt: ((name: StepName, seen: readonly StepName[], when: Boundary) => boolean) | null = null;
  let dead = false;
  let onDeath = () => {};
  const died = new Promise<void>((resolve) => (onDeath = resolve));
  const steps: StepName[] = [];
  const die = () => {
    dead = true;
    onDeath();
  };
  const wrapStep = (name: StepName, impl: StepImpl): StepImpl => async (context, signal) => {
    if (dead) return never(signal);
    steps.push(name);
    const seen = [...steps];
    if (dieAt?.(name, seen, 'before')) return (die(), never(signal));
    const out = await impl(context, signal);
    if (dead || dieAt?.(name, seen, 'after')) return (die(), never(signal));
    return out;
  };
  const mortalStore: SandboxStore = {
    save: (r) => void (dead || store.save(r)),
    remove: (id) => void (dead || store.remove(id)),
    loadAll: () => store.loadAll(),
    nextEpoch: () => store.nextEpoch(),
  };
  const sup = new Supervisor({ drivers: { ...fakes.drivers, store: mortalStore }, slots: 64, wrapStep, gateUntilReconciled: opts.reconciling ?? false });
  return {
    sup,
    steps,
    died,
    get dead() {
      return dead;
    },
    arm(at: (name: StepName, seen: readonly StepName[], when: Boundary) => boolean) {
      dieAt = at;
      steps.length = 0;
    },
  };
}

/** Dies at the `nth` run of `step`, on `when`. */
const atStep = (step: StepName, nth: number, when: Boundary) => (name: StepName, seen: readonly StepName[], w: Boundary) =>
  name === step && w === when && seen.filter((s) => s === step).length === nth;

/** The steps an operation runs, in order, from a run that does not die. */
async function stepsOf(op: Operation): Promise<StepName[]> {
  const fakes = createFakeDrivers();
  const agent = mortalAgent(new MemoryStore(), fakes);
  await op.setup(agent.sup);
  agent.steps.length = 0;
  await op.run(agent.sup);
  const steps = [...agent.steps];
  agent.sup.halt();
  return steps;
}

let points = 0;
let twice = 0;
after(() => {
  console.log(`crash points (fakes, in process): ${points} ran, before and after every step of ${operations.length} operations`);
  console.log(`crashed again during the reconciliation of each: ${twice} second crash points (before and after every step the recovery ran)`);
});

/**
 * Kills an agent at `first`; optionally kills the agent that reconciles after
 * it at the `second` boundary of its recovery steps; then a last agent
 * reconciles and the documented outcome must hold. Returns false when the
 * recovery ran fewer steps than `second` asks for (so nothing was killed).
 */
async function crashThenRecover(op: Operation, first: Parameters<typeof atStep>, second?: { index: number; when: Boundary }): Promise<boolean> {
  const fakes = createFakeDrivers();
  const store = new MemoryStore();
  const agent = mortalAgent(store, fakes);
  await op.setup(agent.sup);
  agent.arm(atStep(...first));
  void op.run(agent.sup).catch(() => {});
  await agent.died;
  agent.sup.halt();

  if (second !== undefined) {
    const recovering = mortalAgent(store, fakes, { reconciling: true });
    recovering.arm((_, seen, when) => seen.length === second.index && when === second.when);
    // Once halted, its reconciliation is cancelled: it must not go on sweeping for a dead agent.
    const reconciled = recovering.sup.reconcile(AbortSignal.timeout(10_000)).then(() => 'reconciled' as const, () => 'cancelled' as const);
    const outcome = await Promise.race([recovering.died.then(() => 'died' as const), reconciled]);
    recovering.sup.halt();
    if (outcome !== 'died') return false;
  }

  const sup = new Supervisor({ drivers: { ...fakes.drivers, store }, slots: 64, gateUntilReconciled: true });
  const h: Harness = { ...fakes, store, sup };
  const report = await sup.reconcile(AbortSignal.timeout(10_000));
  const [step, , when] = first;
  const want = op.expect(step, when === 'after');
  const snapshot = sup.snapshotOf(ID);
  assert.equal(snapshot === undefined ? 'gone' : status(snapshot), want, `outcome ${JSON.stringify(report.outcomes)}`);
  assertLedgerMatches(h, 'after reconciliation');
  assertHoldsForStatus(h, ID);
  assert.deepEqual(store.loadAll().map((r) => r.id), want === 'gone' ? [] : [ID], 'the store holds the survivors only');
  if (want === 'paused') await sup.resume(TEAM, ID);
  if (want !== 'gone') {
    // Written by the setup; a create has no data of its own yet.
    const kept = op.setup === running || op.setup === paused ? 'yes' : '';
    assert.equal((await kv(sup, 'get', 'kept')).stdout, kept, 'the guest kept its data');
    // One more restart, now Running: the VM is adopted, not swept as an orphan.
    sup.halt();
    const again = new Supervisor({ drivers: { ...fakes.drivers, store }, slots: 64, gateUntilReconciled: true });
    const next = await again.reconcile(AbortSignal.timeout(10_000));
    assert.deepEqual(next.orphans.vmm, [], 'a running sandbox keeps its VMM across a restart');
    assertLedgerMatches({ ...h, sup: again }, 'after a second restart');
    assert.equal((await kv(again, 'get', 'kept')).stdout, kept);
    await again.destroy(TEAM, ID);
  }
  assert.ok(fakes.host.ledger.isEmpty(), `nothing left after destroy: ${JSON.stringify(fakes.host.ledger.snapshot())}`);
  assert.deepEqual(store.loadAll(), []);
  return true;
}

for (const op of operations) {
  test(`agent killed at each step of ${op.name}, and again during its recovery: the last agent reconciles as documented`, async (t) => {
    const sequence = await stepsOf(op);
    assert.ok(sequence.length > 0, 'the operation runs steps');
    for (const [i, step] of sequence.entries()) {
      const nth = sequence.slice(0, i + 1).filter((s) => s === step).length;
      for (const when of ['before', 'after'] as const) {
        await t.test(`${step}#${nth} ${when}`, async () => {
          assert.ok(await crashThenRecover(op, [step, nth, when]));
          points++;
          // The same crash, then the recovering agent killed at each boundary of what it runs.
          for (let index = 1; ; index++) {
            const killed = await Promise.all((['before', 'after'] as const).map((w) => crashThenRecover(op, [step, nth, when], { index, when: w })));
            twice += killed.filter(Boolean).length;
            if (!killed.includes(true)) break;
          }
        });
      }
    }
  });
}
