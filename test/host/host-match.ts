// The real-host counterpart of test/support/harness.ts's assertLedgerMatches:
// what every sandbox's context says it holds, compared with what the host
// inventories find (loop devices by backing file, dm devices of the stand-in,
// namespaces and links under the test prefix, VMM processes, sandbox and
// staging dirs, slots). The crash tests compare against the records a killed
// agent left in its database instead (assertHostMatchesRecords).
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import type { SandboxContext } from '../../machines/sandbox/context.ts';
import type { FsSnapshotFiles } from '../../drivers/files/fs-files.ts';
import type { DmDiskDriver } from '../../drivers/storage/dm-disk.ts';
import type { LosetupLoopDriver } from '../../drivers/storage/losetup-loop.ts';
import type { SandboxRecord } from '../../drivers/store/store.ts';
import { takeInventory, type Inventory } from '../../drivers/files/inventory.ts';
import { listNetworkInventory, type NetworkInventory } from '../../drivers/network/inventory.ts';
import { listStorage, type StorageInventory } from '../../drivers/storage/inventory.ts';
import { opts, vmmProcesses, type Rig } from './rig.ts';

export interface HostInventory {
  storage: StorageInventory;
  network: NetworkInventory;
  files: Inventory;
  vmms: Map<string, number>;
  /** Sandbox ids with a pidfile or API socket in the run dir. */
  runFiles: string[];
  /** Everything above as owned resources, one string per thing. */
  holdings: string[];
}

/** The host objects of one agent, whether it runs in this process or not. */
export interface HostSide {
  dataDir: string;
  runDir: string;
  net: { prefix: string };
  loops: LosetupLoopDriver;
  dm: DmDiskDriver;
  files: FsSnapshotFiles;
}

/** The host inventory without the agent's in-memory slots. */
export async function hostObjects(h: HostSide): Promise<HostInventory> {
  const storage = await listStorage({ dataDir: h.dataDir, loops: h.loops, dm: h.dm }, opts());
  const network = await listNetworkInventory(h.net.prefix, opts());
  const files = await takeInventory(h.files.layout, opts());
  const vmms = vmmProcesses(h.runDir);
  const runFiles = [...new Set(readdirSync(h.runDir).flatMap((n) => /^(sb-.+)\.(?:pid|sock)$/.exec(n)?.[1] ?? []))].sort();
  const holdings = [
    ...storage.loops.map((l) => (l.readOnly ? `loop:${l.backingFile}` : `cowloop:${l.backingFile}`)),
    ...(storage.dmDevices ?? [`dm-unreadable:${storage.dmError}`]).map((d) => `disk:${d}`),
    ...storage.cowFiles.map((c) => `cow:${c}`),
    ...network.slots.map((s) => `network:${s}`),
    ...[...vmms.keys()].map((id) => `vm:${id}`),
    ...files.sandboxes.map((s) => `dir:${s.sandboxId}`),
    ...files.staging.map((s) => `staging:${s.dir}`),
  ];
  return { storage, network, files, vmms, runFiles, holdings: holdings.sort() };
}

export async function hostInventory(rig: Rig): Promise<HostInventory> {
  const inv = await hostObjects(rig);
  const slots = [...rig.sup.slots.held().keys()].map((s) => `slot:${s}`);
  return { ...inv, holdings: [...inv.holdings, ...slots].sort() };
}

function contextHoldings(rig: Rig): string[] {
  return holdingsOf(rig.sup.ids().map((id) => rig.sup.snapshotOf(id)!.context), true);
}

/** What the given sandbox contexts say they hold, as hostObjects names it (slots only when asked). */
function holdingsOf(contexts: SandboxContext[], withSlots: boolean): string[] {
  const out = new Set<string>();
  for (const c of contexts) {
    const id = c.id;
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
    if (withSlots && r.slot !== null) out.add(`slot:${r.slot}`);
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
  assertNothingHalfMade(inv, rig.net.prefix, where);
  return inv;
}

/** Nothing half-made lies around, and each slot's network is whole. */
function assertNothingHalfMade(inv: HostInventory, prefix: string, where: string): void {
  assert.deepEqual(inv.storage.tempFiles, [], `half-written files ${where}`);
  assert.deepEqual(
    { trash: inv.files.trash, templateStaging: inv.files.templateStaging, unknown: inv.files.unknown },
    { trash: [], templateStaging: [], unknown: [] },
    `leftover dirs ${where}`,
  );
  // A slot's network is whole or absent: namespace, both veth ends, the host route.
  for (const slot of inv.network.slots) {
    const ns = `${prefix}-ns-${slot}`;
    assert.ok(inv.network.namespaces.includes(ns), `slot ${slot} has no namespace ${where}`);
    assert.ok(inv.network.hostLinks.includes(`${prefix}-v${slot}`), `slot ${slot} has no host veth ${where}`);
    const hostRoute = inv.network.hostRoutes.some((r) => r.dev === `${prefix}-v${slot}` && !r.dst.includes('/'));
    assert.ok(hostRoute, `slot ${slot} has no route to its host IP ${where}`);
    const nat = inv.network.inNamespace[ns]?.natRules.filter((c) => c === `${prefix}-slot-${slot}`).length;
    assert.equal(nat, 2, `slot ${slot} lacks its DNAT/SNAT pair ${where}`);
  }
}

/**
 * After the agent died: the host holds exactly what its records say, each
 * record's slot is its network's, each origin image has one loop, and the run
 * dir has a pidfile or socket only for a sandbox with a live VMM.
 */
export async function assertHostMatchesRecords(h: HostSide, records: SandboxRecord[], where: string): Promise<HostInventory> {
  const contexts = records.map((r) => r.machine.context as unknown as SandboxContext);
  const inv = await hostObjects(h);
  assert.deepEqual(inv.holdings, holdingsOf(contexts, false), `host differs from the records ${where}`);
  for (const c of contexts) {
    if (c.res.network !== null) assert.equal(c.res.network.slot, c.res.slot, `${c.id}'s network is in its slot ${where}`);
  }
  const origins = inv.storage.loops.filter((l) => l.readOnly).map((l) => l.backingFile);
  assert.deepEqual(origins, [...new Set(origins)], `one loop per origin image ${where}`);
  const vms = contexts.filter((c) => c.res.vm !== null && !c.vmExited).map((c) => c.id).sort();
  assert.deepEqual(inv.runFiles, vms, `VMM pidfiles and sockets ${where}`);
  assertNothingHalfMade(inv, h.net.prefix, where);
  return inv;
}

/** After the last destroy: not one thing left, and only the templates on disk. */
export async function assertHostEmpty(rig: Rig | HostSide, where: string): Promise<void> {
  const inv = 'sup' in rig ? await hostInventory(rig) : await hostObjects(rig);
  assert.deepEqual(inv.holdings, [], `host holds things ${where}`);
  assert.deepEqual(inv.network.namespaces, [], `namespaces ${where}`);
  assert.deepEqual(inv.network.hostLinks, [], `links ${where}`);
  assert.deepEqual(inv.network.hostRoutes, [], `routes ${where}`);
  assert.deepEqual(inv.files.sandboxes, [], `sandbox dirs ${where}`);
  assert.deepEqual(inv.runFiles, [], `VMM pidfiles and sockets ${where}`);
}
