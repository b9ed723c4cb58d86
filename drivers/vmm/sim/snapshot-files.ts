import { closeSync, fstatSync, ftruncateSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GuestMemory, MemoryRange } from './memory.ts';
import { missingDevicePath, PAGE_SIZE, parseVmConfig, type VmConfig } from './vm-config.ts';

// The three files of a CH snapshot directory (reference §2.2): config.json (the
// VmConfig), state.json (component states; the memory manager's part holds the
// memory_ranges table) and memory-ranges (guest RAM, back to back in table order).
// All three are created with create_new semantics.

export class SnapshotError extends Error {}

const WRITE_CHUNK = 4 * 1024 * 1024;

function createNew(path: string): number {
  try {
    return openSync(path, 'wx', 0o600);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EEXIST') throw new SnapshotError(`Error creating ${path}: File exists (os error 17)`);
    throw new SnapshotError(`Error creating ${path}: ${e.message}`);
  }
}

function writeAll(fd: number, data: Buffer, position: number): void {
  for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, position + done);
}

export function dirFromUrl(url: string, what: 'destination' | 'source'): string {
  if (!url.startsWith('file://')) throw new SnapshotError(`Invalid ${what} URL "${url}": only file:// is supported`);
  return fileURLToPath(url);
}

/** Writes memory-ranges: only resident pages when `sparse` (holes elsewhere), every byte otherwise. */
function writeMemory(fd: number, mem: GuestMemory, sparse: boolean): void {
  if (sparse) {
    ftruncateSync(fd, mem.size);
    const pages = mem.populatedPages();
    for (let i = 0; i < pages.length; ) {
      // coalesce runs of adjacent pages into one write
      let j = i;
      while (j + 1 < pages.length && pages[j + 1] === (pages[j] as number) + 1) j++;
      const run = pages.slice(i, j + 1).map((p) => mem.pageData(p) as Buffer);
      writeAll(fd, Buffer.concat(run), (pages[i] as number) * PAGE_SIZE);
      i = j + 1;
    }
    return;
  }
  const chunk = Buffer.alloc(WRITE_CHUNK);
  for (let offset = 0; offset < mem.size; offset += WRITE_CHUNK) {
    const len = Math.min(WRITE_CHUNK, mem.size - offset);
    chunk.fill(0);
    for (let p = offset / PAGE_SIZE; p < (offset + len) / PAGE_SIZE; p++) mem.pageData(p)?.copy(chunk, p * PAGE_SIZE - offset);
    writeAll(fd, chunk.subarray(0, len), offset);
  }
}

export function writeSnapshot(destUrl: string, config: VmConfig, mem: GuestMemory, sparse: boolean): void {
  const dir = dirFromUrl(destUrl, 'destination');
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) throw new SnapshotError('Destination is not a directory');
  const ranges: MemoryRange[] = [{ gpa: 0, length: mem.size }];
  const state = {
    snapshots: {
      vm: {
        id: 'vm',
        snapshot_data: { state: JSON.stringify({ vm_state: 'Paused' }) },
        snapshots: {
          'cpu-manager': { id: 'cpu-manager', snapshot_data: { state: JSON.stringify({ vcpus: config.cpus.boot_vcpus }) } },
          'memory-manager': {
            id: 'memory-manager',
            snapshot_data: { state: JSON.stringify({ memory_ranges: { data: ranges } }) },
          },
          'device-manager': { id: 'device-manager', snapshot_data: { state: '{}' } },
        },
      },
    },
  };
  const files: [string, (fd: number) => void][] = [
    ['config.json', (fd) => writeAll(fd, Buffer.from(JSON.stringify(config)), 0)],
    ['memory-ranges', (fd) => writeMemory(fd, mem, sparse)],
    ['state.json', (fd) => writeAll(fd, Buffer.from(JSON.stringify(state)), 0)],
  ];
  for (const [name, write] of files) {
    const fd = createNew(join(dir, name));
    try {
      write(fd);
    } finally {
      closeSync(fd);
    }
  }
}

export interface OpenedSnapshot {
  config: VmConfig;
  ranges: MemoryRange[];
  /** Open read-only; the caller owns it (GuestMemory closes it). */
  memoryFd: number;
  memoryPath: string;
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SnapshotError(`Failed to open ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new SnapshotError(`Error deserialising ${path}: ${(err as Error).message}`);
  }
}

function memoryRanges(state: unknown): MemoryRange[] {
  const vm = (state as { snapshots?: { vm?: { snapshots?: Record<string, { snapshot_data?: { state?: unknown } }> } } })
    ?.snapshots?.vm?.snapshots?.['memory-manager']?.snapshot_data?.state;
  if (typeof vm !== 'string') throw new SnapshotError('state.json: missing memory-manager state');
  let table: unknown;
  try {
    table = (JSON.parse(vm) as { memory_ranges?: { data?: unknown } }).memory_ranges?.data;
  } catch {
    throw new SnapshotError('state.json: memory-manager state is not valid JSON');
  }
  if (!Array.isArray(table)) throw new SnapshotError('state.json: missing memory_ranges table');
  return table.map((r) => {
    const { gpa, length } = (r ?? {}) as { gpa?: unknown; length?: unknown };
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || (gpa as number) % PAGE_SIZE || (length as number) % PAGE_SIZE) {
      throw new SnapshotError('state.json: bad memory_ranges entry');
    }
    return { gpa: gpa as number, length: length as number };
  });
}

/** Reads and checks a snapshot dir the way a restore would; refuses anything missing, truncated or corrupt. */
export function openSnapshot(sourceUrl: string): OpenedSnapshot {
  const dir = dirFromUrl(sourceUrl, 'source');
  let config: VmConfig;
  try {
    config = parseVmConfig(readJson(join(dir, 'config.json')));
  } catch (err) {
    throw err instanceof SnapshotError ? err : new SnapshotError(`Error deserialising config.json: ${(err as Error).message}`);
  }
  const ranges = memoryRanges(readJson(join(dir, 'state.json')));
  const total = ranges.reduce((sum, r) => sum + r.length, 0);
  if (total !== config.memory.size) {
    throw new SnapshotError(`state.json: memory_ranges cover ${total} bytes but config.json says ${config.memory.size}`);
  }
  const missing = missingDevicePath(config);
  if (missing) throw new SnapshotError(missing);
  const memPath = join(dir, 'memory-ranges');
  let fd: number;
  try {
    fd = openSync(memPath, 'r');
  } catch (err) {
    throw new SnapshotError(`Failed to open ${memPath}: ${(err as Error).message}`);
  }
  const size = fstatSync(fd).size;
  if (size < total) {
    closeSync(fd);
    throw new SnapshotError(`Error reading ${memPath}: failed to fill whole buffer (${size} of ${total} bytes)`);
  }
  return { config, ranges, memoryFd: fd, memoryPath: memPath };
}
