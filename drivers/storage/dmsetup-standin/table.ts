import { existsSync, readFileSync, statSync } from 'node:fs';

// Parsing and checking of a `snapshot` table line as the kernel would (dm-snap.c
// snapshot_ctr, dm-table.c device_area_is_invalid). Errors carry dmsetup's wording.

export class StandinError extends Error {}

export interface BlockDev {
  path: string;
  majMin: string;
  sectors: number;
  readOnly: boolean;
  logicalBlockBytes: number;
  /** For a loop device at offset 0: its backing file, which holds the same bytes. */
  backingFile: string | undefined;
}

export interface SnapshotTable {
  len: number;
  origin: BlockDev;
  cow: BlockDev;
  store: 'P' | 'N' | 'PO';
  chunkSectors: number;
  features: string[];
}

const FEATURES = new Set(['discard_zeroes_cow', 'discard_passdown_origin']);

function sysRead(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Resolves `/dev/…` or `MAJ:MIN` to a block device, as dm_get_device does. */
export function blockDev(spec: string): BlockDev {
  let path = spec;
  if (/^[0-9]+:[0-9]+$/.test(spec)) {
    const devname = sysRead(`/sys/dev/block/${spec}/uevent`)?.match(/^DEVNAME=(.+)$/m)?.[1];
    if (devname === undefined) throw new StandinError(`no block device ${spec}`);
    path = `/dev/${devname}`;
  }
  if (!path.startsWith('/dev/') || !existsSync(path)) throw new StandinError(`no such device ${spec}`);
  const st = statSync(path);
  if (!st.isBlockDevice()) throw new StandinError(`${spec} is not a block device`);
  const rdev = st.rdev;
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00);
  const majMin = `${major}:${minor}`;
  const sys = `/sys/dev/block/${majMin}`;
  const sectors = Number(sysRead(`${sys}/size`) ?? NaN);
  if (!Number.isSafeInteger(sectors)) throw new StandinError(`cannot read the size of ${spec}`);
  const offset = sysRead(`${sys}/loop/offset`);
  const back = sysRead(`${sys}/loop/backing_file`);
  return {
    path,
    majMin,
    sectors,
    readOnly: sysRead(`${sys}/ro`) === '1',
    logicalBlockBytes: Number(sysRead(`${sys}/queue/logical_block_size`) ?? 512),
    backingFile: back !== undefined && offset === '0' && !back.endsWith(' (deleted)') ? back : undefined,
  };
}

function sectorCount(s: string | undefined, what: string): number {
  if (s === undefined || !/^[0-9]+$/.test(s)) throw new StandinError(`Invalid ${what}: ${JSON.stringify(s)}`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new StandinError(`Invalid ${what}: ${s}`);
  return n;
}

/** `0 LEN snapshot ORIGIN COW P|N|PO CHUNK [#feat feat…]` */
export function parseSnapshotTable(line: string): SnapshotTable {
  if (line.includes('\n')) throw new StandinError('only one table line is supported');
  const w = line.trim().split(/\s+/);
  if (w.length < 7) throw new StandinError(`snapshot: requires at least 4 arguments: ${JSON.stringify(line)}`);
  const [start, lenS, target, originS, cowS, storeS, chunkS, ...rest] = w;
  if (sectorCount(start, 'start sector') !== 0) throw new StandinError('the table must start at sector 0');
  const len = sectorCount(lenS, 'length');
  if (len === 0) throw new StandinError('zero-length target');
  if (target !== 'snapshot') throw new StandinError(`unsupported target type ${JSON.stringify(target)}: the stand-in knows only "snapshot"`);
  if (storeS !== 'P' && storeS !== 'N' && storeS !== 'PO') throw new StandinError(`Invalid persistent flag ${JSON.stringify(storeS)}`);
  const chunkSectors = sectorCount(chunkS, 'chunk size');
  if (chunkSectors === 0 || (chunkSectors & (chunkSectors - 1)) !== 0) throw new StandinError(`Chunk size is not a power of 2: ${chunkSectors}`);
  const features: string[] = [];
  if (rest.length > 0) {
    const n = sectorCount(rest[0], 'feature count');
    if (rest.length !== n + 1) throw new StandinError(`feature count ${n} does not match ${rest.length - 1} features`);
    for (const f of rest.slice(1)) {
      if (!FEATURES.has(f)) throw new StandinError(`Unsupported feature ${JSON.stringify(f)}`);
      features.push(f);
    }
  }
  const origin = blockDev(originS ?? '');
  const cow = blockDev(cowS ?? '');
  if (origin.majMin === cow.majMin) throw new StandinError('origin and COW are the same device');
  if (len > origin.sectors) throw new StandinError(`${origin.path} too small for target: ${len} > ${origin.sectors} sectors`);
  if (cow.readOnly) throw new StandinError(`${cow.path}: COW device is read-only`);
  const minChunk = Math.max(origin.logicalBlockBytes, cow.logicalBlockBytes) / 512;
  if (chunkSectors < minChunk) throw new StandinError(`Chunk size is not a multiple of device blocksize (${minChunk} sectors)`);
  if (cow.sectors < chunkSectors * 2) throw new StandinError('COW device too small for a header and one metadata area');
  return { len, origin, cow, store: storeS, chunkSectors, features };
}
