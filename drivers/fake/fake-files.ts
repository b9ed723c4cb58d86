import { SandboxdError } from '../../core/errors.ts';
import { assertSandboxId } from '../../core/ids.ts';
import type { CallOpts } from '../call.ts';
import type { OrphanKeep, PausedOnDisk, SnapshotFiles } from '../files/files.ts';
import { SNAPSHOT_META_FILE, SnapshotMetaSchema, type SnapshotMeta } from '../files/meta.ts';
import { COW_FILE } from './fs.ts';
import { type FakeHost, metaFile, PAGE, VMM_FILES } from './host.ts';
import { sandboxOfPath } from './ledger.ts';

/** The sandbox and snapshot files of the data dir, on the fake host's in-memory files. */
export class FakeFiles implements SnapshotFiles {
  readonly #host: FakeHost;

  constructor(host: FakeHost) {
    this.#host = host;
  }

  sandboxDir(sandboxId: string): string {
    return `${this.#host.root}/sandboxes/${assertSandboxId(sandboxId)}`;
  }

  cowPath(sandboxId: string): string {
    return `${this.sandboxDir(sandboxId)}/${COW_FILE}`;
  }

  async makeSandboxDir(sandboxId: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('files.makeSandboxDir', sandboxId, signal);
    this.#host.fs.mkdir(this.sandboxDir(sandboxId));
  }

  async removeSandboxDir(sandboxId: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('files.removeSandboxDir', sandboxId, signal);
    this.#host.fs.rmdir(this.sandboxDir(sandboxId));
  }

  async makeStaging(sandboxId: string, { signal }: CallOpts): Promise<string> {
    await this.#host.faults.gate('files.makeStaging', sandboxId, signal);
    const dir = `${this.sandboxDir(sandboxId)}.staging-${this.#host.nextStaging()}`;
    this.#host.fs.mkdir(dir);
    return dir;
  }

  async removeStaging(stagingDir: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('files.removeStaging', sandboxOfPath(stagingDir), signal);
    this.#checkStaging(stagingDir);
    this.#host.fs.rmdir(stagingDir);
  }

  async punchZeroPages(dir: string, { signal }: CallOpts): Promise<number> {
    await this.#host.faults.gate('files.punchZeroPages', sandboxOfPath(dir), signal);
    this.#requireDir(dir);
    const file = this.#host.fs.readFile(`${dir}/memory-ranges`);
    if (file === undefined) return 0;
    // One page per stored key stays; the rest of the image counts as zeros.
    const kept = Math.min(file.allocated, Math.max(1, file.memory?.size ?? 0) * PAGE);
    const freed = file.allocated - kept;
    file.allocated = kept;
    return freed;
  }

  async writeMeta(dir: string, meta: SnapshotMeta, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('files.writeMeta', sandboxOfPath(dir), signal);
    const parsed = SnapshotMetaSchema.safeParse(meta);
    if (!parsed.success) throw new SandboxdError('invalid_argument', `invalid snapshot meta: ${parsed.error.message}`);
    this.#requireDir(dir);
    this.#host.fs.writeFile(`${dir}/${SNAPSHOT_META_FILE}`, metaFile(parsed.data));
  }

  async readMeta(dir: string, { signal }: CallOpts): Promise<SnapshotMeta> {
    await this.#host.faults.gate('files.readMeta', sandboxOfPath(dir), signal);
    return readMetaFile(this.#host, dir);
  }

  async listPaused({ signal }: CallOpts): Promise<PausedOnDisk[]> {
    await this.#host.faults.gate('files.listPaused', undefined, signal);
    const out: PausedOnDisk[] = [];
    for (const sandboxId of [...this.#host.ledger.sandboxDirs].sort()) {
      const dir = this.sandboxDir(sandboxId);
      if (this.#host.fs.readFile(`${dir}/${SNAPSHOT_META_FILE}`) === undefined) continue;
      try {
        const meta = readMetaFile(this.#host, dir);
        if (meta.kind === 'pause') out.push({ sandboxId, meta });
      } catch (err) {
        out.push({ sandboxId, error: (err as Error).message });
      }
    }
    return out;
  }

  async stageCow(sandboxId: string, stagingDir: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('files.stageCow', sandboxId, signal);
    const cow = this.cowPath(sandboxId);
    this.#checkStaging(stagingDir, sandboxId);
    this.#requireDir(stagingDir);
    const staged = `${stagingDir}/${COW_FILE}`;
    if (this.#host.fs.readFile(cow) !== undefined) this.#host.fs.renameFile(cow, staged);
    else if (this.#host.fs.readFile(staged) === undefined) {
      throw new SandboxdError('operation_failed', `stageCow: ${cow} does not exist`);
    }
  }

  async swapIn(stagingDir: string, sandboxId: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('files.swapIn', sandboxId, signal);
    const dir = this.sandboxDir(sandboxId);
    this.#checkStaging(stagingDir, sandboxId);
    if (!this.#host.fs.hasDir(stagingDir)) {
      // Already swapped in by an earlier attempt.
      if (this.#host.fs.hasDir(dir)) return;
      throw new SandboxdError('operation_failed', `swapIn: ${stagingDir} does not exist`);
    }
    // The old generation (trash) goes only now, never in place.
    this.#host.fs.rmdir(dir);
    this.#host.fs.renameDir(stagingDir, dir);
  }

  async linkMemoryFiles(fromDir: string, toDir: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('files.linkMemoryFiles', sandboxOfPath(toDir) ?? sandboxOfPath(fromDir), signal);
    if (this.#host.readVmmConfig(fromDir) === undefined) {
      throw new SandboxdError('operation_failed', `${fromDir} does not hold a VMM snapshot`);
    }
    this.#requireDir(toDir);
    const fs = this.#host.fs;
    for (const name of VMM_FILES) {
      const source = fs.readFile(`${fromDir}/${name}`);
      const target = fs.readFile(`${toDir}/${name}`);
      if (target !== undefined && target !== source) throw new SandboxdError('operation_failed', `${toDir}/${name} exists`);
    }
    // A hardlink shares the inode: the same file object in both dirs.
    for (const name of VMM_FILES) {
      const source = fs.readFile(`${fromDir}/${name}`);
      if (source !== undefined) fs.writeFile(`${toDir}/${name}`, source);
    }
  }

  async cleanupOrphans({ signal, keep }: CallOpts & { keep?: OrphanKeep }): Promise<string[]> {
    await this.#host.faults.gate('files.cleanupOrphans', undefined, signal);
    const orphans = this.#host.fs
      .dirsUnder(`${this.#host.root}/sandboxes/`)
      .filter((d) => this.#host.fs.classify(d).kind === 'staging' && !(keep?.stagingDirs.has(d) ?? false))
      .sort();
    for (const dir of orphans) this.#host.fs.rmdir(dir);
    return orphans;
  }

  /** `dir` must be a staging dir of the data dir, and of `sandboxId` when it names one. */
  #checkStaging(dir: string, sandboxId?: string): void {
    if (this.#host.fs.classify(dir).kind !== 'staging') {
      throw new SandboxdError('invalid_argument', `not a staging dir of the data dir: ${dir}`);
    }
    const owner = sandboxOfPath(dir);
    if (sandboxId !== undefined && owner !== undefined && owner !== sandboxId) {
      throw new SandboxdError('invalid_argument', `staging dir ${dir} belongs to ${owner}, not ${sandboxId}`);
    }
  }

  #requireDir(dir: string): void {
    if (!this.#host.fs.hasDir(dir)) throw new SandboxdError('operation_failed', `${dir} does not exist`);
  }
}

/** Reads and validates snapshot.json; shared with the template store. */
export function readMetaFile(host: FakeHost, dir: string): SnapshotMeta {
  const file = host.fs.readFile(`${dir}/${SNAPSHOT_META_FILE}`);
  if (file === undefined) throw new SandboxdError('not_found', `${dir}/${SNAPSHOT_META_FILE} does not exist`);
  let raw: unknown;
  try {
    raw = JSON.parse(file.text ?? '');
  } catch (err) {
    throw new SandboxdError('operation_failed', `${dir}/${SNAPSHOT_META_FILE} is not JSON`, { cause: err });
  }
  const parsed = SnapshotMetaSchema.safeParse(raw);
  if (!parsed.success) {
    throw new SandboxdError('operation_failed', `${dir}/${SNAPSHOT_META_FILE} is invalid: ${parsed.error.message}`);
  }
  return parsed.data;
}
