import { SandboxdError } from '../../core/errors.ts';
import { assertNameId } from '../../core/ids.ts';
import type { CallOpts } from '../call.ts';
import { SYSTEM_TEAM, type TemplateInfo, type TemplateStore } from '../files/files.ts';
import { SNAPSHOT_META_FILE } from '../files/meta.ts';
import { readMetaFile } from './fake-files.ts';
import { type FakeHost, ROOTFS_FILE } from './host.ts';
import { sandboxOfPath } from './ledger.ts';

/**
 * Templates under images/teams/{team}/{template}/ on the fake host's files.
 * A dir with snapshot.json is a snapshot template, otherwise a base one.
 * `list(team)` lists that team's own templates only; `list(null)` all of them.
 */
export class FakeTemplates implements TemplateStore {
  readonly #host: FakeHost;

  constructor(host: FakeHost) {
    this.#host = host;
  }

  async resolve(teamId: string, templateId: string, { signal }: CallOpts): Promise<TemplateInfo> {
    await this.#host.faults.gate('templates.resolve', undefined, signal);
    for (const team of teamId === SYSTEM_TEAM ? [teamId] : [teamId, SYSTEM_TEAM]) {
      if (this.#host.fs.hasDir(this.#host.templateDir(team, templateId))) return this.#info(team, templateId);
    }
    throw new SandboxdError('not_found', `template ${templateId} not found for team ${teamId}`);
  }

  async exists(teamId: string, templateId: string, { signal }: CallOpts): Promise<boolean> {
    await this.#host.faults.gate('templates.exists', undefined, signal);
    return this.#host.fs.hasDir(this.#host.templateDir(teamId, templateId));
  }

  async list(teamId: string | null, { signal }: CallOpts): Promise<TemplateInfo[]> {
    await this.#host.faults.gate('templates.list', undefined, signal);
    if (teamId !== null) assertNameId('team', teamId);
    return [...this.#host.ledger.templates]
      .sort()
      .map((key) => key.split('/') as [string, string])
      .filter(([team]) => teamId === null || team === teamId)
      .map(([team, template]) => this.#info(team, template));
  }

  async promote(stagingDir: string, teamId: string, templateId: string, { signal }: CallOpts): Promise<TemplateInfo> {
    await this.#host.faults.gate('templates.promote', sandboxOfPath(stagingDir), signal);
    const dir = this.#host.templateDir(teamId, templateId);
    if (this.#host.fs.classify(stagingDir).kind !== 'staging') {
      throw new SandboxdError('invalid_argument', `not a staging dir of the data dir: ${stagingDir}`);
    }
    if (this.#host.fs.hasDir(dir)) throw new SandboxdError('already_exists', `template ${teamId}/${templateId} exists`);
    if (!this.#host.fs.hasDir(stagingDir)) throw new SandboxdError('operation_failed', `${stagingDir} does not exist`);
    this.#host.fs.renameDir(stagingDir, dir);
    return this.#info(teamId, templateId);
  }

  async remove(teamId: string, templateId: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('templates.remove', undefined, signal);
    this.#host.fs.rmdir(this.#host.templateDir(teamId, templateId));
  }

  async importRootfs(teamId: string, templateId: string, rootfsPath: string, { signal }: CallOpts): Promise<TemplateInfo> {
    await this.#host.faults.gate('templates.importRootfs', undefined, signal);
    const dir = this.#host.templateDir(teamId, templateId);
    if (this.#host.fs.hasDir(dir)) throw new SandboxdError('already_exists', `template ${teamId}/${templateId} exists`);
    const source = this.#host.fs.readFile(rootfsPath);
    if (source === undefined) throw new SandboxdError('not_found', `no such file: ${rootfsPath}`);
    this.#host.fs.mkdir(dir);
    this.#host.fs.writeFile(`${dir}/${ROOTFS_FILE}`, { size: source.size, allocated: source.allocated });
    return this.#info(teamId, templateId);
  }

  #info(teamId: string, templateId: string): TemplateInfo {
    const dir = this.#host.templateDir(teamId, templateId);
    const isSnapshot = this.#host.fs.readFile(`${dir}/${SNAPSHOT_META_FILE}`) !== undefined;
    return {
      teamId,
      templateId,
      dir,
      kind: isSnapshot ? 'snapshot' : 'base',
      rootfsPath: `${dir}/${ROOTFS_FILE}`,
      meta: isSnapshot ? readMetaFile(this.#host, dir) : null,
      sizeBytes: this.#host.fs.allocated(dir),
    };
  }
}
