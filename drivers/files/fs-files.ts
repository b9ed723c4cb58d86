import { lstat, mkdir, readdir, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SandboxdError } from '../../core/errors.ts';
import { type Logger, silentLogger } from '../../core/log.ts';
import type { CallOpts } from '../call.ts';
import type { OrphanKeep, PausedOnDisk, SnapshotFiles } from './files.ts';
import { checkAborted, fsFailure, type FsOps, fsyncDir, guard, isErrno, lstatOrNull, realFsOps } from './fs-ops.ts';
import { takeInventory } from './inventory.ts';
import { classifySandboxEntry, COW_FILE, DataLayout, MEMORY_FILES, ROOTFS_FILE, VMM_FILES } from './layout.ts';
import { readMetaIn, writeFileAtomic } from './meta-file.ts';
import { SNAPSHOT_META_FILE, type SnapshotMeta, SnapshotMetaSchema } from './meta.ts';
import { copySparse, tempBeside } from './sparse-copy.ts';
import { recoverSandboxDir, swapDir } from './swap.ts';
import { punchZeroPagesInFile } from './zero-pages.ts';

export interface FsFilesOptions {
  /** Absolute data dir (created on demand). */
  dataDir: string;
  /** Injected by tests to make one rename or link fail. */
  fs?: FsOps;
  log?: Logger;
}

/** Link errors after which a copy still works: another filesystem, or one without hardlinks. */
const LINK_FALLBACK = ['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP'];

/** SnapshotFiles on the host filesystem; see files.ts for the contract and layout.ts for the names. */
export class FsSnapshotFiles implements SnapshotFiles {
  readonly layout: DataLayout;
  readonly #fs: FsOps;
  readonly #log: Logger;

  constructor(opts: FsFilesOptions) {
    this.layout = new DataLayout(opts.dataDir);
    this.#fs = opts.fs ?? realFsOps;
    this.#log = opts.log ?? silentLogger;
  }

  sandboxDir(sandboxId: string): string {
    return this.layout.sandboxDir(sandboxId);
  }

  cowPath(sandboxId: string): string {
    return this.layout.cowPath(sandboxId);
  }

  async makeSandboxDir(sandboxId: string, { signal }: CallOpts): Promise<void> {
    const dir = this.sandboxDir(sandboxId);
    checkAborted(signal, 'files.makeSandboxDir');
    await guard('files.makeSandboxDir', dir, async () => {
      await mkdir(this.layout.sandboxesDir, { recursive: true, mode: 0o755 });
      await mkdirFresh(dir, true);
    });
  }

  /**
   * Removes the sandbox's staging dirs first, then its dir, each renamed to
   * trash before deletion: a crash never leaves a half-deleted generation under
   * a live name, and a staging dir never outlives its sandbox to be revived.
   */
  async removeSandboxDir(sandboxId: string, { signal }: CallOpts): Promise<void> {
    const step = 'files.removeSandboxDir';
    const dir = this.sandboxDir(sandboxId);
    checkAborted(signal, step);
    const leftovers = (await guard(step, this.layout.sandboxesDir, () => readdirOrEmpty(this.layout.sandboxesDir)))
      .filter((name) => {
        const e = classifySandboxEntry(name);
        return e !== null && e.kind !== 'sandbox' && e.sandboxId === sandboxId;
      })
      .map((name) => join(this.layout.sandboxesDir, name));
    for (const path of [...leftovers, dir]) {
      checkAborted(signal, step);
      if ((await guard(step, path, () => lstatOrNull(path))) === null) continue;
      const trash = this.layout.sandboxTrashDir(sandboxId);
      const target = classifySandboxEntry(basename(path))?.kind === 'trash' ? path : trash;
      if (target !== path) await guard(step, path, () => this.#fs.rename(path, target));
      await guard(step, target, () => this.#fs.rm(target, { recursive: true, force: true }));
    }
  }

  async makeStaging(sandboxId: string, { signal }: CallOpts): Promise<string> {
    return this.#makeStagingAt(this.layout.pauseStagingDir(sandboxId), signal);
  }

  /** Staging for a snapshot-to-template (`.stage-{id}-*`); not on the SnapshotFiles interface, either kind works for promote. */
  async makeTemplateStaging(sandboxId: string, { signal }: CallOpts): Promise<string> {
    return this.#makeStagingAt(this.layout.templateStagingDir(sandboxId), signal);
  }

  async #makeStagingAt(dir: string, signal: AbortSignal): Promise<string> {
    checkAborted(signal, 'files.makeStaging');
    await guard('files.makeStaging', dir, async () => {
      await mkdir(this.layout.sandboxesDir, { recursive: true, mode: 0o755 });
      await mkdirFresh(dir, false);
    });
    return dir;
  }

  async removeStaging(stagingDir: string, { signal }: CallOpts): Promise<void> {
    const { path } = this.layout.assertStagingDir(stagingDir);
    checkAborted(signal, 'files.removeStaging');
    await guard('files.removeStaging', path, () => this.#fs.rm(path, { recursive: true, force: true }));
  }

  async punchZeroPages(dir: string, opts: CallOpts): Promise<number> {
    const base = this.layout.inside(dir);
    let freed = 0;
    for (const name of MEMORY_FILES) {
      const file = join(base, name);
      if (!((await guard('files.punchZeroPages', file, () => lstatOrNull(file)))?.isFile() ?? false)) continue;
      freed += await punchZeroPagesInFile(file, opts);
    }
    return freed;
  }

  async writeMeta(dir: string, meta: SnapshotMeta, { signal }: CallOpts): Promise<void> {
    const step = 'files.writeMeta';
    const base = this.layout.inside(dir);
    const parsed = SnapshotMetaSchema.safeParse(meta);
    if (!parsed.success) throw new SandboxdError('invalid_argument', `invalid snapshot metadata: ${parsed.error.message}`);
    checkAborted(signal, step);
    await requireDir(step, base);
    await writeFileAtomic(step, join(base, SNAPSHOT_META_FILE), `${JSON.stringify(parsed.data, null, 2)}\n`, this.#fs);
  }

  async readMeta(dir: string, { signal }: CallOpts): Promise<SnapshotMeta> {
    return readMetaIn(this.layout.inside(dir), signal);
  }

  async listPaused({ signal }: CallOpts): Promise<PausedOnDisk[]> {
    const out: PausedOnDisk[] = [];
    for (const { sandboxId, dir } of (await takeInventory(this.layout, { signal })).sandboxes) {
      // A dir without metadata belongs to a sandbox that was not paused (a crash while running).
      if ((await lstatOrNull(join(dir, SNAPSHOT_META_FILE))) === null) continue;
      try {
        const meta = await readMetaIn(dir, signal);
        if (meta.kind === 'pause') out.push({ sandboxId, meta });
      } catch (err) {
        out.push({ sandboxId, error: (err as Error).message });
      }
    }
    return out;
  }

  async stageCow(sandboxId: string, stagingDir: string, { signal }: CallOpts): Promise<void> {
    const step = 'files.stageCow';
    const { path: staging } = this.layout.assertStagingDir(stagingDir, sandboxId);
    const from = this.cowPath(sandboxId);
    const to = join(staging, COW_FILE);
    checkAborted(signal, step);
    await requireDir(step, staging);
    if ((await guard(step, from, () => lstatOrNull(from))) === null) {
      if ((await guard(step, to, () => lstatOrNull(to)))?.isFile()) return; // an earlier attempt moved it
      throw new SandboxdError('operation_failed', `${step}: ${from} does not exist`, { step });
    }
    await guard(step, `${from} -> ${to}`, async () => {
      await this.#fs.rename(from, to);
      await fsyncDir(staging);
      await fsyncDir(dirname(from));
    });
  }

  /**
   * The staging dir must hold a pause snapshot.json: swapping in a generation
   * without one would lose the sandbox. A CoW still in the sandbox dir is carried over.
   */
  async swapIn(stagingDir: string, sandboxId: string, { signal }: CallOpts): Promise<void> {
    const step = 'files.swapIn';
    const { path: staging } = this.layout.assertStagingDir(stagingDir, sandboxId);
    const final = this.sandboxDir(sandboxId);
    checkAborted(signal, step);
    if ((await guard(step, staging, () => lstatOrNull(staging))) === null) {
      if ((await guard(step, final, () => lstatOrNull(final))) !== null) return; // swapped by an earlier attempt
      throw new SandboxdError('not_found', `${step}: neither ${staging} nor ${final} exists`, { step });
    }
    const meta = await this.readMeta(staging, { signal });
    if (meta.kind !== 'pause') {
      throw new SandboxdError('invalid_argument', `${step}: ${staging} holds ${meta.kind} metadata, not a pause snapshot`, { step });
    }
    checkAborted(signal, step);
    // The CoW is the sandbox's disk: a caller that skipped stageCow must not send it to trash with the old generation.
    const cow = this.cowPath(sandboxId);
    const staged = join(staging, COW_FILE);
    if ((await guard(step, cow, () => lstatOrNull(cow))) !== null && (await guard(step, staged, () => lstatOrNull(staged))) === null) {
      this.#log.warn({ sandboxId, staging }, 'swapIn: staging had no CoW; moving it over first');
      await this.stageCow(sandboxId, staging, { signal });
    }
    await swapDir(staging, final, this.layout.sandboxTrashDir(sandboxId), this.#fs, this.#log);
  }

  async linkMemoryFiles(fromDir: string, toDir: string, { signal }: CallOpts): Promise<void> {
    const step = 'files.linkMemoryFiles';
    const from = this.layout.inside(fromDir);
    const to = this.layout.inside(toDir);
    checkAborted(signal, step);
    await requireDir(step, to);
    const names = (await guard(step, from, () => readdir(from, { withFileTypes: true })))
      .filter((e) => e.isFile() && !e.name.startsWith('.') && ![COW_FILE, ROOTFS_FILE, SNAPSHOT_META_FILE].includes(e.name))
      .map((e) => e.name);
    const missing = VMM_FILES.filter((f) => !names.includes(f));
    if (missing.length > 0) {
      throw new SandboxdError('operation_failed', `${step}: ${from} does not hold a VMM snapshot (missing ${missing.join(', ')})`, { step });
    }
    for (const name of names.sort()) {
      checkAborted(signal, step);
      await this.#linkOrCopy(step, join(from, name), join(to, name), signal);
    }
    await guard(step, to, () => fsyncDir(to));
  }

  /**
   * Hardlink under a temp name, then rename (an existing link to the same inode
   * is kept); a sparse copy where linking cannot work.
   */
  async #linkOrCopy(step: string, src: string, dst: string, signal: AbortSignal): Promise<void> {
    const [s, d] = await guard(step, src, () => Promise.all([lstat(src), lstatOrNull(dst)]));
    if (d !== null && d.ino === s.ino && d.dev === s.dev) return;
    const tmp = tempBeside(dst);
    try {
      await this.#fs.link(src, tmp);
    } catch (err) {
      if (!isErrno(err, ...LINK_FALLBACK)) throw fsFailure(step, `link ${src} -> ${dst}`, err);
      await copySparse(src, dst, { signal });
      return;
    }
    try {
      await this.#fs.rename(tmp, dst);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw fsFailure(step, `${tmp} -> ${dst}`, err);
    }
  }

  /**
   * Start-up only, once reconciliation has settled every recorded sandbox:
   * repairs pauses of unrecorded sandboxes cut short inside their swap
   * (swap.ts), then removes every staging dir, trash dir and half-assembled
   * template that no live sandbox holds. Returns the removed paths.
   */
  async cleanupOrphans({ signal, keep }: CallOpts & { keep?: OrphanKeep }): Promise<string[]> {
    const step = 'files.cleanupOrphans';
    checkAborted(signal, step);
    const before = await guard(step, this.layout.root, () => takeInventory(this.layout, { signal }));
    const trashOwner = (path: string) =>
      dirname(path) === this.layout.sandboxesDir ? classifySandboxEntry(basename(path))?.sandboxId : undefined;
    // A live sandbox's staging and trash are its machine's business, not the repair's.
    const ids = new Set(
      [
        ...before.staging.filter((s) => s.kind === 'pause-staging').map((s) => s.sandboxId),
        ...before.trash.map(trashOwner).filter((id): id is string => id !== undefined),
      ].filter((id) => !(keep?.sandboxIds.has(id) ?? false)),
    );
    for (const id of ids) {
      checkAborted(signal, step);
      const stagings = before.staging.filter((s) => s.kind === 'pause-staging' && s.sandboxId === id).map((s) => s.dir);
      const trashes = before.trash.filter((t) => trashOwner(t) === id);
      await guard(step, id, () => recoverSandboxDir(this.layout, id, stagings, trashes, this.#fs, this.#log));
    }
    const after = await guard(step, this.layout.root, () => takeInventory(this.layout, { signal }));
    const removed: string[] = [];
    const held = (path: string) => keep?.stagingDirs.has(path) ?? false;
    for (const path of [...after.staging.map((s) => s.dir), ...after.trash, ...after.templateStaging].filter((p) => !held(p)).sort()) {
      checkAborted(signal, step);
      try {
        await this.#fs.rm(path, { recursive: true, force: true });
        removed.push(path);
        this.#log.info({ path }, 'removed orphan staging or trash dir');
      } catch (err) {
        this.#log.warn({ path, err: String(err) }, 'could not remove orphan dir');
      }
    }
    return removed;
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
}

/** mkdir that accepts an existing directory when `reuse`, and refuses anything else already at the path. */
async function mkdirFresh(dir: string, reuse: boolean): Promise<void> {
  try {
    await mkdir(dir, { mode: 0o700 });
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err;
    const st = await lstat(dir);
    if (!reuse || !st.isDirectory()) throw new SandboxdError('already_exists', `${dir} already exists`);
  }
}

async function requireDir(step: string, dir: string): Promise<void> {
  const st = await guard(step, dir, () => lstatOrNull(dir));
  if (st === null || !st.isDirectory()) throw new SandboxdError('not_found', `${step}: directory ${dir} does not exist`, { step });
}
