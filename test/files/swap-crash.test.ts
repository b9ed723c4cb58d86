// Pause step 5 swaps the new generation in by renames. If any rename fails, or
// the agent dies between two of them, the sandbox must still have one whole
// generation: at once, or after the start-up cleanup (which also must not
// delete what it does not own, nor revive a sandbox that was being destroyed).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import type { FsSnapshotFiles } from '../../drivers/files/fs-files.ts';
import { drivers, faultyFs, opts, pauseMeta, tempDir, writeVmmFiles } from './helpers.ts';

const ID = 'sb-swap-1';

/** Old generation in the sandbox dir (config says "old"), new one staged with the CoW (config says "new"). */
async function prepare(files: FsSnapshotFiles, stageTheCow = true): Promise<string> {
  await files.makeSandboxDir(ID, opts());
  writeVmmFiles(files.sandboxDir(ID));
  writeFileSync(join(files.sandboxDir(ID), 'config.json'), 'old');
  writeFileSync(files.cowPath(ID), 'disk');
  const staging = await files.makeStaging(ID, opts());
  writeVmmFiles(staging);
  writeFileSync(join(staging, 'config.json'), 'new');
  await files.writeMeta(staging, pauseMeta(), opts());
  if (stageTheCow) await files.stageCow(ID, staging, opts());
  return staging;
}

const generation = (dir: string) => readFileSync(join(dir, 'config.json'), 'utf8');

function assertNewInPlace(files: FsSnapshotFiles): void {
  assert.equal(generation(files.sandboxDir(ID)), 'new');
  assert.equal(readFileSync(files.cowPath(ID), 'utf8'), 'disk');
  assert.deepEqual(readdirSync(files.layout.sandboxesDir), [ID], 'no staging or trash left');
}

const failing = (code: string) => (err: unknown) => err instanceof SandboxdError && err.code === code;

test('moving the old generation to trash fails: old stays in place, new stays staged, restart finishes the swap', async (t) => {
  const data = tempDir(t);
  const fs = faultyFs((op, from) => op === 'rename' && basename(from) === ID);
  const staging = await prepare(drivers(data).files);
  const { files } = drivers(data, fs);
  await assert.rejects(files.swapIn(staging, ID, opts()), failing('operation_failed'));
  assert.equal(generation(files.sandboxDir(ID)), 'old');
  assert.equal(generation(staging), 'new');
  assert.ok(existsSync(join(staging, 'rootfs.cow')));
  await drivers(data).files.cleanupOrphans(opts());
  assertNewInPlace(files);
});

test('renaming staging into place fails: the old generation is put back, the new stays staged', async (t) => {
  const data = tempDir(t);
  const fs = faultyFs((op, from) => op === 'rename' && from.includes('.staging-'));
  const staging = await prepare(drivers(data).files);
  const { files } = drivers(data, fs);
  await assert.rejects(files.swapIn(staging, ID, opts()), failing('operation_failed'));
  assert.equal(generation(files.sandboxDir(ID)), 'old');
  assert.equal(generation(staging), 'new');
  assert.equal(readdirSync(files.layout.sandboxesDir).filter((n) => n.includes('.trash-')).length, 0);
  await drivers(data).files.cleanupOrphans(opts());
  assertNewInPlace(files);
});

test('staging rename and the restore both fail: old waits in trash, new in staging, restart puts the new one in place', async (t) => {
  const data = tempDir(t);
  const fs = faultyFs((op, from) => op === 'rename' && (from.includes('.staging-') || from.includes('.trash-')));
  const staging = await prepare(drivers(data).files);
  const { files } = drivers(data, fs);
  await assert.rejects(files.swapIn(staging, ID, opts()), failing('operation_failed'));
  assert.ok(!existsSync(files.sandboxDir(ID)), 'the injected double failure leaves the final name empty');
  const trash = readdirSync(files.layout.sandboxesDir).find((n) => n.includes('.trash-'));
  assert.ok(trash !== undefined);
  assert.equal(generation(join(files.layout.sandboxesDir, trash)), 'old');
  assert.equal(generation(staging), 'new');
  const removed = await drivers(data).files.cleanupOrphans(opts());
  assert.deepEqual(removed.map((p) => basename(p)), [trash]);
  assertNewInPlace(files);
});

test('deleting the trash fails: the swap still succeeds and the trash goes at the next start', async (t) => {
  const data = tempDir(t);
  const fs = faultyFs((op, path) => op === 'rm' && path.includes('.trash-'));
  const staging = await prepare(drivers(data).files);
  const { files } = drivers(data, fs);
  await files.swapIn(staging, ID, opts());
  assert.equal(generation(files.sandboxDir(ID)), 'new');
  assert.equal(readdirSync(files.layout.sandboxesDir).length, 2);
  await drivers(data).files.cleanupOrphans(opts());
  assertNewInPlace(files);
});

test('a crash before the CoW was staged: the staging is dropped and the sandbox dir keeps its CoW', async (t) => {
  const data = tempDir(t);
  const { files } = drivers(data);
  const staging = await prepare(files, false);
  const removed = await files.cleanupOrphans(opts());
  assert.deepEqual(removed, [staging]);
  assert.equal(generation(files.sandboxDir(ID)), 'old');
  assert.equal(readFileSync(files.cowPath(ID), 'utf8'), 'disk');
});

test('swapIn carries a CoW the caller forgot to stage, even when the swap then fails', async (t) => {
  const data = tempDir(t);
  const fs = faultyFs((op, from) => op === 'rename' && (from.includes('.staging-') || from.includes('.trash-')));
  const staging = await prepare(drivers(data).files, false);
  const { files } = drivers(data, fs);
  await assert.rejects(files.swapIn(staging, ID, opts()), failing('operation_failed'));
  assert.ok(existsSync(join(staging, 'rootfs.cow')));
  await drivers(data).files.cleanupOrphans(opts());
  assertNewInPlace(files);
});

test('a destroy cut short (dir already in trash) is not revived by the start-up cleanup', async (t) => {
  const data = tempDir(t);
  const { files } = drivers(data);
  await files.makeSandboxDir(ID, opts());
  writeFileSync(files.cowPath(ID), 'disk');
  await files.writeMeta(files.sandboxDir(ID), pauseMeta(), opts());
  renameSync(files.sandboxDir(ID), files.layout.sandboxTrashDir(ID));
  await files.cleanupOrphans(opts());
  assert.deepEqual(readdirSync(files.layout.sandboxesDir), []);
});

test('orphan cleanup removes staging, trash and half-made templates only', async (t) => {
  const data = tempDir(t);
  const { files, templates } = drivers(data);
  const L = files.layout;
  await files.makeSandboxDir('sb-keep', opts());
  writeFileSync(L.cowPath('sb-keep'), 'disk');
  writeFileSync(join(L.sandboxesDir, 'notes.txt'), 'operator notes');
  mkdirSync(join(L.sandboxesDir, 'lost+found'));
  const orphans = [
    await files.makeStaging('sb-gone', opts()),
    await files.makeTemplateStaging('sb-keep', opts()),
    L.sandboxTrashDir('sb-gone'),
    L.templateStageDir('team1', 'tpl'),
    L.templateTrashDir('team1', 'old'),
  ];
  for (const dir of orphans) mkdirSync(dir, { recursive: true });
  writeFileSync(join(orphans[1] ?? '', 'rootfs.ext4'), 'half');
  mkdirSync(L.templateDir('team1', 'tpl'), { recursive: true });
  writeFileSync(join(L.templateDir('team1', 'tpl'), 'rootfs.ext4'), 'base');
  const removed = await files.cleanupOrphans(opts());
  assert.deepEqual(removed, [...orphans].sort());
  for (const dir of orphans) assert.ok(!existsSync(dir), dir);
  assert.deepEqual(readdirSync(L.sandboxesDir).sort(), ['lost+found', 'notes.txt', 'sb-keep']);
  assert.equal(readFileSync(L.cowPath('sb-keep'), 'utf8'), 'disk');
  assert.deepEqual((await templates.list(null, opts())).map((x) => `${x.teamId}/${x.templateId}`), ['team1/tpl']);
  assert.deepEqual(await files.cleanupOrphans(opts()), [], 'a second run finds nothing');
});

test('a sandbox dir without its CoW next to a trash dir holding it: restart moves the CoW back', async (t) => {
  const data = tempDir(t);
  const { files } = drivers(data);
  await files.makeSandboxDir(ID, opts());
  await files.writeMeta(files.sandboxDir(ID), pauseMeta(), opts());
  const trash = files.layout.sandboxTrashDir(ID);
  mkdirSync(trash);
  writeFileSync(join(trash, 'rootfs.cow'), 'disk');
  writeFileSync(join(files.sandboxDir(ID), 'config.json'), 'new');
  assert.deepEqual(await files.cleanupOrphans(opts()), [trash]);
  assertNewInPlace(files);
});
