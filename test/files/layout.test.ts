// Ids reach paths here. A template or sandbox id that could climb out of the
// data dir, or start with a dash and pass as an option, must be refused before
// any path is built; staging names must parse back to the sandbox they belong to.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { classifySandboxEntry, DataLayout, isTeamOrphanName } from '../../drivers/files/layout.ts';

const layout = new DataLayout('/srv/sandboxd');
const invalid = (err: unknown) => err instanceof SandboxdError && err.code === 'invalid_argument';

test('ids that escape the data dir or look like options are refused', () => {
  for (const bad of ['../etc', '..', '/etc', '-rf', 'a/b', '', ' x', 'x\n', '.hidden']) {
    assert.throws(() => layout.templateDir('team1', bad), invalid, `template ${JSON.stringify(bad)}`);
    assert.throws(() => layout.templateDir(bad, 'tpl'), invalid, `team ${JSON.stringify(bad)}`);
  }
  for (const bad of ['sb-../x', '../sb-1', 'sb-', '-sb-1', 'sb-A', 'sb-1/..', '/sb-1']) {
    assert.throws(() => layout.sandboxDir(bad), invalid, `sandbox ${JSON.stringify(bad)}`);
    assert.throws(() => layout.pauseStagingDir(bad), invalid);
  }
});

test('a caller-given path outside the data dir is refused, even one that only starts with its name', () => {
  for (const bad of ['/srv/sandboxd', '/srv/sandboxd/..', '/srv/sandboxd-other/x', '/srv/sandboxd/sandboxes/../../x', 'relative/x', '/etc/passwd']) {
    assert.throws(() => layout.inside(bad), invalid, bad);
  }
  assert.equal(layout.inside('/srv/sandboxd/sandboxes/sb-1'), '/srv/sandboxd/sandboxes/sb-1');
});

test('a relative data dir is refused (every later path would depend on the cwd)', () => {
  assert.throws(() => new DataLayout('data'), invalid);
});

test('staging and trash names parse back to their sandbox, also for ids with dashes', () => {
  const id = 'sb-abc-def-123';
  const stage = layout.templateStagingDir(id).split('/').pop() ?? '';
  const pause = layout.pauseStagingDir(id).split('/').pop() ?? '';
  const trash = layout.sandboxTrashDir(id).split('/').pop() ?? '';
  assert.deepEqual(classifySandboxEntry(stage), { kind: 'template-staging', sandboxId: id });
  assert.deepEqual(classifySandboxEntry(pause), { kind: 'pause-staging', sandboxId: id });
  assert.deepEqual(classifySandboxEntry(trash), { kind: 'trash', sandboxId: id });
  assert.deepEqual(classifySandboxEntry(id), { kind: 'sandbox', sandboxId: id });
  for (const other of ['notes.txt', '.stage-', 'sb-1.staging-', 'sb-1.other-x', '.stage-sb-1-short']) {
    assert.equal(classifySandboxEntry(other), null, other);
  }
  assert.notEqual(layout.pauseStagingDir(id), layout.pauseStagingDir(id), 'two staging dirs must never share a name');
});

test('assertStagingDir accepts only staging dirs of the named sandbox', () => {
  const staging = layout.pauseStagingDir('sb-1');
  assert.equal(layout.assertStagingDir(staging, 'sb-1').path, staging);
  assert.throws(() => layout.assertStagingDir(staging, 'sb-2'), invalid);
  assert.throws(() => layout.assertStagingDir(layout.sandboxDir('sb-1')), invalid);
  assert.throws(() => layout.assertStagingDir(`${layout.teamsDir}/t/${staging.split('/').pop()}`), invalid);
  assert.throws(() => layout.assertStagingDir(`${staging}/../../x`), invalid);
});

test('team-dir leftovers are told apart from templates', () => {
  const hidden = layout.templateStageDir('team1', 'tpl').split('/').pop() ?? '';
  const trash = layout.templateTrashDir('team1', 'tpl').split('/').pop() ?? '';
  assert.ok(isTeamOrphanName(hidden));
  assert.ok(isTeamOrphanName(trash));
  assert.ok(!isTeamOrphanName('tpl'));
});
