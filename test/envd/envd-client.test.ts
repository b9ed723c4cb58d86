import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { withEnvd } from './scripted-envd.ts';
import { SandboxdError } from '../../core/errors.ts';
import { encodeEnvelope, EnvelopeDecoder, FLAG_END_STREAM } from '../../drivers/envd/connect-json.ts';
import { EnvdClient, envdHealthBudgetMs } from '../../drivers/envd/envd-client.ts';


const opts = () => ({ signal: new AbortController().signal });
const client = new EnvdClient({ healthPollMs: 5, callTimeoutMs: 1000 });

/** Writes the frames split into small pieces, so the client must reassemble them. */
function streamFrames(res: ServerResponse, frames: Buffer[], piece = 3): void {
  res.writeHead(200, { 'Content-Type': 'application/connect+json' });
  const wire = Buffer.concat(frames);
  for (let i = 0; i < wire.length; i += piece) res.write(wire.subarray(i, i + piece));
  res.end();
}

test('readiness budget: 8 s per GiB of RAM, never under 120 s', () => {
  assert.equal(envdHealthBudgetMs(512), 120_000);
  assert.equal(envdHealthBudgetMs(16 * 1024), 128_000);
  assert.equal(envdHealthBudgetMs(20 * 1024), 160_000);
  assert.equal(envdHealthBudgetMs(20 * 1024 + 1), 168_000);
});

test('waitHealthy keeps polling through refusals and accepts both E2B 204 and Wrenn 200', async () => {
  for (const ready of [204, 200]) {
    let calls = 0;
    await withEnvd(
      (_req, res) => {
        calls++;
        if (calls < 4) res.writeHead(503).end();
        else if (ready === 200) res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"version":"0.2.0"}');
        else res.writeHead(204).end();
      },
      async (url, seen) => {
        await client.waitHealthy(url, 5000, opts());
        assert.equal(seen.length, 4);
        assert.ok(seen.every((s) => s.method === 'GET' && s.path === '/health'));
      },
    );
  }
});

test('waitHealthy gives up with a timeout when the budget runs out, and stops at once when cancelled', async () => {
  await withEnvd(
    (_req, res) => res.writeHead(503).end(),
    async (url) => {
      const started = Date.now();
      await assert.rejects(client.waitHealthy(url, 200, opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'timeout' && /HTTP 503/.test(e.message));
      assert.ok(Date.now() - started < 2000);
      const ac = new AbortController();
      const waiting = client.waitHealthy(url, 60_000, { signal: ac.signal });
      setImmediate(() => ac.abort());
      await assert.rejects(waiting, (e: unknown) => e instanceof SandboxdError && e.code === 'cancelled');
    },
  );
});

test('waitHealthy on a dead address times out instead of hanging', async () => {
  // Port 1 on loopback: nothing listens there, connections are refused at once.
  await assert.rejects(client.waitHealthy('http://127.0.0.1:1', 150, opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'timeout');
});

test('version comes from Wrenn /health JSON or from E2B X-Envd-Version', async () => {
  await withEnvd(
    (_req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"version":"0.2.0"}'),
    async (url) => assert.equal(await client.version(url, opts()), '0.2.0'),
  );
  await withEnvd(
    (_req, res) => res.writeHead(204, { 'X-Envd-Version': '0.6.13' }).end(),
    async (url) => assert.equal(await client.version(url, opts()), '0.6.13'),
  );
});

test('init posts defaultUser, envVars and the host clock; a refusal is an error', async () => {
  let status = 204;
  await withEnvd(
    (_req, res) => res.writeHead(status).end(status === 204 ? undefined : '{"code":400,"message":"bad"}'),
    async (url, seen) => {
      const before = Date.now();
      await client.init(url, { defaultUser: 'user', env: { A: '1' } }, opts());
      const sent = JSON.parse(seen[0]?.body.toString() ?? '') as { defaultUser: string; envVars: Record<string, string>; timestamp: string };
      assert.equal(seen[0]?.method, 'POST');
      assert.equal(seen[0]?.path, '/init');
      assert.equal(sent.defaultUser, 'user');
      assert.deepEqual(sent.envVars, { A: '1' });
      assert.ok(Date.parse(sent.timestamp) >= before - 1000);
      await client.init(url, {}, opts());
      assert.deepEqual(Object.keys(JSON.parse(seen[1]?.body.toString() ?? '') as object), ['timestamp']);
      status = 400;
      await assert.rejects(client.init(url, {}, opts()), (e: unknown) => e instanceof SandboxdError && /HTTP 400/.test(e.message));
    },
  );
});

test('prepareSnapshot posts without a body; usage reads mem_used and disk_used and rejects garbage', async () => {
  let metrics = JSON.stringify({ ts: 1, cpu_count: 2, cpu_used_pct: 1.5, mem_total: 100, mem_used: 4096, disk_used: 8192, disk_total: 9 });
  await withEnvd(
    (req, res) => {
      if (req.path === '/snapshot/prepare') res.writeHead(204).end();
      else res.writeHead(200, { 'Content-Type': 'application/json' }).end(metrics);
    },
    async (url, seen) => {
      await client.prepareSnapshot(url, opts());
      assert.equal(seen[0]?.headers['content-length'], '0');
      assert.equal(seen[0]?.body.length, 0);
      assert.deepEqual(await client.usage(url, opts()), { memUsedBytes: 4096, diskUsedBytes: 8192 });
      metrics = '{"mem_used":"lots"}';
      await assert.rejects(client.usage(url, opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'operation_failed');
    },
  );
});

test('waitMemoryLoader polls until the loader leaves "running" and returns its final status', async () => {
  let gets = 0;
  await withEnvd(
    (req, res) => {
      const state = req.method === 'POST' ? 'running' : ++gets < 3 ? 'running' : 'done';
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ state, regions: 1, pages: gets * 10, bytes: 0, elapsed_sec: 0.1, source: '/dev/mem', error: null }));
    },
    async (url) => {
      assert.equal((await client.startMemoryLoader(url, opts())).state, 'running');
      const final = await client.waitMemoryLoader(url, { ...opts(), pollMs: 5 });
      assert.deepEqual(final, { state: 'done', pages: 30, error: null });
    },
  );
});

test('exec sends one enveloped Start request and collects stdout/stderr split across chunk boundaries until end', async () => {
  await withEnvd(
    (_req, res) =>
      streamFrames(res, [
        encodeEnvelope({ event: { start: { pid: 42 } } }),
        encodeEnvelope({ event: { data: { stdout: Buffer.from('hello ').toString('base64') } } }),
        encodeEnvelope({ event: { data: { stderr: Buffer.from('warn\n').toString('base64') } } }),
        encodeEnvelope({ event: { data: { stdout: Buffer.from('world\n').toString('base64') } } }),
        encodeEnvelope({ event: { end: { exitCode: 3, exited: true, status: 'exit status 3' } } }),
        encodeEnvelope({}, FLAG_END_STREAM),
      ]),
    async (url, seen) => {
      const result = await client.exec(url, { cmd: '/bin/sh', args: ['-c', 'x'], env: { K: 'v' }, cwd: '/tmp', timeoutMs: 5000 }, opts());
      assert.deepEqual(result, { exitCode: 3, stdout: 'hello world\n', stderr: 'warn\n' });
      const req = seen[0];
      assert.ok(req);
      assert.equal(req.path, '/process.Process/Start');
      assert.equal(req.headers['content-type'], 'application/connect+json');
      assert.equal(req.headers['connect-protocol-version'], '1');
      assert.equal(req.headers['connect-timeout-ms'], '5000');
      const frames = new EnvelopeDecoder().push(req.body);
      assert.equal(frames.length, 1);
      assert.equal(frames[0]?.flags, 0);
      assert.deepEqual(JSON.parse(frames[0]?.payload.toString() ?? ''), { process: { cmd: '/bin/sh', args: ['-c', 'x'], envs: { K: 'v' }, cwd: '/tmp' }, stdin: false });
    },
  );
});

test('exec surfaces the end-of-stream error with its Connect code instead of an empty result', async () => {
  await withEnvd(
    (_req, res) => streamFrames(res, [encodeEnvelope({ error: { code: 'invalid_argument', message: 'bad cwd' } }, FLAG_END_STREAM)]),
    async (url) => {
      await assert.rejects(client.exec(url, { cmd: 'ls', args: [] }, opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_argument' && /bad cwd/.test(e.message));
    },
  );
});

test('exec treats a stream cut before its end-of-stream frame as broken, not as success', async () => {
  await withEnvd(
    (_req, res) => streamFrames(res, [encodeEnvelope({ event: { start: { pid: 1 } } }), encodeEnvelope({ event: { end: { exited: true } } })]),
    async (url) => {
      await assert.rejects(client.exec(url, { cmd: 'ls', args: [] }, opts()), (e: unknown) => e instanceof SandboxdError && /end-of-stream/.test(e.message));
    },
  );
});

test('exec refused before streaming (E2B 401 with a numeric code) maps to unauthenticated', async () => {
  await withEnvd(
    (_req, res) => res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"code":401,"message":"unauthorized access"}'),
    async (url) => {
      await assert.rejects(client.exec(url, { cmd: 'ls', args: [] }, opts()), (e: unknown) => e instanceof SandboxdError && /unauthenticated/.test(e.message));
    },
  );
});

test('cancelling an exec mid-stream rejects with cancelled and closes the connection', async () => {
  let closed = false;
  await withEnvd(
    (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/connect+json' });
      res.write(encodeEnvelope({ event: { start: { pid: 5 } } }));
      res.on('close', () => (closed = true));
    },
    async (url) => {
      const ac = new AbortController();
      const running = client.exec(url, { cmd: 'sleep', args: ['100'] }, { signal: ac.signal });
      setTimeout(() => ac.abort(), 20);
      await assert.rejects(running, (e: unknown) => e instanceof SandboxdError && e.code === 'cancelled');
      const deadline = Date.now() + 2000;
      while (!closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.ok(closed, 'server saw the stream closed');
    },
  );
});

test('exec rejects bad input before any request', async () => {
  await withEnvd(
    (_req, res) => res.writeHead(500).end(),
    async (url, seen) => {
      await assert.rejects(client.exec(url, { cmd: '', args: [] }, opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_argument');
      await assert.rejects(client.exec(url, { cmd: 'ls', args: [], timeoutMs: -1 }, opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_argument');
      assert.equal(seen.length, 0);
    },
  );
});

test('a pooled connection the guest reset (VM replaced behind the same address) is retried once on a fresh one', async () => {
  const used = new WeakSet<object>();
  let resets = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (used.has(req.socket)) {
        resets++;
        req.socket.resetAndDestroy();
        return;
      }
      used.add(req.socket);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ mem_used: 1, disk_used: 2 }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await client.usage(url, opts());
    assert.deepEqual(await client.usage(url, opts()), { memUsedBytes: 1, diskUsedBytes: 2 });
    assert.equal(resets, 1, 'the second call met a reset and went through on a new connection');
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
