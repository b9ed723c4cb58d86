import type { DiskHandle } from '../storage/storage.ts';
import type { VmState } from '../vmm/vmm.ts';

/**
 * What the fake host holds right now. The fakes write it only after a call
 * succeeded; tests compare it with what the runtime believes it holds.
 */
export interface LedgerSnapshot {
  loops: Array<{ device: string; imagePath: string }>;
  disks: DiskHandle[];
  cows: string[];
  networks: number[];
  vms: Array<{ sandboxId: string; pid: number; state: VmState }>;
  sandboxDirs: string[];
  stagingDirs: string[];
  /** "team/template" */
  templates: string[];
}

export interface HeldBySandbox {
  disks: DiskHandle[];
  cows: string[];
  vm: { pid: number; state: VmState } | null;
  sandboxDir: boolean;
  stagingDirs: string[];
}

export interface LedgerVm {
  pid: number;
  state: VmState;
}

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The sandbox a path under `.../sandboxes/` belongs to: the segment after the
 * last "sandboxes" with any ".staging-*" / ".trash-*" suffix cut off.
 */
export function sandboxOfPath(path: string): string | undefined {
  const at = path.lastIndexOf('/sandboxes/');
  if (at < 0) return undefined;
  const rest = path.slice(at + '/sandboxes/'.length);
  const slash = rest.indexOf('/');
  const segment = slash < 0 ? rest : rest.slice(0, slash);
  const dot = segment.indexOf('.');
  const id = dot < 0 ? segment : segment.slice(0, dot);
  return id.length > 0 ? id : undefined;
}

export class Ledger {
  /** device → attached image */
  readonly loops = new Map<string, { imagePath: string }>();
  /** dm name → handle */
  readonly disks = new Map<string, DiskHandle>();
  /** CoW files that exist */
  readonly cows = new Set<string>();
  /** network slots that exist */
  readonly networks = new Set<number>();
  /** live VMM processes by sandbox id */
  readonly vms = new Map<string, LedgerVm>();
  /** sandbox ids whose dir exists */
  readonly sandboxDirs = new Set<string>();
  /** staging (and trash) dir paths that exist */
  readonly stagingDirs = new Set<string>();
  /** "team/template" dirs that exist */
  readonly templates = new Set<string>();

  /** A plain, sorted copy: two ledgers holding the same things are deep-equal. */
  snapshot(): LedgerSnapshot {
    return {
      loops: [...this.loops]
        .map(([device, v]) => ({ device, imagePath: v.imagePath }))
        .sort((a, b) => byString(a.device, b.device)),
      disks: [...this.disks.values()]
        .map((d) => ({ name: d.name, devicePath: d.devicePath, cowPath: d.cowPath }))
        .sort((a, b) => byString(a.name, b.name)),
      cows: [...this.cows].sort(byString),
      networks: [...this.networks].sort((a, b) => a - b),
      vms: [...this.vms]
        .map(([sandboxId, v]) => ({ sandboxId, pid: v.pid, state: v.state }))
        .sort((a, b) => byString(a.sandboxId, b.sandboxId)),
      sandboxDirs: [...this.sandboxDirs].sort(byString),
      stagingDirs: [...this.stagingDirs].sort(byString),
      templates: [...this.templates].sort(byString),
    };
  }

  /** Nothing held besides templates. */
  isEmpty(): boolean {
    return (
      this.loops.size === 0 &&
      this.disks.size === 0 &&
      this.cows.size === 0 &&
      this.networks.size === 0 &&
      this.vms.size === 0 &&
      this.sandboxDirs.size === 0 &&
      this.stagingDirs.size === 0
    );
  }

  /**
   * What one sandbox holds. Loops are shared per template and networks are
   * keyed by slot only (the runtime's slot allocator knows slot → sandbox), so
   * neither appears here. Disks are attributed through their CoW path.
   */
  heldBy(sandboxId: string): HeldBySandbox {
    const vm = this.vms.get(sandboxId);
    // O(held things): the cheap substring test skips most before the path is parsed.
    const owned = (path: string): boolean => path.includes(sandboxId) && sandboxOfPath(path) === sandboxId;
    return {
      disks: [...this.disks.values()]
        .filter((d) => owned(d.cowPath))
        .map((d) => ({ ...d }))
        .sort((a, b) => byString(a.name, b.name)),
      cows: [...this.cows].filter(owned).sort(byString),
      vm: vm === undefined ? null : { pid: vm.pid, state: vm.state },
      sandboxDir: this.sandboxDirs.has(sandboxId),
      stagingDirs: [...this.stagingDirs].filter(owned).sort(byString),
    };
  }

  /**
   * Contradictions no real host could be in, or that mark a leak in progress:
   * a disk whose CoW is gone, a disk over a loop that is detached. Empty when sound.
   */
  problems(diskOrigins: ReadonlyMap<string, string>): string[] {
    const out: string[] = [];
    for (const disk of this.disks.values()) {
      if (!this.cows.has(disk.cowPath)) out.push(`disk ${disk.name}: its CoW ${disk.cowPath} is gone`);
      const origin = diskOrigins.get(disk.name);
      if (origin !== undefined && !this.loops.has(origin)) out.push(`disk ${disk.name}: origin ${origin} is detached`);
    }
    return out;
  }
}
