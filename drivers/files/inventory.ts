import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isNameId } from '../../core/ids.ts';
import type { CallOpts } from '../call.ts';
import { checkAborted, isErrno } from './fs-ops.ts';
import { classifySandboxEntry, type DataLayout, isTeamOrphanName, ROOTFS_FILE, VMM_FILES } from './layout.ts';
import { SNAPSHOT_META_FILE } from './meta.ts';

/** What is on disk under the data dir: for tests, start-up recovery and operators. */
export interface Inventory {
  /** sandboxes/{id} dirs. */
  sandboxes: { sandboxId: string; dir: string }[];
  /** Pause and snapshot staging dirs under sandboxes/. */
  staging: { sandboxId: string; dir: string; kind: 'pause-staging' | 'template-staging' }[];
  /** Trash dirs under sandboxes/ and under team dirs. */
  trash: string[];
  /** Hidden half-assembled template dirs under team dirs. */
  templateStaging: string[];
  templates: TemplateEntry[];
  /** Entries under sandboxes/ that match no known name (left alone). */
  unknown: string[];
}

export interface TemplateEntry {
  teamId: string;
  templateId: string;
  dir: string;
  /** base: rootfs.ext4 only; snapshot: rootfs.ext4 + snapshot.json + VMM files; incomplete: anything else. */
  state: 'base' | 'snapshot' | 'incomplete';
  /** For incomplete templates, the files whose absence makes them so. */
  missing: string[];
}

async function dirEntries(dir: string): Promise<import('node:fs').Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return [];
    throw err;
  }
}

/** Classifies a template dir by the regular files it holds (snapshot.json is not parsed here). */
export async function inspectTemplateDir(dir: string): Promise<{ state: TemplateEntry['state']; missing: string[] }> {
  const files = new Set((await dirEntries(dir)).filter((e) => e.isFile()).map((e) => e.name));
  const missing: string[] = [];
  if (!files.has(ROOTFS_FILE)) missing.push(ROOTFS_FILE);
  const vmmPresent = VMM_FILES.filter((f) => files.has(f));
  if (files.has(SNAPSHOT_META_FILE)) {
    missing.push(...VMM_FILES.filter((f) => !files.has(f)));
    return { state: missing.length === 0 ? 'snapshot' : 'incomplete', missing };
  }
  // VMM files without metadata: a snapshot template cut short.
  if (vmmPresent.length > 0) missing.push(SNAPSHOT_META_FILE, ...VMM_FILES.filter((f) => !files.has(f)));
  return { state: missing.length === 0 ? 'base' : 'incomplete', missing };
}

export async function listTemplates(layout: DataLayout, teamId: string | null, opts: CallOpts): Promise<TemplateEntry[]> {
  const teams = teamId !== null ? [teamId] : (await dirEntries(layout.teamsDir)).filter((e) => e.isDirectory()).map((e) => e.name);
  const out: TemplateEntry[] = [];
  for (const team of teams.filter(isNameId).sort()) {
    const teamDir = layout.teamDir(team);
    for (const entry of (await dirEntries(teamDir)).sort((a, b) => a.name.localeCompare(b.name))) {
      checkAborted(opts.signal, 'files.inventory');
      if (!entry.isDirectory() || !isNameId(entry.name)) continue;
      const dir = join(teamDir, entry.name);
      out.push({ teamId: team, templateId: entry.name, dir, ...(await inspectTemplateDir(dir)) });
    }
  }
  return out;
}

export async function takeInventory(layout: DataLayout, opts: CallOpts): Promise<Inventory> {
  const inv: Inventory = { sandboxes: [], staging: [], trash: [], templateStaging: [], templates: [], unknown: [] };
  for (const entry of await dirEntries(layout.sandboxesDir)) {
    checkAborted(opts.signal, 'files.inventory');
    const dir = join(layout.sandboxesDir, entry.name);
    const kind = entry.isDirectory() ? classifySandboxEntry(entry.name) : null;
    if (kind === null) inv.unknown.push(dir);
    else if (kind.kind === 'sandbox') inv.sandboxes.push({ sandboxId: kind.sandboxId, dir });
    else if (kind.kind === 'trash') inv.trash.push(dir);
    else inv.staging.push({ sandboxId: kind.sandboxId, dir, kind: kind.kind });
  }
  for (const team of await dirEntries(layout.teamsDir)) {
    if (!team.isDirectory() || !isNameId(team.name)) continue;
    const teamDir = join(layout.teamsDir, team.name);
    for (const entry of await dirEntries(teamDir)) {
      if (!entry.isDirectory() || !isTeamOrphanName(entry.name)) continue;
      (entry.name.startsWith('.') ? inv.templateStaging : inv.trash).push(join(teamDir, entry.name));
    }
  }
  inv.templates = await listTemplates(layout, null, opts);
  for (const list of [inv.trash, inv.templateStaging, inv.unknown]) list.sort();
  inv.sandboxes.sort((a, b) => a.dir.localeCompare(b.dir));
  inv.staging.sort((a, b) => a.dir.localeCompare(b.dir));
  return inv;
}
