// Loop, dm and network fakes: a reused loop number, a disk over a detached
// origin or a flatten that leaves a device behind must show up here, not as
// a leak on a real host.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createFakeDrivers } from '../../drivers/fake/index.ts';
import { createFromBase, diskRequest, opts } from './script.ts';

test('attaching the same image twice returns the same loop, and a freed number is reused lowest first', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const base = await d.templates.resolve('system', 'base', opts());
  const snap = await d.templates.resolve('system', 'snap', opts());
  const l0 = await d.loop.attach(base.rootfsPath, opts());
  assert.equal(await d.loop.attach(base.rootfsPath, opts()), l0);
  const l1 = await d.loop.attach(snap.rootfsPath, opts());
  assert.deepEqual([l0, l1], ['/dev/loop0', '/dev/loop1']);
  await d.loop.detach(l0, base.rootfsPath, opts());
  await d.loop.detach(l0, base.rootfsPath, opts());
  host.addBaseTemplate('team-a', 'small', { rootfsBytes: 4096 });
  const small = await d.templates.resolve('team-a', 'small', opts());
  assert.equal(await d.loop.attach(small.rootfsPath, opts()), '/dev/loop0');
  assert.equal(await d.loop.sizeBytes('/dev/loop0', opts()), 4096);
  // A stale detach of the old image must not detach the reused number.
  await d.loop.detach('/dev/loop0', base.rootfsPath, opts());
  assert.deepEqual(host.ledger.snapshot().loops, [
    { device: '/dev/loop0', imagePath: small.rootfsPath },
    { device: '/dev/loop1', imagePath: snap.rootfsPath },
  ]);
  await assert.rejects(d.loop.attach('/nowhere.ext4', opts()), /no such file/);
  await assert.rejects(d.loop.sizeBytes('/dev/loop9', opts()), /no such device/);
});

test('a loop still backing a disk is refused, so a wrong release order shows', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-order', 1);
  await d.vmm.destroy(s.id, opts());
  await assert.rejects(d.loop.detach(s.loop, s.rootfsPath, opts()), /busy/);
  await d.disk.remove(s.disk, opts());
  await d.loop.detach(s.loop, s.rootfsPath, opts());
  assert.equal(host.ledger.loops.size, 0);
});

test('disk.create needs the origin attached to that image and the sandbox dir; it is idempotent', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const base = await d.templates.resolve('system', 'base', opts());
  const req = diskRequest(d, 'sb-disk', '/dev/loop0', base.rootfsPath, 1 << 30);
  await assert.rejects(d.disk.create(req, opts()), /not attached/);
  await d.loop.attach(base.rootfsPath, opts());
  await assert.rejects(d.disk.create(req, opts()), /no such directory/);
  await d.files.makeSandboxDir('sb-disk', opts());
  await assert.rejects(d.disk.create({ ...req, name: 'bad/name' }, opts()), { code: 'invalid_argument' });
  const handle = await d.disk.create(req, opts());
  assert.deepEqual(await d.disk.create(req, opts()), handle);
  assert.deepEqual(handle, { name: 'sbxt-sb-disk', devicePath: '/dev/mapper/sbxt-sb-disk', cowPath: req.cowPath });
  await assert.rejects(d.disk.create({ ...req, cowPath: `${req.cowPath}2` }, opts()), /another CoW/);
  assert.deepEqual(host.ledger.heldBy('sb-disk').cows, [req.cowPath]);
  assert.deepEqual(host.problems(), []);
});

test('disk.attach needs an existing CoW; remove keeps the CoW and discard deletes it', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-reattach', 1);
  const req = diskRequest(d, s.id, s.loop, s.rootfsPath, 1 << 30);
  await d.vmm.destroy(s.id, opts());
  await d.disk.remove(s.disk, opts());
  await d.disk.remove(s.disk, opts());
  assert.equal(host.ledger.disks.size, 0);
  assert.ok(host.ledger.cows.has(req.cowPath));
  assert.deepEqual(await d.disk.attach(req, opts()), s.disk);
  await d.disk.remove(s.disk, opts());
  await d.disk.discard(req.cowPath, opts());
  await d.disk.discard(req.cowPath, opts());
  await assert.rejects(d.disk.attach(req, opts()), /does not exist/);
});

test('flatten writes the image from an attached device; flattenDetached leaves no device behind', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-flat', 1);
  const staging = await d.files.makeStaging(s.id, opts());
  await d.disk.flatten(s.disk, `${staging}/rootfs.ext4`, opts());
  assert.equal(host.fs.readFile(`${staging}/rootfs.ext4`)?.size, 1 << 30);
  await d.vmm.destroy(s.id, opts());
  await d.disk.remove(s.disk, opts());
  await assert.rejects(d.disk.flatten(s.disk, `${staging}/again.ext4`, opts()), /does not exist/);
  const before = host.ledger.snapshot();
  await d.disk.flattenDetached(diskRequest(d, s.id, s.loop, s.rootfsPath, 1 << 30), `${staging}/detached.ext4`, opts());
  assert.ok(host.fs.readFile(`${staging}/detached.ext4`) !== undefined);
  const after = host.ledger.snapshot();
  assert.deepEqual({ ...after, stagingDirs: [] }, { ...before, stagingDirs: [] });
  assert.deepEqual(after.disks, []);
});

test('a network handle derives from its slot alone and create/remove are idempotent', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const h = await d.network.create(258, opts());
  assert.deepEqual(h, {
    slot: 258,
    namespace: 'fake-ns-258',
    tapName: 'tap0',
    guestMac: '02:fc:00:00:01:02',
    guestIp: '169.254.0.21',
    hostIp: '10.11.1.2',
  });
  assert.deepEqual(await d.network.create(258, opts()), h);
  await assert.rejects(d.network.create(-1, opts()), { code: 'invalid_argument' });
  await assert.rejects(d.network.create(1.5, opts()), { code: 'invalid_argument' });
  await d.network.remove(258, opts());
  await d.network.remove(258, opts());
  assert.equal(host.ledger.networks.size, 0);
});
