// `dmsetup status` of a snapshot as the kernel prints it (KDOC example, dm-snap.c
// snapshot_status): a parse that took "Invalid" for usage would let a flatten copy EIO.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiskInvalidError, parseSnapshotStatus } from '../../drivers/storage/dm-host.ts';

test('the usage line of a valid snapshot is read as allocated/total and metadata sectors', () => {
  assert.deepEqual(parseSnapshotStatus('sbxd-sb-a', '0 8388608 snapshot 397896/2097152 1560\n'), {
    allocatedSectors: 397896,
    totalSectors: 2097152,
    metadataSectors: 1560,
  });
});

test('Invalid, Overflow, Merge failed and Unknown are each a DiskInvalidError naming the state', () => {
  for (const state of ['Invalid', 'Overflow', 'Merge failed', 'Unknown', 'Invalid cause: cow full']) {
    assert.throws(
      () => parseSnapshotStatus('sbxd-sb-a', `0 8388608 snapshot ${state}`),
      (err: unknown) => err instanceof DiskInvalidError && err.state === state && err.code === 'operation_failed',
    );
  }
});

test('a device that is not a snapshot is an error, not a usage figure', () => {
  assert.throws(() => parseSnapshotStatus('sbxd-sb-a', '0 8388608 linear'), (err: unknown) => !(err instanceof DiskInvalidError));
  assert.throws(() => parseSnapshotStatus('sbxd-sb-a', ''), { code: 'operation_failed' });
});
