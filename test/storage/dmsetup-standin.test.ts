// The stand-in dmsetup must refuse what the kernel refuses, or the dm driver's tests
// pass against a device-mapper that does not exist: a table longer than its origin,
// a corrupt CoW, a read-only CoW, a CoW shared by two snapshots.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { LosetupLoopDriver } from '../../drivers/storage/losetup-loop.ts';
import { STANDIN, cleanups, loopsWithPrefix, makeImage, signal, tempDir } from './helpers.ts';

const TAG = 'standin';
const MiB = 1 << 20;

interface Rig {
  dm(...args: string[]): { ok: boolean; out: string; err: string };
  origin: string;
  cow: string;
  cowFile: string;
  dir: string;
  loops: LosetupLoopDriver;
}

async function rig(t: TestContext): Promise<Rig> {
  const dir = tempDir(t, TAG);
  const loops = new LosetupLoopDriver();
  makeImage(join(dir, 'o.img'), 2 * MiB);
  makeImage(join(dir, 'c.cow'), 0);
  execFileSync('truncate', ['-s', String(2 * MiB), join(dir, 'c.cow')]);
  const origin = await loops.attach(join(dir, 'o.img'), { signal: signal() });
  const cow = await loops.attachReadWrite(join(dir, 'c.cow'), { signal: signal() });
  const env = { ...process.env, SANDBOXD_DMSETUP_STATE: join(dir, 'state') };
  const dm = (...args: string[]) => {
    const r = spawnSync(STANDIN, args, { env, encoding: 'utf8' });
    return { ok: r.status === 0, out: r.stdout.trim(), err: r.stderr.trim() };
  };
  cleanups(t)(() => {
    for (const line of dm('ls').out.split('\n')) if (/^sbxt-/.test(line)) dm('remove', line.split('\t')[0] ?? '');
  });
  return { dm, origin, cow, cowFile: join(dir, 'c.cow'), dir, loops };
}

const majMin = (dev: string) => {
  const r = statSync(dev).rdev;
  return `${Math.floor(r / 256) & 0xfff}:${(r & 0xff) | (Math.floor(r / 4096) & 0xfff00)}`;
};

test('runs only with an absolute state dir, so it never writes somewhere unexpected', () => {
  const env = { ...process.env };
  delete env.SANDBOXD_DMSETUP_STATE;
  const r = spawnSync(STANDIN, ['ls'], { env, encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /SANDBOXD_DMSETUP_STATE/);
});

test('tables the kernel would refuse are refused and create nothing', async (t) => {
  const r = await rig(t);
  const sectors = (2 * MiB) / 512;
  const bad: Array<[string, RegExp]> = [
    [`0 ${sectors + 8} snapshot ${r.origin} ${r.cow} P 8`, /too small for target/],
    [`8 ${sectors} snapshot ${r.origin} ${r.cow} P 8`, /start at sector 0/],
    [`0 ${sectors} linear ${r.origin} 0`, /requires at least|unsupported target/],
    [`0 ${sectors} snapshot-origin ${r.origin} ${r.cow} P 8`, /unsupported target/],
    [`0 ${sectors} snapshot ${r.origin} ${r.cow} Q 8`, /persistent flag/],
    [`0 ${sectors} snapshot ${r.origin} ${r.cow} P 6`, /power of 2/],
    [`0 ${sectors} snapshot ${r.origin} ${r.cow} P 8 1 bogus_feature`, /Unsupported feature/],
    [`0 ${sectors} snapshot ${r.origin} ${r.cow} P 8 2 discard_zeroes_cow`, /feature count/],
    [`0 ${sectors} snapshot ${r.origin} ${r.origin} P 8`, /same device/],
    [`0 ${sectors} snapshot ${join(r.dir, 'o.img')} ${r.cow} P 8`, /no such device|not a block device/],
    [`0 ${sectors} snapshot 7:99999 ${r.cow} P 8`, /no block device/],
    [`0 ${sectors} snapshot ${r.cow} ${r.origin} P 8`, /read-only/],
    [`0 -1 snapshot ${r.origin} ${r.cow} P 8`, /Invalid length/],
  ];
  for (const [table, why] of bad) {
    const res = r.dm('create', 'sbxt-sb-bad', '--table', table);
    assert.equal(res.ok, false, table);
    assert.match(res.err, why, table);
  }
  assert.equal(r.dm('ls').out, 'No devices found');
  assert.equal(r.dm('create', '../x', '--table', `0 ${sectors} snapshot ${r.origin} ${r.cow} P 8`).ok, false);
  assert.equal(r.dm('create', 'sbxt-sb-x', `0 ${sectors} snapshot ${r.origin} ${r.cow} P 8`).ok, false, 'missing --table');
  assert.equal(r.dm('frobnicate').ok, false);
});

test('table prints MAJ:MIN like the kernel, and MAJ:MIN is accepted in a table', async (t) => {
  const r = await rig(t);
  const sectors = (2 * MiB) / 512;
  assert.ok(r.dm('create', 'sbxt-sb-a', '--table', `0 ${sectors} snapshot ${majMin(r.origin)} ${majMin(r.cow)} P 8`).ok);
  assert.equal(r.dm('table', 'sbxt-sb-a').out, `0 ${sectors} snapshot ${majMin(r.origin)} ${majMin(r.cow)} P 8`);
  assert.match(r.dm('status', 'sbxt-sb-a').out, new RegExp(`^0 ${sectors} snapshot 16/${sectors} 16$`));
  assert.match(r.dm('ls').out, /^sbxt-sb-a\t\(253:[0-9]+\)$/);
});

test('a second create of a name, or a second snapshot on one CoW, is refused', async (t) => {
  const r = await rig(t);
  const table = `0 ${(2 * MiB) / 512} snapshot ${r.origin} ${r.cow} P 8`;
  assert.ok(r.dm('create', 'sbxt-sb-a', '--table', table).ok);
  assert.match(r.dm('create', 'sbxt-sb-a', '--table', table).err, /busy/);
  assert.match(r.dm('create', 'sbxt-sb-b', '--table', table).err, /COW in use/);
  assert.ok(r.dm('remove', 'sbxt-sb-a').ok);
  assert.match(r.dm('remove', 'sbxt-sb-a').err, /No such device/);
  assert.match(r.dm('table', 'sbxt-sb-a').err, /does not exist/);
});

test('a CoW with a foreign header fails to load as "Invalid or corrupt snapshot"', async (t) => {
  const r = await rig(t);
  const fd = openSync(r.cowFile, 'r+');
  writeSync(fd, Buffer.from('XFSB'), 0, 4, 0);
  closeSync(fd);
  const res = r.dm('create', 'sbxt-sb-a', '--table', `0 ${(2 * MiB) / 512} snapshot ${r.origin} ${r.cow} P 8`);
  assert.equal(res.ok, false);
  assert.match(res.err, /Invalid or corrupt snapshot/);
  assert.equal(r.dm('ls').out, 'No devices found');
});

test('the chunk size stored in the CoW header wins over the table, as in the kernel', async (t) => {
  const r = await rig(t);
  const sectors = (2 * MiB) / 512;
  assert.ok(r.dm('create', 'sbxt-sb-a', '--table', `0 ${sectors} snapshot ${r.origin} ${r.cow} P 16`).ok);
  assert.ok(r.dm('remove', 'sbxt-sb-a').ok);
  const res = r.dm('create', 'sbxt-sb-a', '--table', `0 ${sectors} snapshot ${r.origin} ${r.cow} P 8`);
  assert.ok(res.ok);
  assert.match(res.err, /overridden/);
  assert.match(r.dm('table', 'sbxt-sb-a').out, / P 16$/);
});

test('no loop device backed by this file\'s temp dirs is left attached', () => {
  assert.deepEqual(loopsWithPrefix(`/tmp/sandboxd-test-${TAG}-`), []);
});
