// The durable store's records and resource ledger: what a save wrote comes back
// field for field, across reopen and across a SIGKILL of the writer; invalid
// input and invalid ledger moves are refused without changing anything.
// Opening refusals (corrupt, foreign, newer, locked) and migrations: sqlite-open.test.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { Supervisor } from '../../actors/supervisor.ts';
import { createFakeDrivers } from '../../drivers/fake/index.ts';
import { DB_FILE, SqliteStore } from '../../drivers/store/sqlite-store.ts';
import { StoreError } from '../../drivers/store/store-error.ts';
import { openStore, sampleRecord, tempDir } from './helpers.ts';

const failure = (name: StoreError['failure']) => (err: unknown) => err instanceof StoreError && err.failure === name;

test('a saved record loads back field for field, nested resources and nulls included', (t) => {
  const store = openStore(t, tempDir(t));
  const a = sampleRecord('sb-a');
  const b = sampleRecord('sb-b', { status: 'creating', step: 'creating.bootVm', opId: 'op1', slot: null, hostIp: null, rootfsDevice: null, resources: {}, metadata: {} });
  store.save(a);
  store.save(b);
  assert.deepEqual(store.loadAll(), [a, b]);
  assert.deepEqual(store.get('sb-b'), b);
  assert.equal(store.get('sb-none'), undefined);
});

test('each transition overwrites the one row of its sandbox: the last save wins', (t) => {
  const store = openStore(t, tempDir(t));
  store.save(sampleRecord('sb-a', { status: 'running', step: 'running.idle' }));
  store.save(sampleRecord('sb-a', { status: 'pausing', step: 'pausing.pauseVm', opId: 'op7' }));
  const last = sampleRecord('sb-a', { status: 'paused', step: 'paused', slot: 7, resources: { cowPath: '/x/rootfs.cow' } });
  store.save(last);
  assert.deepEqual(store.loadAll(), [last]);
});

test('records outlive the store: close and reopen finds every one, removed ones stay gone', (t) => {
  const dir = tempDir(t);
  const first = new SqliteStore(dir);
  const kept = [sampleRecord('sb-1'), sampleRecord('sb-2', { status: 'paused', step: 'paused' }), sampleRecord('sb-3')];
  for (const r of kept) first.save(r);
  first.save(sampleRecord('sb-gone'));
  first.remove('sb-gone');
  first.remove('sb-never-saved'); // a second destroy's remove is not an error
  first.close();
  const second = openStore(t, dir);
  assert.deepEqual(second.loadAll(), kept);
});

test('a record that would not load back is refused at save and nothing is written', (t) => {
  const store = openStore(t, tempDir(t));
  store.save(sampleRecord('sb-a'));
  const bad = [
    sampleRecord('sb-a', { status: 'sleeping' }),
    sampleRecord('sb-a', { vcpus: 0 }),
    sampleRecord('sb-a', { createdAt: 'yesterday' }),
    sampleRecord('../etc', {}),
    { ...sampleRecord('sb-a'), extra: 1 } as never,
  ];
  for (const r of bad) assert.throws(() => store.save(r), (e) => failure('invalid_input')(e) && (e as StoreError).code === 'invalid_argument');
  assert.throws(() => store.remove('../../x'), failure('invalid_input'));
  assert.deepEqual(store.loadAll(), [sampleRecord('sb-a')]);
});

test('a stored row that does not parse is reported by id, never silently skipped', (t) => {
  const dir = tempDir(t);
  const store = new SqliteStore(dir);
  store.save(sampleRecord('sb-good'));
  store.save(sampleRecord('sb-bad-json'));
  store.save(sampleRecord('sb-bad-field'));
  store.close();
  const raw = new Database(join(dir, DB_FILE));
  raw.prepare(`UPDATE sandboxes SET doc = '{"vcpus": 2' WHERE id = 'sb-bad-json'`).run();
  raw.prepare(`UPDATE sandboxes SET status = 'sleeping' WHERE id = 'sb-bad-field'`).run();
  raw.close();
  const reopened = openStore(t, dir);
  assert.throws(
    () => reopened.loadAll(),
    (e) => failure('bad_record')(e) && /sb-bad-json: doc is not JSON/.test((e as Error).message) && /sb-bad-field: status/.test((e as Error).message) && !/sb-good/.test((e as Error).message),
  );
  assert.deepEqual(reopened.get('sb-good'), sampleRecord('sb-good'));
});

test('ledger walks intended → present → releasing → released, per sandbox and across reopen', (t) => {
  const dir = tempDir(t);
  const store = new SqliteStore(dir);
  assert.equal(store.intend('dm', 'sbx-sb-a', 'sb-a').state, 'intended');
  assert.equal(store.markPresent('dm', 'sbx-sb-a', 'sb-a').state, 'present');
  store.intend('netns', 'sbx-ns-3', 'sb-b');
  store.intend('loop', '/data/images/teams/system/base/rootfs.ext4', null);
  store.markPresent('loop', '/data/images/teams/system/base/rootfs.ext4', null);
  store.close();
  const again = openStore(t, dir);
  const states = (sb?: string | null) => again.ledger(sb).map((e) => `${e.kind}:${e.name}:${e.sandboxId}:${e.state}`);
  assert.deepEqual(states('sb-a'), ['dm:sbx-sb-a:sb-a:present']);
  assert.deepEqual(states(null), ['loop:/data/images/teams/system/base/rootfs.ext4:null:present']);
  assert.equal(states().length, 3);
  assert.equal(again.markReleasing('dm', 'sbx-sb-a', 'sb-a').state, 'releasing');
  assert.equal(again.markReleased('dm', 'sbx-sb-a', 'sb-a').state, 'released');
  // An effect that failed or was interrupted is released without ever being present.
  again.markReleasing('netns', 'sbx-ns-3', 'sb-b');
  again.markReleased('netns', 'sbx-ns-3', 'sb-b');
  assert.deepEqual(states('sb-b'), ['netns:sbx-ns-3:sb-b:released']);
  // A released name (a reused loop or slot namespace) can be taken by a new owner.
  assert.equal(again.intend('netns', 'sbx-ns-3', 'sb-c').sandboxId, 'sb-c');
});

test('ledger refuses moves the graph lacks or another owner makes, and the row stays as it was', (t) => {
  const store = openStore(t, tempDir(t));
  const refused = (fn: () => unknown) => assert.throws(fn, (e) => failure('invalid_transition')(e) && (e as StoreError).code === 'invalid_argument');
  refused(() => store.markPresent('vm', 'sb-a', 'sb-a')); // never intended
  refused(() => store.markReleased('vm', 'sb-a', 'sb-a'));
  assert.deepEqual(store.ledger(), []);
  store.intend('vm', 'sb-a', 'sb-a');
  refused(() => store.markReleased('vm', 'sb-a', 'sb-a')); // skips releasing
  refused(() => store.intend('vm', 'sb-a', 'sb-b')); // held by sb-a
  refused(() => store.markPresent('vm', 'sb-a', 'sb-b'));
  store.markPresent('vm', 'sb-a', 'sb-a');
  refused(() => store.intend('vm', 'sb-a', 'sb-a')); // back from present
  store.markReleasing('vm', 'sb-a', 'sb-a');
  refused(() => store.markPresent('vm', 'sb-a', 'sb-a')); // back from releasing
  store.markReleased('vm', 'sb-a', 'sb-a');
  refused(() => store.markReleasing('vm', 'sb-a', 'sb-a')); // back from released
  refused(() => store.markReleased('vm', 'sb-a', 'sb-b')); // not sb-b's
  assert.deepEqual(store.ledger().map((e) => [e.sandboxId, e.state]), [['sb-a', 'released']]);
  assert.throws(() => store.intend('Bad Kind', 'x', 'sb-a'), failure('invalid_input'));
  assert.throws(() => store.intend('vm', '', 'sb-a'), failure('invalid_input'));
  assert.throws(() => store.intend('vm', 'x', '../sb'), failure('invalid_input'));
});

test('a step re-run after a crash may repeat its ledger call: the same move twice is a no-op', (t) => {
  const store = openStore(t, tempDir(t));
  const first = store.intend('cow', '/d/sb-a/rootfs.cow', 'sb-a');
  const again = store.intend('cow', '/d/sb-a/rootfs.cow', 'sb-a');
  assert.deepEqual(again, first);
  store.markPresent('cow', '/d/sb-a/rootfs.cow', 'sb-a');
  store.markPresent('cow', '/d/sb-a/rootfs.cow', 'sb-a');
  assert.deepEqual(store.ledger('sb-a').map((e) => e.state), ['present']);
});

test('a store used after close refuses with a clear error instead of a driver crash', (t) => {
  const store = new SqliteStore(tempDir(t));
  store.close();
  store.close();
  assert.throws(() => store.save(sampleRecord('sb-a')), failure('closed'));
  assert.throws(() => store.loadAll(), failure('closed'));
  assert.throws(() => store.intend('vm', 'x', 'sb-a'), failure('closed'));
});

test('a save that returned survives the writer being SIGKILLed right after (no close, no checkpoint)', async (t) => {
  const dir = tempDir(t);
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures/save-then-sigkill.ts'), dir, 'sb-killed'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
  assert.equal(signal, 'SIGKILL', `child exited ${code}: ${err}`);
  assert.equal(out, 'saved\n');
  const store = openStore(t, dir);
  assert.deepEqual(store.loadAll(), [sampleRecord('sb-killed', { status: 'pausing', step: 'pausing.snapshotVm', opId: 'op-before-kill' })]);
  assert.deepEqual(store.ledger('sb-killed').map((e) => [e.kind, e.name, e.state]), [['staging', `${dir}/sandboxes/sb-killed.staging-1`, 'intended']]);
});

test('the records the supervisor writes on every transition pass the schema; a destroyed sandbox leaves no row', async (t) => {
  const store = new SqliteStore(tempDir(t));
  const fakes = createFakeDrivers();
  const sup = new Supervisor({ drivers: { ...fakes.drivers, store }, slots: 8 });
  t.after(async () => {
    await sup.shutdown();
    store.close();
  });
  const team = { teamId: 'acme' };
  let changes = 0;
  const stale: string[] = [];
  sup.onState((c) => {
    changes++;
    const stored = store.get(c.sandboxId);
    const want = c.status === 'destroyed' ? undefined : c.step;
    if (stored?.step !== want) stale.push(`announced ${c.step}, stored ${stored?.step ?? 'nothing'}`);
  });
  const { sandbox } = await sup.create(team, { templateId: 'base' });
  assert.equal(store.get(sandbox.id)?.status, 'running');
  await sup.pause(team, sandbox.id);
  const paused = store.get(sandbox.id);
  assert.equal(paused?.status, 'paused');
  assert.equal(paused?.slot, sandbox.slot);
  await sup.resume(team, sandbox.id);
  await sup.destroy(team, sandbox.id);
  assert.deepEqual(store.loadAll(), []);
  // The row is written before each change is announced: a listener always reads the announced step.
  assert.ok(changes > 20, `only ${changes} transitions seen`);
  assert.deepEqual(stale, []);
});
