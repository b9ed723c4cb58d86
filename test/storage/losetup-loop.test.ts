// Loop devices leak when a second attach of a template makes another loop, when detach
// hits a loop number reused by another file, or when an agent restart forgets them.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { LosetupLoopDriver } from '../../drivers/storage/losetup-loop.ts';
import { loopsUnder, loopsWithPrefix, makeImage, signal, tempDir } from './helpers.ts';

const TAG = 'loop';
const MiB = 1 << 20;

test('attach gives a read-only loop whose bytes are the image and which refuses writes', async (t) => {
  const dir = tempDir(t, TAG);
  const img = join(dir, 'rootfs.ext4');
  const data = makeImage(img, 4 * MiB);
  const loops = new LosetupLoopDriver();
  const dev = await loops.attach(img, { signal: signal() });
  assert.match(dev, /^\/dev\/loop[0-9]+$/);
  assert.ok(readFileSync(dev).equals(data));
  const [entry] = await loops.findByBackingFile(img, { signal: signal() });
  assert.equal(entry?.readOnly, true);
  assert.throws(() => {
    const fd = openSync(dev, 'r+');
    try {
      writeSync(fd, Buffer.alloc(512, 1), 0, 512, 0);
    } finally {
      closeSync(fd);
    }
  }, /EROFS|EPERM|EACCES/);
  assert.equal(await loops.sizeBytes(dev, { signal: signal() }), 4 * MiB);
  await loops.detach(dev, img, { signal: signal() });
  assert.deepEqual(loopsUnder(dir), []);
});

test('a second attach of the same image reuses its loop instead of attaching another', async (t) => {
  const dir = tempDir(t, TAG);
  const img = join(dir, 'rootfs.ext4');
  makeImage(img, MiB);
  const loops = new LosetupLoopDriver();
  const a = await loops.attach(img, { signal: signal() });
  const b = await loops.attach(img, { signal: signal() });
  assert.equal(b, a);
  assert.equal(loopsUnder(dir).length, 1);
});

test('concurrent attaches of one image make a single loop', async (t) => {
  const dir = tempDir(t, TAG);
  const img = join(dir, 'rootfs.ext4');
  makeImage(img, MiB);
  const loops = new LosetupLoopDriver();
  const devices = await Promise.all(Array.from({ length: 5 }, () => loops.attach(img, { signal: signal() })));
  assert.equal(new Set(devices).size, 1);
  assert.equal(loopsUnder(dir).length, 1);
});

test('a read-write attachment of the file (a CoW) is never handed out as a read-only origin', async (t) => {
  const dir = tempDir(t, TAG);
  const img = join(dir, 'rootfs.cow');
  makeImage(img, MiB);
  const loops = new LosetupLoopDriver();
  const rw = await loops.attachReadWrite(img, { signal: signal() });
  const ro = await loops.attach(img, { signal: signal() });
  assert.notEqual(ro, rw);
  const found = await loops.findByBackingFile(img, { signal: signal() });
  assert.deepEqual(found.map((l) => [l.device, l.readOnly]).sort(), [[ro, true], [rw, false]].sort());
});

test('detach twice, and detach after someone else detached it, both succeed', async (t) => {
  const dir = tempDir(t, TAG);
  const img = join(dir, 'rootfs.ext4');
  makeImage(img, MiB);
  const loops = new LosetupLoopDriver();
  const dev = await loops.attach(img, { signal: signal() });
  await loops.detach(dev, img, { signal: signal() });
  await loops.detach(dev, img, { signal: signal() });
  const again = await loops.attach(img, { signal: signal() });
  execFileSync('losetup', ['--detach', again]);
  await loops.detach(again, img, { signal: signal() });
  assert.deepEqual(loopsUnder(dir), []);
});

test('detach leaves alone a loop number that now backs another file', async (t) => {
  const dir = tempDir(t, TAG);
  const a = join(dir, 'a.ext4');
  const b = join(dir, 'b.ext4');
  makeImage(a, MiB);
  makeImage(b, MiB);
  const loops = new LosetupLoopDriver();
  const devA = await loops.attach(a, { signal: signal() });
  execFileSync('losetup', ['--detach', devA]);
  // The kernel hands out the lowest free number, usually the one just freed.
  const devB = await loops.attach(b, { signal: signal() });
  await loops.detach(devA, a, { signal: signal() });
  assert.deepEqual(
    (await loops.findByBackingFile(b, { signal: signal() })).map((l) => l.device),
    [devB],
  );
});

test('after a restart (a new driver) the attachment is found again by its backing file', async (t) => {
  const dir = tempDir(t, TAG);
  mkdirSync(join(dir, 'tpl'));
  const img = join(dir, 'tpl', 'rootfs.ext4');
  makeImage(img, MiB);
  const dev = await new LosetupLoopDriver().attach(img, { signal: signal() });
  const restarted = new LosetupLoopDriver();
  const found = await restarted.findByBackingFile(img, { signal: signal() });
  assert.deepEqual(found.map((l) => l.device), [dev]);
  assert.equal(await restarted.attach(img, { signal: signal() }), dev);
  await restarted.detach(dev, img, { signal: signal() });
  assert.deepEqual(await restarted.findByBackingFile(img, { signal: signal() }), []);
});

test('bad image paths are refused before losetup runs', async (t) => {
  const dir = tempDir(t, TAG);
  // A losetup that does not exist: reaching it would fail with operation_failed instead.
  const loops = new LosetupLoopDriver({ losetupPath: join(dir, 'no-losetup') });
  const cases: Array<[string, string]> = [
    ['relative/rootfs.ext4', 'invalid_argument'],
    [`${dir}/../x/rootfs.ext4`, 'invalid_argument'],
    ['-rf', 'invalid_argument'],
    [`${dir}/a\nb`, 'invalid_argument'],
    [join(dir, 'missing.ext4'), 'not_found'],
    [dir, 'invalid_argument'],
  ];
  for (const [path, code] of cases) {
    await assert.rejects(loops.attach(path, { signal: signal() }), (err: unknown) => {
      assert.ok(err instanceof SandboxdError, String(err));
      assert.equal(err.code, code, `${JSON.stringify(path)}: ${err.message}`);
      return true;
    });
  }
  await assert.rejects(loops.detach('/dev/sda', join(dir, 'x'), { signal: signal() }), { code: 'invalid_argument' });
  await assert.rejects(loops.sizeBytes('/dev/loop0; rm', { signal: signal() }), { code: 'invalid_argument' });
});

test('a cancelled attach is reported as cancelled and leaves no loop', async (t) => {
  const dir = tempDir(t, TAG);
  const img = join(dir, 'rootfs.ext4');
  makeImage(img, MiB);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(new LosetupLoopDriver().attach(img, { signal: ac.signal }), { code: 'cancelled' });
  assert.deepEqual(loopsUnder(dir), []);
});

test('an attach cancelled after the kernel attached the loop detaches that loop', async (t) => {
  const dir = tempDir(t, TAG);
  const img = join(dir, 'rootfs.ext4');
  makeImage(img, MiB);
  // A losetup that attaches, then hangs before printing: the window where a cancel used to leak.
  const slow = join(dir, 'slow-losetup');
  writeFileSync(slow, '#!/bin/bash\nif [ "$1" = --find ]; then losetup "$@" >/dev/null; exec sleep 60; fi\nexec losetup "$@"\n', { mode: 0o755 });
  const ac = new AbortController();
  const attaching = new LosetupLoopDriver({ losetupPath: slow }).attach(img, { signal: ac.signal });
  const deadline = Date.now() + 10_000;
  while (loopsUnder(dir).length === 0 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  assert.equal(loopsUnder(dir).length, 1, 'the slow losetup attached a loop');
  ac.abort();
  await assert.rejects(attaching, { code: 'cancelled' });
  assert.deepEqual(loopsUnder(dir), []);
});

test('the sysfs listing and losetup\'s JSON listing agree, deleted backing files included', async (t) => {
  const dir = tempDir(t, TAG);
  const ro = join(dir, 'ro.ext4');
  const rw = join(dir, 'rw.cow');
  const gone = join(dir, 'gone.ext4');
  for (const f of [ro, rw, gone]) makeImage(f, MiB);
  const loops = new LosetupLoopDriver();
  await loops.attach(ro, { signal: signal() });
  await loops.attachReadWrite(rw, { signal: signal() });
  const goneDev = await loops.attach(gone, { signal: signal() });
  rmSync(gone);
  const viaJson = new LosetupLoopDriver({ listFrom: 'losetup' });
  const mine = (l: { backingFile: string }) => l.backingFile.startsWith(`${dir}/`);
  const a = (await loops.list({ signal: signal() })).filter(mine);
  const b = (await viaJson.list({ signal: signal() })).filter(mine);
  const byDevice = (x: { device: string }, y: { device: string }) => x.device.localeCompare(y.device);
  assert.deepEqual(a.sort(byDevice), b.sort(byDevice));
  assert.equal(a.length, 3);
  assert.equal(a.find((l) => l.device === goneDev)?.deleted, true);
  await loops.detach(goneDev, gone, { signal: signal() });
  assert.deepEqual(await loops.findByBackingFile(gone, { signal: signal() }), []);
});

test('no loop device backed by this file\'s temp dirs is left attached', () => {
  assert.deepEqual(loopsWithPrefix(`/tmp/sandboxd-test-${TAG}-`), []);
});
