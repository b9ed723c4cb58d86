// Templates are shared by every sandbox made from them: a promote must never
// overwrite one, a half-made dir must never pass for a template, and sizes are
// what the disk really holds (sparse files), not their apparent length.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import type { FsSnapshotFiles } from '../../drivers/files/fs-files.ts';
import { takeInventory } from '../../drivers/files/inventory.ts';
import { allocated, drivers, faultyFs, opts, PAGE, pauseMeta, sha256, tempDir, writeDenseMemory, writeVmmFiles } from './helpers.ts';

const ID = 'sb-tpl-1';
const code = (c: string) => (err: unknown) => err instanceof SandboxdError && err.code === c;

function baseDir(files: FsSnapshotFiles, team: string, template: string, content = 'base'): string {
  const dir = files.layout.templateDir(team, template);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'rootfs.ext4'), content);
  return dir;
}

/** A staging dir holding a whole snapshot template. */
async function snapshotStaging(files: FsSnapshotFiles): Promise<string> {
  const staging = await files.makeTemplateStaging(ID, opts());
  writeVmmFiles(staging);
  writeFileSync(join(staging, 'rootfs.ext4'), 'flattened');
  await files.writeMeta(staging, pauseMeta({ kind: 'template', slot: undefined, cowPath: undefined }), opts());
  return staging;
}

test("resolve prefers the team's own template, falls back to system, else not_found", async (t) => {
  const { files, templates } = drivers(tempDir(t));
  baseDir(files, 'system', 'ubuntu', 'system-ubuntu');
  baseDir(files, 'system', 'debian');
  baseDir(files, 'team1', 'ubuntu', 'team-ubuntu');
  const own = await templates.resolve('team1', 'ubuntu', opts());
  assert.equal(own.teamId, 'team1');
  assert.equal(readFileSync(own.rootfsPath, 'utf8'), 'team-ubuntu');
  assert.equal((await templates.resolve('team1', 'debian', opts())).teamId, 'system');
  assert.equal((await templates.resolve('team2', 'ubuntu', opts())).teamId, 'system');
  await assert.rejects(templates.resolve('team1', 'alpine', opts()), code('not_found'));
  await assert.rejects(templates.resolve('team1', '../system', opts()), code('invalid_argument'));
  await assert.rejects(templates.resolve('-x', 'ubuntu', opts()), code('invalid_argument'));
});

test('promote makes a snapshot template from staging, refuses to overwrite it, and keeps the staging on refusal', async (t) => {
  const { files, templates } = drivers(tempDir(t));
  const staging = await snapshotStaging(files);
  const info = await templates.promote(staging, 'team1', 'snap', opts());
  assert.equal(info.kind, 'snapshot');
  assert.equal(info.meta?.kind, 'template');
  assert.deepEqual(readdirSync(info.dir).sort(), ['config.json', 'memory-ranges', 'rootfs.ext4', 'snapshot.json', 'state.json']);
  assert.ok(!existsSync(staging));
  assert.ok(await templates.exists('team1', 'snap', opts()));

  const again = await snapshotStaging(files);
  const before = sha256(join(info.dir, 'rootfs.ext4'));
  await assert.rejects(templates.promote(again, 'team1', 'snap', opts()), code('already_exists'));
  assert.equal(sha256(join(info.dir, 'rootfs.ext4')), before);
  assert.equal(readdirSync(again).length, 5, 'the refused staging is untouched');
});

test('promote refuses a staging that is not a whole template, and a path that is not a staging dir', async (t) => {
  const { files, templates } = drivers(tempDir(t));
  const staging = await files.makeTemplateStaging(ID, opts());
  writeVmmFiles(staging);
  await assert.rejects(templates.promote(staging, 'team1', 'x', opts()), code('invalid_argument'));
  writeFileSync(join(staging, 'rootfs.ext4'), 'r');
  await assert.rejects(templates.promote(staging, 'team1', 'x', opts()), code('invalid_argument'), 'VMM files without metadata');
  writeFileSync(join(staging, 'snapshot.json'), '{"version":1,');
  await assert.rejects(templates.promote(staging, 'team1', 'x', opts()), code('operation_failed'), 'truncated metadata');
  await assert.rejects(templates.promote('/etc', 'team1', 'x', opts()), code('invalid_argument'));
  assert.ok(!(await templates.exists('team1', 'x', opts())));
  assert.deepEqual((await takeInventory(files.layout, opts())).templateStaging, []);
});

test('a rename failing half-way through promote gives every file back to staging and publishes nothing', async (t) => {
  const data = tempDir(t);
  const staging = await snapshotStaging(drivers(data).files);
  let renames = 0;
  const { templates, files } = drivers(data, faultyFs((op) => op === 'rename' && ++renames === 3));
  await assert.rejects(templates.promote(staging, 'team1', 'snap', opts()), code('operation_failed'));
  assert.ok(!(await templates.exists('team1', 'snap', opts())));
  assert.equal(readdirSync(staging).length, 5);
  assert.ok(!existsSync(files.layout.teamDir('team1')), 'the empty team dir is pruned');
  const info = await drivers(data).templates.promote(staging, 'team1', 'snap', opts());
  assert.equal(info.kind, 'snapshot', 'the staging is still good for a retry');
});

test('an incomplete template dir is refused by resolve, skipped by list, never overwritten, and removable', async (t) => {
  const { files, templates } = drivers(tempDir(t));
  const dir = baseDir(files, 'team1', 'half');
  writeFileSync(join(dir, 'memory-ranges'), 'x');
  baseDir(files, 'team1', 'good');
  await assert.rejects(templates.resolve('team1', 'half', opts()), (e) => code('operation_failed')(e) && /incomplete/.test(String(e)));
  assert.deepEqual((await templates.list('team1', opts())).map((x) => x.templateId), ['good']);
  const staging = await snapshotStaging(files);
  await assert.rejects(templates.promote(staging, 'team1', 'half', opts()), code('already_exists'));
  await templates.remove('team1', 'half', opts());
  assert.ok(!existsSync(dir));
});

test('remove deletes the template, prunes an empty team dir, and is idempotent', async (t) => {
  const { files, templates } = drivers(tempDir(t));
  baseDir(files, 'team1', 'a');
  baseDir(files, 'team1', 'b');
  await templates.remove('team1', 'a', opts());
  assert.ok(existsSync(files.layout.teamDir('team1')), 'team dir kept while it holds b');
  await templates.remove('team1', 'b', opts());
  await templates.remove('team1', 'b', opts());
  assert.ok(!existsSync(files.layout.teamDir('team1')));
  assert.deepEqual(readdirSync(files.layout.teamsDir), []);
});

test('importRootfs copies a host image sparsely into a new base template; sizeBytes counts allocated blocks', async (t) => {
  const data = tempDir(t);
  const { templates } = drivers(data);
  const image = join(tempDir(t, 'image'), 'rootfs.img');
  writeDenseMemory(image, 1024, [0, 1, 2, 1000]);
  const info = await templates.importRootfs('system', 'ubuntu', image, opts());
  assert.equal(info.kind, 'base');
  assert.equal(sha256(info.rootfsPath), sha256(image));
  assert.ok(allocated(info.rootfsPath) <= 4 * PAGE);
  assert.equal(info.sizeBytes, allocated(info.rootfsPath));
  assert.ok(info.sizeBytes < 1024 * PAGE, 'not the apparent size');
  await assert.rejects(templates.importRootfs('system', 'ubuntu', image, opts()), code('already_exists'));
});

test('importRootfs refuses a source that is not a regular file or not absolute, leaving nothing', async (t) => {
  const data = tempDir(t);
  const { files, templates } = drivers(data);
  const dir = tempDir(t, 'image');
  await assert.rejects(templates.importRootfs('team1', 'x', dir, opts()), code('invalid_argument'));
  await assert.rejects(templates.importRootfs('team1', 'x', '/dev/null', opts()), code('invalid_argument'));
  await assert.rejects(templates.importRootfs('team1', 'x', 'rootfs.img', opts()), code('invalid_argument'));
  await assert.rejects(templates.importRootfs('team1', 'x', join(dir, 'missing.img'), opts()), code('not_found'));
  await assert.rejects(templates.importRootfs('team1', '../x', '/dev/null', opts()), code('invalid_argument'));
  assert.ok(!existsSync(files.layout.teamDir('team1')));
});

test('list(team) lists that team only, list(null) every team, with kinds and metadata', async (t) => {
  const { files, templates } = drivers(tempDir(t));
  baseDir(files, 'system', 'ubuntu');
  baseDir(files, 'team1', 'b');
  await templates.promote(await snapshotStaging(files), 'team1', 'a', opts());
  assert.deepEqual((await templates.list('team1', opts())).map((x) => [x.templateId, x.kind]), [['a', 'snapshot'], ['b', 'base']]);
  assert.deepEqual((await templates.list(null, opts())).map((x) => `${x.teamId}/${x.templateId}`), ['system/ubuntu', 'team1/a', 'team1/b']);
  assert.deepEqual(await templates.list('nobody', opts()), []);
  await assert.rejects(templates.list('../x', opts()), code('invalid_argument'));
});

test('a truncated snapshot.json inside a template makes resolve fail clearly', async (t) => {
  const { files, templates } = drivers(tempDir(t));
  const info = await templates.promote(await snapshotStaging(files), 'team1', 'a', opts());
  truncateSync(join(info.dir, 'snapshot.json'), 20);
  await assert.rejects(templates.resolve('team1', 'a', opts()), (e) => code('operation_failed')(e) && /truncated/.test(String(e)));
});
