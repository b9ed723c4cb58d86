import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { api, CHSIM, exec, spawnSim, tempDir, waitFor } from './harness.ts';

// The simulator's command line must accept what the CH driver passes to the real
// binary and refuse what CH refuses, or the driver's flags drift unnoticed.

// How fast it starts is bench/chsim.bench.ts's business (start-up to first ping), not a timed test's.
test('the launcher starts from any cwd', async (t) => {
  const r = await execa(CHSIM, ['--version'], { cwd: tempDir(t) });
  assert.match(r.stdout, /^cloud-hypervisor v52\.0/);
});

test('malformed flags exit non-zero with CH-style messages and leave no socket', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'api.sock');
  const cases: [string[], RegExp][] = [
    [['--kernel', '/k', '--cpus', 'boot=two'], /Error parsing --cpus/],
    [['--kernel', '/k', '--memory', 'size=lots'], /Error parsing --memory/],
    [['--kernel', '/k', '--disk', 'readonly=on'], /--disk: path is required/],
    [['--kernel', '/k', '--net', 'tap=t0,mac=zz'], /invalid MAC/],
    [['--kernel', '/k', '--memory', 'size=64M,colour=red'], /unknown option: colour/],
    [['--disk', 'path=/x'], /Payload is missing/],
    [['--frobnicate'], /unexpected argument/],
    [['--restore', 'source_url=file:///x,memory_restore_mode=ondemand,prefault=on'], /prefault/],
    [['--kernel', '/k', '--console', 'file='], /console/],
  ];
  for (const [args, message] of cases) {
    const r = await execa(CHSIM, ['--api-socket', sock, ...args], { reject: false });
    assert.notEqual(r.exitCode, 0, args.join(' '));
    assert.match(r.stderr, message);
    assert.equal(existsSync(sock), false);
  }
  const v47 = await execa(CHSIM, ['--api-socket', sock, '--sim-version', '47', '--restore', 'source_url=file:///x,resume=on'], { reject: false });
  assert.match(v47.stderr, /unknown option: resume/);
  const noShutdown = await execa(CHSIM, ['--api-socket', sock, '--sim-version', '47', '--no-shutdown'], { reject: false });
  assert.equal(noShutdown.exitCode, 2);
});

test('--restore next to a payload is silently ignored (boots the payload) and reported', async (t) => {
  const sim = await spawnSim(t, { args: ['--kernel', '/k', '--memory', 'size=16M', '--restore', 'source_url=file:///nonexistent'] });
  assert.equal(((await api(sim, 'GET', 'vm.info')).json() as { state: string }).state, 'Running');
  assert.deepEqual(sim.readViolations().map((v) => v.rule), ['restore_with_payload']);
});

test('a bare --api-socket path works and a VM without payload starts with no config', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'bare.sock');
  const proc = execa(CHSIM, ['--api-socket', sock], { reject: false });
  t.after(async () => {
    proc.kill('SIGKILL');
    await proc;
  });
  await waitFor('socket', () => existsSync(sock));
  assert.equal((await api({ socket: sock }, 'GET', 'vmm.ping')).status, 200);
  assert.equal((await api({ socket: sock }, 'GET', 'vm.info')).status, 500);
});

test('v52 refuses to start over a stale socket file; v53 removes it unless another live CH holds the lock', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'api.sock');
  const stale = createServer();
  await new Promise<void>((r) => stale.listen(sock, r));
  await new Promise<void>((r) => stale.close(() => r()));
  writeFileSync(sock, ''); // a leftover file where the socket was
  const v52 = await execa(CHSIM, ['--api-socket', sock, '--sim-version', '52'], { reject: false });
  assert.equal(v52.exitCode, 1);
  assert.match(v52.stderr, /Error starting HTTP server: .*EADDRINUSE/);
  assert.equal(existsSync(sock), true, 'v52 must not remove a stale socket');

  const v53 = await spawnSim(t, { version: 53, dir, args: ['--kernel', '/k', '--memory', 'size=16M'] });
  await waitFor('socket bound', () => existsSync(`${sock}.envd`));
  assert.equal((await api(v53, 'GET', 'vmm.ping')).status, 200);
  assert.equal(readFileSync(`${sock}.lock`, 'utf8'), String(v53.proc.pid));
  const second = await execa(CHSIM, ['--api-socket', sock, '--sim-version', '53'], { reject: false });
  assert.equal(second.exitCode, 1);
  assert.match(second.stderr, /socket in use/);
  assert.equal((await api(v53, 'GET', 'vmm.ping')).status, 200);
});

test('--sim-pidfile is written and SIGTERM exits cleanly, removing socket, .envd, pidfile and guest processes', async (t) => {
  const dir = tempDir(t);
  const pidfile = join(dir, 'ch.pid');
  const sim = await spawnSim(t, { dir, args: ['--kernel', '/k', '--memory', 'size=16M', '--sim-pidfile', pidfile] });
  assert.equal(readFileSync(pidfile, 'utf8'), String(sim.proc.pid));
  const { startJson } = await import('./harness.ts');
  void startJson(sim, { process: { cmd: 'sleep', args: ['300'] }, tag: 'sleeper', stdin: false }).catch(() => undefined);
  let sleeperPid = 0;
  const { eventually, envd } = await import('./harness.ts');
  await eventually('the sleeper to start', async () => {
    const list = (await envd(sim, 'POST', '/process.Process/List', '{}', { 'Content-Type': 'application/json' })).json() as { processes: { pid: number }[] };
    sleeperPid = list.processes[0]?.pid ?? 0;
    return sleeperPid > 0;
  });
  sim.proc.kill('SIGTERM');
  const result = await sim.proc;
  assert.equal(result.exitCode, 0);
  for (const f of [sim.socket, `${sim.socket}.envd`, pidfile, `${sim.socket}.guest`]) assert.equal(existsSync(f), false, f);
  await waitFor('the guest process to die', () => {
    try {
      process.kill(sleeperPid, 0);
      return false;
    } catch {
      return true;
    }
  });
});

test('a restore given on the command line that fails makes the VMM exit', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'api.sock');
  const r = await execa(CHSIM, ['--api-socket', sock, '--restore', `source_url=file://${dir}/missing`], { reject: false });
  assert.equal(r.exitCode, 1);
  assert.equal(existsSync(sock), false);
});

test('--restore on the command line restores, resumes on request and keeps guest data', async (t) => {
  const src = await spawnSim(t);
  await exec(src, 'kv', ['set', 'k', 'from-cli']);
  const { mkdirSync } = await import('node:fs');
  const snap = join(src.dir, 'snap');
  mkdirSync(snap);
  await api(src, 'PUT', 'vm.pause');
  assert.equal((await api(src, 'PUT', 'vm.snapshot', { destination_url: `file://${snap}` })).status, 204);
  const sim = await spawnSim(t, { args: ['--restore', `source_url=file://${snap},memory_restore_mode=OnDemand,resume=on`] });
  assert.equal(((await api(sim, 'GET', 'vm.info')).json() as { state: string }).state, 'Running');
  assert.equal((await exec(sim, 'kv', ['get', 'k'])).stdout, 'from-cli');
});

test('a payload boot whose disk image is missing exits 1 and removes its socket', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'api.sock');
  const r = await execa(CHSIM, ['--api-socket', sock, '--kernel', '/k', '--memory', 'size=16M', '--disk', `path=${join(dir, 'missing.img')}`], { reject: false });
  assert.equal(r.exitCode, 1);
  assert.match(r.stderr, /Error booting VM: .*missing\.img/);
  assert.equal(existsSync(sock), false);
  assert.equal(existsSync(`${sock}.envd`), false);
});
