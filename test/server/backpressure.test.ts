import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import type { ServerMetrics } from '../../server/metrics.ts';
import { FakeSupervisor } from './support/fake-supervisor.ts';
import { startHarness, type Harness } from './support/harness.ts';

async function closedFor(metrics: ServerMetrics, reason: string): Promise<number> {
  const m = await metrics.connectionsClosed.get();
  return m.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

async function until(what: string, check: () => Promise<boolean> | boolean, deadlineMs = 10_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function socketOf(ws: WebSocket): Socket {
  return (ws as unknown as { _socket: Socket })._socket;
}

async function openRaw(h: Harness): Promise<WebSocket> {
  const ws = new WebSocket(h.url, { headers: { authorization: `Bearer ${h.tokens.a}` } });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return ws;
}

test('a client that stops reading is closed with 1008 while another client keeps low latency', async (t) => {
  const fake = new FakeSupervisor();
  const h = await startHarness(t, fake, {
    limits: { hardCapBytes: 256 * 1024, highWaterBytes: 64 * 1024, slowReaderGraceMs: 200, ratePerSec: 1e6, burst: 1e6, maxInFlight: 1e6, closeGraceMs: 20_000 },
  });
  const admin = await h.connect('admin');
  for (let i = 0; i < 40; i++) await admin.call('sandbox.create', { templateId: 'base', teamId: 'team-a', env: { PAD: 'x'.repeat(200) } });

  const slow = await openRaw(h);
  t.after(() => slow.terminate());
  const slowClosed = new Promise<number>((r) => slow.once('close', (code) => r(code)));
  socketOf(slow).pause();

  const fast = await h.connect('b');
  const latencies: number[] = [];
  const measuring = (async () => {
    for (let i = 0; i < 100; i++) {
      const t0 = performance.now();
      await fast.call('sandbox.list');
      latencies.push(performance.now() - t0);
    }
  })();

  // Each list reply is ~10 KB; the slow peer keeps asking in batches until it is cut off.
  const frame = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'sandbox.list' });
  let sent = 0;
  while ((await closedFor(h.server.metrics, 'slow_reader')) === 0) {
    assert.ok(sent < 200_000, 'the slow reader was never cut off');
    for (let i = 0; i < 100; i++) slow.send(frame);
    sent += 100;
    await new Promise((r) => setImmediate(r));
  }
  await measuring;

  socketOf(slow).resume();
  assert.equal(await slowClosed, 1008);
  assert.equal(fast.socket.readyState, WebSocket.OPEN);
  latencies.sort((x, y) => x - y);
  // Bounds loose enough for a loaded 2-core CI box, tight enough to catch a server
  // that waits on the slow peer (that costs the grace period or more per call).
  const p50 = latencies[Math.floor(latencies.length * 0.5)] ?? Infinity;
  const p99 = latencies[Math.floor(latencies.length * 0.99)] ?? Infinity;
  assert.ok(p50 < 100 && p99 < 1000, `fast client p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`);
});

test('state notifications to a slow reader coalesce per sandbox and the latest one still arrives', async (t) => {
  const fake = new FakeSupervisor();
  const h = await startHarness(t, fake, { limits: { highWaterBytes: 16 * 1024, hardCapBytes: 8 * 1024 * 1024 } });
  const a = await h.connect('a');
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await a.call('sandbox.create', { templateId: 'base' })).sandbox.id);

  const reader = await openRaw(h);
  t.after(() => reader.terminate());
  const received = new Map<string, number[]>();
  let subscribed!: () => void;
  const subscribedP = new Promise<void>((r) => (subscribed = r));
  reader.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    if (msg.id === 1) subscribed();
    if (msg.method === 'sandbox.state') {
      const list = received.get(msg.params.sandboxId) ?? [];
      list.push(msg.params.seq);
      received.set(msg.params.sandboxId, list);
    }
  });
  reader.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'events.subscribe', params: {} }));
  await subscribedP;
  socketOf(reader).pause();

  const last = new Map<string, number>();
  const stopWatching = fake.onState((c) => last.set(c.sandboxId, c.seq));
  const rounds = 30_000;
  for (let i = 0; i < rounds; i++) {
    for (const id of ids) fake.announce(fake.sandboxes.get(id)!, 'running', 'running.tick');
  }
  stopWatching();

  const coalesced = (await h.server.metrics.notificationsCoalesced.get()).values[0]?.value ?? 0;
  assert.ok(coalesced > 0, 'some notifications were coalesced');
  socketOf(reader).resume();
  await until('the latest state of every sandbox', () => ids.every((id) => received.get(id)?.at(-1) === last.get(id)));
  for (const id of ids) {
    const seqs = received.get(id)!;
    assert.ok(seqs.length < rounds, `${id}: ${seqs.length} of ${rounds} delivered`);
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!, 'order per sandbox is kept');
  }
  assert.equal(reader.readyState, WebSocket.OPEN);
});

test('a peer that never answers pings is dropped; a live one is kept', async (t) => {
  const h = await startHarness(t, new FakeSupervisor(), { limits: { heartbeatMs: 200 } });
  const live = await h.connect('a');
  let pings = 0;
  live.socket.on('ping', () => pings++);

  // A hand-made WebSocket handshake whose peer then reads nothing and never pongs.
  const port = Number(new URL(h.url).port);
  const dead = connect(port, '127.0.0.1');
  t.after(() => dead.destroy());
  dead.write(
    `GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n` +
      `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${h.tokens.a}\r\n\r\n`,
  );
  const handshake = await new Promise<string>((r) => dead.once('data', (d: Buffer) => r(d.toString())));
  assert.match(handshake, /^HTTP\/1\.1 101/);
  await new Promise((r) => dead.once('close', r));
  assert.equal(await closedFor(h.server.metrics, 'heartbeat'), 1);
  await until('a few heartbeats on the live peer', () => pings >= 3);
  assert.equal(live.socket.readyState, WebSocket.OPEN);
});
