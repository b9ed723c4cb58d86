import { mkdir, readdir, rmdir, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { SandboxdError } from '../../core/errors.ts';
import { assertNameId } from '../../core/ids.ts';
import { type Logger, silentLogger } from '../../core/log.ts';
import type { CallOpts } from '../call.ts';
import { SYSTEM_TEAM, type TemplateInfo, type TemplateStore } from './files.ts';
import { readMetaIn } from './meta-file.ts';
import { allocatedBytes, checkAborted, fsFailure, type FsOps, fsyncDir, guard, isErrno, lstatOrNull, realFsOps } from './fs-ops.ts';
import { inspectTemplateDir, listTemplates } from './inventory.ts';
import { DataLayout, ROOTFS_FILE } from './layout.ts';
import { copySparse } from './sparse-copy.ts';

export interface FsTemplatesOptions {
  dataDir: string;
  fs?: FsOps;
  log?: Logger;
}

/**
 * Templates on the host filesystem: images/teams/{team}/{template}/.
 *
 * A template dir only ever appears whole: promote and import assemble the
 * files in a hidden sibling (`.{template}.stage-*`, never a valid template id)
 * and one directory rename publishes it. A crash leaves only the hidden dir,
 * which the start-up orphan cleanup removes; the operation is then simply lost.
 * A template dir that is nevertheless incomplete (written by hand or by an
 * older agent) is never repaired or overwritten: resolve refuses it, list
 * skips it, promote still answers already_exists, and remove deletes it.
 *
 * `list(team)` lists that team's own templates only; `list(null)` all teams.
 */
export class FsTemplateStore implements TemplateStore {
  readonly layout: DataLayout;
  readonly #fs: FsOps;
  readonly #log: Logger;

  constructor(opts: FsTemplatesOptions) {
    this.layout = new DataLayout(opts.dataDir);
    this.#fs = opts.fs ?? realFsOps;
    this.#log = opts.log ?? silentLogger;
  }

  async resolve(teamId: string, templateId: string, { signal }: CallOpts): Promise<TemplateInfo> {
    assertNameId('team', teamId);
    assertNameId('template', templateId);
    for (const team of teamId === SYSTEM_TEAM ? [teamId] : [teamId, SYSTEM_TEAM]) {
      checkAborted(signal, 'templates.resolve');
      const dir = this.layout.templateDir(team, templateId);
      if ((await guard('templates.resolve', dir, () => lstatOrNull(dir)))?.isDirectory()) return this.#info(team, templateId, signal);
    }
    throw new SandboxdError('not_found', `template ${templateId} not found for team ${teamId}`);
  }

  /** Whether the team's own template dir exists, complete or not (what promote would refuse). */
  async exists(teamId: string, templateId: string, { signal }: CallOpts): Promise<boolean> {
    const dir = this.layout.templateDir(teamId, templateId);
    checkAborted(signal, 'templates.exists');
    return (await guard('templates.exists', dir, () => lstatOrNull(dir))) !== null;
  }

  async list(teamId: string | null, { signal }: CallOpts): Promise<TemplateInfo[]> {
    if (teamId !== null) assertNameId('team', teamId);
    const entries = await guard('templates.list', this.layout.teamsDir, () => listTemplates(this.layout, teamId, { signal }));
    const out: TemplateInfo[] = [];
    for (const entry of entries) {
      if (entry.state === 'incomplete') {
        this.#log.warn({ dir: entry.dir, missing: entry.missing }, 'skipping incomplete template dir');
        continue;
      }
      out.push(await this.#info(entry.teamId, entry.templateId, signal));
    }
    return out;
  }

  async promote(stagingDir: string, teamId: string, templateId: string, { signal }: CallOpts): Promise<TemplateInfo> {
    const step = 'templates.promote';
    const final = this.layout.templateDir(teamId, templateId);
    const { path: staging } = this.layout.assertStagingDir(stagingDir);
    checkAborted(signal, step);
    if ((await guard(step, final, () => lstatOrNull(final))) !== null) {
      throw new SandboxdError('already_exists', `template ${teamId}/${templateId} already exists`, { step });
    }
    const names = await this.#checkStaging(step, staging, signal);
    const teamDir = this.layout.teamDir(teamId);
    const hidden = this.layout.templateStageDir(teamId, templateId);
    await guard(step, hidden, async () => {
      await mkdir(teamDir, { recursive: true, mode: 0o755 });
      await mkdir(hidden, { mode: 0o755 });
    });
    const moved: string[] = [];
    try {
      for (const name of names) {
        checkAborted(signal, step);
        await guard(step, join(staging, name), () => this.#fs.rename(join(staging, name), join(hidden, name)));
        moved.push(name);
      }
      await this.#publish(step, hidden, final, teamId, templateId);
    } catch (err) {
      // Give the files back so the caller's staging is as it was, then drop the hidden dir.
      for (const name of moved.reverse()) await this.#fs.rename(join(hidden, name), join(staging, name)).catch(() => undefined);
      await this.#fs.rm(hidden, { recursive: true, force: true }).catch(() => undefined);
      await pruneEmptyDir(teamDir);
      throw err;
    }
    await this.#fs.rm(staging, { recursive: true, force: true }).catch((err: unknown) => {
      this.#log.warn({ staging, err: String(err) }, 'promote: staging dir left for the orphan cleanup');
    });
    return this.#info(teamId, templateId, signal);
  }

  async remove(teamId: string, templateId: string, { signal }: CallOpts): Promise<void> {
    const step = 'templates.remove';
    const dir = this.layout.templateDir(teamId, templateId);
    checkAborted(signal, step);
    if ((await guard(step, dir, () => lstatOrNull(dir))) !== null) {
      // Renamed away first: a crash mid-delete leaves trash, not a half template under its name.
      const trash = this.layout.templateTrashDir(teamId, templateId);
      await guard(step, dir, () => this.#fs.rename(dir, trash));
      await guard(step, trash, () => this.#fs.rm(trash, { recursive: true, force: true }));
    }
    await pruneEmptyDir(this.layout.teamDir(teamId));
  }

  async importRootfs(teamId: string, templateId: string, rootfsPath: string, { signal }: CallOpts): Promise<TemplateInfo> {
    const step = 'templates.importRootfs';
    const final = this.layout.templateDir(teamId, templateId);
    if (typeof rootfsPath !== 'string' || !isAbsolute(rootfsPath)) {
      throw new SandboxdError('invalid_argument', `rootfs path must be absolute: ${JSON.stringify(rootfsPath)}`);
    }
    checkAborted(signal, step);
    const src = await guard(step, rootfsPath, () => stat(rootfsPath));
    if (!src.isFile()) throw new SandboxdError('invalid_argument', `${rootfsPath} is not a regular file`, { step });
    if ((await guard(step, final, () => lstatOrNull(final))) !== null) {
      throw new SandboxdError('already_exists', `template ${teamId}/${templateId} already exists`, { step });
    }
    const teamDir = this.layout.teamDir(teamId);
    const hidden = this.layout.templateStageDir(teamId, templateId);
    try {
      await guard(step, hidden, async () => {
        await mkdir(teamDir, { recursive: true, mode: 0o755 });
        await mkdir(hidden, { mode: 0o755 });
      });
      await copySparse(rootfsPath, join(hidden, ROOTFS_FILE), { signal });
      await this.#publish(step, hidden, final, teamId, templateId);
    } catch (err) {
      await this.#fs.rm(hidden, { recursive: true, force: true }).catch(() => undefined);
      await pruneEmptyDir(teamDir);
      throw err;
    }
    return this.#info(teamId, templateId, signal);
  }

  /** The staging must hold a whole template: rootfs.ext4, and for a snapshot its metadata and VMM files. */
  async #checkStaging(step: string, staging: string, signal: AbortSignal): Promise<string[]> {
    const entries = await guard(step, staging, () => readdir(staging, { withFileTypes: true }));
    const { state, missing } = await inspectTemplateDir(staging);
    if (state === 'incomplete') {
      throw new SandboxdError('invalid_argument', `${step}: ${staging} is not a whole template (missing ${missing.join(', ')})`, { step });
    }
    if (state === 'snapshot') await readMetaIn(staging, signal);
    // Temp files (dot names) and anything but regular files stay behind.
    return entries.filter((e) => e.isFile() && !e.name.startsWith('.')).map((e) => e.name).sort();
  }

  /** One rename makes the template visible; a dir that appeared meanwhile is not overwritten. */
  async #publish(step: string, hidden: string, final: string, teamId: string, templateId: string): Promise<void> {
    await guard(step, hidden, () => fsyncDir(hidden));
    if ((await guard(step, final, () => lstatOrNull(final))) !== null) {
      throw new SandboxdError('already_exists', `template ${teamId}/${templateId} already exists`, { step });
    }
    try {
      await this.#fs.rename(hidden, final);
    } catch (err) {
      if (isErrno(err, 'ENOTEMPTY', 'EEXIST')) {
        throw new SandboxdError('already_exists', `template ${teamId}/${templateId} already exists`, { step, cause: err });
      }
      throw fsFailure(step, `${hidden} -> ${final}`, err);
    }
    await guard(step, this.layout.teamDir(teamId), () => fsyncDir(this.layout.teamDir(teamId)));
  }

  async #info(teamId: string, templateId: string, signal: AbortSignal): Promise<TemplateInfo> {
    const dir = this.layout.templateDir(teamId, templateId);
    const { state, missing } = await guard('templates.resolve', dir, () => inspectTemplateDir(dir));
    if (state === 'incomplete') {
      throw new SandboxdError('operation_failed', `template ${teamId}/${templateId} is incomplete (missing ${missing.join(', ')})`);
    }
    const meta = state === 'snapshot' ? await readMetaIn(dir, signal) : null;
    const sizeBytes = await guard('templates.resolve', dir, () => allocatedBytes(dir));
    return { teamId, templateId, dir, kind: state, rootfsPath: join(dir, ROOTFS_FILE), meta, sizeBytes };
  }
}

/** rmdir that only succeeds on an empty dir; anything else is left as it is. */
async function pruneEmptyDir(dir: string): Promise<void> {
  try {
    await rmdir(dir);
  } catch {
    // Not empty, already gone, or busy: nothing to prune.
  }
}
