// After a crash the agent must find what its storage left on the host: origin and
// CoW loops under its data dir, its dm devices, CoW files, half-written copies,
// and nothing that belongs to someone else.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DmDiskDriver } from '../../drivers/storage/dm-disk.ts';
import { listStorage } from '../../drivers/storage/inventory.ts';
import { LosetupLoopDriver } from '../../drivers/storage/losetup-loop.ts';
import { dmSetup, loopsWithPrefix, makeImage, signal, tempDir } from './helpers.ts';

const TAG = 'inv';
const MiB = 1 << 20;

test('lists the loops, dm devices, CoW and temp files under the data dir, and only those', async (t) => {
  const dataDir = tempDir(t, TAG);
  const outside = tempDir(t, TAG);
  const dm = dmSetup(t, dataDir);
  const tpl = join(dataDir, 'images', 'teams', 'team1', 'tpl1');
  mkdirSync(tpl, { recursive: true });
  const originPath = join(tpl, 'rootfs.ext4');
  makeImage(originPath, 2 * MiB);
  const stray = join(outside, 'other.img');
  makeImage(stray, MiB);
  const strayDev = await dm.loops.attach(stray, { signal: signal() });
  const originDevice = await dm.loops.attach(originPath, { signal: signal() });
  const sb = join(dataDir, 'sandboxes', 'sb-inv1');
  mkdirSync(sb, { recursive: true });
  writeFileSync(join(sb, '.rootfs.cow.tmp-0badf00d'), 'half');
  const req = { name: dm.disk.deviceName('sb-inv1'), originDevice, originPath, cowPath: join(sb, 'rootfs.cow'), sizeBytes: 2 * MiB };
  const h = await dm.disk.create(req, { signal: signal() });

  const inv = await listStorage({ dataDir, loops: dm.loops, dm: dm.disk }, { signal: signal() });
  // On a kernel with device-mapper other tests may hold sbxt- devices too: look for ours.
  assert.ok(inv.dmDevices?.includes(h.name), `dm devices: ${JSON.stringify(inv.dmDevices)}`);
  assert.deepEqual(inv.cowFiles, [req.cowPath]);
  assert.deepEqual(inv.tempFiles, [join(sb, '.rootfs.cow.tmp-0badf00d')]);
  assert.deepEqual(
    inv.loops.map((l) => [l.backingFile, l.readOnly]).sort(),
    [[originPath, true], [req.cowPath, false]].sort(),
  );
  assert.ok(!inv.loops.some((l) => l.device === strayDev), 'a loop outside the data dir is not ours');

  await dm.disk.remove(h, { signal: signal() });
  await dm.loops.detach(originDevice, originPath, { signal: signal() });
  const after = await listStorage({ dataDir, loops: new LosetupLoopDriver(), dm: dm.disk }, { signal: signal() });
  assert.deepEqual([after.loops, after.cowFiles], [[], [req.cowPath]]);
  assert.equal(after.dmDevices?.includes(h.name), false);
});

test('a host where dmsetup cannot answer reports dmDevices null with the reason, not a crash', async (t) => {
  const dataDir = tempDir(t, TAG);
  const dm = new DmDiskDriver({ loops: new LosetupLoopDriver(), prefix: 'sbxt-', dmsetupPath: join(dataDir, 'no-dmsetup') });
  const inv = await listStorage({ dataDir, dm }, { signal: signal() });
  assert.equal(inv.dmDevices, null);
  assert.match(inv.dmError ?? '', /not found/);
  assert.deepEqual([inv.loops, inv.cowFiles, inv.tempFiles], [[], [], []]);
});

test('no loop device backed by this file\'s temp dirs is left attached', () => {
  assert.deepEqual(loopsWithPrefix(`/tmp/sandboxd-test-${TAG}-`), []);
});
