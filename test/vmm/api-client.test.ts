import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { ChApiClient, ChApiError, type BodylessAction, type ChErrorKind } from '../../drivers/vmm/ch/api-client.ts';
import { startRawServer, type CannedResponse } from './support/raw-http-server.ts';

const opts = () => ({ signal: new AbortController().signal });

async function withServer(
  handler: (path: string) => CannedResponse,
  fn: (client: ChApiClient, requests: import('./support/raw-http-server.ts').RawRequest[]) => Promise<void>,
): Promise<void> {
  const server = await startRawServer((req) => handler(req.path));
  try {
    await fn(new ChApiClient(server.socketPath, { defaultTimeoutMs: 2000 }), server.requests);
  } finally {
    await server.close();
  }
}

const BODYLESS: BodylessAction[] = ['vm.boot', 'vm.delete', 'vm.shutdown', 'vm.reboot', 'vm.pause', 'vm.resume', 'vm.power-button', 'vmm.shutdown'];

test('bodyless PUTs carry no body (CH answers 400 to "{}") but always a Content-Length: 0', async () => {
  await withServer(
    (path) => (path === '/api/v1/vmm.shutdown' ? { status: 200, body: '' } : { status: 204 }),
    async (client, requests) => {
      for (const action of BODYLESS) await client.action(action, opts());
      assert.equal(requests.length, BODYLESS.length);
      for (const [i, req] of requests.entries()) {
        assert.equal(req.method, 'PUT');
        assert.equal(req.path, `/api/v1/${BODYLESS[i]}`);
        assert.equal(req.headers['content-length'], '0', req.raw);
        assert.equal(req.headers['transfer-encoding'], undefined, req.raw);
        assert.equal(req.headers['content-type'], undefined, req.raw);
        assert.ok(req.raw.endsWith('\r\n\r\n'), 'nothing after the header block');
      }
    },
  );
});

test('JSON bodies are sized by Content-Length, never chunked (micro-http misreads chunked bodies)', async () => {
  await withServer(
    () => ({ status: 204 }),
    async (client, requests) => {
      await client.snapshot('/var/lib/sandboxd/sandboxes/sb-x/.stage-1', opts());
      await client.resize({ desired_balloon: 0 }, opts());
      await client.restore({ source_url: 'file:///snap/dir', memory_restore_mode: 'OnDemand' }, opts());
      const [snap, resize, restore] = requests;
      for (const req of [snap, resize, restore]) {
        assert.ok(req);
        assert.equal(req.headers['transfer-encoding'], undefined);
        assert.equal(req.headers['content-type'], 'application/json');
        assert.equal(Number(req.headers['content-length']), Buffer.byteLength(req.body));
      }
      assert.deepEqual(JSON.parse(snap?.body ?? ''), { destination_url: 'file:///var/lib/sandboxd/sandboxes/sb-x/.stage-1' });
      assert.deepEqual(JSON.parse(resize?.body ?? ''), { desired_balloon: 0 });
      assert.deepEqual(JSON.parse(restore?.body ?? ''), { source_url: 'file:///snap/dir', memory_restore_mode: 'OnDemand' });
      assert.equal(resize?.path, '/api/v1/vm.resize');
    },
  );
});

// Each CH version's error shape (reference §1.2) and the kind a caller branches on.
const ERROR_SHAPES: { name: string; res: CannedResponse; status: number; chain: string[]; kind: ChErrorKind }[] = [
  { name: 'v40-v46 plain-text 500', res: { status: 500, body: 'Error from API', contentType: 'application/json' }, status: 500, chain: ['Error from API'], kind: 'internal' },
  {
    name: 'v47+ JSON chain 500 for pausing a paused VM',
    res: { status: 500, body: JSON.stringify(['Error from API', 'The VM could not be paused', 'Cannot pause VM', 'Invalid transition: Paused to Paused']) },
    status: 500,
    chain: ['Error from API', 'The VM could not be paused', 'Cannot pause VM', 'Invalid transition: Paused to Paused'],
    kind: 'invalid_state',
  },
  {
    name: 'v47+ JSON chain 500 for a snapshot of a running VM',
    res: { status: 500, body: JSON.stringify(['Error from API', 'Error creating snapshot', 'Trying to snapshot while VM is running']) },
    status: 500,
    chain: ['Error from API', 'Error creating snapshot', 'Trying to snapshot while VM is running'],
    kind: 'invalid_state',
  },
  {
    name: 'v53 VmRestoring 500',
    res: { status: 500, body: JSON.stringify(['Error from API', 'Error creating snapshot', 'VM on-demand memory restore is still in progress']) },
    status: 500,
    chain: ['Error from API', 'Error creating snapshot', 'VM on-demand memory restore is still in progress'],
    kind: 'restoring',
  },
  { name: 'v53 VmNotCreated 404', res: { status: 404, body: JSON.stringify(['Error from API', 'VM is not created']) }, status: 404, chain: ['Error from API', 'VM is not created'], kind: 'not_found' },
  { name: 'unknown route 404 (plain)', res: { status: 404, body: '' }, status: 404, chain: [], kind: 'not_found' },
  { name: 'v53 duplicate device 409', res: { status: 409, body: JSON.stringify(['Error from API', 'Identifier _disk0 is not unique']) }, status: 409, chain: ['Error from API', 'Identifier _disk0 is not unique'], kind: 'conflict' },
  { name: 'bad body 400', res: { status: 400, body: JSON.stringify(['Error from API', 'Cannot parse JSON']) }, status: 400, chain: ['Error from API', 'Cannot parse JSON'], kind: 'bad_request' },
  { name: 'resize with a vCPU removal pending 429', res: { status: 429, body: '' }, status: 429, chain: [], kind: 'busy' },
  { name: 'JSON-looking text that is no array stays text', res: { status: 500, body: '[not json' }, status: 500, chain: ['[not json'], kind: 'internal' },
];

for (const shape of ERROR_SHAPES) {
  test(`CH error shape maps to a typed ChApiError: ${shape.name}`, async () => {
    await withServer(
      () => shape.res,
      async (client) => {
        const err = await client.action('vm.pause', opts()).then(
          () => assert.fail('expected a rejection'),
          (e: unknown) => e,
        );
        assert.ok(err instanceof ChApiError, String(err));
        assert.ok(err instanceof SandboxdError);
        assert.equal(err.code, 'operation_failed');
        assert.equal(err.status, shape.status);
        assert.deepEqual(err.chain, shape.chain);
        assert.equal(err.kind, shape.kind);
        assert.equal(err.endpoint, 'vm.pause');
      },
    );
  });
}

test('vm.info, vmm.ping and vm.counters are parsed; an unknown state is rejected, not passed on', async () => {
  let state = 'Paused';
  await withServer(
    (path) => {
      if (path === '/api/v1/vmm.ping') return { status: 200, body: JSON.stringify({ build_version: 'v52.0', version: '52.0.0', pid: 42, features: ['kvm'] }) };
      if (path === '/api/v1/vm.counters') return { status: 200, body: JSON.stringify({ _disk0: { read_bytes: 5, write_bytes: 7 } }) };
      return { status: 200, body: JSON.stringify({ config: { cpus: { boot_vcpus: 1 } }, state, memory_actual_size: 536870912 }) };
    },
    async (client, requests) => {
      assert.equal((await client.ping(opts())).version, '52.0.0');
      assert.equal((await client.info(opts())).state, 'Paused');
      assert.equal((await client.counters(opts()))._disk0?.write_bytes, 7);
      assert.deepEqual(requests.map((r) => r.method), ['GET', 'GET', 'GET']);
      assert.equal(requests[2]?.path, '/api/v1/vm.counters');
      state = 'Sleeping';
      await assert.rejects(client.info(opts()), (e: unknown) => e instanceof ChApiError && e.kind === 'internal' && /unexpected response/.test(e.message));
    },
  );
});

test('a VMM that never answers times out within the per-call bound', async () => {
  await withServer(
    () => ({ status: 204, hang: true }),
    async (client) => {
      const started = Date.now();
      await assert.rejects(client.action('vm.pause', { ...opts(), timeoutMs: 150 }), (e: unknown) => e instanceof SandboxdError && e.code === 'timeout');
      assert.ok(Date.now() - started < 1500);
    },
  );
});

test('aborting the signal cancels an in-flight call', async () => {
  await withServer(
    () => ({ status: 204, hang: true }),
    async (client, requests) => {
      const ac = new AbortController();
      const call = client.action('vm.resume', { signal: ac.signal });
      // wait until the server has the request, then abort
      const deadline = Date.now() + 2000;
      while (requests.length === 0 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
      ac.abort();
      await assert.rejects(call, (e: unknown) => e instanceof SandboxdError && e.code === 'cancelled');
      const pre = new AbortController();
      pre.abort();
      await assert.rejects(client.info({ signal: pre.signal }), (e: unknown) => e instanceof SandboxdError && e.code === 'cancelled');
    },
  );
});

test('a dead socket (VMM gone) fails fast as unavailable', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sandboxd-test-'));
  try {
    const missing = new ChApiClient(join(dir, 'nope.sock'));
    const started = Date.now();
    await assert.rejects(missing.ping(opts()), (e: unknown) => e instanceof ChApiError && e.kind === 'unavailable' && e.status === 0 && /ENOENT/.test(e.message));
    assert.ok(Date.now() - started < 1000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a response larger than the bound is refused instead of buffered', async () => {
  await withServer(
    () => ({ status: 200, body: JSON.stringify({ version: 'x'.repeat(2 << 20) }) }),
    async (client) => {
      await assert.rejects(client.ping(opts()), (e: unknown) => e instanceof ChApiError && /larger than/.test(e.message));
    },
  );
});
