import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConnectionError, RpcError, SandboxdClient } from '../../server/client.ts';
import type { StateNotice } from '../../server/protocol.ts';
import { FakeSupervisor } from './support/fake-supervisor.ts';
import { startHarness } from './support/harness.ts';

test('after the link drops the client reconnects and its subscriptions keep delivering', async (t) => {
  const h = await startHarness(t, new FakeSupervisor());
  let reconnected = 0;
  const client = await SandboxdClient.connect(h.url, { token: h.tokens.a, reconnect: { maxDelayMs: 200 } });
  t.after(() => client.close());
  const seen: StateNotice[] = [];
  await client.subscribe(undefined, (n) => n.method === 'sandbox.state' && seen.push(n.params));
  const first = client.socket;
  first.once('close', () => reconnected++);

  for (const ws of h.server.wss.clients) ws.terminate();
  // Wait for the new socket and its re-subscription (the server counts one subscribe per connection).
  const deadline = Date.now() + 10_000;
  const subscribes = async () =>
    (await h.server.metrics.operationSeconds.get()).values.find((v) => v.labels.operation === 'events.subscribe' && String(v.metricName).endsWith('_count'))?.value ?? 0;
  while (client.socket === first || client.socket.readyState !== client.socket.OPEN || (await subscribes()) < 2) {
    assert.ok(Date.now() < deadline, 'the client did not reconnect');
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(reconnected, 1);
  const { sandbox } = await client.call('sandbox.create', { templateId: 'base' });
  await client.waitForState(sandbox.id, 'running');
  assert.ok(seen.some((s) => s.sandboxId === sandbox.id && s.status === 'running'));
});

test('a call in flight when the link drops fails with ConnectionError, not silence', async (t) => {
  const fake = new FakeSupervisor();
  const h = await startHarness(t, fake);
  const client = await h.connect('a');
  const { sandbox } = await client.call('sandbox.create', { templateId: 'base' });
  fake.gate = new Promise(() => undefined); // the pause never finishes
  const pausing = client.call('sandbox.pause', { id: sandbox.id });
  await client.waitForState(sandbox.id, 'pausing');
  for (const ws of h.server.wss.clients) ws.terminate();
  await assert.rejects(pausing, (e: unknown) => e instanceof ConnectionError && e.reason === 'disconnected');
});

test('a refused token fails connect with reason unauthorized, and the backoff gives up after maxAttempts', async (t) => {
  const h = await startHarness(t, new FakeSupervisor());
  await assert.rejects(SandboxdClient.connect(h.url, { token: 'sbxt-bad' }), (e: unknown) => e instanceof ConnectionError && e.reason === 'unauthorized');

  let gaveUp!: (e: ConnectionError | null) => void;
  const closed = new Promise<ConnectionError | null>((r) => (gaveUp = r));
  const client = await SandboxdClient.connect(h.url, { token: h.tokens.a, reconnect: { maxAttempts: 2, maxDelayMs: 50 }, onClose: gaveUp });
  t.after(() => client.close());
  await h.server.close();
  const err = await closed;
  assert.ok(err instanceof ConnectionError);
  assert.equal(err.reason, 'connect_failed');
});

test('waitForState returns at once when the sandbox is already there, and RpcError carries the kind', async (t) => {
  const h = await startHarness(t, new FakeSupervisor());
  const client = await h.connect('a');
  const { sandbox } = await client.call('sandbox.create', { templateId: 'base' });
  assert.equal((await client.waitForState(sandbox.id, ['running', 'paused'])).status, 'running');
  const err = await client.waitForState('sb-gone', 'running').catch((e: unknown) => e);
  assert.ok(err instanceof RpcError);
  assert.deepEqual([err.kind, err.code], ['not_found', -32001]);
});
