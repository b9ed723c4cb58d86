import type { LedgerRow } from '../drivers/store/store.ts';
import type { SandboxContext } from '../machines/sandbox/context.ts';
import type { StepName } from '../machines/sandbox/steps.ts';

/** Host names the ledger needs that only the drivers know. */
export interface ResourceNames {
  disk(sandboxId: string): string;
  cow(sandboxId: string): string;
}

/**
 * The sandbox's rows of the resource ledger, derived from its context and the
 * step it is in: what it holds is `present`; what the step in flight may be
 * making is `intended`, what it is undoing `releasing`. The store writes them
 * with the record, in one transaction, before the step acts; rows the sandbox
 * no longer has are marked `released`.
 */
export function ledgerRows(c: SandboxContext, step: string, names: ResourceNames): LedgerRow[] {
  const r = c.res;
  const rows: LedgerRow[] = [];
  if (r.vm !== null) rows.push({ kind: 'vmm', name: c.id, state: 'present' });
  if (r.disk !== null) rows.push({ kind: 'disk', name: r.disk.name, state: 'present' });
  if (r.cowPath !== null) rows.push({ kind: 'cow', name: r.cowPath, state: 'present' });
  if (r.loopDevice !== null && r.originPath !== null) rows.push({ kind: 'loop_ref', name: loopRef(c.id, r.originPath), state: 'present' });
  if (r.network !== null) rows.push({ kind: 'network', name: `slot-${r.network.slot}`, state: 'present' });
  if (r.slot !== null) rows.push({ kind: 'slot', name: String(r.slot), state: 'present' });
  if (r.sandboxDir) rows.push({ kind: 'sandbox_dir', name: c.id, state: 'present' });
  if (r.stagingDir !== null) rows.push({ kind: 'staging', name: r.stagingDir, state: 'present' });

  // Called on every transition: a switch over the steps in flight, no tables or closures made per call.
  for (const leaf of stepsInFlight(step)) {
    switch (leaf) {
      case 'stopVm':
        releasing(rows, 'vmm');
        break;
      case 'removeNetwork':
        releasing(rows, 'network');
        break;
      case 'releaseSlot':
        releasing(rows, 'slot');
        break;
      case 'removeDisk':
        releasing(rows, 'disk');
        break;
      case 'discardCow':
        releasing(rows, 'cow');
        break;
      case 'releaseLoop':
        releasing(rows, 'loop_ref');
        break;
      case 'removeSandboxDir':
        releasing(rows, 'sandbox_dir');
        break;
      case 'removeStaging':
      case 'swapIn':
        releasing(rows, 'staging');
        break;
      case 'acquireLoop':
        if (r.originPath !== null) intended(rows, 'loop_ref', loopRef(c.id, r.originPath));
        break;
      case 'makeSandboxDir':
        intended(rows, 'sandbox_dir', c.id);
        break;
      case 'createDisk':
        intended(rows, 'disk', names.disk(c.id));
        intended(rows, 'cow', r.cowPath ?? names.cow(c.id));
        break;
      case 'attachDisk':
        intended(rows, 'disk', names.disk(c.id));
        break;
      case 'createNetwork':
        if (r.slot !== null) intended(rows, 'network', `slot-${r.slot}`);
        break;
      case 'bootVm':
      case 'restoreVm':
        intended(rows, 'vmm', c.id);
        break;
      case 'stageCow':
        if (r.stagingDir !== null) intended(rows, 'cow', `${r.stagingDir}/rootfs.cow`);
        break;
      default:
    }
  }
  return rows;
}

/**
 * The step names in a step string ("creating.provision.disk.acquireLoop+…"),
 * split once per string: the machine has a bounded set of configurations.
 */
const leaves = new Map<string, StepName[]>();
function stepsInFlight(step: string): StepName[] {
  let names = leaves.get(step);
  if (names === undefined) {
    names = step.split('+').map((leaf) => leaf.slice(leaf.lastIndexOf('.') + 1) as StepName);
    leaves.set(step, names);
  }
  return names;
}

function releasing(rows: LedgerRow[], kind: string): void {
  const row = rows.find((x) => x.kind === kind && x.state === 'present');
  if (row !== undefined) row.state = 'releasing';
}

function intended(rows: LedgerRow[], kind: string, name: string): void {
  if (!rows.some((x) => x.kind === kind && x.name === name)) rows.push({ kind, name, state: 'intended' });
}

/** Loop devices are shared: each holder has its own reference row, named by this. */
function loopRef(sandboxId: string, originPath: string): string {
  return `${originPath}#${sandboxId}`;
}
