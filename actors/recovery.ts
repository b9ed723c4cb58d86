import type { SnapshotMeta } from '../drivers/files/meta.ts';
import { initialContext, noResources, type SandboxContext, type SandboxInput } from '../machines/sandbox/context.ts';
import { sandboxMachine } from '../machines/sandbox/machine.ts';
import type { SandboxSnapshot } from './view.ts';

/**
 * A sandbox paused on disk, as the machine snapshot it restarts from: Paused,
 * holding its pause dir, CoW and slot, nothing else. Entry actions do not run
 * for a restored snapshot, so nothing is replied or started.
 */
export function pausedFromDisk(
  id: string,
  meta: SnapshotMeta,
  defaults: { diskSizeMB: number; cowPath: string },
): { input: SandboxInput; snapshot: SandboxSnapshot } {
  const input: SandboxInput = {
    id,
    teamId: meta.teamId,
    templateId: meta.templateId,
    vcpus: meta.vcpus,
    memoryMB: meta.memoryMB,
    diskSizeMB: meta.diskSizeMB ?? defaults.diskSizeMB,
    timeoutSec: meta.timeoutSec,
    opId: '',
    now: Date.now(),
  };
  const context: SandboxContext = {
    ...initialContext(input),
    op: null,
    pauseMeta: meta,
    vmSandboxDir: meta.sandboxDir,
    res: {
      ...noResources,
      originPath: meta.baseTemplatePath,
      sandboxDir: true,
      cowPath: meta.cowPath ?? defaults.cowPath,
      slot: meta.slot ?? null,
    },
  };
  return { input, snapshot: sandboxMachine.resolveState({ value: 'paused', context }) };
}
