import type { CallOpts } from '../call.ts';

/** What the live sandboxes hold once start-up reconciliation has settled them. */
export interface Holdings {
  /** Every live sandbox. */
  sandboxes: ReadonlySet<string>;
  /** Sandboxes with a sandboxes/{id} dir. */
  sandboxDirs: ReadonlySet<string>;
  stagingDirs: ReadonlySet<string>;
  /** Sandboxes with a live VMM. */
  vms: ReadonlySet<string>;
  /** The VMMs' working dirs still in use (a template's recorded dir may be shared). */
  vmDirs: ReadonlySet<string>;
  /** Disk device names. */
  disks: ReadonlySet<string>;
  cows: ReadonlySet<string>;
  /** The CoW files under an attached disk (the dm backend keeps a loop on each). */
  diskCows: ReadonlySet<string>;
  /** Template images with a loop device held. */
  origins: ReadonlySet<string>;
  /** Slots with a network. */
  networks: ReadonlySet<number>;
}

/** What a sweep removed, by kind ("vmm", "disk", "loop", "network", "staging", "sandbox-dir" …). */
export type Swept = Record<string, string[]>;

/**
 * The last step of start-up reconciliation: takes the host inventory under the
 * agent's prefixes and dirs and removes whatever no live sandbox holds, so
 * that afterwards the host holds exactly what the records say.
 */
export interface HostSweeper {
  sweep(keep: Holdings, opts: CallOpts): Promise<Swept>;
}
