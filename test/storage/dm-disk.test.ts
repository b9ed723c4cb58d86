// The dm snapshot disk: a resumed sandbox that lost its writes, a remove that gave up
// on a briefly busy device, a full CoW read as garbage, a flatten that published a
// short file, an id that reached dmsetup. Runs against the kernel's device-mapper
// where /dev/mapper/control exists, else against the stand-in dmsetup.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync, writeFileSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { DiskInvalidError, DmDiskDriver } from '../../drivers/storage/dm-disk.ts';
import { LosetupLoopDriver } from '../../drivers/storage/losetup-loop.ts';
import type { DiskRequest } from '../../drivers/storage/storage.ts';
import { REAL_DM, dmSetup, loopsUnder, loopsWithPrefix, makeImage, mount, signal, tempDir, type DmSetup } from './helpers.ts';

const TAG = 'dm';
const MiB = 1 << 20;
const CHUNK = 4096;

interface World extends DmSetup {
  dir: string;
  origin: Buffer;
  req: DiskRequest;
}

async function world(
  t: TestContext,
  opts: { originBytes?: number; cowBytes?: number; id?: string; zeroOrigin?: boolean } = {},
  extra = {},
): Promise<World> {
  const dir = tempDir(t, TAG);
  const dm = dmSetup(t, dir, extra);
  const originPath = join(dir, 'rootfs.ext4');
  let origin = makeImage(originPath, opts.originBytes ?? 4 * MiB);
  if (opts.zeroOrigin === true) {
    origin = Buffer.alloc(origin.length);
    writeFileSync(originPath, origin);
  }
  const originDevice = await dm.loops.attach(originPath, { signal: signal() });
  const id = opts.id ?? 'sb-test1';
  mkdirSync(join(dir, 'sandboxes', id), { recursive: true });
  const req: DiskRequest = {
    name: dm.disk.deviceName(id),
    originDevice,
    originPath,
    cowPath: join(dir, 'sandboxes', id, 'rootfs.cow'),
    sizeBytes: opts.cowBytes ?? origin.length,
  };
  return { ...dm, dir, origin, req };
}

function writeChunks(device: string, chunks: Map<number, Buffer>): void {
  const fd = openSync(device, 'r+');
  try {
    for (const [i, data] of chunks) writeSync(fd, data, 0, data.length, i * CHUNK);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function expected(origin: Buffer, chunks: Map<number, Buffer>): Buffer {
  const out = Buffer.from(origin);
  for (const [i, data] of chunks) data.copy(out, i * CHUNK);
  return out;
}

const randomChunks = (n: number, of: number) =>
  new Map(Array.from({ length: n }, () => [Math.floor(Math.random() * of), randomBytes(CHUNK)] as const));
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const allocated = (p: string) => statSync(p).blocks * 512;

test('device-mapper backend in use', (t) => {
  if (!REAL_DM) t.skip('the kernel has no device-mapper (/proc/misc): the dm tests below ran against the stand-in dmsetup');
});

test('create gives a device reading as the origin over a sparse, zero-started CoW of the requested size', async (t) => {
  const w = await world(t, { cowBytes: 8 * MiB });
  const h = await w.disk.create(w.req, { signal: signal() });
  assert.equal(h.devicePath, join(w.mapperDir, w.req.name));
  assert.ok(readFileSync(h.devicePath).equals(w.origin));
  assert.equal(statSync(w.req.cowPath).size, 8 * MiB);
  assert.ok(allocated(w.req.cowPath) < MiB, 'the CoW is sparse');
  const usage = await w.disk.status(h.name, { signal: signal() });
  assert.equal(usage.totalSectors, (8 * MiB) / 512);
  assert.equal(loopsUnder(w.dir).filter((l) => l.file === w.req.cowPath).length, 1, 'the CoW has its own loop');
});

test('a repeated create of the same request returns the same device and keeps its writes', async (t) => {
  const w = await world(t);
  const h1 = await w.disk.create(w.req, { signal: signal() });
  const chunks = randomChunks(8, w.origin.length / CHUNK);
  writeChunks(h1.devicePath, chunks);
  const h2 = await w.disk.create(w.req, { signal: signal() });
  assert.deepEqual(h2, h1);
  assert.ok(readFileSync(h2.devicePath).equals(expected(w.origin, chunks)));
  assert.equal(loopsUnder(w.dir).filter((l) => l.file === w.req.cowPath).length, 1);
});

test('concurrent creates of one disk make one device over one CoW loop', async (t) => {
  const w = await world(t);
  const handles = await Promise.all([1, 2, 3].map(() => w.disk.create(w.req, { signal: signal() })));
  for (const h of handles) assert.deepEqual(h, handles[0]);
  assert.deepEqual(await w.leftovers(), [w.req.name]);
  assert.equal(loopsUnder(w.dir).filter((l) => l.file === w.req.cowPath).length, 1);
});

test('a create whose name is held over another CoW is refused and leaves that device alone', async (t) => {
  const w = await world(t);
  const h = await w.disk.create(w.req, { signal: signal() });
  const otherCow = join(w.dir, 'sandboxes', 'sb-test1', 'other.cow');
  await assert.rejects(w.disk.create({ ...w.req, cowPath: otherCow }, { signal: signal() }), { code: 'already_exists' });
  assert.deepEqual(await w.leftovers(), [h.name]);
  assert.ok(readFileSync(h.devicePath).equals(w.origin));
  assert.equal(existsSync(otherCow), false);
});

test('create refuses a CoW that already holds a snapshot instead of resetting it', async (t) => {
  const w = await world(t);
  const h = await w.disk.create(w.req, { signal: signal() });
  writeChunks(h.devicePath, randomChunks(2, 16));
  await w.disk.remove(h, { signal: signal() });
  const before = sha(w.req.cowPath);
  await assert.rejects(w.disk.create(w.req, { signal: signal() }), { code: 'already_exists' });
  assert.equal(sha(w.req.cowPath), before);
});

test('writes survive remove + attach (pause then resume)', async (t) => {
  const w = await world(t);
  const h = await w.disk.create(w.req, { signal: signal() });
  const chunks = randomChunks(40, w.origin.length / CHUNK);
  writeChunks(h.devicePath, chunks);
  await w.disk.remove(h, { signal: signal() });
  assert.equal(existsSync(h.devicePath), false);
  assert.deepEqual(await w.leftovers(), []);
  assert.deepEqual(loopsUnder(w.dir).filter((l) => l.file === w.req.cowPath), [], 'the CoW loop went with the device');
  assert.ok(existsSync(w.req.cowPath), 'the CoW file stays');
  const again = await w.disk.attach(w.req, { signal: signal() });
  assert.ok(readFileSync(again.devicePath).equals(expected(w.origin, chunks)));
  assert.ok(readFileSync(w.req.originPath).equals(w.origin), 'the origin is untouched');
});

test('remove of a device that is already gone is not an error and keeps the CoW', async (t) => {
  const w = await world(t);
  const h = await w.disk.create(w.req, { signal: signal() });
  await w.disk.remove(h, { signal: signal() });
  await w.disk.remove(h, { signal: signal() });
  assert.ok(existsSync(w.req.cowPath));
});

test('attach of a missing CoW is not_found and leaves nothing behind', async (t) => {
  const w = await world(t);
  await assert.rejects(w.disk.attach(w.req, { signal: signal() }), { code: 'not_found' });
  assert.deepEqual(await w.leftovers(), []);
  assert.deepEqual(loopsUnder(w.dir).filter((l) => l.file === w.req.cowPath), []);
});

test('remove retries while the device is busy and succeeds once the last user closes it', async (t) => {
  let busy: number[] = [];
  let fd: number | undefined;
  const w = await world(t, {}, {
    onRemoveBusy: (_name: string, attempt: number) => {
      busy.push(attempt);
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  });
  const h = await w.disk.create(w.req, { signal: signal() });
  fd = openSync(h.devicePath, 'r');
  busy = [];
  await w.disk.remove(h, { signal: signal() });
  assert.deepEqual(busy, [1], 'one busy attempt, then success');
  assert.deepEqual(await w.leftovers(), []);
});

test('remove of a device that stays busy fails typed and keeps the CoW loop for a later retry', async (t) => {
  const w = await world(t, {}, { removeAttempts: 2 });
  const h = await w.disk.create(w.req, { signal: signal() });
  const fd = openSync(h.devicePath, 'r');
  try {
    await assert.rejects(w.disk.remove(h, { signal: signal() }), (err: unknown) => {
      assert.ok(err instanceof SandboxdError && err.code === 'operation_failed' && /busy/.test(err.message), String(err));
      return true;
    });
    assert.deepEqual(await w.leftovers(), [h.name]);
    assert.equal(loopsUnder(w.dir).filter((l) => l.file === w.req.cowPath).length, 1);
  } finally {
    closeSync(fd);
  }
  await w.disk.remove(h, { signal: signal() });
  assert.deepEqual(await w.leftovers(), []);
});

test('flatten copies the device as it is now into a sparse file', async (t) => {
  // Mostly zeros: the output should cost about what is not zero.
  const w = await world(t, { originBytes: 4 * MiB, zeroOrigin: true });
  const h = await w.disk.create(w.req, { signal: signal() });
  const chunks = randomChunks(10, (4 * MiB) / CHUNK);
  writeChunks(h.devicePath, chunks);
  const out = join(w.dir, 'flat.ext4');
  await w.disk.flatten(h, out, { signal: signal() });
  assert.ok(readFileSync(out).equals(expected(Buffer.alloc(4 * MiB), chunks)));
  assert.ok(allocated(out) <= chunks.size * CHUNK + 64 * 1024, `allocated ${allocated(out)}`);
});

test('flattenDetached reads origin+CoW of a paused disk, leaves the CoW intact and no device or loop', async (t) => {
  const w = await world(t);
  const h = await w.disk.create(w.req, { signal: signal() });
  const chunks = randomChunks(20, w.origin.length / CHUNK);
  writeChunks(h.devicePath, chunks);
  await w.disk.remove(h, { signal: signal() });
  const cowBefore = sha(w.req.cowPath);
  const out = join(w.dir, 'template-rootfs.ext4');
  await w.disk.flattenDetached(w.req, out, { signal: signal() });
  assert.ok(readFileSync(out).equals(expected(w.origin, chunks)));
  assert.equal(sha(w.req.cowPath), cowBefore);
  assert.deepEqual(await w.leftovers(), []);
  assert.deepEqual(loopsUnder(w.dir).filter((l) => l.file === w.req.cowPath), []);
});

test('flattenDetached refuses while the sandbox disk itself is attached', async (t) => {
  const w = await world(t);
  await w.disk.create(w.req, { signal: signal() });
  await assert.rejects(w.disk.flattenDetached(w.req, join(w.dir, 'out'), { signal: signal() }), { code: 'operation_failed' });
  assert.equal(existsSync(join(w.dir, 'out')), false);
});

test('a CoW whose header is marked invalid is reported as DiskInvalidError and flatten refuses it', async (t) => {
  const w = await world(t);
  const h = await w.disk.create(w.req, { signal: signal() });
  writeChunks(h.devicePath, randomChunks(4, 64));
  await w.disk.remove(h, { signal: signal() });
  // dm-snap-persistent.c disk_header: le32 magic, le32 valid …
  const fd = openSync(w.req.cowPath, 'r+');
  writeSync(fd, Buffer.alloc(4), 0, 4, 4);
  closeSync(fd);
  const again = await w.disk.attach(w.req, { signal: signal() });
  await assert.rejects(w.disk.status(again.name, { signal: signal() }), (err: unknown) => err instanceof DiskInvalidError);
  const out = join(w.dir, 'out.ext4');
  await assert.rejects(w.disk.flatten(again, out, { signal: signal() }), (err: unknown) => err instanceof DiskInvalidError);
  assert.equal(existsSync(out), false);
});

test('a CoW that fills up invalidates the snapshot and status says so', async (t) => {
  // 64 KiB of CoW: header, one metadata chunk and 14 data chunks; 32 written chunks cannot fit.
  const w = await world(t, { cowBytes: 64 * 1024 });
  const h = await w.disk.create(w.req, { signal: signal() });
  const chunks = new Map(Array.from({ length: 32 }, (_, i) => [i * 3, randomBytes(CHUNK)] as const));
  try {
    writeChunks(h.devicePath, chunks);
  } catch (err) {
    assert.match(String(err), /EIO/, 'the kernel fails writes once the snapshot is invalid');
  }
  await assert.rejects(w.disk.status(h.name, { signal: signal() }), (err: unknown) => {
    assert.ok(err instanceof DiskInvalidError, String(err));
    assert.match(err.message, /Invalid/);
    return true;
  });
  // An invalid snapshot reads nothing useful: the stand-in has no bytes left, the kernel fails with EIO.
  const readable = (() => {
    try {
      const fd = openSync(h.devicePath, 'r');
      try {
        return readSync(fd, Buffer.alloc(CHUNK), 0, CHUNK, 0);
      } finally {
        closeSync(fd);
      }
    } catch {
      return 0;
    }
  })();
  assert.equal(readable, 0);
  await w.disk.remove(h, { signal: signal() });
});

test('flatten onto a full filesystem fails typed and leaves no partial output', async (t) => {
  const w = await world(t, { originBytes: 4 * MiB });
  const h = await w.disk.create(w.req, { signal: signal() });
  const small = join(w.dir, 'small');
  mount(t, ['-t', 'tmpfs', '-o', 'size=1m', 'sbxt-tmpfs'], small);
  await assert.rejects(w.disk.flatten(h, join(small, 'rootfs.ext4'), { signal: signal() }), (err: unknown) => {
    assert.ok(err instanceof SandboxdError && err.code === 'operation_failed' && /ENOSPC|space/i.test(err.message), String(err));
    return true;
  });
  assert.deepEqual(readdirSync(small), []);
});

test('ids with ../ or a leading dash and bad paths are refused before any command runs', async (t) => {
  const dir = tempDir(t, TAG);
  // A dmsetup and losetup that do not exist: reaching either would fail with operation_failed.
  const disk = new DmDiskDriver({
    loops: new LosetupLoopDriver({ losetupPath: join(dir, 'none'), blockdevPath: join(dir, 'none') }),
    dmsetupPath: join(dir, 'none'),
    prefix: 'sbxt-',
  });
  const good: DiskRequest = { name: 'sbxt-sb-ok', originDevice: '/dev/loop0', originPath: `${dir}/o`, cowPath: `${dir}/c`, sizeBytes: MiB };
  const bad: Array<Partial<DiskRequest>> = [
    { name: 'sbxt-../../etc' },
    { name: 'sbxt--rf' },
    { name: '-sbxt-sb-ok' },
    { name: 'sbxt-sb-ok/../x' },
    { name: 'sbxd-sb-ok' },
    { name: 'sbxt-sb-ok --table' },
    { cowPath: 'rootfs.cow' },
    { cowPath: `${dir}/../c` },
    { originPath: `${dir}/./o` },
    { originDevice: 'loop0' },
    { sizeBytes: 0 },
    { sizeBytes: 1.5 },
  ];
  for (const b of bad) {
    const req = { ...good, ...b };
    for (const call of [
      () => disk.create(req, { signal: signal() }),
      () => disk.attach(req, { signal: signal() }),
      () => disk.flattenDetached(req, `${dir}/out`, { signal: signal() }),
    ]) {
      await assert.rejects(call(), { code: 'invalid_argument' }, JSON.stringify(b));
    }
  }
  await assert.rejects(disk.remove({ name: 'sbxt-../x', devicePath: '/dev/mapper/x', cowPath: `${dir}/c` }, { signal: signal() }), {
    code: 'invalid_argument',
  });
  assert.throws(() => disk.deviceName('../sb-x'), { code: 'invalid_argument' });
  assert.throws(() => new DmDiskDriver({ loops: new LosetupLoopDriver(), prefix: '-x' }), { code: 'invalid_argument' });
});

test('an origin device that is not the request\'s origin file is refused', async (t) => {
  const w = await world(t);
  const other = join(w.dir, 'other.ext4');
  makeImage(other, MiB);
  const otherDev = await w.loops.attach(other, { signal: signal() });
  await assert.rejects(w.disk.create({ ...w.req, originDevice: otherDev }, { signal: signal() }), { code: 'invalid_argument' });
  assert.equal(existsSync(w.req.cowPath), false, 'the CoW made for the refused create is gone');
  assert.deepEqual(loopsUnder(w.dir).filter((l) => l.file === w.req.cowPath), []);
});

test('discard deletes the CoW, and a missing CoW is not an error', async (t) => {
  const w = await world(t);
  const h = await w.disk.create(w.req, { signal: signal() });
  await w.disk.remove(h, { signal: signal() });
  await w.disk.discard(w.req.cowPath, { signal: signal() });
  assert.equal(existsSync(w.req.cowPath), false);
  await w.disk.discard(w.req.cowPath, { signal: signal() });
});

test('no loop device backed by this file\'s temp dirs is left attached', () => {
  assert.deepEqual(loopsWithPrefix(`/tmp/sandboxd-test-${TAG}-`), []);
});
