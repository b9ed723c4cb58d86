import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withEnvd, type Seen } from './scripted-envd.ts';
import { SandboxdError } from '../../core/errors.ts';
import { encodeEnvelope, EnvelopeDecoder, FLAG_END_STREAM } from '../../drivers/envd/connect-json.ts';
import { EnvdClient } from '../../drivers/envd/envd-client.ts';
import type { ProcessEvent } from '../../drivers/envd/envd.ts';

// Wire shapes of the streaming and unary process calls, against a scripted envd on loopback.


const client = new EnvdClient();
const opts = () => ({ signal: AbortSignal.timeout(5000) });
const requestOf = (s: Seen | undefined): unknown => JSON.parse(new EnvelopeDecoder().push(s?.body ?? Buffer.alloc(0))[0]?.payload.toString() ?? 'null');
const jsonOf = (s: Seen | undefined): unknown => JSON.parse(s?.body.toString() ?? 'null');

async function collect(events: AsyncIterable<ProcessEvent>): Promise<ProcessEvent[]> {
  const out: ProcessEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

test('execStream yields start, output and end in order, as they arrive', async () => {
  await withEnvd(
    (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/connect+json' });
      res.write(encodeEnvelope({ event: { start: { pid: 3 } } }));
      res.write(encodeEnvelope({ event: { data: { stdout: Buffer.from('a').toString('base64') } } }));
      res.write(encodeEnvelope({ event: { keepalive: {} } }));
      res.write(encodeEnvelope({ event: { end: { exited: true, status: 'exit status 0' } } }));
      res.end(encodeEnvelope({}, FLAG_END_STREAM));
    },
    async (url) => {
      const stream = await client.execStream(url, { cmd: 'x', args: [] }, opts());
      assert.deepEqual((await collect(stream.events)).map((e) => e.type), ['start', 'stdout', 'keepalive', 'end']);
    },
  );
});

test('ptyStart asks for a PTY with stdin open and a tag; input, resize and kill address it by selector', async () => {
  await withEnvd(
    (req, res) => {
      if (req.path.endsWith('/Start')) {
        res.writeHead(200, { 'Content-Type': 'application/connect+json' });
        res.write(encodeEnvelope({ event: { start: { pid: 8 } } }));
        res.end(encodeEnvelope({}, FLAG_END_STREAM));
      } else res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    },
    async (url, seen) => {
      const stream = await client.ptyStart(url, { cmd: '/bin/bash', args: ['-l'], tag: 'term-1', size: { cols: 80, rows: 24 } }, opts());
      await collect(stream.events).catch(() => undefined);
      await client.ptyInput(url, { tag: 'term-1' }, Buffer.from('ls\n'), opts());
      await client.ptyResize(url, { tag: 'term-1' }, { cols: 120, rows: 40 }, opts());
      await client.ptyKill(url, { pid: 8 }, opts());
      await client.processKill(url, { tag: 'bg' }, 'SIGTERM', opts());
      assert.deepEqual(requestOf(seen[0]), { process: { cmd: '/bin/bash', args: ['-l'], envs: {} }, stdin: true, pty: { size: { cols: 80, rows: 24 } }, tag: 'term-1' });
      assert.deepEqual(seen.slice(1).map((s) => s.path), ['/process.Process/SendInput', '/process.Process/Update', '/process.Process/SendSignal', '/process.Process/SendSignal']);
      for (const s of seen.slice(1)) {
        assert.equal(s.headers['content-type'], 'application/json');
        assert.equal(s.headers['connect-protocol-version'], '1');
      }
      assert.deepEqual(jsonOf(seen[1]), { process: { tag: 'term-1' }, input: { pty: Buffer.from('ls\n').toString('base64') } });
      assert.deepEqual(jsonOf(seen[2]), { process: { tag: 'term-1' }, pty: { size: { cols: 120, rows: 40 } } });
      assert.deepEqual(jsonOf(seen[3]), { process: { pid: 8 }, signal: 'SIGNAL_SIGKILL' });
      assert.deepEqual(jsonOf(seen[4]), { process: { tag: 'bg' }, signal: 'SIGNAL_SIGTERM' });
    },
  );
});

test('processStart returns the pid and drops the stream without waiting for the process to end', async () => {
  let closed = false;
  await withEnvd(
    (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/connect+json' });
      res.write(encodeEnvelope({ event: { start: { pid: 77 } } }));
      res.on('close', () => (closed = true));
    },
    async (url, seen) => {
      assert.deepEqual(await client.processStart(url, { cmd: 'sleep', args: ['1000'], tag: 'bg-1' }, opts()), { pid: 77 });
      assert.deepEqual(requestOf(seen[0]), { process: { cmd: 'sleep', args: ['1000'], envs: {} }, stdin: false, tag: 'bg-1' });
      const deadline = Date.now() + 2000;
      while (!closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.ok(closed);
    },
  );
});

test('processList maps processes with omitted defaults; unary errors keep their Connect code', async () => {
  await withEnvd(
    (req, res) => {
      if (req.path.endsWith('/List')) {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ processes: [{ config: { cmd: 'sleep', args: ['9'] }, pid: 12, tag: 'bg' }, { config: { cmd: 'top' }, pid: 13 }] }));
      } else res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"code":"not_found","message":"process with pid 99 not found"}');
    },
    async (url) => {
      assert.deepEqual(await client.processList(url, opts()), [
        { pid: 12, tag: 'bg', cmd: 'sleep', args: ['9'], cwd: null },
        { pid: 13, tag: null, cmd: 'top', args: [], cwd: null },
      ]);
      await assert.rejects(client.processKill(url, { pid: 99 }, 'SIGKILL', opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'not_found');
    },
  );
});

test('bad selectors and PTY sizes are refused before any request', async () => {
  await withEnvd(
    (_req, res) => res.writeHead(500).end(),
    async (url, seen) => {
      const invalid = (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_argument';
      await assert.rejects(client.ptyResize(url, { tag: 'x' }, { cols: 0, rows: 10 }, opts()), invalid);
      await assert.rejects(client.ptyKill(url, { pid: -1 }, opts()), invalid);
      await assert.rejects(client.processConnect(url, { tag: '../x y' }, opts()), invalid);
      await assert.rejects(client.ptyStart(url, { cmd: 'sh', args: [], tag: 't', size: { cols: 80, rows: 70_000 } }, opts()), invalid);
      assert.equal(seen.length, 0);
    },
  );
});
