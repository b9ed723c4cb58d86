import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StepImpl } from '../../actors/steps.ts';
import { RpcError } from '../../server/client.ts';
import type { Notification, StateNotice } from '../../server/protocol.ts';
import { installSignalHandlers } from '../../server/signals.ts';
import { recordCalls } from './support/fake-supervisor.ts';
import { startHarness } from './support/harness.ts';
import { realSupervisor } from './support/real-supervisor.ts';

// The server in front of the runtime's real supervisor and fake drivers.

test('the full lifecycle over the socket against the real supervisor, with each step notified', async (t) => {
  const { supervisor } = realSupervisor();
  const h = await startHarness(t, supervisor);
  const a = await h.connect('a');
  const states: StateNotice[] = [];
  await a.subscribe(undefined, (n) => n.method === 'sandbox.state' && states.push(n.params));

  const created = await a.call('sandbox.create', { templateId: 'base', id: 'sb-e2e1', memoryMB: 256, env: { HELLO: 'world' } });
  assert.deepEqual([created.sandbox.id, created.sandbox.status, created.sandbox.teamId], ['sb-e2e1', 'running', 'team-a']);
  const createSteps = states.filter((s) => s.sandboxId === 'sb-e2e1' && s.status === 'creating').map((s) => s.step);
  assert.ok(createSteps.some((s) => s.includes('bootVm')), createSteps.join(','));
  assert.equal(states.at(-1)?.status, 'running');

  const id = created.sandbox.id;
  assert.equal((await a.call('sandbox.get', { id })).status, 'running');
  assert.deepEqual((await a.call('sandbox.list', {})).sandboxes.map((s) => s.id), [id]);
  await a.call('sandbox.ping', { id });
  await a.call('sandbox.setTimeout', { id, timeoutSec: 3600 });
  assert.equal((await a.call('sandbox.get', { id })).timeoutSec, 3600);
  assert.deepEqual(await a.call('sandbox.exec', { id, cmd: 'echo', args: ['hi'] }), { exitCode: 0, stdout: 'hi\n', stderr: '' });
  assert.equal((await a.call('sandbox.exec', { id, cmd: 'nope', args: [] })).exitCode, 127);

  const live = await a.call('sandbox.snapshot', { id, templateId: 'tpl-live' });
  assert.deepEqual([live.teamId, live.templateId, live.kind], ['team-a', 'tpl-live', 'snapshot']);
  const flat = await a.call('sandbox.flatten', { id, templateId: 'tpl-flat' });
  assert.equal(flat.kind, 'base');
  const mine = (await a.call('template.list')).templates.filter((tpl) => tpl.teamId === 'team-a').map((tpl) => tpl.templateId).sort();
  assert.deepEqual(mine, ['tpl-flat', 'tpl-live']);
  await a.call('template.delete', { templateId: 'tpl-flat' });

  assert.equal((await a.call('sandbox.pause', { id })).status, 'paused');
  await assert.rejects(a.call('sandbox.ping', { id }), (e: RpcError) => e.kind === 'not_running');
  const pausedSnap = await a.call('sandbox.snapshot', { id, templateId: 'tpl-paused' });
  assert.equal(pausedSnap.kind, 'snapshot');
  assert.equal((await a.call('sandbox.get', { id })).status, 'paused');
  assert.equal((await a.call('sandbox.resume', { id, timeoutSec: 120 })).status, 'running');

  await assert.rejects(a.call('sandbox.create', { templateId: 'base', id }), (e: RpcError) => e.kind === 'already_exists');
  await assert.rejects(a.call('sandbox.create', { templateId: 'no-such' }), (e: RpcError) => e.kind === 'not_found');
  await a.call('sandbox.destroy', { id });
  await assert.rejects(a.call('sandbox.get', { id }), (e: RpcError) => e.kind === 'not_found');
  const info = await a.call('agent.info');
  assert.equal(info.capacity.slotsInUse, 0);
});

test("the real supervisor's sandboxes are not_found to another team in every method and subscription", async (t) => {
  const { supervisor } = realSupervisor();
  const h = await startHarness(t, supervisor);
  const a = await h.connect('a');
  const b = await h.connect('b');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  const id = sandbox.id;
  await a.call('sandbox.flatten', { id, templateId: 'a-only' });
  const seenByB: Notification[] = [];
  await b.subscribe(undefined, (n) => seenByB.push(n));

  const attempts: [string, unknown][] = [
    ['sandbox.get', { id }], ['sandbox.pause', { id }], ['sandbox.resume', { id }], ['sandbox.destroy', { id }],
    ['sandbox.snapshot', { id, templateId: 'stolen' }], ['sandbox.flatten', { id, templateId: 'stolen' }],
    ['sandbox.ping', { id }], ['sandbox.setTimeout', { id, timeoutSec: 60 }], ['sandbox.exec', { id, cmd: 'echo', args: [] }],
    ['events.subscribe', { sandboxId: id }], ['template.delete', { templateId: 'a-only' }],
  ];
  for (const [method, params] of attempts) {
    await assert.rejects(b.raw(method, params), (e: RpcError) => e.kind === 'not_found' && e.code === -32001, method);
  }
  await a.call('sandbox.pause', { id });
  const marker = await b.call('sandbox.create', { templateId: 'base' });
  await b.waitForState(marker.sandbox.id, 'running');
  assert.ok(seenByB.every((n) => n.params.sandboxId === marker.sandbox.id), 'b saw only its own sandbox');
  assert.deepEqual((await b.call('sandbox.list')).sandboxes.map((s) => s.id), [marker.sandbox.id]);
  const after = await a.call('sandbox.get', { id });
  assert.deepEqual([after.status, after.timeoutSec], ['paused', 0]);
  assert.ok((await a.call('template.list')).templates.some((tpl) => tpl.templateId === 'a-only'));
});

test('closing the connection does not cancel a pause of the real supervisor', async (t) => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let reached!: () => void;
  const atStep = new Promise<void>((r) => (reached = r));
  const { supervisor } = realSupervisor({
    wrapStep: (name, impl): StepImpl => (name !== 'snapshotVm' ? impl : async (ctx, signal) => {
      reached();
      await held;
      return impl(ctx, signal);
    }),
  });
  const h = await startHarness(t, supervisor);
  const a = await h.connect('a');
  const watcher = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  const lost = a.call('sandbox.pause', { id: sandbox.id }).catch((e: unknown) => e);
  await atStep;
  await a.close();
  assert.equal(((await lost) as Error).name, 'ConnectionError');
  const paused = watcher.waitForState(sandbox.id, 'paused', { timeoutMs: 20_000 });
  release();
  assert.equal((await paused).status, 'paused');
});

test('SIGTERM pauses running sandboxes through the supervisor, then closes clients with 1001', async (t) => {
  const { supervisor } = realSupervisor();
  const { supervisor: recorded, calls } = recordCalls(supervisor);
  const h = await startHarness(t, recorded);
  const a = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  const events: string[] = [];
  await a.subscribe(undefined, (n) => n.method === 'sandbox.event' && events.push(n.params.type));
  const closed = new Promise<number>((r) => a.socket.once('close', (code) => r(code)));
  let exited!: (code: number) => void;
  const exit = new Promise<number>((r) => (exited = r));
  t.after(installSignalHandlers(h.server, recorded, { signals: ['SIGUSR2'], exit: (code) => exited(code) }));
  process.emit('SIGUSR2', 'SIGUSR2');
  assert.equal(await exit, 0);
  assert.equal(await closed, 1001);
  assert.deepEqual(events, ['auto_paused']);
  assert.ok(calls.includes('shutdown'));
  assert.equal(supervisor.get({ teamId: null }, sandbox.id).status, 'paused');
});
