import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RpcError } from '../../server/client.ts';
import type { Notification } from '../../server/protocol.ts';
import { FakeSupervisor, recordCalls } from './support/fake-supervisor.ts';
import { startHarness } from './support/harness.ts';

test('every backed method answers its documented result over a real socket', async (t) => {
  const h = await startHarness(t, new FakeSupervisor());
  const a = await h.connect('a');

  const info = await a.call('agent.info');
  assert.equal(typeof info.version, 'string');
  const { templates } = await a.call('template.list');
  assert.ok(templates.some((tpl) => tpl.templateId === 'base'));

  const created = await a.call('sandbox.create', { templateId: 'base', vcpus: 2, memoryMB: 1024, timeoutSec: 120, env: { A: '1' } });
  assert.equal(created.sandbox.status, 'running');
  assert.equal(created.sandbox.teamId, 'team-a');
  assert.equal(created.sandbox.vcpus, 2);
  assert.ok(created.diskSizeBytes > 0);
  const id = created.sandbox.id;

  assert.equal((await a.call('sandbox.get', { id })).id, id);
  assert.deepEqual((await a.call('sandbox.list', { status: 'running' })).sandboxes.map((s) => s.id), [id]);
  assert.deepEqual((await a.call('sandbox.list', { status: 'paused' })).sandboxes, []);
  assert.deepEqual(await a.call('sandbox.ping', { id }), {});
  assert.deepEqual(await a.call('sandbox.setTimeout', { id, timeoutSec: 600 }), {});
  assert.equal((await a.call('sandbox.get', { id })).timeoutSec, 600);
  const exec = await a.call('sandbox.exec', { id, cmd: 'exit', args: ['3'] });
  assert.equal(exec.exitCode, 3);

  const snap = await a.call('sandbox.snapshot', { id, templateId: 'snap-1', name: 'first' });
  assert.deepEqual([snap.templateId, snap.kind], ['snap-1', 'snapshot']);
  const flat = await a.call('sandbox.flatten', { id, templateId: 'flat-1' });
  assert.deepEqual([flat.templateId, flat.kind], ['flat-1', 'base']);
  assert.deepEqual(await a.call('template.delete', { templateId: 'snap-1' }), {});

  assert.equal((await a.call('sandbox.pause', { id })).status, 'paused');
  assert.equal((await a.call('sandbox.resume', { id, timeoutSec: 90 })).status, 'running');

  const { subscriptionId } = await a.call('events.subscribe', { sandboxId: id });
  assert.match(subscriptionId, /^sub-\d+$/);
  assert.deepEqual(await a.call('events.unsubscribe', { subscriptionId }), {});
  await assert.rejects(a.call('events.unsubscribe', { subscriptionId }), (e: RpcError) => e.kind === 'not_found');

  assert.deepEqual(await a.call('sandbox.destroy', { id }), {});
  await assert.rejects(a.call('sandbox.get', { id }), (e: RpcError) => e.kind === 'not_found');
});

test("another team's sandbox and template answer not_found in every method and change nothing", async (t) => {
  const fake = new FakeSupervisor();
  const h = await startHarness(t, fake);
  const a = await h.connect('a');
  const b = await h.connect('b');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  const id = sandbox.id;
  await a.call('sandbox.flatten', { id, templateId: 'a-only' });

  const attempts: [string, unknown][] = [
    ['sandbox.get', { id }], ['sandbox.pause', { id }], ['sandbox.resume', { id }], ['sandbox.destroy', { id }],
    ['sandbox.snapshot', { id, templateId: 'stolen' }], ['sandbox.flatten', { id, templateId: 'stolen' }],
    ['sandbox.ping', { id }], ['sandbox.setTimeout', { id, timeoutSec: 1 }], ['sandbox.exec', { id, cmd: 'id', args: [] }],
    ['events.subscribe', { sandboxId: id }], ['template.delete', { templateId: 'a-only' }],
  ];
  for (const [method, params] of attempts) {
    await assert.rejects(b.raw(method, params), (e: RpcError) => e.kind === 'not_found' && e.code === -32001, method);
  }
  assert.deepEqual((await b.call('sandbox.list')).sandboxes, []);
  assert.ok(!(await b.call('template.list')).templates.some((tpl) => tpl.templateId === 'a-only'));
  const after = await a.call('sandbox.get', { id });
  assert.deepEqual([after.status, after.timeoutSec], ['running', 0]);

  // The admin token sees every team.
  assert.deepEqual((await (await h.connect('admin')).call('sandbox.list')).sandboxes.map((s) => s.id), [id]);
});

test("a team-wide subscription never carries another team's notifications", async (t) => {
  const h = await startHarness(t, new FakeSupervisor());
  const a = await h.connect('a');
  const b = await h.connect('b');
  const admin = await h.connect('admin');
  const seenByB: Notification[] = [];
  const seenByAdmin: Notification[] = [];
  await b.subscribe(undefined, (n) => seenByB.push(n));
  await admin.subscribe(undefined, (n) => seenByAdmin.push(n));

  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  await a.call('sandbox.pause', { id: sandbox.id });
  // B's own sandbox is the marker: once B sees it running, A's earlier changes would have arrived too.
  const mine = await b.call('sandbox.create', { templateId: 'base' });
  await b.waitForState(mine.sandbox.id, 'running');
  assert.ok(seenByB.length > 0);
  assert.ok(seenByB.every((n) => n.params.sandboxId === mine.sandbox.id), JSON.stringify(seenByB));
  assert.ok(seenByAdmin.some((n) => n.params.sandboxId === sandbox.id));
  assert.ok(seenByB.every((n) => !('teamId' in n.params)));
});

test('a per-sandbox subscriber sees every step of a pause in seq order, the last one paused', async (t) => {
  const h = await startHarness(t, new FakeSupervisor());
  const a = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  const seen: Notification[] = [];
  await a.subscribe(sandbox.id, (n) => seen.push(n));
  const paused = a.waitForState(sandbox.id, 'paused');
  await a.call('sandbox.pause', { id: sandbox.id });
  await paused;
  const states = seen.filter((n) => n.method === 'sandbox.state').map((n) => n.params as { status: string; step: string; seq: number });
  assert.ok(states.length >= 2, JSON.stringify(states));
  assert.ok(states.some((s) => s.status === 'pausing'));
  assert.equal(states.at(-1)?.status, 'paused');
  for (let i = 1; i < states.length; i++) assert.ok(states[i]!.seq > states[i - 1]!.seq);
});

test('a lifecycle event reaches subscribers as sandbox.event', async (t) => {
  const fake = new FakeSupervisor();
  const h = await startHarness(t, fake);
  const a = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  const got = new Promise<Notification>((resolve) => {
    void a.subscribe(sandbox.id, (n) => n.method === 'sandbox.event' && resolve(n)).then(() => {
      fake.emitEvent({ sandboxId: sandbox.id, teamId: 'team-a', type: 'auto_paused', reason: 'idle' });
    });
  });
  assert.deepEqual((await got).params, { sandboxId: sandbox.id, type: 'auto_paused', reason: 'idle' });
});

test('closing the connection does not cancel a long operation', async (t) => {
  const fake = new FakeSupervisor();
  const { supervisor, calls } = recordCalls(fake);
  const h = await startHarness(t, supervisor);
  const a = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  let open!: () => void;
  fake.gate = new Promise((r) => (open = r));
  const watcher = await h.connect('a');
  const pausing = watcher.waitForState(sandbox.id, 'pausing');
  const lost = a.call('sandbox.pause', { id: sandbox.id }).catch((e: unknown) => e);
  await pausing;
  await a.close();
  assert.equal((await lost as Error).name, 'ConnectionError');
  const paused = watcher.waitForState(sandbox.id, 'paused');
  open();
  assert.equal((await paused).status, 'paused');
  assert.equal(calls.filter((c) => c === 'pause').length, 1);
});

test('a closed connection leaves no subscription behind, and the per-connection cap holds', async (t) => {
  const h = await startHarness(t, new FakeSupervisor(), { limits: { maxSubscriptions: 3 } });
  const a = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  for (let i = 0; i < 3; i++) await a.call('events.subscribe', i === 0 ? {} : { sandboxId: sandbox.id });
  await assert.rejects(a.call('events.subscribe', {}), (e: RpcError) => e.kind === 'rate_limited');
  assert.equal(h.server.subscriptionCount(), 3);
  await a.close();
  const deadline = Date.now() + 5000;
  while (h.server.subscriptionCount() > 0) {
    assert.ok(Date.now() < deadline, 'subscriptions outlived their connection');
    await new Promise((r) => setTimeout(r, 10));
  }
});
