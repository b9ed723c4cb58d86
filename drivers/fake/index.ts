import { SYSTEM_TEAM } from '../files/files.ts';
import type { Drivers } from '../index.ts';
import { MemoryStore } from '../store/memory-store.ts';
import { FakeEnvd } from './fake-envd.ts';
import { FakeFiles } from './fake-files.ts';
import { FakeNetwork } from './fake-network.ts';
import { FakeDisk, FakeLoop } from './fake-storage.ts';
import { FakeTemplates } from './fake-templates.ts';
import { FakeSweeper } from './fake-sweeper.ts';
import { FakeVmm } from './fake-vmm.ts';
import { FakeHost, type FakeHostOptions, ROOTFS_FILE } from './host.ts';

/**
 * Every driver as an in-memory fake over one FakeHost, pre-seeded with a base
 * template `system/base` and a snapshot template `system/snap` whose guest
 * memory holds `template=system/snap`.
 *
 * Orders the fakes refuse (operation_failed), as a real host would:
 * boot/restore without the dm device or the slot's network; a disk another
 * VMM holds; disk.create without the origin loop attached to that image or
 * without the sandbox dir; disk.attach without the CoW; disk.remove while a
 * VMM holds the device; restore from a dir without CH's three files or with
 * another sandbox dir than the one recorded; snapshot unless Paused or into a
 * dir that is missing or not empty; envd calls unless the VM is Running
 * (waitHealthy: timeout). Stricter than the kernel: loop.detach of a loop that
 * still backs a disk. A call for a sandbox with no VMM fails with not_found.
 */
export interface FakeDrivers {
  drivers: Drivers;
  host: FakeHost;
  store: MemoryStore;
}

export const BASE_TEMPLATE = 'base';
export const SNAPSHOT_TEMPLATE = 'snap';

export function createFakeDrivers(opts: FakeHostOptions = {}): FakeDrivers {
  const host = new FakeHost(opts);
  host.addBaseTemplate(SYSTEM_TEAM, BASE_TEMPLATE);
  host.addSnapshotTemplate(
    SYSTEM_TEAM,
    SNAPSHOT_TEMPLATE,
    {
      version: 1,
      kind: 'template',
      teamId: SYSTEM_TEAM,
      templateId: SNAPSHOT_TEMPLATE,
      vcpus: 1,
      memoryMB: 512,
      timeoutSec: 0,
      baseTemplatePath: `${host.templateDir(SYSTEM_TEAM, BASE_TEMPLATE)}/${ROOTFS_FILE}`,
      // The VMM dir of the sandbox the template was taken from; restores must use it.
      sandboxDir: `${host.root}/sandboxes/sb-template-snap`,
      createdAt: '2026-01-01T00:00:00.000Z',
    },
    { memory: { template: `${SYSTEM_TEAM}/${SNAPSHOT_TEMPLATE}` } },
  );
  const store = new MemoryStore();
  const drivers: Drivers = {
    vmm: new FakeVmm(host),
    envd: new FakeEnvd(host),
    loop: new FakeLoop(host),
    disk: new FakeDisk(host),
    network: new FakeNetwork(host),
    files: new FakeFiles(host),
    templates: new FakeTemplates(host),
    store,
    // Late-bound: a test that swaps a driver in the bundle sweeps through its own.
    sweeper: new FakeSweeper(host, () => drivers),
  };
  return { drivers, host, store };
}

export { FakeHost, type FakeHostOptions } from './host.ts';
export { FaultPlan, FAKE_METHODS, type FakeMethod, type FaultRule, type FaultOptions } from './faults.ts';
export { Ledger, type LedgerSnapshot, type HeldBySandbox } from './ledger.ts';
export { fakeNetworkHandle } from './fake-network.ts';
