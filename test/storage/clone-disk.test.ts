// The clone backend (hosts without device-mapper): a sandbox writing into its
// template, a clone that silently copied every byte where a reflink was possible,
// a half-written clone left behind on a full disk.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { CloneDiskDriver } from '../../drivers/storage/clone-disk.ts';
import { FileLoopDriver } from '../../drivers/storage/file-loop.ts';
import type { DiskRequest } from '../../drivers/storage/storage.ts';
import { loopsWithPrefix, makeImage, mount, signal, tempDir } from './helpers.ts';

const TAG = 'clone';
const MiB = 1 << 20;

async function world(t: TestContext, root?: string, originBytes = 4 * MiB) {
  const dir = root ?? tempDir(t, TAG);
  const originPath = join(dir, 'rootfs.ext4');
  const origin = makeImage(originPath, originBytes);
  const loop = new FileLoopDriver();
  const disk = new CloneDiskDriver({ prefix: 'sbxt-' });
  const originDevice = await loop.attach(originPath, { signal: signal() });
  mkdirSync(join(dir, 'sandboxes', 'sb-c1'), { recursive: true });
  const req: DiskRequest = {
    name: disk.deviceName('sb-c1'),
    originDevice,
    originPath,
    cowPath: join(dir, 'sandboxes', 'sb-c1', 'rootfs.cow'),
    sizeBytes: originBytes,
  };
  return { dir, origin, loop, disk, req };
}

function writeAt(path: string, at: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, at);
  } finally {
    closeSync(fd);
  }
}

test('the pass-through loop is the image itself; a missing image is not_found', async (t) => {
  const dir = tempDir(t, TAG);
  const img = join(dir, 'rootfs.ext4');
  makeImage(img, 3 * MiB);
  const loop = new FileLoopDriver();
  assert.equal(await loop.attach(img, { signal: signal() }), img);
  assert.equal(await loop.sizeBytes(img, { signal: signal() }), 3 * MiB);
  assert.deepEqual(await loop.findByBackingFile(img, { signal: signal() }), [img]);
  await loop.detach(img, img, { signal: signal() });
  assert.ok(existsSync(img), 'detach never deletes the image');
  await assert.rejects(loop.attach(join(dir, 'none.ext4'), { signal: signal() }), { code: 'not_found' });
  await assert.rejects(loop.attach('rel/x.ext4', { signal: signal() }), { code: 'invalid_argument' });
});

test('writes to the clone never reach the template, and the clone is grown to the disk size', async (t) => {
  const w = await world(t);
  const h = await w.disk.create({ ...w.req, sizeBytes: 16 * MiB }, { signal: signal() });
  assert.equal(h.devicePath, w.req.cowPath);
  assert.equal(statSync(h.devicePath).size, 16 * MiB);
  assert.ok(readFileSync(h.devicePath).subarray(0, w.origin.length).equals(w.origin));
  writeAt(h.devicePath, 4096, randomBytes(8192));
  assert.ok(readFileSync(w.req.originPath).equals(w.origin));
});

test('a repeated create keeps the sandbox\'s writes instead of cloning again', async (t) => {
  const w = await world(t);
  const h = await w.disk.create(w.req, { signal: signal() });
  const data = randomBytes(4096);
  writeAt(h.devicePath, 0, data);
  await w.disk.create(w.req, { signal: signal() });
  assert.ok(readFileSync(h.devicePath).subarray(0, 4096).equals(data));
});

test('concurrent creates of one clone copy once and leave no temp files', async (t) => {
  const w = await world(t);
  const handles = await Promise.all([1, 2, 3].map(() => w.disk.create(w.req, { signal: signal() })));
  for (const h of handles) assert.deepEqual(h, handles[0]);
  assert.deepEqual(readdirSync(join(w.dir, 'sandboxes', 'sb-c1')), ['rootfs.cow']);
  assert.ok(readFileSync(w.req.cowPath).equals(w.origin));
});

test('remove keeps the clone, attach finds it again, a missing one is not_found; discard is idempotent', async (t) => {
  const w = await world(t);
  const h = await w.disk.create(w.req, { signal: signal() });
  await w.disk.remove(h, { signal: signal() });
  assert.ok(existsSync(w.req.cowPath));
  assert.deepEqual(await w.disk.attach(w.req, { signal: signal() }), h);
  await w.disk.discard(w.req.cowPath, { signal: signal() });
  await w.disk.discard(w.req.cowPath, { signal: signal() });
  await assert.rejects(w.disk.attach(w.req, { signal: signal() }), { code: 'not_found' });
});

test('flatten and flattenDetached give a sparse, byte-identical copy of the clone', async (t) => {
  const w = await world(t);
  writeFileSync(w.req.originPath, Buffer.alloc(8 * MiB));
  const h = await w.disk.create(w.req, { signal: signal() });
  const data = randomBytes(64 * 1024);
  writeAt(h.devicePath, MiB, data);
  for (const [name, run] of [
    ['flat-a.ext4', (out: string) => w.disk.flatten(h, out, { signal: signal() })],
    ['flat-b.ext4', (out: string) => w.disk.flattenDetached(w.req, out, { signal: signal() })],
  ] as const) {
    const out = join(w.dir, name);
    await run(out);
    assert.ok(readFileSync(out).equals(readFileSync(h.devicePath)), name);
    assert.ok(statSync(out).blocks * 512 <= data.length + 64 * 1024, `${name} is sparse`);
  }
  assert.deepEqual(readdirSync(w.dir).filter((f) => f.includes('.tmp-')), []);
});

for (const fs of ['btrfs', 'xfs'] as const) {
  test(`on ${fs} the clone is a reflink: its extents are shared and it costs no space`, async (t) => {
    const dir = tempDir(t, TAG);
    const img = join(dir, `${fs}.img`);
    execFileSync('truncate', ['-s', String(320 * MiB), img]);
    execFileSync(`mkfs.${fs}`, ['-q', '-f', img]);
    const mnt = join(dir, 'mnt');
    mount(t, ['-o', 'loop', img], mnt);
    const w = await world(t, mnt, 32 * MiB);
    execFileSync('sync', ['-f', mnt]);
    const used = () => Number(execFileSync('df', ['-B1', '--output=used', mnt], { encoding: 'utf8' }).split('\n')[1]);
    const before = used();
    await w.disk.create(w.req, { signal: signal() });
    execFileSync('sync', ['-f', mnt]);
    assert.ok(used() - before < 4 * MiB, `clone used ${used() - before} bytes`);
    assert.match(execFileSync('filefrag', ['-v', w.req.cowPath], { encoding: 'utf8' }), /shared/);
    assert.ok(readFileSync(w.req.cowPath).equals(w.origin));
  });
}

test('a clone that does not fit fails typed and leaves no partial file', async (t) => {
  const dir = tempDir(t, TAG);
  const small = join(dir, 'small');
  mount(t, ['-t', 'tmpfs', '-o', 'size=2m', 'sbxt-tmpfs'], small);
  const originPath = join(dir, 'rootfs.ext4');
  makeImage(originPath, 8 * MiB);
  const disk = new CloneDiskDriver({ prefix: 'sbxt-' });
  const req = { name: 'sbxt-sb-c1', originDevice: originPath, originPath, cowPath: join(small, 'rootfs.cow'), sizeBytes: 8 * MiB };
  await assert.rejects(disk.create(req, { signal: signal() }), (err: unknown) => {
    assert.ok(err instanceof SandboxdError && err.code === 'operation_failed' && /space/i.test(err.message), String(err));
    return true;
  });
  assert.deepEqual(readdirSync(small), []);
});

test('bad names and paths are refused before cp runs', async (t) => {
  const dir = tempDir(t, TAG);
  const disk = new CloneDiskDriver({ prefix: 'sbxt-', cpPath: join(dir, 'no-cp') });
  const good: DiskRequest = { name: 'sbxt-sb-ok', originDevice: `${dir}/o`, originPath: `${dir}/o`, cowPath: `${dir}/c`, sizeBytes: MiB };
  for (const b of [{ name: 'sbxt-../x' }, { name: 'sbxt--f' }, { name: 'sb-ok' }, { cowPath: `${dir}/../c` }, { originPath: 'o' }, { sizeBytes: -1 }]) {
    await assert.rejects(disk.create({ ...good, ...b }, { signal: signal() }), { code: 'invalid_argument' }, JSON.stringify(b));
  }
  await assert.rejects(disk.flatten({ name: 'sbxt-sb-ok', devicePath: `${dir}/c`, cowPath: `${dir}/c` }, 'out', { signal: signal() }), {
    code: 'invalid_argument',
  });
});

test('a cancelled clone reports cancelled and leaves no partial file', async (t) => {
  const w = await world(t);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(w.disk.create(w.req, { signal: ac.signal }), { code: 'cancelled' });
  assert.deepEqual(readdirSync(join(w.dir, 'sandboxes', 'sb-c1')), []);
});

test('no loop device backed by this file\'s temp dirs is left attached', () => {
  assert.deepEqual(loopsWithPrefix(`/tmp/sandboxd-test-${TAG}-`), []);
});
