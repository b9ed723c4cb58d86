import assert from 'node:assert/strict';
import { request } from 'node:http';
import { test } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { sha256Hex } from '../../server/auth.ts';
import { createServer } from '../../server/server.ts';
import { FakeSupervisor, recordCalls } from './support/fake-supervisor.ts';
import { startHarness, TEAM_A } from './support/harness.ts';

/** The raw answer to an upgrade request: status line and whether the socket was then closed. */
function upgrade(port: number, headers: Record<string, string>, path = '/v1'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('a missing, malformed or unknown token is refused 401 before any handler runs', async (t) => {
  const { supervisor, calls } = recordCalls(new FakeSupervisor());
  const h = await startHarness(t, supervisor);
  const port = Number(new URL(h.url).port);
  const refusals: Record<string, string>[] = [
    {},
    { authorization: 'Bearer wrong-token' },
    { authorization: `Basic ${h.tokens.a}` },
    { authorization: `Bearer ${h.tokens.a}x` },
    { 'sec-websocket-protocol': `bearer.${h.tokens.a}` }, // the token without the sandboxd.v1 marker
    { 'sec-websocket-protocol': 'sandboxd.v1, bearer.nope' },
  ];
  for (const headers of refusals) {
    const r = await upgrade(port, headers);
    assert.equal(r.status, 401, JSON.stringify(headers));
    assert.equal(r.body, '');
  }
  assert.equal((await upgrade(port, { authorization: `Bearer ${h.tokens.a}` }, '/v2')).status, 404);
  assert.deepEqual(calls, []);
  assert.equal(h.server.connectionCount(), 0);
});

test('a browser token in the subprotocol is accepted and only sandboxd.v1 is echoed back', async (t) => {
  const h = await startHarness(t, new FakeSupervisor(), { origins: ['https://console.example'] });
  const ws = new WebSocket(h.url, ['sandboxd.v1', `bearer.${h.tokens.a}`], { origin: 'https://console.example' });
  t.after(() => ws.terminate());
  const opened = new Promise((r) => ws.once('open', r));
  const headers = await new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
    ws.once('upgrade', (res) => resolve(res.headers));
    ws.once('error', reject);
  });
  assert.equal(headers['sec-websocket-protocol'], 'sandboxd.v1');
  await opened;
  ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'sandbox.list' }));
  const reply = JSON.parse((await new Promise<Buffer>((r) => ws.once('message', r))).toString());
  assert.deepEqual(reply.result, { sandboxes: [] });
});

test('an Origin not on the allowlist is refused 403 even with a valid token', async (t) => {
  const { supervisor, calls } = recordCalls(new FakeSupervisor());
  const h = await startHarness(t, supervisor, { origins: ['https://console.example'] });
  const port = Number(new URL(h.url).port);
  const r = await upgrade(port, { authorization: `Bearer ${h.tokens.admin}`, origin: 'https://evil.example' });
  assert.equal(r.status, 403);
  const ok = await upgrade(port, { authorization: `Bearer ${h.tokens.admin}`, origin: 'https://console.example' });
  assert.equal(ok.status, 101);
  assert.deepEqual(calls, []);
});

test('tokens never appear in the logs, accepted or refused', async (t) => {
  let logged = '';
  const sink = new Writable({ write(chunk, _enc, cb) { logged += chunk.toString(); cb(); } });
  const good = 'sbxt-secret-good-token';
  const server = createServer({
    supervisor: new FakeSupervisor(),
    tokens: [{ sha256: sha256Hex(good), teamId: TEAM_A }],
    logger: pino({ level: 'trace' }, sink),
  });
  const { port } = await server.listen(0);
  t.after(() => server.close());
  assert.equal((await upgrade(port, { authorization: 'Bearer sbxt-secret-bad-token' })).status, 401);
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1`, { headers: { authorization: `Bearer ${good}` } });
  await new Promise((r) => ws.once('open', r));
  ws.send('{"jsonrpc":"2.0","id":1,"method":"sandbox.exec","params":{"id":"sb-x","cmd":"crash"}}');
  await new Promise((r) => ws.once('message', r));
  ws.close();
  await new Promise((r) => ws.once('close', r));
  await server.close();
  assert.ok(logged.length > 0, 'the server logged something');
  assert.doesNotMatch(logged, /sbxt-secret/);
});

test('a token table entry that is not a sha256 digest is refused at start', () => {
  assert.throws(() => createServer({ supervisor: new FakeSupervisor(), tokens: [{ sha256: 'plaintext-token', teamId: null }] }), /sha256/);
});
