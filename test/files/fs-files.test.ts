// The sandbox-dir side of pause and destroy on real files: each method does its
// effect once (a retry changes nothing), refuses bad input without touching the
// disk, and a snapshot.json that is truncated or not ours is refused by name.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { drivers, opts, pauseMeta, tempDir, writeVmmFiles } from './helpers.ts';

const ID = 'sb-files-1';
const code = (c: string) => (err: unknown) => err instanceof SandboxdError && err.code === c;

test('makeSandboxDir and removeSandboxDir are idempotent and remove the CoW and stagings with the dir', async (t) => {
  const { files } = drivers(tempDir(t));
  await files.makeSandboxDir(ID, opts());
  await files.makeSandboxDir(ID, opts());
  writeFileSync(files.cowPath(ID), 'cow');
  const staging = await files.makeStaging(ID, opts());
  const other = await files.makeStaging('sb-other', opts());
  await files.removeSandboxDir(ID, opts());
  await files.removeSandboxDir(ID, opts());
  assert.ok(!existsSync(files.sandboxDir(ID)));
  assert.ok(!existsSync(staging));
  assert.ok(existsSync(other), "another sandbox's staging must survive");
  assert.deepEqual(readdirSync(files.layout.sandboxesDir), [other.split('/').pop()]);
});

test('makeSandboxDir refuses a file standing where the dir should be', async (t) => {
  const { files } = drivers(tempDir(t));
  mkdirSync(files.layout.sandboxesDir, { recursive: true });
  writeFileSync(files.sandboxDir(ID), 'not a dir');
  await assert.rejects(files.makeSandboxDir(ID, opts()), code('already_exists'));
});

test('makeStaging gives a fresh empty dir each time; removeStaging refuses non-staging paths', async (t) => {
  const data = tempDir(t);
  const { files } = drivers(data);
  await files.makeSandboxDir(ID, opts());
  const a = await files.makeStaging(ID, opts());
  const b = await files.makeStaging(ID, opts());
  assert.notEqual(a, b);
  assert.deepEqual(readdirSync(a), []);
  await assert.rejects(files.removeStaging(files.sandboxDir(ID), opts()), code('invalid_argument'));
  await assert.rejects(files.removeStaging('/etc', opts()), code('invalid_argument'));
  await assert.rejects(files.removeStaging(`${a}/../${ID}`, opts()), code('invalid_argument'));
  assert.ok(existsSync(files.sandboxDir(ID)));
  await files.removeStaging(a, opts());
  await files.removeStaging(a, opts());
  assert.ok(!existsSync(a));
});

test('writeMeta then readMeta round-trips, leaves no temp file and replaces an older file whole', async (t) => {
  const { files } = drivers(tempDir(t));
  const dir = await files.makeStaging(ID, opts());
  await files.writeMeta(dir, pauseMeta({ slot: 1 }), opts());
  await files.writeMeta(dir, pauseMeta({ slot: 2 }), opts());
  assert.equal((await files.readMeta(dir, opts())).slot, 2);
  assert.deepEqual(readdirSync(dir), ['snapshot.json']);
});

test('writeMeta refuses invalid metadata and a dir outside the data dir, writing nothing', async (t) => {
  const data = tempDir(t);
  const { files } = drivers(data);
  const dir = await files.makeStaging(ID, opts());
  await assert.rejects(files.writeMeta(dir, { ...pauseMeta(), vcpus: 0 }, opts()), code('invalid_argument'));
  await assert.rejects(files.writeMeta('/tmp', pauseMeta(), opts()), code('invalid_argument'));
  await assert.rejects(files.writeMeta(join(data, 'sandboxes/missing'), pauseMeta(), opts()), code('not_found'));
  assert.deepEqual(readdirSync(dir), []);
});

test('a truncated, empty, foreign or newer snapshot.json is refused with a message naming the file', async (t) => {
  const { files } = drivers(tempDir(t));
  const dir = await files.makeStaging(ID, opts());
  const path = join(dir, 'snapshot.json');
  await files.writeMeta(dir, pauseMeta(), opts());
  truncateSync(path, Math.floor(statSync(path).size / 2));
  await assert.rejects(files.readMeta(dir, opts()), (e) => code('operation_failed')(e) && /truncated/.test(String(e)) && String(e).includes(path));
  writeFileSync(path, '');
  await assert.rejects(files.readMeta(dir, opts()), (e) => code('operation_failed')(e) && /empty/.test(String(e)));
  writeFileSync(path, JSON.stringify({ name: 'some other tool', version: 1 }));
  await assert.rejects(files.readMeta(dir, opts()), (e) => code('operation_failed')(e) && /not a sandboxd snapshot/.test(String(e)));
  writeFileSync(path, JSON.stringify({ ...pauseMeta(), version: 2 }));
  await assert.rejects(files.readMeta(dir, opts()), (e) => code('operation_failed')(e) && /version 2/.test(String(e)));
  writeFileSync(path, Buffer.alloc(1 << 20, 0x20));
  await assert.rejects(files.readMeta(dir, opts()), code('operation_failed'));
  await assert.rejects(files.readMeta(files.sandboxDir('sb-nope'), opts()), code('not_found'));
});

test('stageCow moves the CoW into staging once; a retry after the move succeeds; no CoW anywhere fails', async (t) => {
  const { files } = drivers(tempDir(t));
  await files.makeSandboxDir(ID, opts());
  writeFileSync(files.cowPath(ID), 'disk');
  const staging = await files.makeStaging(ID, opts());
  await files.stageCow(ID, staging, opts());
  await files.stageCow(ID, staging, opts());
  assert.equal(readFileSync(join(staging, 'rootfs.cow'), 'utf8'), 'disk');
  assert.ok(!existsSync(files.cowPath(ID)));
  const empty = await files.makeStaging(ID, opts());
  await assert.rejects(files.stageCow(ID, empty, opts()), code('operation_failed'));
  const foreign = await files.makeStaging('sb-other', opts());
  await assert.rejects(files.stageCow(ID, foreign, opts()), code('invalid_argument'));
});

test('swapIn replaces the previous generation, keeps the new CoW, leaves no trash, and is idempotent', async (t) => {
  const { files } = drivers(tempDir(t));
  await files.makeSandboxDir(ID, opts());
  writeFileSync(files.cowPath(ID), 'disk');
  writeVmmFiles(files.sandboxDir(ID));
  writeFileSync(join(files.sandboxDir(ID), 'config.json'), 'old');
  const staging = await files.makeStaging(ID, opts());
  writeVmmFiles(staging);
  await files.writeMeta(staging, pauseMeta(), opts());
  await files.stageCow(ID, staging, opts());
  await files.swapIn(staging, ID, opts());
  await files.swapIn(staging, ID, opts());
  assert.notEqual(readFileSync(join(files.sandboxDir(ID), 'config.json'), 'utf8'), 'old');
  assert.equal(readFileSync(files.cowPath(ID), 'utf8'), 'disk');
  assert.deepEqual(readdirSync(files.layout.sandboxesDir), [ID]);
});

test('swapIn refuses a staging dir without pause metadata and changes nothing', async (t) => {
  const { files } = drivers(tempDir(t));
  await files.makeSandboxDir(ID, opts());
  writeFileSync(files.cowPath(ID), 'disk');
  const staging = await files.makeStaging(ID, opts());
  await assert.rejects(files.swapIn(staging, ID, opts()), code('not_found'));
  await files.writeMeta(staging, pauseMeta({ kind: 'template', slot: undefined }), opts());
  await assert.rejects(files.swapIn(staging, ID, opts()), code('invalid_argument'));
  assert.equal(readFileSync(files.cowPath(ID), 'utf8'), 'disk');
  assert.ok(existsSync(staging));
});

test('an aborted signal cancels before anything changes', async (t) => {
  const { files } = drivers(tempDir(t));
  await files.makeSandboxDir(ID, opts());
  writeFileSync(files.cowPath(ID), 'disk');
  const staging = await files.makeStaging(ID, opts());
  await files.writeMeta(staging, pauseMeta(), opts());
  const aborted = { signal: AbortSignal.abort() };
  await assert.rejects(files.stageCow(ID, staging, aborted), code('cancelled'));
  await assert.rejects(files.swapIn(staging, ID, aborted), code('cancelled'));
  await assert.rejects(files.removeSandboxDir(ID, aborted), code('cancelled'));
  await assert.rejects(files.makeStaging(ID, aborted), code('cancelled'));
  await assert.rejects(files.cleanupOrphans(aborted), code('cancelled'));
  assert.equal(readFileSync(files.cowPath(ID), 'utf8'), 'disk');
  assert.ok(existsSync(join(staging, 'snapshot.json')));
  assert.equal(readdirSync(files.layout.sandboxesDir).length, 2);
});
