import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { SandboxdError } from '../../core/errors.ts';
import { SMALL, TEAM, useAgent, violations, waitFor } from './support/agent.ts';

// Each Cloud Hypervisor call made to fail or hang in the real simulator
// (CHSIM_FAULTS), and the outcome lifecycle.md names for it. The VMM reads its
// faults when it starts, so a test sets them before the create or the resume
// whose VMM should carry them. Counted faults (`:N`) pick one call: a create
// makes one vm.info call (the boot check), so the pause's probe is the 2nd.

const kv = (...args: string[]) => ({ cmd: 'kv', args });
const code = (c: string) => (e: SandboxdError) => e.code === c;
const stagingLeft = (dataDir: string) => readdirSync(join(dataDir, 'sandboxes')).filter((n) => n !== 'sb-f');

for (const { fault, why } of [
  { fault: 'vm.info=fail:2', why: 'the probe before a pause fails' },
  { fault: 'vm.pause=fail:1', why: 'vm.pause fails' },
  { fault: 'vm.snapshot=fail:1', why: 'vm.snapshot fails' },
  { fault: 'vm.snapshot=hang:1', why: 'vm.snapshot hangs' },
  { fault: 'vm.pause=hang:1', why: 'vm.pause hangs' },
]) {
  test(`pause where ${why} (${fault}) rolls back to Running with no staging left, and a retry pauses`, async (t) => {
    const agent = await useAgent(t, {
      vmmEnv: { CHSIM_FAULTS: fault },
      supervisor: { stepBoundMs: (name) => (name === 'snapshotVm' || name === 'pauseVm' ? 1_500 : 60_000) },
    });
    const sv = agent.supervisor;
    await sv.create(TEAM, { ...SMALL, id: 'sb-f' });
    await sv.exec(TEAM, 'sb-f', kv('set', 'k', 'kept'));
    await assert.rejects(sv.pause(TEAM, 'sb-f'));
    assert.equal(sv.get(TEAM, 'sb-f').status, 'running');
    assert.deepEqual(stagingLeft(agent.dataDir), [], 'the rollback removed the staging dir');
    assert.equal((await sv.exec(TEAM, 'sb-f', kv('get', 'k'))).stdout, 'kept', 'the guest runs on');
    await sv.pause(TEAM, 'sb-f');
    await sv.resume(TEAM, 'sb-f');
    assert.equal((await sv.exec(TEAM, 'sb-f', kv('get', 'k'))).stdout, 'kept');
    await sv.destroy(TEAM, 'sb-f');
  });
}

test('pause whose snapshot fails and whose VM then cannot resume ends in Error; destroy still releases everything', async (t) => {
  const agent = await useAgent(t, { vmmEnv: { CHSIM_FAULTS: 'vm.snapshot=fail:1 vm.resume=fail:1' } });
  const sv = agent.supervisor;
  await sv.create(TEAM, { ...SMALL, id: 'sb-f' });
  await assert.rejects(sv.pause(TEAM, 'sb-f'));
  const s = sv.get(TEAM, 'sb-f');
  assert.equal(s.status, 'error');
  assert.ok(s.error !== null, 'the error says why');
  await sv.destroy(TEAM, 'sb-f');
  assert.deepEqual(sv.ids(), []);
});

test('resume whose vm.resume fails stays Paused with its pause dir intact, and the retry resumes with the data', async (t) => {
  const agent = await useAgent(t);
  const sv = agent.supervisor;
  await sv.create(TEAM, { ...SMALL, id: 'sb-f' });
  await sv.exec(TEAM, 'sb-f', kv('set', 'k', 'kept'));
  await sv.pause(TEAM, 'sb-f');
  const pauseDir = join(agent.dataDir, 'sandboxes', 'sb-f');
  const before = readdirSync(pauseDir).sort();
  agent.vmmEnv.CHSIM_FAULTS = 'vm.resume=fail:1';
  await assert.rejects(sv.resume(TEAM, 'sb-f'));
  assert.equal(sv.get(TEAM, 'sb-f').status, 'paused');
  assert.deepEqual(readdirSync(pauseDir).sort(), before, 'the pause dir is intact');
  assert.deepEqual(agent.vmmPids(), [], 'the failed restore left no VMM');
  delete agent.vmmEnv.CHSIM_FAULTS;
  await sv.resume(TEAM, 'sb-f');
  assert.equal((await sv.exec(TEAM, 'sb-f', kv('get', 'k'))).stdout, 'kept');
  await sv.destroy(TEAM, 'sb-f');
});

test('resume whose balloon deflate fails still resumes (best effort)', async (t) => {
  const agent = await useAgent(t);
  const sv = agent.supervisor;
  await sv.create(TEAM, { ...SMALL, id: 'sb-f' });
  await sv.pause(TEAM, 'sb-f');
  agent.vmmEnv.CHSIM_FAULTS = 'vm.resize=fail';
  assert.equal((await sv.resume(TEAM, 'sb-f')).status, 'running');
  await sv.destroy(TEAM, 'sb-f');
});

test('destroy whose vmm.shutdown fails kills the VMM after the grace period and leaves nothing', async (t) => {
  const agent = await useAgent(t, { vmmEnv: { CHSIM_FAULTS: 'vmm.shutdown=fail' } });
  const sv = agent.supervisor;
  await sv.create(TEAM, { ...SMALL, id: 'sb-f' });
  assert.equal(agent.vmmPids().length, 1);
  await sv.destroy(TEAM, 'sb-f');
  assert.deepEqual(agent.vmmPids(), []);
});

test('a live snapshot whose vm.snapshot fails resumes the VM first, makes no template, and the sandbox runs on', async (t) => {
  const agent = await useAgent(t, { vmmEnv: { CHSIM_FAULTS: 'vm.snapshot=fail:1' } });
  const sv = agent.supervisor;
  await sv.create(TEAM, { ...SMALL, id: 'sb-f' });
  await assert.rejects(sv.snapshot(TEAM, 'sb-f', { templateId: 'tpl-x' }));
  assert.equal(sv.get(TEAM, 'sb-f').status, 'running');
  assert.ok(!existsSync(join(agent.dataDir, 'images', 'teams', 'team-a', 'tpl-x')), 'no template dir');
  assert.equal((await sv.exec(TEAM, 'sb-f', { cmd: 'echo', args: ['alive'] })).stdout, 'alive\n');
  await sv.snapshot(TEAM, 'sb-f', { templateId: 'tpl-x' });
  await sv.destroy(TEAM, 'sb-f');
});

test('a VMM killed while Running gives sandbox.error and releases everything', async (t) => {
  const agent = await useAgent(t);
  const sv = agent.supervisor;
  await sv.create(TEAM, { ...SMALL, id: 'sb-crash' });
  const pid = sv.snapshotOf('sb-crash')?.context.res.vm?.pid;
  assert.ok(pid !== undefined && pid > 0);
  process.kill(pid, 'SIGKILL');
  await waitFor(() => agent.events.some((e) => e.sandboxId === 'sb-crash' && e.type === 'error'), 10_000, 'sandbox.error');
  await waitFor(() => sv.ids().length === 0, 10_000, 'the crashed sandbox is dropped');
  assert.deepEqual(agent.vmmPids(), []);
  assert.deepEqual(readdirSync(join(agent.dataDir, 'sandboxes')), []);
  assert.deepEqual(readdirSync(join(agent.dataDir, 'run')).sort(), ['sim-vmlinux', 'vm'], 'socket, pidfile and .envd are gone');
  assert.equal(sv.info().capacity.slotsInUse, 0, 'the slot is free again');
});

test('a pause after a restore whose memory loader state cannot be read is refused, never snapshotting half-loaded memory', async (t) => {
  const agent = await useAgent(t);
  const sv = agent.supervisor;
  await sv.create(TEAM, { ...SMALL, id: 'sb-f' });
  await sv.exec(TEAM, 'sb-f', kv('set', 'k', 'kept'));
  await sv.pause(TEAM, 'sb-f');
  // The restored VMM: the loader starts (1st call) and its first status read (2nd) fails.
  agent.vmmEnv.CHSIM_FAULTS = 'envd./memory/preload=fail:2';
  await sv.resume(TEAM, 'sb-f');
  delete agent.vmmEnv.CHSIM_FAULTS;
  await assert.rejects(sv.pause(TEAM, 'sb-f'), code('operation_failed'));
  assert.equal(sv.get(TEAM, 'sb-f').status, 'running');
  await sv.pause(TEAM, 'sb-f');
  await sv.resume(TEAM, 'sb-f');
  assert.equal((await sv.exec(TEAM, 'sb-f', kv('get', 'k'))).stdout, 'kept');
  assert.deepEqual(violations(agent).filter((v) => v.includes('snapshot_before_memory_loaded')), []);
  await sv.destroy(TEAM, 'sb-f');
});
