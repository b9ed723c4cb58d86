import type { CallOpts } from '../call.ts';
import type { SnapshotMeta } from './meta.ts';

/**
 * Files of sandboxes and snapshots under the data dir. Every path is built from
 * the data dir and validated ids, then checked to stay inside the data dir.
 * Layout: sandboxes/{id}/ (rootfs.cow; while paused also the pause snapshot),
 * staging sandboxes/{id}.staging-* and sandboxes/.stage-*, trash *.trash-*.
 */
export interface SnapshotFiles {
  /** sandboxes/{id} */
  sandboxDir(sandboxId: string): string;
  /** sandboxes/{id}/rootfs.cow */
  cowPath(sandboxId: string): string;
  makeSandboxDir(sandboxId: string, opts: CallOpts): Promise<void>;
  /** Removes the sandbox dir with its CoW and pause snapshot; a missing dir is not an error. */
  removeSandboxDir(sandboxId: string, opts: CallOpts): Promise<void>;
  /** A fresh, empty staging dir for this sandbox. */
  makeStaging(sandboxId: string, opts: CallOpts): Promise<string>;
  removeStaging(stagingDir: string, opts: CallOpts): Promise<void>;
  /** Punches all-zero pages out of the memory file(s) in `dir`; returns bytes freed. */
  punchZeroPages(dir: string, opts: CallOpts): Promise<number>;
  /** Writes snapshot.json atomically (temp name, then rename). */
  writeMeta(dir: string, meta: SnapshotMeta, opts: CallOpts): Promise<void>;
  readMeta(dir: string, opts: CallOpts): Promise<SnapshotMeta>;
  /** Moves the sandbox's CoW into the staging dir (pause step 5). */
  stageCow(sandboxId: string, stagingDir: string, opts: CallOpts): Promise<void>;
  /** Atomically makes `stagingDir` the sandbox's dir: old to trash, rename, restore old on failure, delete trash. */
  swapIn(stagingDir: string, sandboxId: string, opts: CallOpts): Promise<void>;
  /** Hardlinks (or sparse-copies across filesystems) the VMM memory snapshot files of `fromDir` into `toDir`. */
  linkMemoryFiles(fromDir: string, toDir: string, opts: CallOpts): Promise<void>;
  /**
   * Sandboxes whose dir holds a pause snapshot: what start-up brings back as
   * Paused. A snapshot.json that does not parse is reported with its error.
   */
  listPaused(opts: CallOpts): Promise<PausedOnDisk[]>;
  /** Removes staging and trash dirs left by a crash; returns what it removed. */
  cleanupOrphans(opts: CallOpts & { keep?: OrphanKeep }): Promise<string[]>;
}

export type PausedOnDisk = { sandboxId: string; meta: SnapshotMeta } | { sandboxId: string; error: string };

export interface TemplateInfo {
  teamId: string;
  templateId: string;
  dir: string;
  kind: 'base' | 'snapshot';
  rootfsPath: string;
  /** Present for snapshot templates. */
  meta: SnapshotMeta | null;
  /** Allocated bytes on disk. */
  sizeBytes: number;
}

/** Templates under images/teams/{teamId}/{templateId}/. Team "system" holds base templates every team may use. */
export interface TemplateStore {
  /** The team's own template, else a system one; not_found otherwise. */
  resolve(teamId: string, templateId: string, opts: CallOpts): Promise<TemplateInfo>;
  exists(teamId: string, templateId: string, opts: CallOpts): Promise<boolean>;
  list(teamId: string | null, opts: CallOpts): Promise<TemplateInfo[]>;
  /** Renames each file of `stagingDir` into the template dir, which must not exist yet; returns the template. */
  promote(stagingDir: string, teamId: string, templateId: string, opts: CallOpts): Promise<TemplateInfo>;
  /** Removes the dir and prunes an empty team dir. */
  remove(teamId: string, templateId: string, opts: CallOpts): Promise<void>;
  /** Registers a rootfs image on the host as a base template (copied sparsely). */
  importRootfs(teamId: string, templateId: string, rootfsPath: string, opts: CallOpts): Promise<TemplateInfo>;
}

export const SYSTEM_TEAM = 'system';

/** What the orphan cleanup must leave alone: what live sandboxes hold. */
export interface OrphanKeep {
  sandboxIds: ReadonlySet<string>;
  stagingDirs: ReadonlySet<string>;
}
