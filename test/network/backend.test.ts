import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createNetworkDriver, detectNetworkBackend } from '../../drivers/network/index.ts';
import type { CommandRunner } from '../../drivers/network/run.ts';

const signal = () => AbortSignal.timeout(10_000);
const isRoot = process.getuid?.() === 0;

test('a host without nft falls back to the none backend instead of failing later in a create', { skip: !isRoot && 'needs root' }, async () => {
  const noNft: CommandRunner = async (file) =>
    file === 'nft' ? { exitCode: 127, stdout: '', stderr: 'nft: not found' } : { exitCode: 0, stdout: 'ip utility', stderr: '' };
  assert.equal(await detectNetworkBackend({ signal: signal(), runner: noNft }), 'none');
  const throwing: CommandRunner = async () => {
    throw new Error('spawn ENOENT');
  };
  assert.equal(await detectNetworkBackend({ signal: signal(), runner: throwing }), 'none');
  const allThere: CommandRunner = async () => ({ exitCode: 0, stdout: '', stderr: '' });
  assert.equal(await detectNetworkBackend({ signal: signal(), runner: allThere }), 'netns');
});

test('the factory gives each backend its kind and passes the layout on', async () => {
  const netns = createNetworkDriver('netns', { layout: { prefix: 'sbxtf' } });
  const none = createNetworkDriver('none', { layout: { prefix: 'sbxtf', maxSlots: 8 } });
  assert.equal(netns.kind, 'netns');
  assert.equal(none.kind, 'none');
  await assert.rejects(none.create(8, { signal: signal() }), /invalid network slot/);
});
