import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { RpcError } from '../../server/client.ts';
import type { InspectEntry } from '../../server/inspect/feed.ts';
import { REDACTED, sanitize } from '../../server/inspect/sanitize.ts';
import { startInspectAgent, TEAM_A } from './support/agent.ts';

test('sanitize: env values, tokens and secret-looking strings never reach the page', () => {
  const out = sanitize({
    env: { AWS_SECRET: 'x' },
    token: 'abc',
    password: 'p',
    apiKey: 'k',
    nested: { authHeader: 'Bearer xyz', note: 'Bearer abc.def', id: 'sbxt-0123456789abcdef', long: 'a1'.repeat(30) },
    path: '/run/sandboxd/sb-1/rootfs.cow',
    err: Object.assign(new Error('boom'), { stack: 'secret stack', code: 'EIO' }),
    text: 'x'.repeat(500),
  }) as Record<string, any>;
  assert.equal(out.env, REDACTED);
  assert.equal(out.token, REDACTED);
  assert.equal(out.password, REDACTED);
  assert.equal(out.apiKey, REDACTED);
  assert.equal(out.nested.authHeader, REDACTED);
  assert.equal(out.nested.note, REDACTED);
  assert.equal(out.nested.id, REDACTED);
  assert.equal(out.nested.long, REDACTED);
  assert.equal(out.path, '/run/sandboxd/sb-1/rootfs.cow', 'paths stay readable');
  assert.deepEqual(out.err, { name: 'Error', message: 'boom', code: 'EIO' });
  assert.ok((out.text as string).length <= 201);
  assert.ok(!JSON.stringify(out).includes('secret stack'));
});

test('sanitize: deep and wide payloads are bounded', () => {
  const deep = { a: { b: { c: { d: { e: { f: 1 } } } } } };
  assert.deepEqual(sanitize(deep), { a: { b: { c: { d: '…' } } } });
  const wide = sanitize(Array.from({ length: 100 }, (_, i) => i)) as unknown[];
  assert.equal(wide.length, 17);
});

test('feed: a create with env shows the commands and steps, never the env values', async (t) => {
  const agent = await startInspectAgent();
  t.after(() => agent.close());
  const a = await agent.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base', env: { SECRET_VALUE: 'hunter2-do-not-show' } });
  await a.call('sandbox.pause', { id: sandbox.id });
  const { entries } = await a.call('inspect.history', { sandboxId: sandbox.id });
  assert.equal(entries[0]?.kind, 'actor');
  assert.ok(!JSON.stringify(entries).includes('hunter2'), 'env value leaked into the inspector');
  const seqs = entries.map((e) => e.seq);
  assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'history out of order');
  const steps = entries.filter((e): e is Extract<InspectEntry, { kind: 'snapshot' }> => e.kind === 'snapshot').map((e) => e.step);
  assert.ok(steps.includes('pausing.snapshotVm') && steps.at(-1) === 'paused', steps.join(' '));
  assert.ok(entries.some((e) => e.kind === 'event' && e.type === 'PAUSE'));
  const [summary] = (await a.call('inspect.list')).sandboxes;
  assert.equal(summary?.status, 'paused');
  assert.equal(summary?.teamId, TEAM_A);
  assert.equal(summary?.lastEvent?.type, 'xstate.done.actor.swapIn');
});

test('feed: history is bounded per sandbox and keeps the newest entries', async (t) => {
  const agent = await startInspectAgent({ historySize: 20 });
  t.after(() => agent.close());
  const a = await agent.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  for (let i = 0; i < 30; i++) await a.call('sandbox.ping', { id: sandbox.id });
  await a.call('sandbox.pause', { id: sandbox.id });
  const { entries } = await a.call('inspect.history', { sandboxId: sandbox.id });
  assert.equal(entries.length, 20);
  const last = entries.at(-1);
  assert.equal(last?.kind === 'snapshot' && last.step, 'paused');
});

test('feed: another team neither lists, reads nor receives a sandbox; admin sees all', async (t) => {
  const agent = await startInspectAgent();
  t.after(() => agent.close());
  const [a, b, admin] = await Promise.all([agent.connect('a'), agent.connect('b'), agent.connect('admin')]);
  const seen = { b: [] as string[], admin: [] as string[] };
  for (const [who, client] of [['b', b], ['admin', admin]] as const) {
    client.socket.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.method === 'inspect.event') seen[who].push(msg.params.sandboxId);
    });
    await client.call('inspect.subscribe');
  }
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  await a.call('sandbox.pause', { id: sandbox.id });
  assert.deepEqual((await b.call('inspect.list')).sandboxes, []);
  await assert.rejects(b.call('inspect.history', { sandboxId: sandbox.id }), (e: RpcError) => e.kind === 'not_found');
  await assert.rejects(b.call('inspect.subscribe', { sandboxId: sandbox.id }), (e: RpcError) => e.kind === 'not_found');
  // The admin's notifications and b's are sent in the same loop: once the admin has them, b would have too.
  await admin.call('agent.info');
  assert.ok(seen.admin.includes(sandbox.id));
  assert.deepEqual(seen.b, []);
  assert.equal((await admin.call('inspect.list')).sandboxes.length, 1);
});

test('feed: closing the connection ends its inspector subscriptions', async (t) => {
  const agent = await startInspectAgent();
  t.after(() => agent.close());
  const a = await agent.connect('a');
  await a.call('inspect.subscribe');
  await a.call('inspect.subscribe');
  assert.equal(agent.feed.subscriptionCount, 2);
  const { subscriptionId } = await a.call('inspect.subscribe');
  await a.call('inspect.unsubscribe', { subscriptionId });
  assert.equal(agent.feed.subscriptionCount, 2);
  await a.close();
  const deadline = Date.now() + 5000;
  while (agent.feed.subscriptionCount > 0 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  assert.equal(agent.feed.subscriptionCount, 0);
});

test('page assets: served without a token, with a CSP; a WebSocket from a foreign origin is refused', async (t) => {
  const agent = await startInspectAgent();
  t.after(() => agent.close());
  for (const path of ['/inspect', '/inspect/app.js', '/inspect/chart.js', '/inspect/style.css', '/inspect/elk.js', '/inspect/graph.json']) {
    const res = await fetch(`${agent.base}${path}`);
    assert.equal(res.status, 200, path);
    assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    await res.arrayBuffer();
  }
  assert.equal((await fetch(`${agent.base}/inspect/../server.ts`)).status, 404);
  assert.equal((await fetch(`${agent.base}/inspect/nope.js`)).status, 404);
  const host = new URL(agent.base).host;
  const status = (origin: string) =>
    new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://${host}/v1`, ['sandboxd.v1', `bearer.${agent.tokens.a}`], { origin });
      ws.on('open', () => (ws.close(), resolve(101)));
      ws.on('unexpected-response', (_req, res) => (res.resume(), resolve(res.statusCode ?? 0)));
      ws.on('error', () => undefined);
    });
  assert.equal(await status(`http://${host}`), 101, 'the page on the agent itself may connect');
  assert.equal(await status('http://evil.example'), 403);
});
