// Shared set-up for the storage tests: temp dirs, images, mounts and the dm backend,
// each undone by a cleanup stack that runs even when a test fails.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { DmDiskDriver, deviceMapperAvailable, type DmDiskOptions } from '../../drivers/storage/dm-disk.ts';
import { LosetupLoopDriver } from '../../drivers/storage/losetup-loop.ts';

export const STANDIN = resolve(fileURLToPath(import.meta.url), '../../../drivers/storage/dmsetup-standin/dmsetup');
export const REAL_DM = deviceMapperAvailable() && process.env.SANDBOXD_TEST_DM_STANDIN !== '1';
export const signal = () => AbortSignal.timeout(60_000);

type Undo = () => unknown;

const stacks = new WeakMap<TestContext, Undo[]>();

/** One LIFO cleanup stack per test, run in a single t.after: devices go before loops, loops before dirs. */
export function cleanups(t: TestContext): (undo: Undo) => void {
  let stack = stacks.get(t);
  if (stack === undefined) {
    const s: Undo[] = [];
    stacks.set(t, s);
    stack = s;
    t.after(async () => {
      const errors: unknown[] = [];
      while (s.length > 0) {
        try {
          await s.pop()?.();
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
    });
  }
  const mine = stack;
  return (undo) => void mine.push(undo);
}

/** A `sandboxd-test-*` dir; loops backed by files in it are detached and it is removed after the test. */
export function tempDir(t: TestContext, tag: string): string {
  const dir = mkdtempSync(`/tmp/sandboxd-test-${tag}-`);
  const undo = cleanups(t);
  undo(() => rmSync(dir, { recursive: true, force: true }));
  undo(() => detachLoopsUnder(dir));
  return dir;
}

/** Loops whose backing file path starts with `prefix` (a dir + '/', or a temp-dir prefix). */
export function loopsWithPrefix(prefix: string): Array<{ name: string; file: string }> {
  const raw = execFileSync('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8' });
  if (raw.trim() === '') return [];
  const list = (JSON.parse(raw) as { loopdevices: Array<{ name: string; 'back-file': string }> }).loopdevices;
  return list.filter((l) => l['back-file']?.startsWith(prefix)).map((l) => ({ name: l.name, file: l['back-file'] }));
}

export const loopsUnder = (dir: string) => loopsWithPrefix(`${dir}/`);

export function detachLoopsUnder(dir: string): void {
  for (const l of loopsUnder(dir)) execFileSync('losetup', ['--detach', l.name]);
}

/** A plain image of random bytes (exact content checks), or an ext4 filesystem. */
export function makeImage(path: string, bytes: number, kind: 'random' | 'ext4' = 'random'): Buffer {
  if (kind === 'ext4') {
    execFileSync('truncate', ['-s', String(bytes), path]);
    execFileSync('mkfs.ext4', ['-q', '-F', path]);
    return Buffer.alloc(0);
  }
  const data = randomBytes(bytes);
  writeFileSync(path, data);
  return data;
}

export function mount(t: TestContext, args: string[], dir: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', [...args, dir]);
  cleanups(t)(() => execFileSync('umount', [dir]));
}

export interface DmSetup {
  loops: LosetupLoopDriver;
  disk: DmDiskDriver;
  mapperDir: string;
  /** Names of our devices still present (stand-in state or the kernel's). */
  leftovers(): Promise<string[]>;
}

/** The dm driver against the kernel where it has device-mapper, else against the stand-in. */
export function dmSetup(t: TestContext, dir: string, extra: Partial<DmDiskOptions> = {}): DmSetup {
  const loops = new LosetupLoopDriver();
  const state = join(dir, 'dm-state');
  const mapperDir = REAL_DM ? '/dev/mapper' : join(state, 'mapper');
  const disk = new DmDiskDriver({
    loops,
    prefix: 'sbxt-',
    mapperDir,
    dmsetupPath: REAL_DM ? 'dmsetup' : STANDIN,
    ...(REAL_DM ? {} : { dmsetupEnv: { SANDBOXD_DMSETUP_STATE: state } }),
    removeRetryDelayMs: 50,
    ...extra,
  });
  const made = new Set<string>();
  const ours = (n: string) => !REAL_DM || made.has(n) || made.has(n.replace('sbxt-flat-', 'sbxt-'));
  const leftovers = async () => (await disk.list({ signal: signal() })).filter(ours);
  // Remove every device this test made before its loops are detached.
  cleanups(t)(async () => {
    for (const name of await leftovers()) {
      await disk.remove({ name, devicePath: join(mapperDir, name), cowPath: '/nonexistent' }, { signal: signal() });
    }
  });
  const create = disk.create.bind(disk);
  const attach = disk.attach.bind(disk);
  disk.create = (req, o) => (made.add(req.name), create(req, o));
  disk.attach = (req, o) => (made.add(req.name), attach(req, o));
  return { loops, disk, mapperDir, leftovers };
}
