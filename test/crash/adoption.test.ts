// Adoption: running sandboxes outlive a SIGKILLed agent. The restarted agent
// takes over the same VMM processes (same pids), and each sandbox stays fully
// operable: exec with its old data, pause, resume, snapshot, destroy. A
// running sandbox whose VMM died with the agent is released instead, with a
// lifecycle `error` event. The agent is a real child process on the real host
// backends (test/crash/agent-child.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertHostEmpty, assertHostMatchesRecords } from '../host/host-match.ts';
import { missingHost, vmmProcesses } from '../host/rig.ts';
import { crashNet, destroyAll, kv, makeWorld, statusOf, TEAM } from './support.ts';

const skip = await missingHost();
const small = { teamId: TEAM, templateId: 'base', memoryMB: 128, diskSizeMB: 64, timeoutSec: 0 };
const A = 'sb-adopta';
const B = 'sb-adoptb';

test('two running sandboxes survive an agent SIGKILL with the same VMM pids and stay fully operable', { skip, timeout: 180_000 }, async (t) => {
  const world = await makeWorld(crashNet(5));
  t.after(() => world.dispose());
  let agent = await world.start();
  await agent.reconciled;
  let client = await agent.connect();
  for (const id of [A, B]) {
    await client.call('sandbox.create', { ...small, id });
    await kv(client, id, 'set', 'who', id);
  }
  const pids = vmmProcesses(world.paths.runDir);
  assert.deepEqual([...pids.keys()].sort(), [A, B], 'one VMM per sandbox');
  const incarnations = new Map<string, number>();
  for (const id of [A, B]) incarnations.set(id, (await client.call('sandbox.get', { id })).incarnation);
  await client.close();

  await agent.kill();
  await assertHostMatchesRecords(world.host, world.records(), 'right after the kill');
  agent = await world.start();
  const report = await agent.reconciled;
  assert.deepEqual(
    report.outcomes.map((o) => `${o.sandboxId}:${o.from}->${o.to}`).sort(),
    [A, B].map((id) => `${id}:running.inactivity.off+running.memoryLoader.idle->running`),
    'both adopted as Running',
  );
  assert.deepEqual(report.orphans, {}, 'nothing to sweep');
  assert.deepEqual(vmmProcesses(world.paths.runDir), pids, 'the same VMM processes, none restarted');
  client = await agent.connect();
  for (const id of [A, B]) {
    const v = await client.call('sandbox.get', { id });
    assert.equal(v.status, 'running');
    assert.notEqual(v.incarnation, incarnations.get(id), `${id} is a new incarnation`);
    assert.equal(await kv(client, id, 'get', 'who'), id, `${id}'s guest kept its memory`);
  }
  // A command fenced to the old incarnation is refused.
  await assert.rejects(client.call('sandbox.pause', { id: A, incarnation: incarnations.get(A)! }), /incarnation/);

  // Fully operable through the adopted VMMs.
  await client.call('sandbox.pause', { id: A });
  await client.call('sandbox.resume', { id: A });
  assert.equal(await kv(client, A, 'get', 'who'), A, 'A kept its data over pause and resume');
  await client.call('sandbox.snapshot', { id: B, templateId: 'adopted-tmpl' });
  assert.equal(await kv(client, B, 'get', 'who'), B, 'B runs on after its snapshot');
  await client.call('sandbox.create', { ...small, templateId: 'adopted-tmpl', id: 'sb-adoptc' });
  assert.equal(await kv(client, 'sb-adoptc', 'get', 'who'), B, 'a sandbox from the adopted one’s snapshot has its memory');
  await client.call('sandbox.destroy', { id: B });
  assert.equal(await statusOf(client, B), 'gone');
  assert.equal(vmmProcesses(world.paths.runDir).has(B), false, "B's adopted VMM is gone with it");
  await destroyAll(client);
  await client.close();
  await agent.kill();
  await assertHostEmpty(world.host, 'after destroying everything');
});

test('a running sandbox whose VMM died with the agent is released, with an error event', { skip, timeout: 120_000 }, async (t) => {
  const world = await makeWorld(crashNet(5));
  t.after(() => world.dispose());
  let agent = await world.start();
  await agent.reconciled;
  let client = await agent.connect();
  await client.call('sandbox.create', { ...small, id: A });
  await client.call('sandbox.create', { ...small, id: B });
  await client.close();
  await agent.kill();
  const pid = vmmProcesses(world.paths.runDir).get(A)!;
  process.kill(pid, 'SIGKILL');

  agent = await world.start();
  const report = await agent.reconciled;
  const outcomes = Object.fromEntries(report.outcomes.map((o) => [o.sandboxId, o.to]));
  assert.deepEqual(outcomes, { [A]: 'destroyed', [B]: 'running' }, JSON.stringify(report));
  assert.deepEqual(
    agent.events.filter((e) => e.sandboxId === A).map((e) => e.type),
    ['error'],
    'one error event for the lost sandbox',
  );
  client = await agent.connect();
  assert.equal(await statusOf(client, A), 'gone');
  assert.equal(await statusOf(client, B), 'running');
  await client.close();
  await agent.kill();
  await assertHostMatchesRecords(world.host, world.records(), 'after the lost sandbox was released');
  agent = await world.start();
  await agent.reconciled;
  client = await agent.connect();
  await destroyAll(client);
  await client.close();
  await agent.kill();
  await assertHostEmpty(world.host, 'after destroying everything');
});
