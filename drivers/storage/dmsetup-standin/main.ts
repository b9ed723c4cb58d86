// A stand-in for `dmsetup` on hosts without device-mapper (no /dev/mapper/control).
// It accepts the forms the dm disk driver uses: create NAME --table T, remove NAME,
// status NAME, table NAME, ls. A "device" is a regular file MAPPER_DIR/NAME holding
// origin + CoW exceptions; writes to it reach the CoW (in dm-snapshot's persistent
// format) at `status` and `remove`, where a CoW too small for them invalidates the
// snapshot as the kernel does. State lives in $SANDBOXD_DMSETUP_STATE.
import { execFileSync } from 'node:child_process';
import {
  closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync,
  readSync, renameSync, rmSync, writeFileSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { CowLayout, readExceptions, readHeader, writeExceptions, writeHeader, type Exception } from './cow-store.ts';
import { StandinError, blockDev, parseSnapshotTable, type SnapshotTable } from './table.ts';

interface DeviceState {
  name: string;
  minor: number;
  len: number;
  originPath: string;
  originMajMin: string;
  originSource: string;
  cowPath: string;
  cowMajMin: string;
  store: SnapshotTable['store'];
  chunkSectors: number;
  features: string[];
  invalid: boolean;
}

const NAME = /^[A-Za-z0-9_+.:@][A-Za-z0-9_+.:@-]{0,126}$/;
const stateDir = process.env.SANDBOXD_DMSETUP_STATE ?? '';
const mapperDir = process.env.SANDBOXD_DMSETUP_MAPPER_DIR ?? join(stateDir, 'mapper');
const devicesDir = join(stateDir, 'devices');

function fail(msg: string): never {
  throw new StandinError(msg);
}

function checkName(name: string | undefined): string {
  if (name === undefined || !NAME.test(name) || name === '.' || name === '..') fail(`Invalid device name ${JSON.stringify(name)}`);
  return name;
}

function load(name: string): DeviceState | undefined {
  const p = join(devicesDir, `${name}.json`);
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as DeviceState) : undefined;
}

function save(s: DeviceState): void {
  const p = join(devicesDir, `${s.name}.json`);
  writeFileSync(`${p}.tmp`, JSON.stringify(s));
  renameSync(`${p}.tmp`, p);
}

function all(): DeviceState[] {
  return readdirSync(devicesDir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => load(f.slice(0, -5)))
    .filter((s): s is DeviceState => s !== undefined);
}

function mustExist(name: string): DeviceState {
  return load(name) ?? fail('Device does not exist.');
}

const devPath = (name: string) => join(mapperDir, name);

/** Processes (other than this one) holding the device file open: dmsetup info's "Open count". */
function openCount(file: string): number {
  let n = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(pid) || Number(pid) === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === file) n++;
      } catch {
        /* the process or fd went away */
      }
    }
  }
  return n;
}

function create(name: string, tableLine: string): void {
  if (load(name) !== undefined) fail(`device-mapper: create ioctl on ${name}  failed: Device or resource busy`);
  const t = parseSnapshotTable(tableLine);
  const user = all().find((s) => s.cowMajMin === t.cow.majMin);
  if (user !== undefined) fail(`device-mapper: reload ioctl on ${name}  failed: Device or resource busy (COW in use by ${user.name})`);
  const cowFd = openSync(t.cow.path, 'r+');
  let chunk = t.chunkSectors;
  let valid = true;
  let exceptions: Exception[] = [];
  try {
    if (t.store !== 'N') {
      const h = readHeader(cowFd);
      if (h.kind === 'corrupt') fail(`device-mapper: reload ioctl on ${name}  failed: Invalid or corrupt snapshot`);
      if (h.kind === 'new') writeHeader(cowFd, true, chunk);
      else {
        if (h.chunkSectors !== chunk) process.stderr.write(`chunk size ${chunk} overridden by the COW header: ${h.chunkSectors}\n`);
        chunk = h.chunkSectors;
        valid = h.valid;
        if (valid) exceptions = readExceptions(cowFd, new CowLayout(chunk, Math.floor(t.cow.sectors / chunk)));
      }
    }
    const source = t.origin.backingFile ?? t.origin.path;
    const tmp = join(mapperDir, `.${name}.tmp`);
    rmSync(tmp, { force: true });
    if (valid) {
      // A reflink where the filesystem has them, a sparse copy elsewhere.
      execFileSync('cp', ['--reflink=auto', '--sparse=always', '--', source, tmp], { stdio: ['ignore', 'ignore', 'inherit'] });
      const fd = openSync(tmp, 'r+');
      try {
        ftruncateSync(fd, t.len * 512);
        const buf = Buffer.alloc(chunk * 512);
        for (const e of exceptions) {
          if (e.oldChunk * chunk >= t.len) continue;
          readSync(cowFd, buf, 0, buf.length, e.newChunk * buf.length);
          writeSync(fd, buf, 0, buf.length, e.oldChunk * buf.length);
        }
      } finally {
        closeSync(fd);
      }
    } else {
      // An invalid snapshot fails every read; here the device has no bytes at all.
      writeFileSync(tmp, '');
    }
    const minor = Math.max(-1, ...all().map((s) => s.minor)) + 1;
    save({
      name, minor, len: t.len, originPath: t.origin.path, originMajMin: t.origin.majMin, originSource: source,
      cowPath: t.cow.path, cowMajMin: t.cow.majMin, store: t.store, chunkSectors: chunk, features: t.features, invalid: !valid,
    });
    renameSync(tmp, devPath(name));
  } finally {
    closeSync(cowFd);
  }
}

/** Moves the device's writes into the CoW; invalidates the snapshot when they do not fit. */
function sync(s: DeviceState): void {
  if (s.invalid || s.store === 'N') return;
  const cow = blockDev(s.cowPath);
  const layout = new CowLayout(s.chunkSectors, Math.floor(cow.sectors / s.chunkSectors));
  const cowFd = openSync(s.cowPath, 'r+');
  const devFd = openSync(devPath(s.name), 'r');
  const orgFd = openSync(s.originSource, 'r');
  try {
    const exceptions = readExceptions(cowFd, layout);
    const byOld = new Map(exceptions.map((e, i) => [e.oldChunk, i]));
    const cb = layout.chunkBytes;
    const chunks = Math.ceil((s.len * 512) / cb);
    const dev = Buffer.alloc(cb);
    const org = Buffer.alloc(cb);
    const writes: Array<[number, Buffer]> = [];
    for (let c = 0; c < chunks; c++) {
      dev.fill(0);
      org.fill(0);
      readSync(devFd, dev, 0, cb, c * cb);
      readSync(orgFd, org, 0, cb, c * cb);
      const known = byOld.get(c);
      if (known === undefined && dev.equals(org)) continue;
      let i = known;
      if (i === undefined) {
        i = exceptions.length;
        exceptions.push({ oldChunk: c, newChunk: layout.dataChunk(i) });
        byOld.set(c, i);
        if (!layout.fits(exceptions.length)) return invalidate(s, cowFd);
      }
      writes.push([layout.dataChunk(i), Buffer.from(dev)]);
    }
    for (const [at, data] of writes) writeSync(cowFd, data, 0, data.length, at * cb);
    writeExceptions(cowFd, layout, exceptions);
  } finally {
    closeSync(orgFd);
    closeSync(devFd);
    closeSync(cowFd);
  }
}

function invalidate(s: DeviceState, cowFd: number): void {
  process.stderr.write(`device-mapper: snapshots: Invalidating snapshot: Unable to allocate exception.\n`);
  writeHeader(cowFd, false, s.chunkSectors);
  writeFileSync(devPath(s.name), '');
  save({ ...s, invalid: true });
}

function status(name: string): string {
  const s = mustExist(name);
  sync(s);
  const now = mustExist(name);
  if (now.invalid) return `0 ${now.len} snapshot Invalid`;
  if (now.store === 'N') return `0 ${now.len} snapshot ${2 * now.chunkSectors}/${blockDev(now.cowPath).sectors} ${2 * now.chunkSectors}`;
  const cow = blockDev(now.cowPath);
  const layout = new CowLayout(now.chunkSectors, Math.floor(cow.sectors / now.chunkSectors));
  const fd = openSync(now.cowPath, 'r');
  try {
    const [a, t, m] = layout.usage(readExceptions(fd, layout).length, now.chunkSectors, cow.sectors);
    return `0 ${now.len} snapshot ${a}/${t} ${m}`;
  } finally {
    closeSync(fd);
  }
}

function remove(name: string): void {
  const s = load(name) ?? fail(`device-mapper: remove ioctl on ${name}  failed: No such device or address`);
  if (openCount(devPath(name)) > 0) fail(`device-mapper: remove ioctl on ${name}  failed: Device or resource busy`);
  sync(s);
  rmSync(devPath(name), { force: true });
  rmSync(join(devicesDir, `${name}.json`), { force: true });
}

function table(name: string): string {
  const s = mustExist(name);
  const feats = s.features.length > 0 ? ` ${s.features.length} ${s.features.join(' ')}` : '';
  return `0 ${s.len} snapshot ${s.originMajMin} ${s.cowMajMin} ${s.store} ${s.chunkSectors}${feats}`;
}

function ls(): string {
  const list = all().sort((a, b) => a.name.localeCompare(b.name));
  return list.length === 0 ? 'No devices found' : list.map((s) => `${s.name}\t(253:${s.minor})`).join('\n');
}

/** The pid in the lock, or NaN while it is being written or removed by its holder. */
function lockHolder(pidFile: string): number {
  try {
    return Number(readFileSync(pidFile, 'utf8'));
  } catch {
    return NaN;
  }
}

function withLock<T>(fn: () => T): T {
  const lock = join(stateDir, '.lock');
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      break;
    } catch (err) {
      // ENOENT: the lock dir vanished under us (a stale-lock cleanup); take another turn.
      if ((err as { code?: string }).code !== 'EEXIST' && (err as { code?: string }).code !== 'ENOENT') throw err;
      const holder = lockHolder(join(lock, 'pid'));
      if (Number.isInteger(holder) && holder > 0 && !existsSync(`/proc/${holder}`)) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) fail('stand-in dmsetup: state lock held too long');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function main(argv: string[]): string | undefined {
  if (stateDir === '' || !stateDir.startsWith('/')) fail('stand-in dmsetup: set SANDBOXD_DMSETUP_STATE to an absolute directory');
  mkdirSync(devicesDir, { recursive: true });
  mkdirSync(mapperDir, { recursive: true });
  const [cmd, ...rest] = argv;
  return withLock(() => {
    switch (cmd) {
      case 'create': {
        if (rest.length !== 3 || rest[1] !== '--table') fail('usage: dmsetup create NAME --table TABLE');
        create(checkName(rest[0]), rest[2] ?? '');
        return undefined;
      }
      case 'remove':
      case 'status':
      case 'table': {
        if (rest.length !== 1) fail(`usage: dmsetup ${cmd} NAME`);
        const name = checkName(rest[0]);
        if (cmd === 'remove') return void remove(name);
        return cmd === 'status' ? status(name) : table(name);
      }
      case 'ls':
        if (rest.length !== 0) fail('usage: dmsetup ls');
        return ls();
      default:
        fail(`stand-in dmsetup: unsupported command ${JSON.stringify(cmd)}`);
    }
  });
}

try {
  const out = main(process.argv.slice(2));
  if (out !== undefined) process.stdout.write(`${out}\n`);
} catch (err) {
  process.stderr.write(`${err instanceof StandinError ? err.message : String(err)}\nCommand failed.\n`);
  process.exitCode = 1;
}
