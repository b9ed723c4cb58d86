// The real-host counterpart of test/support/harness.ts's assertLedgerMatches:
// what every sandbox's context says it holds, compared with what the host
// inventories find (loop devices by backing file, dm devices of the stand-in,
// namespaces and links under the test prefix, VMM processes, sandbox and
// staging dirs, slots).
import assert from 'node:assert/strict';
import type { SandboxContext } from '../../machines/sandbox/context.ts';
import { takeInventory, type Inventory } from '../../drivers/files/inventory.ts';
import { listNetworkInventory, type NetworkInventory } from '../../drivers/network/inventory.ts';
import { listStorage, type StorageInventory } from '../../drivers/storage/inventory.ts';
import { opts, vmmProcesses, type Rig } from './rig.ts';

export interface HostInventory {
  storage: StorageInventory;
  network: NetworkInventory;
  files: Inventory;
  vmms: Map<string, number>;
  /** Everything above as owned resources, one string per thing. */
  holdings: string[];
}

export async function hostInventory(rig: Rig): Promise<HostInventory> {
  const storage = await listStorage({ dataDir: rig.dataDir, loops: rig.loops, dm: rig.dm }, opts());
  const network = await listNetworkInventory(rig.net.prefix, opts());
  const files = await takeInventory(rig.files.layout, opts());
  const vmms = vmmProcesses(rig.runDir);
  const holdings = [
    ...storage.loops.map((l) => (l.readOnly ? `loop:${l.backingFile}` : `cowloop:${l.backingFile}`)),
    ...(storage.dmDevices ?? [`dm-unreadable:${storage.dmError}`]).map((d) => `disk:${d}`),
    ...storage.cowFiles.map((c) => `cow:${c}`),
    ...network.slots.map((s) => `network:${s}`),
    ...[...vmms.keys()].map((id) => `vm:${id}`),
    ...files.sandboxes.map((s) => `dir:${s.sandboxId}`),
    ...files.staging.map((s) => `staging:${s.dir}`),
    ...[...rig.sup.slots.held().keys()].map((s) => `slot:${s}`),
  ];
  return { storage, network, files, vmms, holdings: holdings.sort() };
}

function contextHoldings(rig: Rig): string[] {
  const out = new Set<string>();
  for (const id of rig.sup.ids()) {
    const c: SandboxContext = rig.sup.snapshotOf(id)!.context;
    const r = c.res;
    if (r.loopDevice !== null && r.originPath !== null) out.add(`loop:${r.originPath}`);
    if (r.disk !== null) {
      out.add(`disk:${r.disk.name}`);
      out.add(`cowloop:${r.disk.cowPath}`);
    }
    if (r.cowPath !== null) out.add(`cow:${r.cowPath}`);
    if (r.network !== null) out.add(`network:${r.network.slot}`);
    if (r.vm !== null && !c.vmExited) out.add(`vm:${id}`);
    if (r.sandboxDir) out.add(`dir:${id}`);
    if (r.stagingDir !== null) out.add(`staging:${r.stagingDir}`);
    if (r.slot !== null) out.add(`slot:${r.slot}`);
  }
  return [...out].sort();
}

/**
 * Every resource on the host is one a live sandbox says it holds, and the
 * reverse; loop devices are the ones the contexts name, with one reference per
 * holder; nothing half-made (temp files, trash, template staging) is lying around.
 */
export async function assertHostMatches(rig: Rig, where: string): Promise<HostInventory> {
  const inv = await hostInventory(rig);
  assert.deepEqual(inv.holdings, contextHoldings(rig), `host differs from the sandboxes' state ${where}`);

  const holders = new Map<string, number>();
  for (const id of rig.sup.ids()) {
    const r = rig.sup.snapshotOf(id)!.context.res;
    if (r.loopDevice === null || r.originPath === null) continue;
    holders.set(r.originPath, (holders.get(r.originPath) ?? 0) + 1);
    const attached = inv.storage.loops.find((l) => l.readOnly && l.backingFile === r.originPath);
    assert.equal(attached?.device, r.loopDevice, `${id}'s origin loop ${where}`);
  }
  assert.deepEqual(new Map([...rig.sup.loops.held()].sort()), new Map([...holders].sort()), `loop refcounts ${where}`);

  assert.deepEqual(inv.storage.tempFiles, [], `half-written files ${where}`);
  assert.deepEqual(
    { trash: inv.files.trash, templateStaging: inv.files.templateStaging, unknown: inv.files.unknown },
    { trash: [], templateStaging: [], unknown: [] },
    `leftover dirs ${where}`,
  );
  // A slot's network is whole or absent: namespace, both veth ends, the host route.
  for (const slot of inv.network.slots) {
    const ns = `${rig.net.prefix}-ns-${slot}`;
    assert.ok(inv.network.namespaces.includes(ns), `slot ${slot} has no namespace ${where}`);
    assert.ok(inv.network.hostLinks.includes(`${rig.net.prefix}-v${slot}`), `slot ${slot} has no host veth ${where}`);
    const hostRoute = inv.network.hostRoutes.some((r) => r.dev === `${rig.net.prefix}-v${slot}` && !r.dst.includes('/'));
    assert.ok(hostRoute, `slot ${slot} has no route to its host IP ${where}`);
    const nat = inv.network.inNamespace[ns]?.natRules.filter((c) => c === `${rig.net.prefix}-slot-${slot}`).length;
    assert.equal(nat, 2, `slot ${slot} lacks its DNAT/SNAT pair ${where}`);
  }
  return inv;
}

/** After the last destroy: not one thing left, and only the templates on disk. */
export async function assertHostEmpty(rig: Rig, where: string): Promise<void> {
  const inv = await hostInventory(rig);
  assert.deepEqual(inv.holdings, [], `host holds things ${where}`);
  assert.deepEqual(inv.network.namespaces, [], `namespaces ${where}`);
  assert.deepEqual(inv.network.hostLinks, [], `links ${where}`);
  assert.deepEqual(inv.network.hostRoutes, [], `routes ${where}`);
  assert.deepEqual(inv.files.sandboxes, [], `sandbox dirs ${where}`);
}
