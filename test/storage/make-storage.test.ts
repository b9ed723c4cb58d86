// Picking the storage backend: a host without device-mapper must get the clone
// backend by default, and asking for dm there must fail clearly, not at first create.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { deviceMapperAvailable } from '../../drivers/storage/dm-disk.ts';
import { makeStorage } from '../../drivers/storage/index.ts';
import { loopsWithPrefix, makeImage, signal, tempDir } from './helpers.ts';

const TAG = 'make';
const MiB = 1 << 20;

test('auto picks dm exactly where the kernel has device-mapper, else clone', () => {
  assert.equal(makeStorage({ backend: 'auto' }).kind, deviceMapperAvailable() ? 'dm' : 'clone');
  assert.equal(makeStorage({ backend: 'clone' }).disk.kind, 'clone');
});

test('dm without device-mapper and without the stand-in is refused up front', (t) => {
  if (deviceMapperAvailable()) t.skip('this kernel has device-mapper');
  else assert.throws(() => makeStorage({ backend: 'dm' }), { code: 'invalid_argument' });
});

test('the stand-in wiring gives a working dm backend end to end', async (t) => {
  const dir = tempDir(t, TAG);
  const s = makeStorage({ backend: 'dm', prefix: 'sbxt-', standinStateDir: join(dir, 'dm') });
  const originPath = join(dir, 'rootfs.ext4');
  const data = makeImage(originPath, MiB);
  const originDevice = await s.loop.attach(originPath, { signal: signal() });
  mkdirSync(join(dir, 'sb'));
  const req = { name: 'sbxt-sb-make1', originDevice, originPath, cowPath: join(dir, 'sb', 'rootfs.cow'), sizeBytes: MiB };
  const h = await s.disk.create(req, { signal: signal() });
  const out = join(dir, 'flat.ext4');
  await s.disk.flatten(h, out, { signal: signal() });
  assert.ok(readFileSync(out).equals(data));
  await s.disk.remove(h, { signal: signal() });
  await s.loop.detach(originDevice, originPath, { signal: signal() });
});

test('no loop device backed by this file\'s temp dirs is left attached', () => {
  assert.deepEqual(loopsWithPrefix(`/tmp/sandboxd-test-${TAG}-`), []);
});
