// Flatten output must be byte-identical and sparse, never half-written under its
// final name (a cancel, a short read or a missing source leave nothing behind).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { sparseCopy } from '../../drivers/storage/sparse-copy.ts';
import { signal, tempDir } from './helpers.ts';

const TAG = 'sparse';
const MiB = 1 << 20;

test('the copy is byte-identical, keeps trailing zeros and a partial last page, and holes stay holes', async (t) => {
  const dir = tempDir(t, TAG);
  const src = join(dir, 'src');
  // 3 MiB + 1000 bytes: data at the start, a zero middle, data in the partial last page, zeros after it.
  const data = Buffer.alloc(3 * MiB + 1000);
  randomBytes(10_000).copy(data, 0);
  randomBytes(300).copy(data, 3 * MiB + 100);
  writeFileSync(src, data);
  const r = await sparseCopy(src, join(dir, 'dst'), { signal: signal() });
  assert.ok(readFileSync(join(dir, 'dst')).equals(data));
  assert.equal(r.bytes, data.length);
  assert.equal(r.dataBytes, 3 * 4096 + 1000, "three data pages and the partial last page");
  assert.ok(statSync(join(dir, 'dst')).blocks * 512 <= 64 * 1024, 'the zero middle is a hole');
});

test('a cancelled copy reports cancelled and leaves neither the output nor a temp file', async (t) => {
  const dir = tempDir(t, TAG);
  const src = join(dir, 'src');
  writeFileSync(src, randomBytes(8 * MiB));
  const ac = new AbortController();
  const copying = sparseCopy(src, join(dir, 'dst'), { signal: ac.signal });
  ac.abort();
  await assert.rejects(copying, { code: 'cancelled' });
  assert.deepEqual(readdirSync(dir), ['src']);
});

test('a source shorter than expected (an invalid snapshot reads short) publishes nothing', async (t) => {
  const dir = tempDir(t, TAG);
  const src = join(dir, 'src');
  writeFileSync(src, randomBytes(MiB));
  await assert.rejects(sparseCopy(src, join(dir, 'dst'), { signal: signal(), expectedBytes: 2 * MiB }), /short read/);
  assert.deepEqual(readdirSync(dir), ['src']);
});

test('a missing source is not_found and creates nothing', async (t) => {
  const dir = tempDir(t, TAG);
  await assert.rejects(sparseCopy(join(dir, 'none'), join(dir, 'dst'), { signal: signal() }), { code: 'not_found' });
  assert.deepEqual(readdirSync(dir), []);
});
