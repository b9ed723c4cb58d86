import assert from 'node:assert/strict';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { SMALL, useAgent } from '../integration/support/agent.ts';
import { startHarness, type Harness } from './support/harness.ts';

// The port proxy on the agent's listener, against the real supervisor on the
// simulator with the `none` network: the sandbox's address is 127.0.0.1, so a
// server this test runs on loopback stands in for a service inside the guest.

interface Seen {
  path: string;
  headers: IncomingHttpHeaders;
}

/** The guest's service: HTTP answering with what it saw, a WebSocket echo, and a /hold path that never answers. */
async function guestService(t: TestContext): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const http: Server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', headers: req.headers });
    if (req.url === '/hold') return; // answered by the drain's force-close only
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-guest': 'yes' });
      res.end(`guest saw ${req.method} ${req.url} ${body}`);
    });
  });
  const wss = new WebSocketServer({ server: http, handleProtocols: (p) => (p.has('chat') ? 'chat' : false) });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  t.after(async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    http.closeAllConnections();
    await new Promise((r) => http.close(r));
  });
  return { port: (http.address() as AddressInfo).port, seen };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function fetchVia(h: Harness, path: string, opts: { token?: string | null; method?: string; body?: string } = {}): Promise<Answer> {
  const token = opts.token === undefined ? h.tokens.a : opts.token;
  return new Promise((resolve, reject) => {
    const req = request(`${h.httpBase}${path}`, {
      method: opts.method ?? 'GET',
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
      agent: false,
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.end(opts.body);
  });
}

function openWs(t: TestContext, url: string, opts: { headers?: Record<string, string>; protocols?: string[] }): Promise<WebSocket> {
  const ws = new WebSocket(url, opts.protocols ?? [], { headers: opts.headers ?? {} });
  t.after(() => ws.terminate());
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

function echo(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve) => {
    ws.once('message', (d) => resolve(d.toString()));
    ws.send(text);
  });
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('port proxy over the agent listener', async (t) => {
  const agent = await useAgent(t);
  const h = await startHarness(t, agent.supervisor);
  const guest = await guestService(t);
  const a = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', SMALL);
  const id = sandbox.id;
  assert.equal(sandbox.hostIp, '127.0.0.1', 'the none network puts the guest on loopback');
  const base = `/v1/sandboxes/${id}/ports/${guest.port}`;
  const wsBase = `${h.url.replace(/\/v1$/, '')}${base}`;

  await t.test('HTTP reaches the guest service with path, query and body; our token does not', async () => {
    const got = await fetchVia(h, `${base}/api/items?x=1`, { method: 'POST', body: 'payload' });
    assert.equal(got.status, 200);
    assert.equal(got.headers['x-guest'], 'yes');
    assert.equal(got.body, 'guest saw POST /api/items?x=1 payload');
    const last = guest.seen.at(-1)!;
    assert.equal(last.headers.authorization, undefined, 'the agent token is not forwarded to the guest');
    assert.equal((await fetchVia(h, base)).body, 'guest saw GET / ', 'no path means the root');
  });

  await t.test('refusals: 401 without or with a bad token, 404 for another team or unknown id, 400 for a bad port', async () => {
    const before = guest.seen.length;
    assert.equal((await fetchVia(h, `${base}/x`, { token: null })).status, 401);
    assert.equal((await fetchVia(h, `${base}/x`, { token: 'sbxt-wrong' })).status, 401);
    assert.equal((await fetchVia(h, `${base}/x`, { token: h.tokens.b })).status, 404);
    assert.equal((await fetchVia(h, `/v1/sandboxes/sb-doesnotexist/ports/${guest.port}/x`)).status, 404);
    assert.equal((await fetchVia(h, `/v1/sandboxes/%E0%A4%A/ports/${guest.port}/x`)).status, 404, 'a malformed escape is just not found');
    for (const port of ['0', '65536', 'abc']) assert.equal((await fetchVia(h, `/v1/sandboxes/${id}/ports/${port}/x`)).status, 400, port);
    await assert.rejects(openWs(t, `${wsBase}/`, {}), /HTTP 401/);
    await assert.rejects(openWs(t, `${wsBase}/`, { headers: { authorization: `Bearer ${h.tokens.b}` } }), /HTTP 404/);
    assert.equal(guest.seen.length, before, 'nothing refused reached the guest');
  });

  await t.test('a WebSocket echoes through the proxy, with the header or the browser subprotocol form', async () => {
    const ws = await openWs(t, `${wsBase}/echo`, { headers: { authorization: `Bearer ${h.tokens.a}` } });
    assert.equal(await echo(ws, 'ping-1'), 'ping-1');
    ws.close();
    const browser = await openWs(t, `${wsBase}/echo`, { protocols: ['sandboxd.v1', `bearer.${h.tokens.a}`, 'chat'] });
    assert.equal(browser.protocol, 'chat', "the guest's own subprotocol is negotiated");
    assert.equal(await echo(browser, 'ping-2'), 'ping-2');
    const last = guest.seen.at(-1);
    assert.ok(last === undefined || !String(last.headers['sec-websocket-protocol'] ?? '').includes('bearer.'));
    browser.close();
  });

  await t.test('a proxied connection counts as activity (lastActiveAt moves)', async () => {
    const before = Date.parse((await a.call('sandbox.get', { id })).lastActiveAt);
    await until('the clock to move', () => Date.now() > before + 2);
    await fetchVia(h, `${base}/activity`);
    const after = Date.parse((await a.call('sandbox.get', { id })).lastActiveAt);
    assert.ok(after > before, `lastActiveAt ${after} > ${before}`);
  });

  await t.test('a client that goes away mid-request releases its registration; the agent keeps serving', async () => {
    const req = request(`${h.httpBase}${base}/hold`, { headers: { authorization: `Bearer ${h.tokens.a}` }, agent: false });
    req.on('error', () => undefined);
    req.end();
    await until('the request to be tracked', () => agent.supervisor.connections.count(id) === 1);
    req.destroy();
    await until('the registration to be released', () => agent.supervisor.connections.count(id) === 0);
    assert.equal((await fetchVia(h, `${base}/still`)).status, 200);
  });

  await t.test('a pause drains: new connections 503, open ones force-closed after the window, then paused', async () => {
    const ws = await openWs(t, `${wsBase}/echo`, { headers: { authorization: `Bearer ${h.tokens.a}` } });
    const wsClosed = new Promise<void>((r) => ws.once('close', () => r()));
    const held = fetchVia(h, `${base}/hold`).then(
      (r) => `answered ${r.status}`,
      (err: Error) => `closed: ${err.message}`,
    );
    await until('two tracked connections', () => agent.supervisor.connections.count(id) === 2);
    const pausing = a.call('sandbox.pause', { id });
    await until('the drain to start', () => agent.supervisor.get({ teamId: null }, id).status === 'pausing');
    assert.equal((await fetchVia(h, `${base}/late`)).status, 503, 'new connection while draining');
    await assert.rejects(openWs(t, `${wsBase}/echo`, { headers: { authorization: `Bearer ${h.tokens.a}` } }), /HTTP 503/);
    assert.equal(ws.readyState, WebSocket.OPEN, 'an open connection gets the window');
    await wsClosed;
    assert.match(await held, /^closed/, 'the held request is cut off, not answered');
    const paused = await pausing;
    assert.equal(paused.status, 'paused');
    assert.equal(agent.supervisor.connections.count(id), 0);
    assert.equal((await fetchVia(h, `${base}/x`)).status, 503, 'a paused sandbox is not proxied');
    await a.call('sandbox.resume', { id });
    assert.equal((await fetchVia(h, `${base}/again`)).status, 200, 'proxied again once running');
  });

  await a.call('sandbox.destroy', { id });
});
