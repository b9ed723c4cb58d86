import type { LedgerRow } from '../drivers/store/store.ts';
import type { SandboxContext } from '../machines/sandbox/context.ts';
import type { StepName } from '../machines/sandbox/steps.ts';

/** Host names the ledger needs that only the drivers know. */
export interface ResourceNames {
  disk(sandboxId: string): string;
  cow(sandboxId: string): string;
}

type Key = Omit<LedgerRow, 'state'>;

/**
 * The sandbox's rows of the resource ledger, derived from its context and the
 * step it is in: what it holds is `present`; what the step in flight may be
 * making is `intended`, what it is undoing `releasing`. The store writes them
 * with the record, in one transaction, before the step acts; rows the sandbox
 * no longer has are marked `released`.
 */
export function ledgerRows(c: SandboxContext, step: string, names: ResourceNames): LedgerRow[] {
  const r = c.res;
  const rows = new Map<string, LedgerRow>();
  const put = (key: Key | null, state: LedgerRow['state']) => {
    if (key !== null) rows.set(`${key.kind}\0${key.name}`, { ...key, state });
  };
  const held = {
    vmm: r.vm === null ? null : { kind: 'vmm', name: c.id },
    disk: r.disk === null ? null : { kind: 'disk', name: r.disk.name },
    cow: r.cowPath === null ? null : { kind: 'cow', name: r.cowPath },
    loop: r.loopDevice === null || r.originPath === null ? null : loopRef(c.id, r.originPath),
    network: r.network === null ? null : { kind: 'network', name: `slot-${r.network.slot}` },
    slot: r.slot === null ? null : { kind: 'slot', name: String(r.slot) },
    dir: r.sandboxDir ? { kind: 'sandbox_dir', name: c.id } : null,
    staging: r.stagingDir === null ? null : { kind: 'staging', name: r.stagingDir },
  };
  for (const key of Object.values(held)) put(key, 'present');

  const releases: Partial<Record<StepName, Key | null>> = {
    stopVm: held.vmm,
    removeNetwork: held.network,
    releaseSlot: held.slot,
    removeDisk: held.disk,
    discardCow: held.cow,
    releaseLoop: held.loop,
    removeSandboxDir: held.dir,
    removeStaging: held.staging,
    swapIn: held.staging,
  };
  const cowPath = r.cowPath ?? names.cow(c.id);
  const acquires: Partial<Record<StepName, Key[]>> = {
    acquireLoop: r.originPath === null ? [] : [loopRef(c.id, r.originPath)],
    makeSandboxDir: [{ kind: 'sandbox_dir', name: c.id }],
    createDisk: [{ kind: 'disk', name: names.disk(c.id) }, { kind: 'cow', name: cowPath }],
    attachDisk: [{ kind: 'disk', name: names.disk(c.id) }],
    createNetwork: r.slot === null ? [] : [{ kind: 'network', name: `slot-${r.slot}` }],
    bootVm: [{ kind: 'vmm', name: c.id }],
    restoreVm: [{ kind: 'vmm', name: c.id }],
    stageCow: r.stagingDir === null ? [] : [{ kind: 'cow', name: `${r.stagingDir}/rootfs.cow` }],
  };
  for (const leaf of step.split('+')) {
    const name = leaf.slice(leaf.lastIndexOf('.') + 1) as StepName;
    put(releases[name] ?? null, 'releasing');
    for (const key of acquires[name] ?? []) if (!rows.has(`${key.kind}\0${key.name}`)) put(key, 'intended');
  }
  return [...rows.values()];
}

/** Loop devices are shared: each holder has its own reference row. */
function loopRef(sandboxId: string, originPath: string): Key {
  return { kind: 'loop_ref', name: `${originPath}#${sandboxId}` };
}
