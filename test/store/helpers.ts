// Shared by the store tests: `sandboxd-test-store-*` data dirs removed after
// each test (also when it fails), a sample record, and a store closed after the test.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { SqliteStore, type SqliteStoreOptions } from '../../drivers/store/sqlite-store.ts';
import type { SandboxRecord } from '../../drivers/store/store.ts';

export function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'sandboxd-test-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Opens a store closed in t.after (close is idempotent, so a test may close it earlier). */
export function openStore(t: TestContext, dir: string, opts?: SqliteStoreOptions): SqliteStore {
  const store = new SqliteStore(dir, opts);
  t.after(() => store.close());
  return store;
}

export function sampleRecord(id: string, over: Partial<SandboxRecord> = {}): SandboxRecord {
  return {
    id,
    teamId: 'acme',
    templateId: 'base',
    vcpus: 2,
    memoryMB: 1024,
    diskSizeMB: 2048,
    timeoutSec: 300,
    status: 'running',
    step: 'running.idle',
    opId: null,
    incarnation: 3,
    slot: 7,
    machine: { value: { running: { inactivity: 'armed', memoryLoader: 'idle' } }, context: { id } },
    // Ledger rows derived from records are tested through the supervisor (test/recovery/durable-ledger.test.ts).
    ledger: [],
    hostIp: '10.11.0.29',
    rootfsDevice: `/dev/mapper/sbx-${id}`,
    resources: {
      loopDevice: '/dev/loop4',
      sandboxDir: true,
      disk: { name: `sbx-${id}`, devicePath: `/dev/mapper/sbx-${id}`, cowPath: `/data/sandboxes/${id}/rootfs.cow` },
      vm: { sandboxId: id, pid: 4242, apiSocket: `/run/sandboxd/${id}/api.sock`, lazyMemory: false },
      stagingDir: null,
    },
    createdAt: '2026-11-23T10:00:00.000Z',
    lastActiveAt: '2026-11-23T10:05:00.000Z',
    metadata: { envdVersion: '0.4.1' },
    ...over,
  };
}
