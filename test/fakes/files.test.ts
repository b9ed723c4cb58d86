// The fake files decide whether the runtime's pause dir, staging and template
// handling is right: a swap that kept the old generation, a staging dir that
// leaked, or a meta that was never validated would hide real bugs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createFakeDrivers } from '../../drivers/fake/index.ts';
import type { SnapshotMeta } from '../../drivers/files/meta.ts';
import { createFromBase, opts, pause } from './script.ts';

const ROOT = '/fake/sandboxd';

function meta(over: Partial<SnapshotMeta> = {}): SnapshotMeta {
  return {
    version: 1,
    kind: 'pause',
    teamId: 'team-a',
    templateId: 'base',
    vcpus: 1,
    memoryMB: 512,
    timeoutSec: 0,
    slot: 1,
    baseTemplatePath: `${ROOT}/images/teams/system/base/rootfs.ext4`,
    sandboxDir: `${ROOT}/sandboxes/sb-x`,
    createdAt: new Date(0).toISOString(),
    ...over,
  };
}

test('the layout is the one the interface names, and each staging dir is fresh', async () => {
  const { drivers: d, host } = createFakeDrivers();
  assert.equal(d.files.sandboxDir('sb-x'), `${ROOT}/sandboxes/sb-x`);
  assert.equal(d.files.cowPath('sb-x'), `${ROOT}/sandboxes/sb-x/rootfs.cow`);
  const a = await d.files.makeStaging('sb-x', opts());
  const b = await d.files.makeStaging('sb-x', opts());
  assert.notEqual(a, b);
  assert.match(a, /^\/fake\/sandboxd\/sandboxes\/sb-x\.staging-\d+$/);
  assert.deepEqual(host.ledger.heldBy('sb-x').stagingDirs, [a, b].sort());
  await d.files.removeStaging(a, opts());
  await d.files.removeStaging(a, opts());
  await assert.rejects(d.files.removeStaging(`${ROOT}/sandboxes/sb-x`, opts()), { code: 'invalid_argument' });
  assert.deepEqual(host.ledger.snapshot().stagingDirs, [b]);
});

test('a pause moves the CoW into the pause dir and swapIn replaces the previous pause snapshot', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-swap', 1);
  const cow = d.files.cowPath(s.id);
  await pause(d, s);
  assert.deepEqual([...host.ledger.cows], [cow]);
  assert.deepEqual(host.fs.list(d.files.sandboxDir(s.id))?.sort(), ['config.json', 'memory-ranges', 'rootfs.cow', 'snapshot.json', 'state.json']);
  const firstMemory = host.fs.readFile(`${d.files.sandboxDir(s.id)}/memory-ranges`);
  // A second generation: the old memory file is replaced only by the swap.
  const staging = await d.files.makeStaging(s.id, opts());
  host.writeVmmFiles(staging, { vcpus: 1, memoryMB: 1, diskPath: 'x', sandboxDir: 'y', tapName: 'tap0', guestMac: 'm' }, new Map());
  await d.files.stageCow(s.id, staging, opts());
  assert.deepEqual([...host.ledger.cows], [`${staging}/rootfs.cow`]);
  assert.equal(host.fs.readFile(`${d.files.sandboxDir(s.id)}/memory-ranges`), firstMemory);
  await d.files.stageCow(s.id, staging, opts());
  await d.files.swapIn(staging, s.id, opts());
  assert.notEqual(host.fs.readFile(`${d.files.sandboxDir(s.id)}/memory-ranges`), firstMemory);
  assert.equal(host.fs.readFile(`${d.files.sandboxDir(s.id)}/snapshot.json`), undefined);
  assert.deepEqual([...host.ledger.cows], [cow]);
  assert.deepEqual(host.ledger.snapshot().stagingDirs, []);
  // Retried after success: nothing to do, no error.
  await d.files.swapIn(staging, s.id, opts());
  await assert.rejects(d.files.swapIn(staging, 'sb-other', opts()), { code: 'invalid_argument' });
});

test('stageCow without a CoW anywhere fails; removeSandboxDir takes the dir, CoW and pause snapshot', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-rm', 1);
  await pause(d, s);
  const staging = await d.files.makeStaging('sb-empty', opts());
  await assert.rejects(d.files.stageCow('sb-empty', staging, opts()), /does not exist/);
  await d.files.removeSandboxDir(s.id, opts());
  await d.files.removeSandboxDir(s.id, opts());
  assert.equal(host.fs.hasDir(d.files.sandboxDir(s.id)), false);
  assert.deepEqual(host.ledger.heldBy(s.id), { disks: [], cows: [], vm: null, sandboxDir: false, stagingDirs: [] });
});

test('writeMeta refuses a bad meta and readMeta refuses a corrupt file', async () => {
  const { drivers: d, host } = createFakeDrivers();
  await d.files.makeSandboxDir('sb-meta', opts());
  const dir = d.files.sandboxDir('sb-meta');
  await assert.rejects(d.files.writeMeta(dir, { ...meta(), vcpus: 0 }, opts()), { code: 'invalid_argument' });
  await assert.rejects(d.files.readMeta(dir, opts()), { code: 'not_found' });
  await d.files.writeMeta(dir, meta(), opts());
  assert.deepEqual(await d.files.readMeta(dir, opts()), meta());
  host.fs.writeFile(`${dir}/snapshot.json`, { size: 1, allocated: 1, text: '{"version":2}' });
  await assert.rejects(d.files.readMeta(dir, opts()), { code: 'operation_failed' });
  host.fs.writeFile(`${dir}/snapshot.json`, { size: 1, allocated: 1, text: 'not json' });
  await assert.rejects(d.files.readMeta(dir, opts()), /not JSON/);
  await assert.rejects(d.files.writeMeta(`${dir}-gone`, meta(), opts()), /does not exist/);
});

test('punchZeroPages frees the zero part of a memory file once', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-punch', 1);
  await d.vmm.pause(s.id, opts());
  const staging = await d.files.makeStaging(s.id, opts());
  await d.vmm.snapshot(s.id, staging, opts());
  const freed = await d.files.punchZeroPages(staging, opts());
  assert.equal(freed, 512 * 1024 * 1024 - 4096);
  assert.equal(await d.files.punchZeroPages(staging, opts()), 0);
  assert.equal(host.fs.readFile(`${staging}/memory-ranges`)?.size, 512 * 1024 * 1024);
});

test('linkMemoryFiles shares the VMM files and refuses a source without them', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const tmpl = await d.templates.resolve('team-a', 'snap', opts());
  const staging = await d.files.makeStaging('sb-link', opts());
  await d.files.linkMemoryFiles(tmpl.dir, staging, opts());
  await d.files.linkMemoryFiles(tmpl.dir, staging, opts());
  assert.equal(host.fs.readFile(`${staging}/memory-ranges`), host.fs.readFile(`${tmpl.dir}/memory-ranges`));
  const empty = await d.files.makeStaging('sb-link', opts());
  await assert.rejects(d.files.linkMemoryFiles(empty, staging, opts()), /does not hold a VMM snapshot/);
});

test('cleanupOrphans removes staging dirs only', async () => {
  const { drivers: d, host } = createFakeDrivers();
  await d.files.makeSandboxDir('sb-keep', opts());
  const a = await d.files.makeStaging('sb-keep', opts());
  const b = await d.files.makeStaging('sb-other', opts());
  assert.deepEqual(await d.files.cleanupOrphans(opts()), [a, b].sort());
  assert.deepEqual(host.ledger.snapshot().sandboxDirs, ['sb-keep']);
  assert.deepEqual(host.ledger.snapshot().stagingDirs, []);
});

test('templates: resolve falls back to system, promote refuses an existing template and consumes staging', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const base = await d.templates.resolve('team-a', 'base', opts());
  assert.equal(base.teamId, 'system');
  assert.equal(base.kind, 'base');
  assert.equal(base.sizeBytes, 1024 ** 3);
  await assert.rejects(d.templates.resolve('team-a', 'nope', opts()), { code: 'not_found' });
  await assert.rejects(d.templates.resolve('team-a', '../x', opts()), { code: 'invalid_argument' });

  const staging = await d.files.makeStaging('sb-tmpl', opts());
  await d.files.linkMemoryFiles(base.dir.replace('/base', '/snap'), staging, opts());
  host.fs.writeFile(`${staging}/rootfs.ext4`, { size: 10, allocated: 10 });
  await d.files.writeMeta(staging, meta({ kind: 'template', slot: undefined }), opts());
  const other = await d.files.makeStaging('sb-tmpl', opts());
  await assert.rejects(d.templates.promote(other, 'system', 'base', opts()), { code: 'already_exists' });
  const info = await d.templates.promote(staging, 'team-a', 'mine', opts());
  assert.equal(info.kind, 'snapshot');
  assert.equal(host.fs.hasDir(staging), false);
  assert.equal(await d.templates.exists('team-a', 'mine', opts()), true);
  assert.equal(await d.templates.exists('team-b', 'mine', opts()), false);
  assert.equal((await d.templates.resolve('team-a', 'mine', opts())).dir, info.dir);
  assert.deepEqual((await d.templates.list('team-a', opts())).map((t) => t.templateId), ['mine']);
  assert.deepEqual(
    (await d.templates.list(null, opts())).map((t) => `${t.teamId}/${t.templateId}`),
    ['system/base', 'system/snap', 'team-a/mine'],
  );
  await d.templates.remove('team-a', 'mine', opts());
  await d.templates.remove('team-a', 'mine', opts());
  assert.equal(await d.templates.exists('team-a', 'mine', opts()), false);
});

test('importRootfs copies a host file into a base template and refuses an existing one', async () => {
  const { drivers: d, host } = createFakeDrivers();
  host.fs.mkdir('/srv/images');
  host.fs.writeFile('/srv/images/ubuntu.ext4', { size: 2048, allocated: 1024 });
  await assert.rejects(d.templates.importRootfs('team-a', 'u', '/srv/images/none.ext4', opts()), { code: 'not_found' });
  const info = await d.templates.importRootfs('team-a', 'u', '/srv/images/ubuntu.ext4', opts());
  assert.equal(info.kind, 'base');
  assert.equal(info.sizeBytes, 1024);
  await assert.rejects(d.templates.importRootfs('team-a', 'u', '/srv/images/ubuntu.ext4', opts()), { code: 'already_exists' });
  const loop = await d.loop.attach(info.rootfsPath, opts());
  assert.equal(await d.loop.sizeBytes(loop, opts()), 2048);
});
