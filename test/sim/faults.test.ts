import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { api, CHSIM, envd, httpRequest, spawnSim, tempDir } from './harness.ts';

// Injected faults are how the agent's rollback paths get exercised: each must fail
// exactly the call it names, with the version's error body, and nothing else.

const withFaults = (spec: string): string[] => ['--kernel', '/k', '--memory', 'size=16M', '--sim-faults', spec];

test('vm.pause=fail fails every pause with the version 500 body and leaves the VM Running', async (t) => {
  const sim = await spawnSim(t, { args: withFaults('vm.pause=fail') });
  for (let i = 0; i < 2; i++) {
    const r = await api(sim, 'PUT', 'vm.pause');
    assert.equal(r.status, 500);
    assert.ok((r.json() as string[]).includes('chsim injected fault'));
  }
  assert.equal(((await api(sim, 'GET', 'vm.info')).json() as { state: string }).state, 'Running');
  const v40 = await spawnSim(t, { version: 40, args: withFaults('vm.pause=fail') });
  assert.equal((await api(v40, 'PUT', 'vm.pause')).text, 'Error from API');
});

test('vm.resume=fail:2 fails only the second resume', async (t) => {
  const sim = await spawnSim(t, { args: withFaults('vm.resume=fail:2') });
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) {
    await api(sim, 'PUT', 'vm.pause');
    statuses.push((await api(sim, 'PUT', 'vm.resume')).status);
  }
  assert.deepEqual(statuses, [204, 500, 204]);
});

test('vm.snapshot=hang never answers while other calls still do', async (t) => {
  const sim = await spawnSim(t, { args: withFaults('vm.snapshot=hang') });
  await api(sim, 'PUT', 'vm.pause');
  const hung = await httpRequest({ socketPath: sim.socket }, 'PUT', '/api/v1/vm.snapshot', JSON.stringify({ destination_url: `file://${sim.dir}` }), {}, 300).catch((err: Error) => err);
  assert.ok(hung instanceof Error, 'the hung call answered');
  assert.equal((await api(sim, 'GET', 'vm.info')).status, 200);
});

test('crash-after=vm.pause answers the pause, then dies by SIGKILL leaving its socket behind', async (t) => {
  const sim = await spawnSim(t, { args: withFaults('crash-after=vm.pause') });
  assert.equal((await api(sim, 'PUT', 'vm.pause')).status, 204);
  const result = await sim.proc;
  assert.equal(result.signal, 'SIGKILL');
  assert.equal(existsSync(sim.socket), true, 'a crashed VMM leaves a stale socket');
});

test('envd./health=fail fails only that envd route; delay postpones an answer', async (t) => {
  const sim = await spawnSim(t, { args: withFaults('envd./health=fail;vm.info=delay:200') });
  assert.equal((await envd(sim, 'GET', '/health')).status, 500);
  assert.equal((await envd(sim, 'GET', '/metrics')).status, 200);
  const started = performance.now();
  assert.equal((await api(sim, 'GET', 'vm.info')).status, 200);
  assert.ok(performance.now() - started >= 190);
});

test('faults come from CHSIM_FAULTS too, and a malformed spec stops the start-up', async (t) => {
  const sim = await spawnSim(t, { args: ['--kernel', '/k', '--memory', 'size=16M'], env: { CHSIM_FAULTS: 'vm.pause=fail:1' } });
  assert.equal((await api(sim, 'PUT', 'vm.pause')).status, 500);
  assert.equal((await api(sim, 'PUT', 'vm.pause')).status, 204);
  const dir = tempDir(t);
  const bad = await execa(CHSIM, ['--api-socket', join(dir, 's.sock'), '--sim-faults', 'vm.pause=explode'], { reject: false });
  assert.equal(bad.exitCode, 1);
  assert.match(bad.stderr, /unknown action/);
});
