// The fake VMM must refuse what Cloud Hypervisor refuses (reference §1.3),
// or the runtime's wrong-state and wrong-order bugs pass the model tests and
// surface only on a real host.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createFakeDrivers } from '../../drivers/fake/index.ts';
import type { Drivers } from '../../drivers/index.ts';
import type { VmExit } from '../../drivers/vmm/vmm.ts';
import { createFromBase, destroy, diskRequest, opts } from './script.ts';

async function devices(d: Drivers, id: string, slot: number) {
  const o = opts();
  const tmpl = await d.templates.resolve('team-a', 'base', o);
  const loop = await d.loop.attach(tmpl.rootfsPath, o);
  await d.files.makeSandboxDir(id, o);
  const disk = await d.disk.create(diskRequest(d, id, loop, tmpl.rootfsPath, 1 << 30), o);
  const net = await d.network.create(slot, o);
  return { disk, net, spec: { sandboxId: id, vcpus: 1, memoryMB: 256, diskPath: disk.devicePath, network: net, sandboxDir: d.files.sandboxDir(id) } };
}

test('pause is only Running → Paused and resume only Paused → Running; wrong states fail as operation_failed', async () => {
  const { drivers: d } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-states', 1);
  await assert.rejects(d.vmm.resume(s.id, opts()), { code: 'operation_failed' });
  await d.vmm.pause(s.id, opts());
  assert.deepEqual(await d.vmm.info(s.id, opts()), { state: 'Paused' });
  await assert.rejects(d.vmm.pause(s.id, opts()), { code: 'operation_failed' });
  await d.vmm.resume(s.id, opts());
  assert.deepEqual(await d.vmm.info(s.id, opts()), { state: 'Running' });
});

test('snapshot needs a Paused VM and an existing empty dir', async () => {
  const { drivers: d } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-snap', 1);
  const staging = await d.files.makeStaging(s.id, opts());
  await assert.rejects(d.vmm.snapshot(s.id, staging, opts()), /while VM is Running/);
  await d.vmm.pause(s.id, opts());
  await assert.rejects(d.vmm.snapshot(s.id, `${staging}-missing`, opts()), /not a directory/);
  await d.vmm.snapshot(s.id, staging, opts());
  // CH opens its files with create_new: a second snapshot into the same dir fails.
  await assert.rejects(d.vmm.snapshot(s.id, staging, opts()), /not empty/);
});

test('boot refuses a disk device or a slot network that does not exist', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const { spec, disk, net } = await devices(d, 'sb-boot', 2);
  await assert.rejects(d.vmm.boot({ ...spec, diskPath: '/dev/mapper/nothing' }, opts()), /does not exist/);
  await assert.rejects(d.vmm.boot({ ...spec, network: { ...net, slot: 99 } }, opts()), /slot 99/);
  assert.equal(host.ledger.vms.size, 0);
  const vm = await d.vmm.boot(spec, opts());
  assert.equal(vm.envdUrl, 'fake://sb-boot');
  assert.equal(vm.lazyMemory, false);
  assert.deepEqual(host.ledger.heldBy('sb-boot').vm, { pid: vm.pid, state: 'Running' });
  // Booting again returns the same VMM instead of a second process.
  assert.deepEqual(await d.vmm.boot(spec, opts()), vm);
  assert.equal(host.ledger.vms.size, 1);
  assert.equal(disk.devicePath, `/dev/mapper/sbxt-sb-boot`);
});

test('a disk held by one VMM cannot be booted by another, and its dm device cannot be removed', async () => {
  const { drivers: d } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-lock', 1);
  await d.network.create(2, opts());
  const other = { sandboxId: 'sb-other', vcpus: 1, memoryMB: 256, diskPath: s.disk.devicePath, network: { ...s.net, slot: 2 }, sandboxDir: '/x' };
  await assert.rejects(d.vmm.boot(other, opts()), /locked by the VMM of sb-lock/);
  await assert.rejects(d.disk.remove(s.disk, opts()), /device busy/);
  await d.vmm.destroy(s.id, opts());
  await d.disk.remove(s.disk, opts());
});

test('restore comes up Paused with the saved memory and needs the recorded sandbox dir and the VMM files', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const tmpl = await d.templates.resolve('team-a', 'snap', opts());
  assert.equal(tmpl.kind, 'snapshot');
  const meta = tmpl.meta;
  assert.ok(meta !== null);
  const { spec } = await devices(d, 'sb-restore', 3);
  const restore = { ...spec, snapshotDir: tmpl.dir, sandboxDir: meta.sandboxDir, lazyMemory: false };
  await assert.rejects(d.vmm.restore({ ...restore, sandboxDir: '/elsewhere' }, opts()), /expects sandbox dir/);
  const empty = await d.files.makeStaging('sb-restore', opts());
  await assert.rejects(d.vmm.restore({ ...restore, snapshotDir: empty }, opts()), /does not hold/);
  assert.equal(host.ledger.vms.size, 0);
  const vm = await d.vmm.restore(restore, opts());
  assert.deepEqual(await d.vmm.info(vm.sandboxId, opts()), { state: 'Paused' });
  await assert.rejects(d.envd.exec(vm.envdUrl, { cmd: 'echo', args: [] }, opts()), /VM is Paused/);
  await d.vmm.resume(vm.sandboxId, opts());
  assert.deepEqual(host.readGuest('sb-restore'), { template: 'system/snap' });
});

test('crashVm calls each exit listener exactly once and drops the VM; destroy calls none', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const a = await createFromBase(d, 'sb-crash', 1);
  const b = await createFromBase(d, 'sb-quiet', 2);
  const exits: VmExit[] = [];
  d.vmm.watchExit(a.id, (e) => exits.push(e));
  d.vmm.watchExit(a.id, (e) => exits.push(e));
  const unsubscribed = d.vmm.watchExit(a.id, (e) => exits.push(e));
  unsubscribed();
  d.vmm.watchExit(b.id, (e) => exits.push(e));
  assert.equal(host.crashVm(a.id), true);
  assert.equal(host.crashVm(a.id), false);
  assert.equal(exits.length, 2);
  assert.deepEqual(exits[0], { sandboxId: a.id, code: null, signal: 'SIGKILL' });
  assert.equal(host.ledger.vms.has(a.id), false);
  await assert.rejects(d.vmm.info(a.id, opts()), { code: 'not_found' });
  await d.vmm.destroy(b.id, opts());
  assert.equal(exits.length, 2);
  // After the crash the disk is free again, so the runtime can remove it.
  await d.disk.remove(a.disk, opts());
});

test('watching a VMM that is already gone reports its exit once', async () => {
  const { drivers: d } = createFakeDrivers();
  const exit = await new Promise<VmExit>((resolve) => d.vmm.watchExit('sb-ghost', resolve));
  assert.equal(exit.sandboxId, 'sb-ghost');
});

test('destroy, network.remove, disk.remove/discard, loop.detach and removeSandboxDir are idempotent', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-twice', 4);
  await destroy(d, s);
  assert.ok(host.ledger.isEmpty(), JSON.stringify(host.ledger.snapshot()));
  await destroy(d, s);
  assert.ok(host.ledger.isEmpty());
});

test('setBalloon refuses sizes beyond guest memory and needs a VMM', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-balloon', 1);
  await d.vmm.setBalloon(s.id, 1 << 20, opts());
  assert.equal(host.vm(s.id)?.balloonBytes, 1 << 20);
  await assert.rejects(d.vmm.setBalloon(s.id, 1024 * (1 << 20), opts()), { code: 'invalid_argument' });
  await assert.rejects(d.vmm.setBalloon('sb-none', 0, opts()), { code: 'not_found' });
});

test('an invalid sandbox id is refused with invalid_argument before anything changes', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const before = host.ledger.snapshot();
  await assert.rejects(d.vmm.destroy('../etc', opts()), { code: 'invalid_argument' });
  await assert.rejects(d.files.makeSandboxDir('sb-../x', opts()), { code: 'invalid_argument' });
  assert.deepEqual(host.ledger.snapshot(), before);
});
