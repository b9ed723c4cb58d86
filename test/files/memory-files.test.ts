// The memory file is the big one: punching its zero pages must not change a byte
// (a restore reads it back), copying it across filesystems must stay sparse, and
// a disk that fills up half-way must leave no partial file under a real name.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { FsSnapshotFiles } from '../../drivers/files/fs-files.ts';
import { copySparse, copySparseOwn } from '../../drivers/files/sparse-copy.ts';
import { punchZeroPagesInFile } from '../../drivers/files/zero-pages.ts';
import { allocated, drivers, faultyFs, fillUp, opts, PAGE, pauseMeta, sha256, tempDir, tmpfs, writeDenseMemory, writeVmmFiles } from './helpers.ts';

const ID = 'sb-mem-1';
const code = (c: string) => (err: unknown) => err instanceof SandboxdError && err.code === c;

test('punchZeroPages keeps the memory file byte-identical and frees its zero pages', async (t) => {
  const { files } = drivers(tempDir(t));
  const dir = await files.makeStaging(ID, opts());
  writeVmmFiles(dir, 256, [0, 1, 100, 255]);
  const mem = join(dir, 'memory-ranges');
  const [hash, before, config] = [sha256(mem), allocated(mem), sha256(join(dir, 'config.json'))];
  const freed = await files.punchZeroPages(dir, opts());
  assert.equal(sha256(mem), hash);
  assert.equal(statSync(mem).size, 256 * PAGE, 'apparent size unchanged');
  assert.ok(allocated(mem) <= 4 * PAGE, `allocated ${allocated(mem)}`);
  assert.equal(freed, before - allocated(mem));
  assert.equal(sha256(join(dir, 'config.json')), config, 'only memory files are touched');
  assert.equal(await files.punchZeroPages(dir, opts()), 0, 'a second pass frees nothing');
});

test('both punch strategies keep the bytes; a hardlinked memory file is punched in place and stays linked', async (t) => {
  const dir = tempDir(t);
  for (const strategy of ['rewrite', 'dig-holes'] as const) {
    const mem = join(dir, `mem-${strategy}`);
    writeDenseMemory(mem, 128, [5, 6, 127]);
    const hash = sha256(mem);
    await punchZeroPagesInFile(mem, opts(), strategy);
    assert.equal(sha256(mem), hash, strategy);
    assert.ok(allocated(mem) <= 3 * PAGE, `${strategy}: allocated ${allocated(mem)}`);
  }
  const mem = join(dir, 'linked');
  writeDenseMemory(mem, 128, [1]);
  linkSync(mem, join(dir, 'linked-too'));
  await punchZeroPagesInFile(mem, opts());
  assert.equal(statSync(mem).ino, statSync(join(dir, 'linked-too')).ino, 'the hardlink must not be split');
  assert.ok(allocated(join(dir, 'linked-too')) <= PAGE);
});

test('a disk too full for the rewrite still gets its zero pages punched, in place', async (t) => {
  const mount = tmpfs(t, '1m');
  const files = new FsSnapshotFiles({ dataDir: mount });
  const dir = await files.makeStaging(ID, opts());
  const mem = join(dir, 'memory-ranges');
  writeDenseMemory(mem, 160, Array.from({ length: 60 }, (_, i) => i * 2)); // 640 KiB file, 240 KiB data
  const hash = sha256(mem);
  fillUp(mount);
  const freed = await files.punchZeroPages(dir, opts());
  assert.ok(freed >= 90 * PAGE, `freed ${freed}`);
  assert.equal(sha256(mem), hash);
  assert.deepEqual(readdirSync(dir), ['memory-ranges'], 'no temp copy left');
});

test('punchZeroPages on a dir without a memory file frees nothing; outside the data dir is refused', async (t) => {
  const { files } = drivers(tempDir(t));
  const dir = await files.makeStaging(ID, opts());
  assert.equal(await files.punchZeroPages(dir, opts()), 0);
  await assert.rejects(files.punchZeroPages('/tmp', opts()), code('invalid_argument'));
});

test('linkMemoryFiles hardlinks on one filesystem and skips the CoW, metadata and rootfs', async (t) => {
  const { files } = drivers(tempDir(t));
  await files.makeSandboxDir(ID, opts());
  const from = files.sandboxDir(ID);
  writeVmmFiles(from);
  writeFileSync(files.cowPath(ID), 'disk');
  await files.writeMeta(from, pauseMeta(), opts());
  const to = await files.makeTemplateStaging(ID, opts());
  await files.linkMemoryFiles(from, to, opts());
  await files.linkMemoryFiles(from, to, opts());
  assert.deepEqual(readdirSync(to).sort(), ['config.json', 'memory-ranges', 'state.json']);
  for (const name of readdirSync(to)) assert.equal(statSync(join(to, name)).ino, statSync(join(from, name)).ino, name);
});

test('linkMemoryFiles refuses a dir that holds no VMM snapshot', async (t) => {
  const { files } = drivers(tempDir(t));
  await files.makeSandboxDir(ID, opts());
  const to = await files.makeTemplateStaging(ID, opts());
  await assert.rejects(files.linkMemoryFiles(files.sandboxDir(ID), to, opts()), (e) => code('operation_failed')(e) && /memory-ranges/.test(String(e)));
  assert.deepEqual(readdirSync(to), []);
});

test('across filesystems linkMemoryFiles copies sparsely: same bytes, holes kept', async (t) => {
  const data = tempDir(t);
  const { files } = drivers(data);
  await files.makeSandboxDir(ID, opts());
  const from = files.sandboxDir(ID);
  writeVmmFiles(from, 512, [3, 4, 500]);
  // images/ on its own filesystem: a hardlink from sandboxes/ into it is EXDEV.
  tmpfs(t, '8m', join(data, 'images'));
  const to = files.layout.templateStageDir('team1', 'tpl');
  mkdirSync(to, { recursive: true });
  await files.linkMemoryFiles(from, to, opts());
  const mem = join(to, 'memory-ranges');
  assert.equal(sha256(mem), sha256(join(from, 'memory-ranges')));
  assert.notEqual(statSync(mem).dev, statSync(join(from, 'memory-ranges')).dev);
  assert.ok(allocated(mem) <= 3 * PAGE, `copy allocated ${allocated(mem)} bytes`);
  assert.deepEqual(readdirSync(to).sort(), ['config.json', 'memory-ranges', 'state.json'], 'no temp file left');
});

test('a link that fails for another reason than the filesystem is an error, not a silent copy', async (t) => {
  const data = tempDir(t);
  const { files } = drivers(data, faultyFs((op) => op === 'link'));
  await files.makeSandboxDir(ID, opts());
  writeVmmFiles(files.sandboxDir(ID));
  const to = await files.makeTemplateStaging(ID, opts());
  await assert.rejects(files.linkMemoryFiles(files.sandboxDir(ID), to, opts()), code('operation_failed'));
  assert.deepEqual(readdirSync(to), []);
});

test('disk full while copying the memory file: a clear error and no file left behind', async (t) => {
  const src = tempDir(t);
  const mount = tmpfs(t, '1m');
  const mem = join(src, 'memory-ranges');
  writeDenseMemory(mem, 512, Array.from({ length: 400 }, (_, i) => i)); // 1.6 MiB of data
  for (const copy of [copySparse, copySparseOwn]) {
    await assert.rejects(copy(mem, join(mount, 'memory-ranges'), opts()), (e) => code('operation_failed')(e) && /no space left/.test(String(e)));
    assert.deepEqual(readdirSync(mount), [], `${copy.name} left a file`);
  }
});

test('disk full while writing snapshot.json: a clear error, the old file intact, no temp file', async (t) => {
  const mount = tmpfs(t, '1m');
  const files = new FsSnapshotFiles({ dataDir: mount });
  const dir = await files.makeStaging(ID, opts());
  await files.writeMeta(dir, pauseMeta({ slot: 1 }), opts());
  fillUp(mount);
  await assert.rejects(files.writeMeta(dir, pauseMeta({ slot: 2 }), opts()), (e) => code('operation_failed')(e) && /no space left/.test(String(e)));
  assert.deepEqual(readdirSync(dir), ['snapshot.json']);
  assert.equal((await files.readMeta(dir, opts())).slot, 1);
});

test('both sparse copies give identical bytes with holes, and refuse a cancelled call', async (t) => {
  const dir = tempDir(t);
  const src = join(dir, 'src');
  writeDenseMemory(src, 300, [0, 150, 299]);
  for (const copy of [copySparse, copySparseOwn]) {
    const dst = join(dir, `dst-${copy.name}`);
    await copy(src, dst, opts());
    assert.equal(sha256(dst), sha256(src));
    assert.ok(allocated(dst) <= 3 * PAGE, `${copy.name} allocated ${allocated(dst)}`);
    await assert.rejects(copy(src, `${dst}-2`, { signal: AbortSignal.abort() }), code('cancelled'));
    assert.ok(!existsSync(`${dst}-2`));
  }
});

test('a copy stuck on its source is stopped by the signal and leaves no temp file', async (t) => {
  const dir = tempDir(t);
  const fifo = join(dir, 'stuck');
  execFileSync('mkfifo', [fifo]); // no writer ever comes: cp blocks in open()
  const ctl = new AbortController();
  const copying = copySparse(fifo, join(dir, 'out'), { signal: ctl.signal });
  await waitFor(() => processWithArg(fifo), 10_000);
  ctl.abort();
  await assert.rejects(copying, code('cancelled'));
  assert.ok(!processWithArg(fifo), 'cp is gone');
  assert.deepEqual(readdirSync(dir), ['stuck']);
});

function processWithArg(arg: string): boolean {
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(arg)) return true;
    } catch {
      // exited meanwhile
    }
  }
  return false;
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
