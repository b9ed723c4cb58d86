import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { SandboxdError } from '../../core/errors.ts';
import { randomBytes } from 'node:crypto';
import { assertNameId, assertSandboxId, SANDBOX_ID } from '../../core/ids.ts';

/**
 * Every path of the data dir, built from validated ids and checked to stay
 * inside the data dir after resolving (ids are already pattern-checked; the
 * containment check is a second wall should a pattern ever loosen).
 *
 *   images/teams/{team}/{template}/       templates
 *   images/teams/{team}/.{template}.stage-{u}   a template being assembled
 *   images/teams/{team}/{template}.trash-{u}    a template being removed
 *   sandboxes/{id}/                       CoW and, while paused, the pause snapshot
 *   sandboxes/{id}.staging-{u}            a pause (or snapshot) being written
 *   sandboxes/.stage-{id}-{u}             a snapshot-to-template being written
 *   sandboxes/{id}.trash-{u}              a previous generation being deleted
 *   logs/
 */

export const COW_FILE = 'rootfs.cow';
export const ROOTFS_FILE = 'rootfs.ext4';
/** Files Cloud Hypervisor writes into a snapshot destination. */
export const VMM_FILES = ['config.json', 'state.json', 'memory-ranges'] as const;
/** The file(s) holding guest RAM, the only ones worth punching. */
export const MEMORY_FILES = ['memory-ranges'] as const;

// The unique suffix has a fixed length so that ".stage-{id}-{u}" splits one way
// only, although sandbox ids may contain dashes themselves.
const UNIQUE_LEN = 21;
const UNIQUE = `[a-z0-9]{${UNIQUE_LEN}}`;
const LOOSE_UNIQUE = '[a-z0-9][a-z0-9-]*';
const ID = SANDBOX_ID.source.slice(1, -1);
const PAUSE_STAGING = new RegExp(`^(${ID})\\.staging-${LOOSE_UNIQUE}$`);
const TEMPLATE_STAGING = new RegExp(`^\\.stage-(${ID})-${UNIQUE}$`);
const SANDBOX_TRASH = new RegExp(`^(${ID})\\.trash-${LOOSE_UNIQUE}$`);
const TEAM_STAGE = new RegExp(`^\\.[A-Za-z0-9][A-Za-z0-9_-]{0,63}\\.stage-${LOOSE_UNIQUE}$`);
const TEAM_TRASH = new RegExp(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\\.trash-${LOOSE_UNIQUE}$`);

/** What a name directly under sandboxes/ is. */
export type SandboxEntry =
  | { kind: 'sandbox'; sandboxId: string }
  | { kind: 'pause-staging'; sandboxId: string }
  | { kind: 'template-staging'; sandboxId: string }
  | { kind: 'trash'; sandboxId: string };

export function classifySandboxEntry(name: string): SandboxEntry | null {
  if (SANDBOX_ID.test(name)) return { kind: 'sandbox', sandboxId: name };
  let m = PAUSE_STAGING.exec(name);
  if (m?.[1]) return { kind: 'pause-staging', sandboxId: m[1] };
  m = TEMPLATE_STAGING.exec(name);
  if (m?.[1]) return { kind: 'template-staging', sandboxId: m[1] };
  m = SANDBOX_TRASH.exec(name);
  if (m?.[1]) return { kind: 'trash', sandboxId: m[1] };
  return null;
}

/** A leftover of an interrupted promote, import or remove directly under a team dir. */
export function isTeamOrphanName(name: string): boolean {
  return TEAM_STAGE.test(name) || TEAM_TRASH.test(name);
}

/** Time (base 36, 9 digits) then 12 random hex digits: sortable by age, never reused. */
function unique(): string {
  return Date.now().toString(36).padStart(UNIQUE_LEN - 12, '0') + randomBytes(6).toString('hex');
}

export class DataLayout {
  readonly root: string;
  readonly sandboxesDir: string;
  readonly teamsDir: string;
  readonly logsDir: string;

  constructor(dataDir: string) {
    if (!isAbsolute(dataDir)) throw new SandboxdError('invalid_argument', `data dir must be absolute: ${dataDir}`);
    this.root = resolve(dataDir);
    this.sandboxesDir = join(this.root, 'sandboxes');
    this.teamsDir = join(this.root, 'images', 'teams');
    this.logsDir = join(this.root, 'logs');
  }

  /** Resolves `path` and refuses a relative path and anything outside the data dir (or the data dir itself). */
  inside(path: string): string {
    if (typeof path !== 'string' || !isAbsolute(path)) {
      throw new SandboxdError('invalid_argument', `path must be absolute: ${JSON.stringify(path)}`);
    }
    const full = resolve(path);
    const rel = relative(this.root, full);
    if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
      throw new SandboxdError('invalid_argument', `path outside the data dir: ${JSON.stringify(path)}`);
    }
    return full;
  }

  sandboxDir(sandboxId: string): string {
    return this.inside(join(this.sandboxesDir, assertSandboxId(sandboxId)));
  }

  cowPath(sandboxId: string): string {
    return join(this.sandboxDir(sandboxId), COW_FILE);
  }

  pauseStagingDir(sandboxId: string): string {
    return this.inside(join(this.sandboxesDir, `${assertSandboxId(sandboxId)}.staging-${unique()}`));
  }

  templateStagingDir(sandboxId: string): string {
    return this.inside(join(this.sandboxesDir, `.stage-${assertSandboxId(sandboxId)}-${unique()}`));
  }

  sandboxTrashDir(sandboxId: string): string {
    return this.inside(join(this.sandboxesDir, `${assertSandboxId(sandboxId)}.trash-${unique()}`));
  }

  teamDir(teamId: string): string {
    return this.inside(join(this.teamsDir, assertNameId('team', teamId)));
  }

  templateDir(teamId: string, templateId: string): string {
    return this.inside(join(this.teamDir(teamId), assertNameId('template', templateId)));
  }

  /** Hidden sibling where a template is assembled before one rename makes it visible. */
  templateStageDir(teamId: string, templateId: string): string {
    return this.inside(join(this.teamDir(teamId), `.${assertNameId('template', templateId)}.stage-${unique()}`));
  }

  templateTrashDir(teamId: string, templateId: string): string {
    return this.inside(join(this.teamDir(teamId), `${assertNameId('template', templateId)}.trash-${unique()}`));
  }

  /**
   * Checks that `dir` is a staging dir directly under sandboxes/ (of `sandboxId`
   * when given) and returns it resolved; refuses anything else.
   */
  assertStagingDir(dir: string, sandboxId?: string): { path: string; entry: SandboxEntry } {
    const path = this.inside(dir);
    const rel = relative(this.sandboxesDir, path);
    const entry = rel.includes(sep) ? null : classifySandboxEntry(rel);
    if (entry === null || (entry.kind !== 'pause-staging' && entry.kind !== 'template-staging')) {
      throw new SandboxdError('invalid_argument', `not a staging dir of the data dir: ${JSON.stringify(dir)}`);
    }
    if (sandboxId !== undefined && entry.sandboxId !== assertSandboxId(sandboxId)) {
      throw new SandboxdError('invalid_argument', `staging dir ${dir} belongs to ${entry.sandboxId}, not ${sandboxId}`);
    }
    return { path, entry };
  }
}
