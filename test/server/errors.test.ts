import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCodes } from '../../core/errors.ts';
import { RpcError } from '../../server/client.ts';
import { FakeSupervisor, recordCalls } from './support/fake-supervisor.ts';
import { rawPeer, startHarness } from './support/harness.ts';

// Error mapping and framing, against the in-test supervisor so each error kind
// can be provoked on demand. The runtime's own behaviour is in e2e.test.ts.

async function rejectsWith(p: Promise<unknown>, kind: string, rpc?: number): Promise<RpcError> {
  const err = await p.then(
    () => assert.fail(`expected ${kind}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RpcError, `expected RpcError, got ${String(err)}`);
  assert.equal(err.kind, kind, err.message);
  assert.equal(err.code, rpc ?? ErrorCodes[kind as keyof typeof ErrorCodes].rpc);
  return err;
}

test('each error kind reaches the client with its registry code, rpc number and step', async (t) => {
  const fake = new FakeSupervisor();
  const h = await startHarness(t, fake);
  const a = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base', id: 'sb-err1' });

  await rejectsWith(a.call('sandbox.get', { id: 'sb-nope' }), 'not_found');
  await a.call('sandbox.create', { templateId: 'base', id: 'sb-err3' });
  fake.announce(fake.sandboxes.get('sb-err3')!, 'error', 'error');
  await rejectsWith(a.call('sandbox.resume', { id: 'sb-err3' }), 'not_paused');
  await rejectsWith(a.call('sandbox.create', { templateId: 'base', id: sandbox.id }), 'already_exists');
  await rejectsWith(a.call('sandbox.create', { templateId: 'base', teamId: 'team-b' }), 'invalid_argument');
  const failed = await rejectsWith(a.call('sandbox.exec', { id: sandbox.id, cmd: 'fail', args: [] }), 'operation_failed');
  assert.equal(failed.data?.step, 'exec');
  await rejectsWith(a.call('sandbox.exec', { id: sandbox.id, cmd: 'slow', args: [] }), 'timeout');

  await a.call('sandbox.flatten', { id: sandbox.id, templateId: 'tpl-in-use' });
  await a.call('sandbox.create', { templateId: 'tpl-in-use', id: 'sb-err2' });
  await rejectsWith(a.call('template.delete', { templateId: 'tpl-in-use' }), 'template_in_use');

  await a.call('sandbox.pause', { id: sandbox.id });
  await rejectsWith(a.call('sandbox.ping', { id: sandbox.id }), 'not_running');

  fake.draining = true;
  await rejectsWith(a.call('sandbox.create', { templateId: 'base' }), 'draining');
});

test('every code of the error registry maps to its own rpc number with data.code and step', async (t) => {
  const h = await startHarness(t, new FakeSupervisor());
  const a = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  const seen = new Set<number>();
  for (const [code, { rpc }] of Object.entries(ErrorCodes)) {
    const err = await rejectsWith(a.call('sandbox.exec', { id: sandbox.id, cmd: 'raise', args: [code] }), code, rpc);
    assert.equal(err.message, `raised ${code}`);
    assert.equal(err.data?.step, 'raise');
    seen.add(err.code);
  }
  assert.equal(seen.size, Object.keys(ErrorCodes).length, 'no two codes share an rpc number');
});

test('a handler bug answers internal without leaking the message or stack', async (t) => {
  const h = await startHarness(t, new FakeSupervisor());
  const a = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  const err = await rejectsWith(a.call('sandbox.exec', { id: sandbox.id, cmd: 'crash', args: [] }), 'internal');
  assert.equal(err.message, 'internal error');
  assert.doesNotMatch(JSON.stringify(err.data), /secret|stack|at /);
});

test('malformed frames get the standard JSON-RPC errors and the connection stays usable', async (t) => {
  const h = await startHarness(t, new FakeSupervisor());
  const peer = await rawPeer(t, h, 'a');

  const parse = await peer.roundTrip('{"jsonrpc":"2.0","id":1,');
  assert.deepEqual([parse.id, parse.error?.code], [null, -32700]);

  const batch = await peer.roundTrip(JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'agent.info' }]));
  assert.deepEqual([batch.id, batch.error?.code], [null, -32600]);

  const binary = await peer.roundTrip(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'agent.info' })), true);
  assert.equal(binary.error?.code, -32600);

  const noId = await peer.roundTrip(JSON.stringify({ jsonrpc: '2.0', method: 'agent.info' }));
  assert.equal(noId.error?.code, -32600);

  const wrongVersion = await peer.roundTrip(JSON.stringify({ jsonrpc: '1.0', id: 3, method: 'agent.info' }));
  assert.deepEqual([wrongVersion.id, wrongVersion.error?.code], [3, -32600]);

  const unknown = await peer.roundTrip(JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'sandbox.teleport' }));
  assert.deepEqual([unknown.id, unknown.error?.code], [4, -32601]);

  const streamed = await peer.roundTrip(JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'pty.start', params: {} }));
  assert.equal(streamed.error?.code, -32602, 'a stream method is implemented: its params are checked');

  const ok = await peer.roundTrip(JSON.stringify({ jsonrpc: '2.0', id: 'x', method: 'agent.info' }));
  assert.equal(ok.id, 'x');
  assert.equal((ok.result as { version: string }).version, 'fake');
});

test('invalid params answer -32602 with zod issue paths and never reach the supervisor', async (t) => {
  const { supervisor, calls } = recordCalls(new FakeSupervisor());
  const h = await startHarness(t, supervisor);
  const peer = await rawPeer(t, h, 'a');
  const cases: [unknown, string[]][] = [
    [{ templateId: '../etc', vcpus: 1e9 }, ['templateId', 'vcpus']],
    [{ templateId: 'base', env: { 'BAD NAME': 'x' } }, ['env']],
    [{ templateId: 'base', surprise: true }, ['']],
    [{ templateId: 'base', id: '-rf' }, ['id']],
    [{ templateId: 'base', memoryMB: 512.5 }, ['memoryMB']],
    [['base'], ['']],
  ];
  for (const [params, paths] of cases) {
    const r = await peer.roundTrip(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'sandbox.create', params }));
    assert.equal(r.error?.code, -32602, JSON.stringify(params));
    assert.equal(r.error?.data?.code, 'invalid_argument');
    const issues = r.error?.data?.issues as { path: (string | number)[] }[];
    assert.deepEqual(issues.map((i) => String(i.path[0] ?? '')).sort(), paths.sort(), JSON.stringify(params));
  }
  const exec = await peer.roundTrip(
    JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'sandbox.exec', params: { id: 'sb-x', cmd: 'ls', args: ['ok', 7] } }),
  );
  assert.deepEqual((exec.error?.data?.issues as { path: unknown[] }[])[0]?.path, ['args', 1]);
  assert.deepEqual(calls, []);
});

test('a frame over 64 KiB closes the connection with 1009', async (t) => {
  const { supervisor, calls } = recordCalls(new FakeSupervisor());
  const h = await startHarness(t, supervisor);
  const peer = await rawPeer(t, h, 'a');
  peer.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'sandbox.create', params: { templateId: 'x'.repeat(70_000) } }));
  const { code } = await peer.closed;
  assert.equal(code, 1009);
  assert.deepEqual(calls, []);
});

test('requests past the rate limit are answered rate_limited and not run', async (t) => {
  const { supervisor, calls } = recordCalls(new FakeSupervisor());
  const h = await startHarness(t, supervisor, { limits: { ratePerSec: 0.001, burst: 3 } });
  const a = await h.connect('a');
  const results = await Promise.allSettled([1, 2, 3, 4, 5].map(() => a.call('sandbox.list')));
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected']);
  for (const r of results.slice(3)) assert.equal(((r as PromiseRejectedResult).reason as RpcError).kind, 'rate_limited');
  assert.equal(calls.filter((c) => c === 'list').length, 3);

  // Garbage pays too: a flood of junk cannot buy unlimited error replies.
  const peer = await rawPeer(t, h, 'b');
  const codes: unknown[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await peer.roundTrip('not json');
    codes.push(r.error?.code === -32700 ? 'parse' : r.error?.data?.code);
  }
  assert.deepEqual(codes, ['parse', 'parse', 'parse', 'rate_limited']);
});

test('a request past the in-flight cap is answered rate_limited and not run', async (t) => {
  const fake = new FakeSupervisor();
  const { supervisor, calls } = recordCalls(fake);
  const h = await startHarness(t, supervisor, { limits: { maxInFlight: 2 } });
  const a = await h.connect('a');
  await a.call('sandbox.create', { templateId: 'base', id: 'sb-cap1' });
  await a.call('sandbox.create', { templateId: 'base', id: 'sb-cap2' });
  let open!: () => void;
  fake.gate = new Promise((r) => (open = r));
  const held = [a.call('sandbox.pause', { id: 'sb-cap1' }), a.call('sandbox.pause', { id: 'sb-cap2' })];
  await rejectsWith(a.call('sandbox.get', { id: 'sb-cap1' }), 'rate_limited');
  assert.equal(calls.filter((c) => c === 'get').length, 0);
  open();
  await Promise.all(held);
  assert.equal((await a.call('sandbox.get', { id: 'sb-cap1' })).status, 'paused');
});

test("a team at its lifecycle cap is refused rate_limited while another team is not held up", async (t) => {
  const fake = new FakeSupervisor();
  const { supervisor, calls } = recordCalls(fake);
  const h = await startHarness(t, supervisor, { limits: { teamOps: 1 } });
  const a = await h.connect('a');
  const a2 = await h.connect('a');
  const b = await h.connect('b');
  await a.call('sandbox.create', { templateId: 'base', id: 'sb-cap3' });
  await a.call('sandbox.create', { templateId: 'base', id: 'sb-cap4' });
  let open!: () => void;
  fake.gate = new Promise((r) => (open = r));
  const pausing = a.call('sandbox.pause', { id: 'sb-cap3' });
  // Same team, another connection: the cap counts per team, not per connection.
  await rejectsWith(a2.call('sandbox.pause', { id: 'sb-cap4' }), 'rate_limited');
  assert.equal(calls.filter((c) => c === 'pause').length, 1);
  const bCreate = b.call('sandbox.create', { templateId: 'base', id: 'sb-cap5' });
  open();
  await Promise.all([pausing, bCreate]);
  // The place is given back once the operation settled.
  await a2.call('sandbox.pause', { id: 'sb-cap4' });
});
