// Start-up brings paused sandboxes back from their pause dirs: a pause dir the
// listing missed would be a sandbox lost across a restart; an unreadable one
// silently skipped would hide data the operator must look at.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { drivers, opts, pauseMeta, tempDir } from './helpers.ts';

test('listPaused finds pause snapshots, reports unreadable metadata, ignores dirs without one', async (t) => {
  const dataDir = tempDir(t, 'list-paused');
  const { files } = drivers(dataDir);
  await files.makeSandboxDir('sb-paused', opts());
  await files.writeMeta(files.sandboxDir('sb-paused'), pauseMeta({ slot: 3 }), opts());
  await files.makeSandboxDir('sb-running', opts());
  await files.makeSandboxDir('sb-broken', opts());
  writeFileSync(join(files.sandboxDir('sb-broken'), 'snapshot.json'), '{"version":1,"kind":"pau');
  mkdirSync(join(dataDir, 'sandboxes', 'not-a-sandbox'), { recursive: true });

  const found = await files.listPaused(opts());
  const byId = new Map(found.map((f) => [f.sandboxId, f]));
  assert.deepEqual([...byId.keys()].sort(), ['sb-broken', 'sb-paused']);
  const paused = byId.get('sb-paused')!;
  assert.ok('meta' in paused && paused.meta.kind === 'pause' && paused.meta.slot === 3);
  assert.ok('error' in byId.get('sb-broken')!);
});
