// Memory-file handling at pause size: a 2 GiB memory-ranges with 10% random
// non-zero 4 KiB pages, written densely (as Cloud Hypervisor before v52 does).
// Compares, in one run and on the same file:
//   - a plain sequential read (the disk's limit for anything that reads it all)
//   - dropping zero pages: a sparse rewrite (cp --sparse=always, or our node copy)
//     then rename, `fallocate --dig-holes` in place, and our own scan plus one
//     `fallocate --punch-hole` process per zero run (extrapolated from a sample)
//   - copying the punched file: our node sparse copy against `cp --sparse=always`
// Each step starts from a cold page cache for that file (fsync, then dd iflag=nocache).
// Run: node --import tsx bench/files.bench.ts [sizeMiB]
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { copySparse, copySparseOwn, PAGE_BYTES } from '../drivers/files/sparse-copy.ts';
import { punchZeroPagesInFile } from '../drivers/files/zero-pages.ts';

const SIZE = Number(process.argv[2] ?? 2048) * 1024 * 1024;
const DATA_FRACTION = 0.1;
const CHUNK = 4 << 20;
const SPAWN_SAMPLE = 50;
const DIG_SLICE = 128 << 20;
// Each output file takes seconds to delete (tens of thousands of extents), so two rounds keep the bench under 2 minutes.
const REPS = 2;
const dir = mkdtempSync('/tmp/sandboxd-test-bench-files-');
const opts = { signal: AbortSignal.timeout(600_000) };
const rows: { what: string; seconds: number; allocated?: number; note?: string }[] = [];

const allocated = (path: string) => statSync(path).blocks * 512;
const mib = (bytes: number) => `${(bytes / 1048576).toFixed(0)} MiB`;

function dropCache(path: string): void {
  execFileSync('sync', [path]);
  execFileSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
}

const benchStart = Date.now();
const since = () => `${((Date.now() - benchStart) / 1000).toFixed(1)} s`;

async function timed<T>(what: string, path: string, fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  process.stderr.write(`  [${since()}] dropping cache for ${what}\n`);
  dropCache(path);
  process.stderr.write(`  [${since()}] start ${what}\n`);
  const start = process.hrtime.bigint();
  const value = await fn();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  process.stderr.write(`  ${what}: ${seconds.toFixed(2)} s\n`);
  return { seconds, value };
}

type Copy = (src: string, dst: string, o: { signal: AbortSignal }) => Promise<void>;

async function race(label: string, src: string, contenders: Array<[string, Copy]>): Promise<typeof rows> {
  const times = new Map<string, number[]>(contenders.map(([name]) => [name, []]));
  const sizes = new Map<string, number>();
  for (let rep = 0; rep < REPS; rep++) {
    const order = rep % 2 === 0 ? contenders : [...contenders].reverse();
    for (const [name, copy] of order) {
      const out = join(dir, `race-out`);
      const r = await timed(`${label}, ${name} #${rep + 1}`, src, () => copy(src, out, opts));
      times.get(name)?.push(r.seconds);
      sizes.set(name, allocated(out));
      rmSync(out);
    }
  }
  return contenders.map(([name]) => {
    const t = [...(times.get(name) ?? [])].sort((a, b) => a - b);
    return {
      what: `${label}, ${name}`,
      seconds: t[0] ?? Number.NaN,
      allocated: sizes.get(name) ?? 0,
      note: `best of ${t.length}: ${t.map((x) => x.toFixed(2)).join(' / ')} s`,
    };
  });
}

function writeDense(path: string): number {
  const fd = openSync(path, 'w');
  const buf = Buffer.alloc(CHUNK);
  let dataPages = 0;
  try {
    for (let pos = 0; pos < SIZE; pos += CHUNK) {
      buf.fill(0);
      for (let off = 0; off < CHUNK; off += PAGE_BYTES) {
        if (Math.random() < DATA_FRACTION) {
          randomFillSync(buf, off, PAGE_BYTES);
          dataPages++;
        }
      }
      writeSync(fd, buf, 0, CHUNK, pos);
    }
  } finally {
    closeSync(fd);
  }
  return dataPages;
}

/** Reads the file through; with `zeroRuns`, also finds the runs of all-zero pages (our own punch's scan). */
async function readThrough(path: string, zeroRuns: boolean): Promise<Array<[number, number]>> {
  const fh = await open(path, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  const zero = Buffer.alloc(PAGE_BYTES);
  const runs: Array<[number, number]> = [];
  let runStart = -1;
  try {
    for (let pos = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      if (zeroRuns) {
        for (let off = 0; off < bytesRead; off += PAGE_BYTES) {
          const isZero = buf.subarray(off, off + PAGE_BYTES).equals(zero);
          if (isZero && runStart < 0) runStart = pos + off;
          if (!isZero && runStart >= 0) {
            runs.push([runStart, pos + off - runStart]);
            runStart = -1;
          }
        }
      }
      pos += bytesRead;
    }
    if (runStart >= 0) runs.push([runStart, SIZE - runStart]);
  } finally {
    await fh.close();
  }
  return runs;
}

async function main(): Promise<void> {
  const mem = join(dir, 'memory-ranges');
  process.stderr.write(`writing ${mib(SIZE)} dense memory file with ${DATA_FRACTION * 100}% data pages in ${dir}\n`);
  const t0 = Date.now();
  const dataPages = writeDense(mem);
  execFileSync('sync', [mem]);
  process.stderr.write(`  written and synced in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  const dataBytes = dataPages * PAGE_BYTES;

  const read = await timed('sequential read', mem, () => readThrough(mem, false));
  rows.push({ what: 'sequential read (dense)', seconds: read.seconds, note: 'the limit for a full pass' });

  const scan = await timed('own zero-run scan', mem, () => readThrough(mem, true));
  const runs = scan.value;
  // The sample punches a dense copy of the file's first 32 MiB, so `mem` itself stays dense.
  const probe = join(dir, 'probe');
  execFileSync('dd', [`if=${mem}`, `of=${probe}`, 'bs=1M', 'count=32', 'status=none']);
  execFileSync('sync', [probe]);
  const sample = runs.filter(([o, l]) => o + l <= 32 << 20).slice(0, SPAWN_SAMPLE);
  const spawnStart = process.hrtime.bigint();
  for (const [offset, length] of sample) execFileSync('fallocate', ['--punch-hole', '-o', String(offset), '-l', String(length), probe]);
  const perSpawn = Number(process.hrtime.bigint() - spawnStart) / 1e9 / Math.max(1, sample.length);
  rows.push({
    what: 'punch: own scan + 1 spawn per run',
    seconds: scan.seconds + perSpawn * runs.length,
    note: `${runs.length} zero runs; scan ${scan.seconds.toFixed(2)} s + ${(perSpawn * 1000).toFixed(2)} ms/spawn (extrapolated)`,
  });

  // dig-holes costs per zero run and ran ~50x slower than a read: time it on a dense
  // 128 MiB slice and scale by the run count, so the whole bench stays under 2 minutes.
  const slice = Math.min(SIZE, DIG_SLICE);
  const digProbe = join(dir, 'dig-probe');
  execFileSync('dd', [`if=${mem}`, `of=${digProbe}`, 'bs=1M', `count=${slice >> 20}`, 'status=none']);
  const sliceRuns = runs.filter(([o]) => o < slice).length;
  const before = allocated(digProbe);
  const dig = await timed('fallocate --dig-holes (slice)', digProbe, () => punchZeroPagesInFile(digProbe, opts, 'dig-holes'));
  rows.push({
    what: 'punch: fallocate --dig-holes',
    seconds: (dig.seconds * runs.length) / Math.max(1, sliceRuns),
    note: `${mib(slice)} slice: ${dig.seconds.toFixed(2)} s, freed ${mib(dig.value)} of ${mib(before)} (extrapolated)`,
  });
  rmSync(digProbe);

  // Contenders run alternately, REPS times each, and report their best: the
  // disk is shared, and one run's timing swings with whatever else writes.
  const rewrites = await race('punch: rewrite', mem, [
    ['node sparse copy', copySparseOwn],
    ['cp --sparse=always', copySparse],
  ]);
  rows.push(...rewrites);
  const r2 = await timed('punch by cp rewrite, in place', mem, () => punchZeroPagesInFile(mem, opts, 'rewrite'));
  rows.push({ what: 'punchZeroPages (rewrite, in place)', seconds: r2.seconds, allocated: allocated(mem), note: 'chosen; one run' });

  const readSparse = await timed('sequential read (punched)', mem, () => readThrough(mem, false));
  rows.push({ what: 'sequential read (punched)', seconds: readSparse.seconds });
  rows.push(
    ...(await race('copy punched', mem, [
      ['node sparse copy', copySparseOwn],
      ['cp --sparse=always', copySparse],
    ])),
  );

  console.log(`\nmemory file: ${mib(SIZE)} apparent, ${mib(dataBytes)} of non-zero pages (${dataPages} pages)\n`);
  console.log(`${'operation'.padEnd(40)} ${'time s'.padStart(8)} ${'MiB/s'.padStart(8)} ${'x read'.padStart(7)} ${'allocated'.padStart(10)}  note`);
  for (const r of rows) {
    const rate = SIZE / 1048576 / r.seconds;
    console.log(
      `${r.what.padEnd(40)} ${r.seconds.toFixed(2).padStart(8)} ${rate.toFixed(0).padStart(8)} ${(r.seconds / read.seconds).toFixed(2).padStart(7)} ${(r.allocated === undefined ? '' : mib(r.allocated)).padStart(10)}  ${r.note ?? ''}`,
    );
  }
}

try {
  await main();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
