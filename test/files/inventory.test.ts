// Start-up recovery decides from the inventory what to keep: a staging dir
// taken for a sandbox, or a half-made template taken for a whole one, would
// be restored from or handed to a launch.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { takeInventory } from '../../drivers/files/inventory.ts';
import { drivers, opts, tempDir, writeVmmFiles } from './helpers.ts';

test('the inventory sorts sandbox dirs, staging, trash and templates by kind, and leaves unknown names alone', async (t) => {
  const data = tempDir(t);
  const { files } = drivers(data);
  const L = files.layout;
  assert.deepEqual(await takeInventory(L, opts()), { sandboxes: [], staging: [], trash: [], templateStaging: [], templates: [], unknown: [] });

  await files.makeSandboxDir('sb-a', opts());
  const pause = await files.makeStaging('sb-a', opts());
  const stage = await files.makeTemplateStaging('sb-a', opts());
  const trash = L.sandboxTrashDir('sb-b');
  mkdirSync(trash);
  writeFileSync(join(L.sandboxesDir, 'stray-file'), '');
  const hidden = L.templateStageDir('team1', 'new');
  mkdirSync(hidden, { recursive: true });
  const base = L.templateDir('system', 'ubuntu');
  mkdirSync(base, { recursive: true });
  writeFileSync(join(base, 'rootfs.ext4'), '');
  const snap = L.templateDir('team1', 'snap');
  writeVmmFiles(snap);
  writeFileSync(join(snap, 'rootfs.ext4'), '');
  writeFileSync(join(snap, 'snapshot.json'), '{}');
  const half = L.templateDir('team1', 'half');
  writeVmmFiles(half);

  const inv = await takeInventory(L, opts());
  assert.deepEqual(inv.sandboxes, [{ sandboxId: 'sb-a', dir: L.sandboxDir('sb-a') }]);
  assert.deepEqual(
    inv.staging.map((s) => [s.kind, s.dir]).sort(),
    [
      ['pause-staging', pause],
      ['template-staging', stage],
    ].sort(),
  );
  assert.deepEqual(inv.trash, [trash]);
  assert.deepEqual(inv.templateStaging, [hidden]);
  assert.deepEqual(inv.unknown, [join(L.sandboxesDir, 'stray-file')]);
  assert.deepEqual(
    inv.templates.map((x) => [`${x.teamId}/${x.templateId}`, x.state, x.missing]),
    [
      ['system/ubuntu', 'base', []],
      ['team1/half', 'incomplete', ['rootfs.ext4', 'snapshot.json']],
      ['team1/snap', 'snapshot', []],
    ],
  );
});
