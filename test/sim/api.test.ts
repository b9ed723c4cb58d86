import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { test } from 'node:test';
import { api, eventually, spawnSim, type Sim } from './harness.ts';

// The simulator's REST API must answer like CH's micro-http server, per version,
// or the real CH driver passes here and fails on a production host.

async function bare(t: Parameters<typeof spawnSim>[0], version = 52): Promise<Sim> {
  return spawnSim(t, { version, args: [] });
}

test('a 204 carries no Content-Type or Content-Length, every answer names the CH server', async (t) => {
  const sim = await spawnSim(t);
  const pause = await api(sim, 'PUT', 'vm.pause');
  assert.equal(pause.status, 204);
  assert.equal(pause.headers['content-type'], undefined);
  assert.equal(pause.headers['content-length'], undefined);
  assert.equal(pause.headers.server, 'Cloud Hypervisor API');
  assert.equal(pause.headers.connection, 'keep-alive');
  assert.equal(pause.headers['keep-alive'], undefined);
  const info = await api(sim, 'GET', 'vm.info');
  assert.equal(info.status, 200);
  assert.equal(info.headers['content-type'], 'application/json');
  assert.equal(Number(info.headers['content-length']), info.body.length);
  assert.equal((info.json() as { state: string }).state, 'Paused');
  assert.deepEqual(sim.readViolations(), []);
});

test('vm.info after a payload boot reports Running with the command line config and device ids', async (t) => {
  const sim = await spawnSim(t);
  const info = (await api(sim, 'GET', 'vm.info')).json() as {
    state: string; memory_actual_size: number; device_tree: Record<string, unknown>;
    config: { memory: { size: number; shared: boolean }; disks: { id: string }[]; net: { tap: string; mac: string; id: string }[]; payload: { kernel: string } };
  };
  assert.equal(info.state, 'Running');
  assert.equal(info.config.memory.size, 64 * 1024 * 1024);
  assert.equal(info.config.memory.shared, true);
  assert.equal(info.memory_actual_size, 64 * 1024 * 1024);
  assert.equal(info.config.payload.kernel, '/boot/vmlinux');
  assert.equal(info.config.disks[0]?.id, '_disk0');
  assert.deepEqual([info.config.net[0]?.tap, info.config.net[0]?.mac, info.config.net[0]?.id], ['sbxt0', '02:fc:00:00:00:05', '_net1']);
  assert.ok('_disk0' in info.device_tree);
  const ping = (await api(sim, 'GET', 'vmm.ping')).json() as { version: string; build_version: string; pid: number };
  assert.equal(ping.version, '52.0.0');
  assert.equal(ping.pid, sim.proc.pid);
});

test('wrong-state calls are 500 with the JSON error chain (v52), never 405', async (t) => {
  const sim = await spawnSim(t);
  const resume = await api(sim, 'PUT', 'vm.resume');
  assert.equal(resume.status, 500);
  const chain = resume.json() as string[];
  assert.equal(chain[0], 'Error from API');
  assert.ok(chain.some((m) => m.includes('Invalid VM state transition: Running to Running')));
  assert.equal((await api(sim, 'PUT', 'vm.pause')).status, 204);
  const again = await api(sim, 'PUT', 'vm.pause');
  assert.equal(again.status, 500);
  assert.ok((again.json() as string[]).some((m) => m.includes('Paused to Paused')));
  const snapRunning = await api(sim, 'PUT', 'vm.resume');
  assert.equal(snapRunning.status, 204);
  const snap = await api(sim, 'PUT', 'vm.snapshot', { destination_url: `file://${sim.dir}` });
  assert.equal(snap.status, 500);
  assert.ok((snap.json() as string[]).some((m) => m.includes('Trying to snapshot while VM is running')));
});

test('v40 error bodies are plain text with the top-level message only', async (t) => {
  const sim = await bare(t, 40);
  const info = await api(sim, 'GET', 'vm.info');
  assert.equal(info.status, 500);
  assert.equal(info.text, 'Error from API');
  assert.equal(info.headers['content-type'], 'application/json');
});

test('v47 errors are JSON arrays and VmNotCreated is still 500', async (t) => {
  const sim = await bare(t, 47);
  const info = await api(sim, 'GET', 'vm.info');
  assert.equal(info.status, 500);
  assert.ok(Array.isArray(info.json()));
});

test('v53 maps VmNotCreated/VmMissingConfig to 404 and config validation to 400/409, wrong state stays 500', async (t) => {
  const sim = await bare(t, 53);
  assert.equal((await api(sim, 'GET', 'vm.info')).status, 404);
  assert.equal((await api(sim, 'PUT', 'vm.boot')).status, 404);
  assert.equal((await api(sim, 'PUT', 'vm.pause')).status, 500);
  const bad = await api(sim, 'PUT', 'vm.create', { payload: { kernel: '/k' }, cpus: { boot_vcpus: 4, max_vcpus: 2 } });
  assert.equal(bad.status, 400);
  const dup = await api(sim, 'PUT', 'vm.create', { payload: { kernel: '/k' }, disks: [{ path: '/a' }, { path: '/a' }] });
  assert.equal(dup.status, 409);
  const ok = await api(sim, 'PUT', 'vm.create', { payload: { kernel: '/k' }, memory: { size: 16 * 1024 * 1024 } });
  assert.equal(ok.status, 204);
  assert.equal((await api(sim, 'PUT', 'vm.create', { payload: { kernel: '/k' } })).status, 500);
});

test('v52 answers VmNotCreated and VmMissingConfig with 500', async (t) => {
  const sim = await bare(t, 52);
  assert.equal((await api(sim, 'GET', 'vm.info')).status, 500);
  assert.equal((await api(sim, 'PUT', 'vm.boot')).status, 500);
  const bad = await api(sim, 'PUT', 'vm.create', { payload: { kernel: '/k' }, cpus: { boot_vcpus: 4, max_vcpus: 2 } });
  assert.equal(bad.status, 500);
});

test('create → boot → shutdown keeps the config (Created) and boots again; delete always succeeds', async (t) => {
  const sim = await bare(t);
  assert.equal((await api(sim, 'PUT', 'vm.delete')).status, 204);
  assert.equal((await api(sim, 'PUT', 'vm.create', { payload: { kernel: '/k' }, memory: { size: 16 * 1024 * 1024 } })).status, 204);
  const created = (await api(sim, 'GET', 'vm.info')).json() as Record<string, unknown>;
  assert.equal(created.state, 'Created');
  assert.equal('device_tree' in created, false);
  assert.equal((await api(sim, 'GET', 'vm.counters')).status, 500);
  assert.equal((await api(sim, 'PUT', 'vm.boot')).status, 204);
  assert.equal(((await api(sim, 'GET', 'vm.info')).json() as { state: string }).state, 'Running');
  assert.equal((await api(sim, 'PUT', 'vm.boot')).status, 500);
  assert.equal((await api(sim, 'PUT', 'vm.shutdown')).status, 204);
  assert.equal(((await api(sim, 'GET', 'vm.info')).json() as { state: string }).state, 'Created');
  assert.equal((await api(sim, 'PUT', 'vm.shutdown')).status, 500);
  assert.equal((await api(sim, 'PUT', 'vm.boot')).status, 204);
  assert.equal((await api(sim, 'PUT', 'vm.delete')).status, 204);
  assert.equal((await api(sim, 'GET', 'vm.info')).status, 500);
});

test('bodyless PUTs refuse a body (even {}) with 400 and the call is logged as a violation', async (t) => {
  const sim = await spawnSim(t);
  const r = await api(sim, 'PUT', 'vm.pause', {});
  assert.equal(r.status, 400);
  assert.equal(((await api(sim, 'GET', 'vm.info')).json() as { state: string }).state, 'Running');
  assert.equal((await api(sim, 'PUT', 'vm.pause', undefined, { 'Content-Length': 0 })).status, 204);
  assert.deepEqual(sim.readViolations().map((v) => v.rule), ['body_on_bodyless_put']);
});

test('body-taking PUTs refuse a missing body, bad JSON and a wrong type with 400', async (t) => {
  const sim = await spawnSim(t);
  await api(sim, 'PUT', 'vm.pause');
  assert.equal((await api(sim, 'PUT', 'vm.snapshot')).status, 400);
  assert.equal((await api(sim, 'PUT', 'vm.snapshot', '{"destination_url":')).status, 400);
  assert.equal((await api(sim, 'PUT', 'vm.snapshot', { destination_url: 7 })).status, 400);
  assert.equal((await api(sim, 'PUT', 'vm.resize', { desired_vcpus: 'two' })).status, 400);
  assert.deepEqual(sim.readViolations().map((v) => v.rule), ['missing_body', 'invalid_json', 'invalid_json', 'invalid_json']);
});

test('a wrong method is 400 and an unknown path 404; vm.counters is GET only', async (t) => {
  const sim = await spawnSim(t);
  assert.equal((await api(sim, 'GET', 'vm.pause')).status, 400);
  assert.equal((await api(sim, 'PUT', 'vm.info')).status, 400);
  assert.equal((await api(sim, 'PUT', 'vm.counters')).status, 400);
  const counters = await api(sim, 'GET', 'vm.counters');
  assert.equal(counters.status, 200);
  assert.ok('_disk0' in (counters.json() as object));
  const unknown = await api(sim, 'GET', 'vm.nothing');
  assert.equal(unknown.status, 404);
  assert.ok(Array.isArray(unknown.json()));
  assert.deepEqual(sim.readViolations().map((v) => v.rule), ['wrong_method', 'wrong_method', 'wrong_method', 'unknown_route']);
});

test('a chunked body is refused with 400 instead of being misread', async (t) => {
  const sim = await spawnSim(t);
  const reply = await new Promise<string>((resolve, reject) => {
    const sock = connect(sim.socket);
    let data = '';
    sock.on('data', (d) => (data += d.toString()));
    sock.on('close', () => resolve(data));
    sock.on('error', reject);
    sock.write('PUT /api/v1/vm.resize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n{"desired_vcpus":1}\r\n0\r\n\r\n');
  });
  assert.match(reply, /^HTTP\/1\.1 400/);
  assert.deepEqual(sim.readViolations().map((v) => v.rule), ['chunked_body']);
});

test('a body over 4 MiB is refused with 400', async (t) => {
  const sim = await spawnSim(t);
  const big = JSON.stringify({ destination_url: `file://${'x'.repeat(4 * 1024 * 1024)}` });
  const r = await api(sim, 'PUT', 'vm.snapshot', big).catch((err: Error) => err);
  if (!(r instanceof Error)) assert.equal(r.status, 400);
  assert.deepEqual(sim.readViolations().map((v) => v.rule), ['body_too_large']);
});

test('vm.resize changes vCPUs and the balloon; refuses beyond max and without a balloon', async (t) => {
  const sim = await spawnSim(t, {
    args: ['--kernel', '/k', '--cpus', 'boot=1,max=4', '--memory', 'size=64M', '--balloon', 'size=0,free_page_reporting=on'],
  });
  assert.equal((await api(sim, 'PUT', 'vm.resize', { desired_vcpus: 3, desired_balloon: 16 * 1024 * 1024 })).status, 204);
  const info = (await api(sim, 'GET', 'vm.info')).json() as { config: { cpus: { boot_vcpus: number } }; memory_actual_size: number };
  assert.equal(info.config.cpus.boot_vcpus, 3);
  assert.equal(info.memory_actual_size, 48 * 1024 * 1024);
  assert.equal((await api(sim, 'PUT', 'vm.resize', { desired_vcpus: 5 })).status, 500);
  const noBalloon = await spawnSim(t, { args: ['--kernel', '/k', '--memory', 'size=16M'] });
  assert.equal((await api(noBalloon, 'PUT', 'vm.resize', { desired_balloon: 0 })).status, 500);
});

test('vmm.shutdown answers 200 with an empty body, then the process exits and removes its socket', async (t) => {
  const sim = await spawnSim(t);
  const r = await api(sim, 'PUT', 'vmm.shutdown');
  assert.equal(r.status, 200);
  assert.equal(r.body.length, 0);
  assert.equal(r.headers['content-length'], '0');
  const result = await sim.proc;
  assert.equal(result.exitCode, 0);
  assert.equal(existsSync(sim.socket), false);
  assert.equal(existsSync(`${sim.socket}.envd`), false);
});

test('vm.power-button powers the guest off: the VMM exits unless --no-shutdown (v52+)', async (t) => {
  const sim = await spawnSim(t);
  assert.equal((await api(sim, 'PUT', 'vm.power-button')).status, 204);
  await sim.proc;
  assert.equal(existsSync(sim.socket), false);
  const kept = await spawnSim(t, { args: ['--kernel', '/k', '--memory', 'size=16M', '--no-shutdown'] });
  assert.equal((await api(kept, 'PUT', 'vm.power-button')).status, 204);
  await eventually('the guest to power off', async () => ((await api(kept, 'GET', 'vm.info')).json() as { state: string }).state === 'Created');
  assert.equal(kept.exited(), false);
});

test('a raw request without a Host header is served, as micro-http does', async (t) => {
  const sim = await spawnSim(t);
  const reply = await new Promise<string>((resolve, reject) => {
    const sock = connect(sim.socket);
    let data = '';
    sock.on('data', (d) => {
      data += d.toString();
      if (data.includes('\r\n\r\n')) sock.end();
    });
    sock.on('close', () => resolve(data));
    sock.on('error', reject);
    sock.write('PUT /api/v1/vm.pause HTTP/1.1\r\n\r\n');
  });
  assert.match(reply, /^HTTP\/1\.1 204/);
});

test('vm.reboot needs a Running VM and keeps it Running with fresh memory; vm.nmi needs a live VM', async (t) => {
  const sim = await spawnSim(t);
  const { exec } = await import('./harness.ts');
  await exec(sim, 'kv', ['set', 'k', 'v']);
  assert.equal((await api(sim, 'PUT', 'vm.nmi')).status, 204);
  assert.equal((await api(sim, 'PUT', 'vm.reboot')).status, 204);
  assert.equal(((await api(sim, 'GET', 'vm.info')).json() as { state: string }).state, 'Running');
  assert.equal((await exec(sim, 'kv', ['get', 'k'])).end.exitCode, 1, 'a reboot keeps no guest memory');
  await api(sim, 'PUT', 'vm.pause');
  assert.equal((await api(sim, 'PUT', 'vm.reboot')).status, 500);
  await api(sim, 'PUT', 'vm.shutdown');
  assert.equal((await api(sim, 'PUT', 'vm.nmi')).status, 500);
});
