// Set-up shared by the snapshot-file tests: a `sandboxd-test-*` data dir, small
// tmpfs mounts, fake VMM snapshot files and an fs layer that fails on demand.
// Everything is undone in t.after, also when the test fails.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, statSync, writeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { FsSnapshotFiles } from '../../drivers/files/fs-files.ts';
import { type FsOps, realFsOps } from '../../drivers/files/fs-ops.ts';
import { FsTemplateStore } from '../../drivers/files/fs-templates.ts';
import type { SnapshotMeta } from '../../drivers/files/meta.ts';

export const opts = () => ({ signal: AbortSignal.timeout(30_000) });
export const PAGE = 4096;

/** A `sandboxd-test-*` dir, removed after the test together with any tmpfs mounted inside it. */
export function tempDir(t: TestContext, tag = 'files'): string {
  const dir = mkdtempSync(`/tmp/sandboxd-test-${tag}-`);
  t.after(() => {
    unmountUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort()
    .reverse();
  for (const m of mounts) execFileSync('umount', [m]);
}

/** A tmpfs of `size` (another filesystem, and one that fills up) at `at`, or at a fresh temp dir. */
export function tmpfs(t: TestContext, size = '1m', at?: string): string {
  const dir = at ?? tempDir(t, 'tmpfs');
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'sbxt-files', dir]);
  if (at !== undefined) t.after(() => unmountUnder(dir));
  return dir;
}

/** Fills the filesystem holding `dir` until a write fails with ENOSPC. */
export function fillUp(dir: string): void {
  const fd = openSync(join(dir, 'filler'), 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  // A last page-sized remainder, so even a tiny write fails.
  const fd2 = openSync(join(dir, 'filler2'), 'w');
  try {
    for (;;) writeSync(fd2, Buffer.alloc(512, 1));
  } catch {
    // full
  } finally {
    closeSync(fd2);
  }
}

/** Records every call and throws on the calls `failWhen` picks. */
export function faultyFs(failWhen: (op: string, a: string, b: string | undefined) => boolean): FsOps & { calls: string[] } {
  const calls: string[] = [];
  const fail = (op: string, a: string, b?: string) => {
    calls.push(`${op} ${a}${b === undefined ? '' : ` ${b}`}`);
    if (failWhen(op, a, b)) throw Object.assign(new Error(`injected ${op} failure`), { code: 'EIO' });
  };
  return {
    calls,
    rename: async (from, to) => (fail('rename', from, to), realFsOps.rename(from, to)),
    link: async (from, to) => (fail('link', from, to), realFsOps.link(from, to)),
    rm: async (path, o) => (fail('rm', path), realFsOps.rm(path, o)),
  };
}

export function drivers(dataDir: string, fs?: FsOps) {
  return {
    files: new FsSnapshotFiles(fs === undefined ? { dataDir } : { dataDir, fs }),
    templates: new FsTemplateStore(fs === undefined ? { dataDir } : { dataDir, fs }),
  };
}

export function pauseMeta(over: Partial<SnapshotMeta> = {}): SnapshotMeta {
  return {
    version: 1,
    kind: 'pause',
    teamId: 'team1',
    templateId: 'base1',
    vcpus: 1,
    memoryMB: 512,
    timeoutSec: 300,
    slot: 3,
    baseTemplatePath: '/data/images/teams/system/base1/rootfs.ext4',
    cowPath: '/data/sandboxes/sb-1/rootfs.cow',
    sandboxDir: '/run/sandboxd/sb-1',
    createdAt: new Date().toISOString(),
    ...over,
  };
}

/**
 * Writes a dense memory file: `pages` pages of which the indexes in `dataPages`
 * hold random bytes and the rest zeros (written out, so allocated).
 */
export function writeDenseMemory(path: string, pages: number, dataPages: number[]): void {
  const fd = openSync(path, 'w');
  try {
    const data = new Set(dataPages);
    for (let i = 0; i < pages; i++) writeSync(fd, data.has(i) ? randomBytes(PAGE) : Buffer.alloc(PAGE), 0, PAGE, i * PAGE);
  } finally {
    closeSync(fd);
  }
}

/** config.json, state.json and a dense memory-ranges (64 pages, 4 with data) in `dir`. */
export function writeVmmFiles(dir: string, pages = 64, dataPages = [0, 7, 30, 63]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ memory: { size: pages * PAGE } }));
  writeFileSync(join(dir, 'state.json'), JSON.stringify({ memory_ranges: [[0, pages * PAGE]] }));
  writeDenseMemory(join(dir, 'memory-ranges'), pages, dataPages);
}

export const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
export const allocated = (path: string) => statSync(path).blocks * 512;
