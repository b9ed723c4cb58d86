// The SQLite store under a real supervisor: a step's intent (its ledger row
// `intended`) is committed before the step acts, the ledger's live rows equal
// what the host holds at every settled state, a destroyed sandbox leaves no
// row, and a restart on the same file reconciles from it.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { Supervisor } from '../../actors/supervisor.ts';
import { createFakeDrivers } from '../../drivers/fake/index.ts';
import { SqliteStore } from '../../drivers/store/sqlite-store.ts';
import { StepGate, TEAM } from '../support/harness.ts';
import { tempDir } from '../store/helpers.ts';

type Fakes = ReturnType<typeof createFakeDrivers>;

function open(t: TestContext, dir: string, fakes: Fakes, wrapStep?: StepGate['wrap']) {
  const store = new SqliteStore(dir);
  t.after(() => store.close());
  const sup = new Supervisor({ drivers: { ...fakes.drivers, store }, slots: 8, gateUntilReconciled: true, ...(wrapStep ? { wrapStep } : {}) });
  return { store, sup };
}

const live = (store: SqliteStore, id: string) =>
  store.ledger(id).filter((e) => e.state !== 'released').map((e) => `${e.kind}:${e.name}:${e.state}`).sort();

/** The fake host's holdings of one sandbox, in ledger form (every one present). */
function hostRows(fakes: Fakes, sup: Supervisor, id: string): string[] {
  const l = fakes.host.ledger;
  const held = l.heldBy(id);
  const origin = sup.snapshotOf(id)?.context.res.originPath ?? null;
  const loops = [...l.loops.values()].filter((x) => x.imagePath === origin && sup.snapshotOf(id)?.context.res.loopDevice !== null);
  return [
    ...held.disks.map((d) => `disk:${d.name}`),
    ...held.cows.map((c) => `cow:${c}`),
    ...(held.vm === null ? [] : [`vmm:${id}`]),
    ...(held.sandboxDir ? [`sandbox_dir:${id}`] : []),
    ...held.stagingDirs.map((s) => `staging:${s}`),
    ...loops.map((x) => `loop_ref:${x.imagePath}#${id}`),
    ...[...sup.slots.held()].filter(([, owner]) => owner === id).map(([slot]) => `slot:${slot}`),
    ...[...sup.slots.held()].filter(([slot, owner]) => owner === id && l.networks.has(slot)).map(([slot]) => `network:slot-${slot}`),
  ]
    .map((r) => `${r}:present`)
    .sort();
}

test('a step is on record as intended before it acts, present after', async (t) => {
  const gate = new StepGate();
  const { store, sup } = open(t, tempDir(t), createFakeDrivers(), gate.wrap);
  await sup.reconcile(AbortSignal.timeout(5_000));
  const created = sup.create(TEAM, { id: 'sb-led', templateId: 'base', timeoutSec: 0 });
  for (const name of ['resolveTemplate', 'acquireLoop', 'allocateSlot', 'readOriginSize', 'createNetwork', 'makeSandboxDir'] as const) {
    (await gate.take('sb-led', name)).run();
  }
  const disk = await gate.take('sb-led', 'createDisk');
  const rows = live(store, 'sb-led');
  assert.ok(rows.includes('disk:sbxd-sb-led:intended'), `the disk is intended before createDisk acts: ${rows.join(', ')}`);
  assert.ok(rows.some((r) => r.startsWith('cow:') && r.endsWith(':intended')));
  disk.run();
  await gate.take('sb-led', 'bootVm').then((boot) => {
    assert.ok(live(store, 'sb-led').includes('disk:sbxd-sb-led:present'));
    assert.ok(live(store, 'sb-led').includes('vmm:sb-led:intended'), 'the VMM is intended while bootVm runs');
    boot.run();
  });
  gate.releaseAll();
  await created;
  assert.ok(live(store, 'sb-led').includes('vmm:sb-led:present'));
});

test('at every settled state the live ledger rows are what the host holds; destroy leaves none; a restart reconciles from the file', async (t) => {
  const fakes = createFakeDrivers();
  const dir = tempDir(t);
  let { store, sup } = open(t, dir, fakes);
  await sup.reconcile(AbortSignal.timeout(5_000));
  const check = (where: string) => assert.deepEqual(live(store, 'sb-dur'), hostRows(fakes, sup, 'sb-dur'), where);

  await sup.create(TEAM, { id: 'sb-dur', templateId: 'base', timeoutSec: 0 });
  check('running');
  await sup.pause(TEAM, 'sb-dur');
  check('paused');
  assert.ok(store.ledger('sb-dur').some((e) => e.kind === 'vmm' && e.state === 'released'), 'the stopped VMM is released, not forgotten');
  await sup.resume(TEAM, 'sb-dur');
  check('resumed');

  sup.halt();
  store.close();
  ({ store, sup } = open(t, dir, fakes));
  const report = await sup.reconcile(AbortSignal.timeout(5_000));
  assert.deepEqual(report.outcomes.map((o) => [o.sandboxId, o.to]), [['sb-dur', 'running']]);
  check('adopted after a restart');

  await sup.destroy(TEAM, 'sb-dur');
  assert.deepEqual(store.ledger('sb-dur'), [], 'a destroyed sandbox takes its rows with it');
  assert.deepEqual(store.loadAll(), []);
  assert.ok(fakes.host.ledger.isEmpty());
});
