// Start-up reconciliation on the fakes: adoption of live VMMs, release of
// dead ones, the sweep of what no record owns, incarnation fencing, and the
// gate that keeps commands out until it is done.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LifecycleEvent } from '../../actors/api.ts';
import { StepRunner } from '../../actors/step-runner.ts';
import type { StepImpl } from '../../actors/steps.ts';
import { Supervisor } from '../../actors/supervisor.ts';
import { status } from '../../actors/view.ts';
import { SandboxdError } from '../../core/errors.ts';
import { silentLogger } from '../../core/log.ts';
import { createFakeDrivers } from '../../drivers/fake/index.ts';
import { MemoryStore } from '../../drivers/store/memory-store.ts';
import { StoreError } from '../../drivers/store/store-error.ts';
import { allSteps, type StepName } from '../../machines/sandbox/steps.ts';
import { assertLedgerMatches, TEAM, type Harness } from '../support/harness.ts';

const signal = () => AbortSignal.timeout(10_000);
const kv = (sup: Supervisor, id: string, ...args: string[]) => sup.exec(TEAM, id, { cmd: 'kv', args });

/** An agent on the fakes, and a way to kill it and start the next one on the same host and store. */
function agents() {
  const fakes = createFakeDrivers();
  const store = new MemoryStore();
  const start = () => new Supervisor({ drivers: { ...fakes.drivers, store }, slots: 16, gateUntilReconciled: true });
  let sup = start();
  return {
    fakes,
    store,
    get sup() {
      return sup;
    },
    harness: (): Harness => ({ ...fakes, store, sup }),
    /** SIGKILL stand-in: the actors stop where they are; records and host stay. */
    restart(): Supervisor {
      sup.halt();
      sup = start();
      return sup;
    },
  };
}

test('running sandboxes are adopted with the same VMM and stay fully operable; paused ones keep their slot', async () => {
  const a = agents();
  await a.sup.reconcile(signal());
  const run = (await a.sup.create(TEAM, { id: 'sb-run', templateId: 'base', timeoutSec: 0 })).sandbox;
  const pau = (await a.sup.create(TEAM, { id: 'sb-pau', templateId: 'base', timeoutSec: 0 })).sandbox;
  await kv(a.sup, 'sb-run', 'set', 'k', 'run');
  await kv(a.sup, 'sb-pau', 'set', 'k', 'pau');
  await a.sup.pause(TEAM, 'sb-pau');
  const pid = a.fakes.host.ledger.vms.get('sb-run')!.pid;

  const sup = a.restart();
  const report = await sup.reconcile(signal());
  assert.deepEqual(
    report.outcomes.map((o) => [o.sandboxId, o.via, o.to]).sort(),
    [['sb-pau', 'paused', 'paused'], ['sb-run', 'running', 'running']],
  );
  assert.equal(a.fakes.host.ledger.vms.get('sb-run')!.pid, pid, 'the same VMM process, not a restart');
  assert.equal(sup.snapshotOf('sb-run')!.context.res.vm!.pid, pid);
  assert.deepEqual([sup.slots.ownerOf(run.slot!), sup.slots.ownerOf(pau.slot!)], ['sb-run', 'sb-pau'], 'slots held again');
  assertLedgerMatches(a.harness(), 'after reconciliation');
  assert.ok(sup.get(TEAM, 'sb-run').incarnation !== run.incarnation, 'a rebuilt sandbox is a new incarnation');

  assert.equal((await kv(sup, 'sb-run', 'get', 'k')).stdout, 'run');
  await sup.pause(TEAM, 'sb-run');
  await sup.resume(TEAM, 'sb-run');
  await sup.resume(TEAM, 'sb-pau');
  assert.equal((await kv(sup, 'sb-pau', 'get', 'k')).stdout, 'pau');
  assert.equal((await kv(sup, 'sb-run', 'get', 'k')).stdout, 'run');
  await sup.destroy(TEAM, 'sb-run');
  await sup.destroy(TEAM, 'sb-pau');
  assert.ok(a.fakes.host.ledger.isEmpty());
  assert.deepEqual(a.store.loadAll(), []);
});

test('a running sandbox whose VMM died while the agent was down is released, with an `error` event', async () => {
  const a = agents();
  await a.sup.reconcile(signal());
  await a.sup.create(TEAM, { id: 'sb-lost', templateId: 'base', timeoutSec: 0 });
  const sup = a.restart();
  a.fakes.host.dropVm('sb-lost');
  const events: LifecycleEvent[] = [];
  sup.onEvent((e) => events.push(e));
  const report = await sup.reconcile(signal());
  assert.deepEqual(report.outcomes.map((o) => [o.via, o.to]), [['crashed', 'destroyed']]);
  assert.deepEqual(events.map((e) => [e.sandboxId, e.type]), [['sb-lost', 'error']]);
  assert.match(events[0]!.reason ?? '', /did not survive/);
  assert.equal(sup.snapshotOf('sb-lost'), undefined);
  assert.ok(a.fakes.host.ledger.isEmpty(), JSON.stringify(a.fakes.host.ledger.snapshot()));
  assert.deepEqual(a.store.loadAll(), []);
});

test('whatever the host holds that no record owns is swept and reported by kind; a pause dir without a record comes back', async () => {
  const a = agents();
  await a.sup.reconcile(signal());
  await a.sup.create(TEAM, { id: 'sb-keep', templateId: 'base', timeoutSec: 0 });
  await a.sup.create(TEAM, { id: 'sb-unrec', templateId: 'base', timeoutSec: 0 });
  await a.sup.pause(TEAM, 'sb-unrec');
  // Orphans: a network and a staging dir nobody recorded.
  await a.fakes.drivers.network.create(9, { signal: signal() });
  const staging = await a.fakes.drivers.files.makeStaging('sb-keep', { signal: signal() });
  a.sup.halt();
  a.store.remove('sb-unrec'); // as if the agent had kept no store: only the pause dir says it exists

  const sup = a.restart();
  const report = await sup.reconcile(signal());
  assert.deepEqual(report.pausedFromDisk, ['sb-unrec']);
  assert.deepEqual(report.orphans.network, ['9']);
  assert.deepEqual(report.orphans.staging, [staging]);
  assert.equal(status(sup.snapshotOf('sb-keep')!), 'running');
  assert.equal(status(sup.snapshotOf('sb-unrec')!), 'paused');
  assertLedgerMatches(a.harness(), 'after the sweep');
  for (const id of ['sb-keep', 'sb-unrec']) await sup.destroy(TEAM, id);
  assert.ok(a.fakes.host.ledger.isEmpty());
});

test('commands wait for reconciliation: `starting` until it ends, nothing changes', async () => {
  const a = agents();
  await assert.rejects(a.sup.create(TEAM, { templateId: 'base' }), (e: SandboxdError) => e.code === 'starting');
  assert.throws(() => a.sup.list(TEAM), (e: SandboxdError) => e.code === 'starting');
  assert.equal(a.sup.ready, false);
  await a.sup.reconcile(signal());
  assert.equal(a.sup.ready, true);
  assert.deepEqual(a.sup.list(TEAM), []);
  assert.ok(a.fakes.host.ledger.isEmpty());
});

test('a command naming another incarnation is refused and changes nothing', async () => {
  const a = agents();
  await a.sup.reconcile(signal());
  const first = (await a.sup.create(TEAM, { id: 'sb-fence', templateId: 'base', timeoutSec: 0 })).sandbox;
  await a.sup.destroy(TEAM, 'sb-fence', { incarnation: first.incarnation });
  const second = (await a.sup.create(TEAM, { id: 'sb-fence', templateId: 'base', timeoutSec: 0 })).sandbox;
  assert.notEqual(second.incarnation, first.incarnation, 'the same id again is another incarnation');
  for (const call of [
    () => a.sup.pause(TEAM, 'sb-fence', { incarnation: first.incarnation }),
    () => a.sup.destroy(TEAM, 'sb-fence', { incarnation: first.incarnation }),
    () => a.sup.snapshot(TEAM, 'sb-fence', { templateId: 'x', incarnation: first.incarnation }),
  ]) {
    await assert.rejects(call(), (e: SandboxdError) => e.code === 'stale_incarnation');
  }
  assert.equal(a.sup.get(TEAM, 'sb-fence').status, 'running');
  await a.sup.pause(TEAM, 'sb-fence', { incarnation: second.incarnation });

  // Across a restart the incarnation changes too: a client that saw the old one re-reads first.
  const sup = a.restart();
  await sup.reconcile(signal());
  await assert.rejects(sup.resume(TEAM, 'sb-fence', { incarnation: second.incarnation }), (e: SandboxdError) => e.code === 'stale_incarnation');
  assert.equal(sup.get(TEAM, 'sb-fence').status, 'paused');
  await sup.destroy(TEAM, 'sb-fence');
});

test('a step result that arrives for an earlier incarnation is refused', async () => {
  let incarnation = 1;
  let finish = () => {};
  const held: StepImpl = () => new Promise((resolve) => (finish = () => resolve({ envdVersion: 'late' })));
  const impls = Object.fromEntries(allSteps.map((n) => [n, held])) as Record<StepName, StepImpl>;
  const runner = new StepRunner(impls, () => silentLogger, undefined, { beforeStep: () => incarnation, incarnationOf: () => incarnation });
  const context = { id: 'sb-late' } as Parameters<StepImpl>[0];
  const late = runner.run('readEnvdVersion', { context }, new AbortController());
  incarnation = 2; // destroyed and created again, or rebuilt by a restart, while the step ran
  finish();
  await assert.rejects(late, (e: SandboxdError) => e.code === 'stale_incarnation');
});

test('a record that does not belong to its sandbox stops reconciliation rather than be guessed at', async () => {
  const a = agents();
  await a.sup.reconcile(signal());
  await a.sup.create(TEAM, { id: 'sb-bad', templateId: 'base', timeoutSec: 0 });
  a.sup.halt();
  const rec = a.store.get('sb-bad')!;
  a.store.save({ ...rec, machine: { ...rec.machine, context: { ...rec.machine.context, id: 'sb-other' } } });
  const sup = a.restart();
  await assert.rejects(sup.reconcile(signal()), (e: StoreError) => e instanceof StoreError && e.failure === 'bad_record');
  assert.equal(sup.ready, false, 'still refusing commands');
});

test('a failed intent write fails the step before it acts', async () => {
  const fakes = createFakeDrivers();
  const store = new MemoryStore();
  let failNext = false;
  const sup = new Supervisor({
    drivers: {
      ...fakes.drivers,
      store: {
        save: (r) => {
          if (failNext) {
            failNext = false;
            throw new StoreError('io', 'disk full');
          }
          store.save(r);
        },
        remove: (id) => store.remove(id),
        loadAll: () => store.loadAll(),
        nextEpoch: () => store.nextEpoch(),
      },
    },
    slots: 4,
  });
  await sup.create(TEAM, { id: 'sb-io', templateId: 'base', timeoutSec: 0 });
  const vmBefore = fakes.host.ledger.snapshot();
  failNext = true; // the intent of the pause's first step
  await assert.rejects(sup.pause(TEAM, 'sb-io'), /disk full/);
  assert.equal(sup.get(TEAM, 'sb-io').status, 'running', 'the pause never acted: the VM was never paused');
  assert.deepEqual(fakes.host.ledger.snapshot().vms, vmBefore.vms);
  await sup.destroy(TEAM, 'sb-io');
  assert.ok(fakes.host.ledger.isEmpty());
});
