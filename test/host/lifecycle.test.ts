// The whole life of sandboxes through the supervisor on the real host backends
// (loop devices, the dm snapshot driver over the stand-in dmsetup, one network
// namespace per slot, files on disk, the CH driver running the simulator inside
// the namespace and reached through the slot's host IP). After every step the
// sandboxes' own account of what they hold must equal what is on the host; after
// the last destroy nothing is left. A leak or a lost resource on any backend
// (a loop never detached, a namespace kept by a pause, a dm device a paused
// snapshot forgot) fails here.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { status } from '../../actors/view.ts';
import { assertHostEmpty, assertHostMatches } from './host-match.ts';
import { CALLER, LIFECYCLE_NET, makeRig, missingHost, type Rig } from './rig.ts';

const skip = await missingHost();
const MARK_AT = 8 << 20;

/** Writes to the sandbox's disk device as its guest would. */
async function writeDisk(devicePath: string, text: string): Promise<void> {
  const fh = await open(devicePath, 'r+');
  try {
    await fh.write(Buffer.from(text), 0, text.length, MARK_AT);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function readAt(path: string, length: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(length);
    await fh.read(b, 0, length, MARK_AT);
    return b.toString();
  } finally {
    await fh.close();
  }
}

const kv = async (rig: Rig, id: string, ...args: string[]) => {
  const r = await rig.sup.exec(CALLER, id, { cmd: 'kv', args, timeoutMs: 10_000 });
  return { code: r.exitCode, out: r.stdout.trim() };
};

const devicePathOf = (rig: Rig, id: string) => rig.sup.snapshotOf(id)!.context.res.disk!.devicePath;
const statusOf = (rig: Rig, id: string) => status(rig.sup.snapshotOf(id)!);

test('create, pause, resume, live and paused snapshots, create from a snapshot, flatten and destroy leave the host exactly as each sandbox says, and empty at the end', { skip, timeout: 90_000 }, async (t) => {
  const rig = await makeRig(t, { net: LIFECYCLE_NET });
  await assertHostMatches(rig, 'before anything');

  // Create: loop on the base image, CoW + dm device, slot 0's namespace, a VMM inside it.
  const a = (await rig.sup.create(CALLER, { templateId: 'base', id: 'sb-hosta', memoryMB: 128 })).sandbox.id;
  let inv = await assertHostMatches(rig, 'after create');
  assert.equal(statusOf(rig, a), 'running');
  assert.deepEqual(inv.network.namespaces, [`${LIFECYCLE_NET.prefix}-ns-0`], 'the first sandbox gets slot 0');
  assert.deepEqual(inv.storage.dmDevices, ['sbxt-sb-hosta']);
  assert.equal((await kv(rig, a, 'set', 'k', 'v1')).code, 0);
  await writeDisk(devicePathOf(rig, a), 'disk-mark-1');

  // Pause: pause dir with the memory snapshot and the CoW; device, loops, namespace and VMM gone; slot kept.
  await rig.sup.pause(CALLER, a);
  inv = await assertHostMatches(rig, 'after pause');
  assert.equal(statusOf(rig, a), 'paused');
  const pauseDir = rig.files.sandboxDir(a);
  assert.deepEqual(readdirSync(pauseDir).sort(), ['config.json', 'memory-ranges', 'rootfs.cow', 'snapshot.json', 'state.json']);
  assert.deepEqual(inv.storage.dmDevices, [], 'dm device removed by pause');
  assert.deepEqual(inv.storage.loops, [], 'origin and CoW loops released by pause');
  assert.deepEqual(inv.network.namespaces, [], 'namespace removed by pause');
  assert.equal(inv.vmms.size, 0, 'VMM stopped by pause');
  assert.deepEqual([...rig.sup.slots.held()], [[0, a]], 'slot kept across pause');

  // Resume: same slot, memory and disk as they were.
  await rig.sup.resume(CALLER, a);
  await assertHostMatches(rig, 'after resume');
  assert.equal(rig.sup.snapshotOf(a)!.context.res.slot, 0);
  assert.deepEqual(await kv(rig, a, 'get', 'k'), { code: 0, out: 'v1' }, 'guest memory survived pause and resume');
  assert.equal(await readAt(devicePathOf(rig, a), 11), 'disk-mark-1', 'disk content survived pause and resume');

  // Live snapshot: a snapshot template; the sandbox keeps running.
  const snap1 = await rig.sup.snapshot(CALLER, a, { templateId: 'snap1' });
  await assertHostMatches(rig, 'after live snapshot');
  assert.equal(snap1.kind, 'snapshot');
  const snap1Dir = join(rig.dataDir, 'images', 'teams', 'acme', 'snap1');
  assert.equal(await readAt(join(snap1Dir, 'rootfs.ext4'), 11), 'disk-mark-1', 'the flattened rootfs holds the disk');
  assert.equal(statusOf(rig, a), 'running');
  assert.equal((await kv(rig, a, 'set', 'k', 'v2')).code, 0);

  // Create from the snapshot template: slot 1, its own loop on the template's rootfs, memory restored.
  const b = (await rig.sup.create(CALLER, { templateId: 'snap1', id: 'sb-hostb' })).sandbox.id;
  inv = await assertHostMatches(rig, 'after create from the snapshot');
  assert.equal(rig.sup.snapshotOf(b)!.context.res.slot, 1);
  assert.equal(inv.storage.loops.filter((l) => l.readOnly).length, 2, 'one origin loop per template');
  assert.deepEqual(await kv(rig, b, 'get', 'k'), { code: 0, out: 'v1' }, 'the template carries the memory of its moment');
  assert.deepEqual(await kv(rig, a, 'get', 'k'), { code: 0, out: 'v2' }, 'the source sandbox is unaffected');
  assert.equal(await readAt(devicePathOf(rig, b), 11), 'disk-mark-1');

  // Paused snapshot: flattened through a temporary device; the sandbox stays paused, nothing temporary stays.
  await writeDisk(devicePathOf(rig, a), 'disk-mark-2');
  await rig.sup.pause(CALLER, a);
  await assertHostMatches(rig, 'after the second pause');
  const snap2 = await rig.sup.snapshot(CALLER, a, { templateId: 'snap2' });
  inv = await assertHostMatches(rig, 'after paused snapshot');
  assert.equal(snap2.kind, 'snapshot');
  assert.equal(statusOf(rig, a), 'paused');
  assert.deepEqual(inv.storage.dmDevices, ['sbxt-sb-hostb'], 'the temporary flatten device is gone');
  assert.equal(await readAt(join(rig.dataDir, 'images', 'teams', 'acme', 'snap2', 'rootfs.ext4'), 11), 'disk-mark-2');
  assert.ok(existsSync(join(pauseDir, 'rootfs.cow')), 'the CoW stays with the paused sandbox');

  // Flatten the running one into a base template.
  const flat = await rig.sup.flatten(CALLER, b, { templateId: 'flat1' });
  await assertHostMatches(rig, 'after flatten');
  assert.equal(flat.kind, 'base');
  assert.equal(statusOf(rig, b), 'running');
  assert.deepEqual(await kv(rig, b, 'get', 'k'), { code: 0, out: 'v1' }, 'flatten resumed the VM');

  // Destroy both (one paused, one running): the host is empty, templates aside.
  await rig.sup.destroy(CALLER, a);
  await assertHostMatches(rig, 'after destroying the paused sandbox');
  await rig.sup.destroy(CALLER, b);
  await assertHostEmpty(rig, 'after destroying both');
  for (const id of ['snap1', 'snap2', 'flat1']) await rig.sup.deleteTemplate(CALLER, id);
  assert.deepEqual((await rig.sup.listTemplates(CALLER)).map((x) => x.templateId), ['base']);
});

test('sandboxes of one template share one read-only loop, detached only when the last holder pauses or goes', { skip, timeout: 60_000 }, async (t) => {
  const rig = await makeRig(t, { net: LIFECYCLE_NET });
  const x = (await rig.sup.create(CALLER, { templateId: 'base', id: 'sb-sharex', memoryMB: 128 })).sandbox.id;
  const y = (await rig.sup.create(CALLER, { templateId: 'base', id: 'sb-sharey', memoryMB: 128 })).sandbox.id;
  let inv = await assertHostMatches(rig, 'with two sandboxes of one template');
  assert.equal(inv.storage.loops.filter((l) => l.readOnly).length, 1, 'one origin loop for both');
  assert.deepEqual([...rig.sup.loops.held()], [[rig.basePath, 2]]);

  await rig.sup.pause(CALLER, x);
  inv = await assertHostMatches(rig, 'after one of them paused');
  assert.deepEqual([...rig.sup.loops.held()], [[rig.basePath, 1]], 'the running one still holds the loop');
  await rig.sup.destroy(CALLER, y);
  inv = await assertHostMatches(rig, 'after the running one went');
  assert.deepEqual(inv.storage.loops, [], 'no holder left: the loop is detached');

  await rig.sup.resume(CALLER, x);
  await assertHostMatches(rig, 'after resume re-attached it');
  await rig.sup.destroy(CALLER, x);
  await assertHostEmpty(rig, 'after the last destroy');
});

test('four creates at once, then pauses, resumes and destroys at once, race for one loop and four slots without leaking or doubling anything', { skip, timeout: 90_000 }, async (t) => {
  const rig = await makeRig(t, { net: LIFECYCLE_NET });
  const ids = ['sb-par0', 'sb-par1', 'sb-par2', 'sb-par3'];
  await Promise.all(ids.map((id) => rig.sup.create(CALLER, { templateId: 'base', id, memoryMB: 128 })));
  let inv = await assertHostMatches(rig, 'after parallel creates');
  assert.equal(inv.storage.loops.filter((l) => l.readOnly).length, 1, 'one origin loop however the acquires interleaved');
  assert.deepEqual(inv.network.slots, [0, 1, 2, 3]);
  await Promise.all(ids.map((id) => kv(rig, id, 'set', 'me', id)));

  await Promise.all(ids.map((id) => rig.sup.pause(CALLER, id)));
  inv = await assertHostMatches(rig, 'after parallel pauses');
  assert.deepEqual(inv.storage.loops, [], 'the last pause detached the shared loop');
  await Promise.all(ids.map((id) => rig.sup.resume(CALLER, id)));
  await assertHostMatches(rig, 'after parallel resumes');
  assert.deepEqual(await Promise.all(ids.map(async (id) => (await kv(rig, id, 'get', 'me')).out)), ids);

  await Promise.all(ids.map((id) => rig.sup.destroy(CALLER, id)));
  await assertHostEmpty(rig, 'after parallel destroys');
});
