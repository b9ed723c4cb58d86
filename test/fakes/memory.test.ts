// Guest memory must travel through snapshot and restore, and a lazy restore
// must lose memory when snapshotted before the loader finished: otherwise the
// runtime's "wait for the memory loader before a snapshot" rule goes untested.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createFakeDrivers } from '../../drivers/fake/index.ts';
import { createFromBase, createFromSnapshot, kvGet, kvSet, opts, pause, resume } from './script.ts';

test('guest memory survives pause and resume when the loader is waited for', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-kv', 1);
  await kvSet(d, s, 'answer', '42');
  await pause(d, s);
  assert.equal(host.readGuest(s.id), undefined);
  const first = await resume(d, s.id);
  assert.equal(await kvGet(d, first, 'answer'), '42');
  await kvSet(d, first, 'second', 'yes');
  await pause(d, first, { waitLoader: true });
  const again = await resume(d, s.id);
  assert.deepEqual(host.readGuest(s.id), { answer: '42', second: 'yes' });
  assert.equal(again.vm.lazyMemory, true);
});

test('a snapshot taken after a lazy restore, before the loader finished, loses the memory', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-hazard', 1);
  await kvSet(d, s, 'answer', '42');
  await pause(d, s);
  const resumed = await resume(d, s.id, { lazyMemory: true });
  // The guest still sees its memory (faults are served from the old snapshot)...
  assert.equal(await kvGet(d, resumed, 'answer'), '42');
  // ...but a pause that skips waiting for the loader writes a snapshot without it.
  await pause(d, resumed, { waitLoader: false });
  const lost = await resume(d, s.id);
  assert.equal(await kvGet(d, lost, 'answer'), undefined);
  assert.deepEqual(host.readGuest(s.id), {});
});

test('a copy (non-lazy) restore needs no loader: its snapshot keeps the memory', async () => {
  const { drivers: d } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-copy', 1);
  await kvSet(d, s, 'k', 'v');
  await pause(d, s);
  const resumed = await resume(d, s.id, { lazyMemory: false });
  await pause(d, resumed, { waitLoader: false });
  assert.equal(await kvGet(d, await resume(d, s.id), 'k'), 'v');
});

test('envd init after the loader started resets it to idle, so the memory stays unloaded', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromSnapshot(d, 'sb-order', 1);
  assert.equal(host.vm(s.id)?.memoryLoaded, false);
  assert.equal((await d.envd.startMemoryLoader(s.vm.envdUrl, opts())).state, 'running');
  await d.envd.init(s.vm.envdUrl, { defaultUser: 'user' }, opts());
  assert.equal((await d.envd.memoryLoaderStatus(s.vm.envdUrl, opts())).state, 'idle');
  assert.equal(host.vm(s.id)?.memoryLoaded, false);
  await d.envd.startMemoryLoader(s.vm.envdUrl, opts());
  const status = await d.envd.memoryLoaderStatus(s.vm.envdUrl, opts());
  assert.equal(status.state, 'done');
  assert.equal(status.pages, (512 * 1024 * 1024) / 4096);
  assert.equal(host.vm(s.id)?.memoryLoaded, true);
});

test('with memoryLoaderMs the loader reports running for that long, then done', async () => {
  const { drivers: d, host } = createFakeDrivers({ memoryLoaderMs: 150 });
  const s = await createFromSnapshot(d, 'sb-slow', 1);
  const started = performance.now();
  assert.equal((await d.envd.memoryLoaderStatus(s.vm.envdUrl, opts())).state, 'running');
  const deadline = Date.now() + 5_000;
  while ((await d.envd.memoryLoaderStatus(s.vm.envdUrl, opts())).state === 'running') {
    assert.ok(Date.now() < deadline, 'loader never finished');
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(performance.now() - started >= 140);
  assert.equal(host.vm(s.id)?.memoryLoaded, true);
});

test('with memoryLoaderMs a loader whose time is up counts as done for a snapshot nobody polled before', async () => {
  const { drivers: d } = createFakeDrivers({ memoryLoaderMs: 50 });
  const s = await createFromSnapshot(d, 'sb-unpolled', 1);
  // The input here is elapsed time itself: the loader runs on its own in the guest.
  await new Promise((r) => setTimeout(r, 80));
  await pause(d, s, { waitLoader: false });
  assert.equal(await kvGet(d, await resume(d, s.id), 'template'), 'system/snap');
});

test('failMemoryLoader makes the loader report failed with its error and keeps the memory unloaded', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromSnapshot(d, 'sb-loaderfail', 1);
  host.failMemoryLoader(s.id, 'uffd gone');
  assert.deepEqual(await d.envd.memoryLoaderStatus(s.vm.envdUrl, opts()), { state: 'failed', pages: 0, error: 'uffd gone' });
  assert.equal(host.vm(s.id)?.memoryLoaded, false);
  // A later start tries again.
  assert.equal((await d.envd.startMemoryLoader(s.vm.envdUrl, opts())).state, 'running');
});

test('exec knows kv and echo, exits 127 otherwise, and refuses a VM that is not Running', async () => {
  const { drivers: d } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-exec', 1);
  const url = s.vm.envdUrl;
  assert.deepEqual(await d.envd.exec(url, { cmd: 'echo', args: ['a', 'b'] }, opts()), { exitCode: 0, stdout: 'a b\n', stderr: '' });
  assert.deepEqual(await d.envd.exec(url, { cmd: 'kv', args: ['get', 'x'] }, opts()), { exitCode: 1, stdout: '', stderr: '' });
  assert.equal((await d.envd.exec(url, { cmd: 'kv', args: ['set', 'x'] }, opts())).exitCode, 2);
  assert.equal((await d.envd.exec(url, { cmd: 'ls', args: [] }, opts())).exitCode, 127);
  await d.vmm.pause(s.id, opts());
  await assert.rejects(d.envd.exec(url, { cmd: 'echo', args: [] }, opts()), /VM is Paused/);
  await assert.rejects(d.envd.waitHealthy(url, 1000, opts()), { code: 'timeout' });
  await assert.rejects(d.envd.version('fake://sb-nothing', opts()), /no VM/);
});

test('usage and version report the host-configured figures', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-usage', 1);
  host.usage = { memUsedBytes: 7, diskUsedBytes: 9 };
  host.envdVersion = '9.9.9';
  assert.deepEqual(await d.envd.usage(s.vm.envdUrl, opts()), { memUsedBytes: 7, diskUsedBytes: 9 });
  assert.equal(await d.envd.version(s.vm.envdUrl, opts()), '9.9.9');
});
