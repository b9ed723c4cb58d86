import { isNameId, SANDBOX_ID } from '../../core/ids.ts';
import type { Ledger } from './ledger.ts';

/**
 * The fake host's files: flat leaf dirs holding files, which is all the data
 * dir's layout needs (sandboxes/{id}/, staging dirs, images/teams/{t}/{x}/).
 * Each dir is one map entry, so creating, renaming and removing a dir is O(1)
 * even with 10,000 sandboxes. The ledger's dir, CoW and template sets are kept
 * here, at the one place where dirs and files change.
 */
export interface FakeFile {
  /** Apparent size in bytes. */
  size: number;
  /** Allocated bytes (what punching zero pages shrinks). */
  allocated: number;
  /** Text content (snapshot.json, config.json). */
  text?: string;
  /** The guest memory image of a VMM snapshot (memory-ranges). */
  memory?: ReadonlyMap<string, string>;
}

export type DirKind = 'sandbox' | 'staging' | 'template' | 'other';

export const COW_FILE = 'rootfs.cow';

export class FakeFs {
  readonly root: string;
  readonly #ledger: Ledger;
  readonly #dirs = new Map<string, Map<string, FakeFile>>();
  readonly #sandboxes: string;
  readonly #teams: string;

  constructor(root: string, ledger: Ledger) {
    this.root = root.replace(/\/+$/, '');
    this.#ledger = ledger;
    this.#sandboxes = `${this.root}/sandboxes/`;
    this.#teams = `${this.root}/images/teams/`;
  }

  /** Which ledger set a dir belongs to, with its key there. */
  classify(dir: string): { kind: DirKind; key: string } {
    if (dir.startsWith(this.#sandboxes)) {
      const name = dir.slice(this.#sandboxes.length);
      if (SANDBOX_ID.test(name)) return { kind: 'sandbox', key: name };
      if (!name.includes('/') && /^(?:\.stage-|[^.]+\.staging-|.+\.trash-)/.test(name)) return { kind: 'staging', key: dir };
    } else if (dir.startsWith(this.#teams)) {
      const parts = dir.slice(this.#teams.length).split('/');
      if (parts.length === 2 && isNameId(parts[0]) && isNameId(parts[1])) return { kind: 'template', key: parts.join('/') };
    }
    return { kind: 'other', key: dir };
  }

  hasDir(dir: string): boolean {
    return this.#dirs.has(dir);
  }

  /** Names of the files in `dir`, or undefined when it does not exist. */
  list(dir: string): string[] | undefined {
    const files = this.#dirs.get(dir);
    return files === undefined ? undefined : [...files.keys()];
  }

  /** Every dir whose path starts with `prefix`. O(dirs): for rare sweeps only. */
  dirsUnder(prefix: string): string[] {
    return [...this.#dirs.keys()].filter((d) => d.startsWith(prefix));
  }

  mkdir(dir: string): void {
    if (this.#dirs.has(dir)) return;
    this.#dirs.set(dir, new Map());
    this.#trackDir(dir, true);
  }

  /** Removes the dir and everything in it; a missing dir is fine. */
  rmdir(dir: string): void {
    const files = this.#dirs.get(dir);
    if (files === undefined) return;
    if (files.has(COW_FILE)) this.#ledger.cows.delete(`${dir}/${COW_FILE}`);
    this.#dirs.delete(dir);
    this.#trackDir(dir, false);
  }

  /** Renames a dir; `to` must not exist. */
  renameDir(from: string, to: string): void {
    const files = this.#dirs.get(from);
    if (files === undefined) throw new Error(`no such dir: ${from}`);
    if (this.#dirs.has(to)) throw new Error(`dir exists: ${to}`);
    this.rmdir(from);
    this.#dirs.set(to, files);
    this.#trackDir(to, true);
    if (files.has(COW_FILE)) this.#ledger.cows.add(`${to}/${COW_FILE}`);
  }

  readFile(path: string): FakeFile | undefined {
    const { dir, name } = split(path);
    return this.#dirs.get(dir)?.get(name);
  }

  /** Writes (or replaces) a file; its dir must exist, as with a real write. */
  writeFile(path: string, file: FakeFile): void {
    const { dir, name } = split(path);
    const files = this.#dirs.get(dir);
    if (files === undefined) throw new Error(`no such dir: ${dir}`);
    files.set(name, file);
    if (name === COW_FILE) this.#ledger.cows.add(path);
  }

  unlink(path: string): void {
    const { dir, name } = split(path);
    const files = this.#dirs.get(dir);
    if (files === undefined || !files.delete(name)) return;
    if (name === COW_FILE) this.#ledger.cows.delete(path);
  }

  /** Moves one file; the target dir must exist. */
  renameFile(from: string, to: string): void {
    const file = this.readFile(from);
    if (file === undefined) throw new Error(`no such file: ${from}`);
    if (from === to) return;
    this.writeFile(to, file);
    this.unlink(from);
  }

  /** Sum of allocated bytes of the files in `dir`. */
  allocated(dir: string): number {
    let sum = 0;
    for (const file of this.#dirs.get(dir)?.values() ?? []) sum += file.allocated;
    return sum;
  }

  #trackDir(dir: string, exists: boolean): void {
    const { kind, key } = this.classify(dir);
    const set =
      kind === 'sandbox'
        ? this.#ledger.sandboxDirs
        : kind === 'staging'
          ? this.#ledger.stagingDirs
          : kind === 'template'
            ? this.#ledger.templates
            : undefined;
    if (set === undefined) return;
    if (exists) set.add(key);
    else set.delete(key);
  }
}

export function split(path: string): { dir: string; name: string } {
  const at = path.lastIndexOf('/');
  return { dir: path.slice(0, at), name: path.slice(at + 1) };
}
