import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ensureAdminToken } from '../../agent/admin-token.ts';
import { BUNDLED_SIMULATOR, loadConfig } from '../../core/config.ts';
import { SandboxdError } from '../../core/errors.ts';
import { sha256Hex } from '../../server/auth.ts';

// The agent's configuration: file, then SANDBOXD_* env; one strict schema with
// errors that name the bad key and where it came from.

const file = (obj: unknown) => ({ configPath: 'agent.json', cwd: '/srv', readFile: () => JSON.stringify(obj), env: {} });
const rejects = (fn: () => unknown, pattern: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_argument' && pattern.test(e.message));

test('with nothing configured the agent runs the simulator unprivileged: clone disks, no network, ./data made absolute', () => {
  const c = loadConfig({ env: {}, cwd: '/home/dev/sandboxd' });
  assert.equal(c.dataDir, '/home/dev/sandboxd/data');
  assert.deepEqual(c.listen, { host: '127.0.0.1', port: 7070 });
  assert.equal(c.vmm.binary, BUNDLED_SIMULATOR);
  assert.equal(c.vmm.simulator, true);
  assert.equal(c.vmm.envdAddress, 'sim-port-file');
  assert.deepEqual(c.backends, { disk: 'clone', network: 'none' });
  assert.deepEqual(c.tokens, []);
  assert.equal(c.warmUpLifecycles, 1000);
});

test('a real VMM binary switches the defaults to the production backends and guest envd, and needs a kernel', () => {
  rejects(() => loadConfig({ env: { SANDBOXD_VMM_BINARY: '/usr/bin/cloud-hypervisor' } }), /vmm\.kernelPath is required/);
  const c = loadConfig({ env: { SANDBOXD_VMM_BINARY: '/usr/bin/cloud-hypervisor', SANDBOXD_KERNEL: '/boot/vmlinux' } });
  assert.equal(c.vmm.simulator, false);
  assert.equal(c.vmm.envdAddress, 'guest');
  assert.deepEqual(c.backends, { disk: 'auto', network: 'auto' });
  assert.equal(c.vmm.kernelPath, '/boot/vmlinux');
});

test('environment variables override the file key by key', () => {
  const c = loadConfig({
    ...file({ dataDir: 'state', listen: { port: 8000 }, slots: 16, backends: { disk: 'clone' } }),
    env: { SANDBOXD_PORT: '9000', SANDBOXD_NETWORK_BACKEND: 'none', SANDBOXD_WARM_UP: '0' },
  });
  assert.equal(c.warmUpLifecycles, 0);
  assert.equal(c.dataDir, '/srv/state');
  assert.deepEqual(c.listen, { host: '127.0.0.1', port: 9000 });
  assert.equal(c.slots, 16);
  assert.deepEqual(c.backends, { disk: 'clone', network: 'none' });
});

test('a typo in the file is an error naming the unknown key and the file, not a silent default', () => {
  rejects(() => loadConfig(file({ dataDri: '/x' })), /dataDri.*\/srv\/agent\.json/);
  rejects(() => loadConfig(file({ backends: { dsik: 'clone' } })), /backends.*dsik/);
});

test('a bad value names its key and the env variable it came from', () => {
  rejects(() => loadConfig({ env: { SANDBOXD_PORT: '70000' } }), /listen\.port.*env SANDBOXD_PORT/);
  rejects(() => loadConfig({ env: { SANDBOXD_PORT: 'http' } }), /listen\.port.*env SANDBOXD_PORT/);
  rejects(() => loadConfig({ env: { SANDBOXD_DISK_BACKEND: 'zfs' } }), /backends\.disk.*env SANDBOXD_DISK_BACKEND/);
  rejects(() => loadConfig({ env: { SANDBOXD_SLOTS: '0' } }), /slots/);
  rejects(() => loadConfig({ env: { SANDBOXD_LOG_LEVEL: 'loud' } }), /logLevel/);
  rejects(() => loadConfig({ env: { SANDBOXD_WARM_UP: '-1' } }), /warmUpLifecycles.*env SANDBOXD_WARM_UP/);
  rejects(() => loadConfig({ env: { SANDBOXD_TOKENS: 'not json' } }), /SANDBOXD_TOKENS must be JSON/);
  rejects(() => loadConfig({ env: { SANDBOXD_TOKENS: '[{"sha256":"abc","teamId":"t"}]' } }), /tokens\.0\.sha256.*64 hex/);
  rejects(() => loadConfig(file({ tokens: [{ sha256: 'a'.repeat(64), teamId: '../etc' }] })), /tokens\.0\.teamId/);
});

test('an unreadable or non-JSON config file is refused with its path', () => {
  rejects(() => loadConfig({ configPath: '/nope/agent.json', env: {} }), /cannot read config file \/nope\/agent\.json/);
  rejects(() => loadConfig({ configPath: 'a.json', cwd: '/srv', env: {}, readFile: () => '{ dataDir: ' }), /\/srv\/a\.json is not valid JSON/);
  rejects(() => loadConfig({ configPath: 'a.json', env: {}, readFile: () => '[]' }), /must hold a JSON object/);
  // SANDBOXD_CONFIG names the file when --config does not.
  rejects(() => loadConfig({ env: { SANDBOXD_CONFIG: '/nope/env.json' } }), /\/nope\/env\.json/);
});

test('tokens are configured by digest with a team or null for admin', () => {
  const sha = sha256Hex('secret');
  const c = loadConfig({ env: { SANDBOXD_TOKENS: JSON.stringify([{ sha256: sha, teamId: 'team-a' }, { sha256: sha, teamId: null }]) } });
  assert.deepEqual(c.tokens, [{ sha256: sha, teamId: 'team-a' }, { sha256: sha, teamId: null }]);
});

test('the first-start admin token is made 0600 once and reused; a mangled one is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sandboxd-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const first = await ensureAdminToken(dir);
  assert.equal(first.created, true);
  assert.equal(statSync(first.path).mode & 0o777, 0o600);
  assert.equal(sha256Hex(readFileSync(first.path, 'utf8').trim()), first.sha256);
  const again = await ensureAdminToken(dir);
  assert.deepEqual([again.created, again.sha256], [false, first.sha256]);
  writeFileSync(first.path, 'x\n');
  await assert.rejects(ensureAdminToken(dir), /does not hold a usable token/);
});
