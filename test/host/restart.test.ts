// An agent shutdown and restart on the real host backends: shutdown pauses what
// runs and releases every loop, device, namespace and VMM, keeping only the pause
// dirs and (in memory) the slots; a new agent brings the paused sandboxes back with
// the slots recorded in their snapshots, and they resume with their data. A
// restart that lost a sandbox, gave it another slot or left a loop attached fails here.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status } from '../../actors/view.ts';
import { assertHostEmpty, assertHostMatches } from './host-match.ts';
import { CALLER, FAULTS_NET, makeRig, missingHost, opts, type Rig } from './rig.ts';

const skip = await missingHost();

const kv = async (rig: Rig, id: string, ...args: string[]) => (await rig.sup.exec(CALLER, id, { cmd: 'kv', args, timeoutMs: 10_000 })).stdout.trim();

test('shutdown leaves only pause dirs on the host, and a restarted agent brings the sandboxes back in their slots with their data', { skip, timeout: 90_000 }, async (t) => {
  // The faults file's network range: both files never run at once (one lock per prefix).
  const rig = await makeRig(t, { net: FAULTS_NET });
  const a = (await rig.sup.create(CALLER, { templateId: 'base', id: 'sb-resta', memoryMB: 128 })).sandbox.id;
  const b = (await rig.sup.create(CALLER, { templateId: 'base', id: 'sb-restb', memoryMB: 128 })).sandbox.id;
  await kv(rig, a, 'set', 'who', 'a');
  await kv(rig, b, 'set', 'who', 'b');
  await rig.sup.pause(CALLER, b);
  const slots = new Map([...rig.sup.slots.held()].map(([slot, id]) => [id, slot]));

  const autoPaused: string[] = [];
  rig.sup.onEvent((e) => {
    if (e.type === 'auto_paused') autoPaused.push(e.sandboxId);
  });
  await rig.sup.shutdown();
  assert.deepEqual(autoPaused, [a], 'the running sandbox is paused by the shutdown');
  const inv = await assertHostMatches(rig, 'after shutdown');
  assert.deepEqual(
    { loops: inv.storage.loops, dm: inv.storage.dmDevices, ns: inv.network.namespaces, vmms: inv.vmms.size },
    { loops: [], dm: [], ns: [], vmms: 0 },
    'shutdown released every loop, device, namespace and VMM',
  );
  assert.deepEqual(inv.files.sandboxes.map((s) => s.sandboxId), [a, b], 'the pause dirs stay');

  rig.sup = rig.newSupervisor();
  const { recovered, unreadable } = await rig.sup.recoverPaused(opts().signal);
  assert.deepEqual([recovered.sort(), unreadable], [[a, b], []]);
  await assertHostMatches(rig, 'after recovery');
  for (const id of [a, b]) {
    assert.equal(status(rig.sup.snapshotOf(id)!), 'paused');
    assert.equal(rig.sup.slots.ownerOf(slots.get(id)!), id, `${id} has its slot back`);
  }

  for (const id of [a, b]) await rig.sup.resume(CALLER, id);
  await assertHostMatches(rig, 'after resuming both');
  assert.deepEqual([await kv(rig, a, 'get', 'who'), await kv(rig, b, 'get', 'who')], ['a', 'b'], 'each guest kept its memory');
  for (const id of [a, b]) assert.equal(rig.sup.snapshotOf(id)!.context.res.network?.slot, slots.get(id), `${id} runs in its old slot`);

  for (const id of [a, b]) await rig.sup.destroy(CALLER, id);
  await assertHostEmpty(rig, 'after destroy');
});
