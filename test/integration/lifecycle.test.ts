import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { SMALL, TEAM, sizes, useAgent, violations, waitFor } from './support/agent.ts';

// The whole VM side through the real supervisor: ChDriver + the simulator as
// real processes, EnvdClient, clone disks, FsSnapshotFiles and FsTemplateStore.
// The harness asserts after each test that no process, socket or file is left.

const sh = (script: string) => ({ cmd: 'sh', args: ['-c', script] });

test('a sandbox created, paused and resumed keeps the data written before the pause; its pause dir is sparse', async (t) => {
  const agent = await useAgent(t);
  const { supervisor: sv } = agent;
  const { sandbox, diskSizeBytes } = await sv.create(TEAM, { ...SMALL, id: 'sb-life' });
  assert.equal(sandbox.status, 'running');
  assert.equal(diskSizeBytes, 64 * 1024 * 1024);
  assert.deepEqual(await sv.exec(TEAM, 'sb-life', sh('echo out; echo err >&2; exit 3')), { exitCode: 3, stdout: 'out\n', stderr: 'err\n' });
  assert.equal((await sv.exec(TEAM, 'sb-life', { cmd: 'kv', args: ['set', 'greeting', 'hello-before-pause'] })).exitCode, 0);

  const paused = await sv.pause(TEAM, 'sb-life');
  assert.equal(paused.status, 'paused');
  assert.deepEqual(agent.vmmPids(), [], 'a paused sandbox has no VMM process');
  const pauseDir = join(agent.dataDir, 'sandboxes', 'sb-life');
  const files = readdirSync(pauseDir).sort();
  for (const f of ['config.json', 'memory-ranges', 'rootfs.cow', 'snapshot.json', 'state.json']) assert.ok(files.includes(f), `pause dir holds ${f}: ${files}`);
  const mem = sizes(join(pauseDir, 'memory-ranges'));
  assert.equal(mem.apparent, 128 * 1024 * 1024, 'the memory file spans the guest RAM');
  assert.ok(mem.allocated < mem.apparent / 4, `memory file is sparse (${mem.allocated} of ${mem.apparent} bytes allocated)`);
  const cow = sizes(join(pauseDir, 'rootfs.cow'));
  assert.ok(cow.allocated < cow.apparent, 'the CoW stays sparse');
  await assert.rejects(sv.exec(TEAM, 'sb-life', { cmd: 'true', args: [] }), (e: SandboxdError) => e.code === 'not_running');

  const resumed = await sv.resume(TEAM, 'sb-life');
  assert.equal(resumed.status, 'running');
  assert.equal(resumed.slot, sandbox.slot, 'the slot is kept across pause and resume');
  assert.equal((await sv.exec(TEAM, 'sb-life', { cmd: 'kv', args: ['get', 'greeting'] })).stdout, 'hello-before-pause');

  // A second generation: pause again after the resume, resume again.
  await sv.exec(TEAM, 'sb-life', { cmd: 'kv', args: ['set', 'second', 'gen2'] });
  await sv.pause(TEAM, 'sb-life');
  await sv.resume(TEAM, 'sb-life');
  assert.equal((await sv.exec(TEAM, 'sb-life', { cmd: 'kv', args: ['get', 'greeting'] })).stdout, 'hello-before-pause');
  assert.equal((await sv.exec(TEAM, 'sb-life', { cmd: 'kv', args: ['get', 'second'] })).stdout, 'gen2');

  await sv.destroy(TEAM, 'sb-life');
  assert.deepEqual(sv.ids(), []);
  assert.ok(!existsSync(pauseDir), 'destroy removes the sandbox dir with its pause snapshot');
  assert.deepEqual(violations(agent), [], 'the simulator saw no contract violation');
});

test('a snapshot template launches two sandboxes that both carry the snapshotted memory', async (t) => {
  const agent = await useAgent(t);
  const { supervisor: sv } = agent;
  await sv.create(TEAM, { ...SMALL, id: 'sb-origin' });
  await sv.exec(TEAM, 'sb-origin', { cmd: 'kv', args: ['set', 'seed', 'from-origin'] });
  const template = await sv.snapshot(TEAM, 'sb-origin', { templateId: 'tpl-seed', name: 'seeded' });
  assert.deepEqual([template.teamId, template.templateId, template.kind], ['team-a', 'tpl-seed', 'snapshot']);
  assert.ok(template.sizeBytes > 0);
  assert.equal(sv.get(TEAM, 'sb-origin').status, 'running', 'a live snapshot leaves the sandbox running');
  await assert.rejects(sv.snapshot(TEAM, 'sb-origin', { templateId: 'tpl-seed' }), (e: SandboxdError) => e.code === 'already_exists');

  const [a, b] = await Promise.all([
    sv.create(TEAM, { templateId: 'tpl-seed', id: 'sb-child-a' }),
    sv.create(TEAM, { templateId: 'tpl-seed', id: 'sb-child-b' }),
  ]);
  assert.equal(a.sandbox.memoryMB, 128, 'resources come from the template');
  assert.notEqual(a.sandbox.slot, b.sandbox.slot);
  for (const id of ['sb-child-a', 'sb-child-b']) {
    assert.equal((await sv.exec(TEAM, id, { cmd: 'kv', args: ['get', 'seed'] })).stdout, 'from-origin');
  }
  // The children are independent: a write in one is not seen by the other.
  await sv.exec(TEAM, 'sb-child-a', { cmd: 'kv', args: ['set', 'only', 'a'] });
  assert.equal((await sv.exec(TEAM, 'sb-child-b', { cmd: 'kv', args: ['get', 'only'] })).exitCode, 1);
  await assert.rejects(sv.deleteTemplate(TEAM, 'tpl-seed'), (e: SandboxdError) => e.code === 'template_in_use');
  assert.equal(agent.vmmPids().length, 3);

  // A paused sandbox snapshots without reviving its VM.
  await sv.pause(TEAM, 'sb-child-b');
  const fromPaused = await sv.snapshot(TEAM, 'sb-child-b', { templateId: 'tpl-paused' });
  assert.equal(fromPaused.kind, 'snapshot');
  assert.equal(sv.get(TEAM, 'sb-child-b').status, 'paused');
  const grandchild = await sv.create(TEAM, { templateId: 'tpl-paused', id: 'sb-grandchild' });
  assert.equal(grandchild.sandbox.status, 'running');
  assert.equal((await sv.exec(TEAM, 'sb-grandchild', { cmd: 'kv', args: ['get', 'seed'] })).stdout, 'from-origin');

  await Promise.all(['sb-origin', 'sb-child-a', 'sb-child-b', 'sb-grandchild'].map((id) => sv.destroy(TEAM, id)));
  await sv.deleteTemplate(TEAM, 'tpl-seed');
  await sv.deleteTemplate(TEAM, 'tpl-paused');
  assert.deepEqual(violations(agent), []);
});

test('metrics are sampled while running, stop at a pause, and an unknown range is invalid_range', async (t) => {
  const agent = await useAgent(t);
  const { supervisor: sv } = agent;
  await sv.create(TEAM, { ...SMALL, id: 'sb-metrics' });
  await waitFor(() => sv.metrics(TEAM, 'sb-metrics', '5m').length >= 3, 10_000, 'three samples');
  const points = sv.metrics(TEAM, 'sb-metrics', '5m');
  assert.ok(points.every((p) => p.memBytes > 0 && p.cpuPct >= 0 && p.cpuPct <= 100));
  assert.throws(() => sv.metrics(TEAM, 'sb-metrics', '7m'), (e: SandboxdError) => e.code === 'invalid_range');
  assert.throws(() => sv.metrics({ teamId: 'team-b' }, 'sb-metrics', '5m'), (e: SandboxdError) => e.code === 'not_found');
  assert.equal(agent.sampler.active, 1);

  await sv.pause(TEAM, 'sb-metrics');
  assert.equal(agent.sampler.active, 0, 'the sampler stops before the pause');
  assert.deepEqual(sv.metrics(TEAM, 'sb-metrics', '5m'), []);
  await sv.resume(TEAM, 'sb-metrics');
  assert.equal(agent.sampler.active, 1, 'and starts again on resume');
  await waitFor(() => sv.metrics(TEAM, 'sb-metrics', '10m').length >= 1, 10_000, 'a sample after resume');
  const flushed = sv.flushMetrics(TEAM, 'sb-metrics');
  assert.ok(flushed.points10m.length >= 1);
  assert.equal(agent.sampler.active, 0, 'a flush stops sampling');
  assert.deepEqual(sv.metrics(TEAM, 'sb-metrics', '10m'), [], 'and clears the rings');
  await sv.destroy(TEAM, 'sb-metrics');
});
