import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { ChApiError } from '../../drivers/vmm/ch/api-client.ts';
import { ChDriver } from '../../drivers/vmm/ch/ch-driver.ts';
import { startRawServer, type CannedResponse, type RawRequest } from './support/raw-http-server.ts';

// ChDriver's API-level decisions against a scripted socket at the sandbox's path:
// which CH errors count as "already done" and which are retried.

const opts = () => ({ signal: AbortSignal.timeout(10_000) });

async function withScriptedVmm(handler: (req: RawRequest) => CannedResponse, fn: (driver: ChDriver, requests: RawRequest[], root: string) => Promise<void>): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'sandboxd-test-'));
  const runDir = join(root, 'run');
  mkdirSync(runDir);
  const server = await startRawServer(handler, join(runDir, 'sb-api.sock'));
  try {
    await fn(new ChDriver({ kernelPath: '/nonexistent/vmlinux', runDir, logDir: join(root, 'logs') }), server.requests, root);
  } finally {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  }
}

const invalidTransition = (from: string, to: string): CannedResponse => ({
  status: 500,
  body: JSON.stringify(['Error from API', `The VM could not be ${to === 'Paused' ? 'paused' : 'resumed'}`, `Invalid transition: ${from} to ${to}`]),
});
const info = (state: string): CannedResponse => ({ status: 200, body: JSON.stringify({ config: {}, state }) });

test('pause of an already paused VM succeeds (a re-run step), but a refused pause of a running VM fails', async () => {
  let state = 'Paused';
  await withScriptedVmm(
    (req) => (req.path === '/api/v1/vm.info' ? info(state) : invalidTransition('Paused', 'Paused')),
    async (driver, requests) => {
      await driver.pause('sb-api', opts());
      assert.deepEqual(requests.map((r) => r.path), ['/api/v1/vm.pause', '/api/v1/vm.info']);
      state = 'Running';
      await assert.rejects(driver.pause('sb-api', opts()), (e: unknown) => e instanceof ChApiError && e.kind === 'invalid_state');
    },
  );
});

test('resume on a v40 VMM (plain-text 500) of a running VM counts as done after checking vm.info', async () => {
  await withScriptedVmm(
    (req) => (req.path === '/api/v1/vm.info' ? info('Running') : { status: 500, body: 'Error from API' }),
    async (driver) => {
      await driver.resume('sb-api', opts());
    },
  );
});

test('a snapshot refused with VmRestoring (v53 mid on-demand restore) is retried until it goes through', async () => {
  let calls = 0;
  await withScriptedVmm(
    () => (++calls <= 2 ? { status: 500, body: JSON.stringify(['Error from API', 'The VM could not be snapshotted', 'VM on-demand memory restore is still in progress']) } : { status: 204 }),
    async (driver, requests, root) => {
      const dest = join(root, 'dest');
      mkdirSync(dest);
      await driver.snapshot('sb-api', dest, opts());
      assert.equal(requests.length, 3);
      assert.ok(requests.every((r) => r.path === '/api/v1/vm.snapshot' && JSON.parse(r.body).destination_url === `file://${dest}`));
    },
  );
});

test('a VmRestoring snapshot stops retrying when the caller cancels', async () => {
  await withScriptedVmm(
    () => ({ status: 500, body: JSON.stringify(['Error from API', 'VM on-demand memory restore is still in progress']) }),
    async (driver, _requests, root) => {
      const dest = join(root, 'dest');
      mkdirSync(dest);
      await assert.rejects(driver.snapshot('sb-api', dest, { signal: AbortSignal.timeout(300) }), (e: unknown) => e instanceof SandboxdError && e.code === 'cancelled');
    },
  );
});

test('setBalloon sends vm.resize with desired_balloon and refuses a negative size without a call', async () => {
  await withScriptedVmm(
    () => ({ status: 204 }),
    async (driver, requests) => {
      await driver.setBalloon('sb-api', 0, opts());
      assert.deepEqual(JSON.parse(requests[0]?.body ?? ''), { desired_balloon: 0 });
      await assert.rejects(driver.setBalloon('sb-api', -1, opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_argument');
      assert.equal(requests.length, 1);
    },
  );
});

test('a pidfile naming a recycled pid (not our VMM) is never signalled: find says none, destroy only removes files', async () => {
  const root = mkdtempSync(join(tmpdir(), 'sandboxd-test-'));
  try {
    const runDir = join(root, 'run');
    mkdirSync(runDir);
    // This test process stands in for an unrelated process that got the VMM's old pid.
    writeFileSync(join(runDir, 'sb-recycled.pid'), `${process.pid}\n`);
    const driver = new ChDriver({ kernelPath: '/nonexistent/vmlinux', runDir, logDir: join(root, 'logs') });
    assert.equal(await driver.find('sb-recycled', opts()), null);
    await driver.destroy('sb-recycled', opts());
    assert.deepEqual(readdirSync(runDir), []);
    // Reaching this line means no SIGKILL hit us.
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
