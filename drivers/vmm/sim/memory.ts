import { closeSync, constants, openSync, readSync } from 'node:fs';
import { PAGE_SIZE } from './vm-config.ts';

// Guest RAM as a sparse page map: only pages the guest touched exist (like a memfd
// with holes). After an on-demand restore, pages stay in the snapshot's
// memory-ranges file until something faults them in: a guest access, the memory
// loader, or v53's background prefault. Pages never faulted in are holes, so a
// snapshot taken before then loses them (reference §6).

export interface MemoryRange {
  gpa: number;
  length: number;
}

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);
const CHUNK = 4 * 1024 * 1024;

function isZero(buf: Buffer): boolean {
  return buf.equals(ZERO_PAGE);
}

/** Where a guest page lives inside memory-ranges: ranges are written back to back in table order. */
function fileOffsetOf(ranges: readonly MemoryRange[], gpa: number): number | undefined {
  let offset = 0;
  for (const r of ranges) {
    if (gpa >= r.gpa && gpa < r.gpa + r.length) return offset + (gpa - r.gpa);
    offset += r.length;
  }
  return undefined;
}

/**
 * Opens `path` with O_DIRECT for bulk reads: reading the holes of a sparse file
 * through the page cache costs ~1 s per 512 MiB (the kernel fills cache pages with
 * zeros), O_DIRECT ~0.07 s. Filesystems without O_DIRECT (tmpfs) get undefined.
 */
export function openDirect(path: string): number | undefined {
  try {
    return openSync(path, constants.O_RDONLY | constants.O_DIRECT);
  } catch {
    return undefined;
  }
}

/** A 4 MiB buffer: large enough that V8 maps it page-aligned, as O_DIRECT needs. */
function chunkBuffer(): Buffer {
  return Buffer.alloc(CHUNK);
}

function readFull(fd: number, directFd: number | undefined, buf: Buffer, len: number, position: number): number {
  if (directFd !== undefined) {
    try {
      return readSync(directFd, buf, 0, len, position);
    } catch {
      // an unaligned buffer or offset: fall back to the page cache
    }
  }
  return readSync(fd, buf, 0, len, position);
}

interface LazySource {
  fd: number;
  directFd: number | undefined;
  ranges: MemoryRange[];
  unloaded: Uint8Array;
  pending: number;
}

export class GuestMemory {
  readonly size: number;
  readonly pageCount: number;
  private readonly pages = new Map<number, Buffer>();
  private lazy: LazySource | undefined;

  constructor(size: number) {
    this.size = size;
    this.pageCount = size / PAGE_SIZE;
  }

  /** Copy restore: reads the populated pages of memory-ranges now (zero pages stay holes). */
  static copyFrom(size: number, fd: number, ranges: MemoryRange[], directFd?: number): GuestMemory {
    const mem = new GuestMemory(size);
    const chunk = chunkBuffer();
    let fileOffset = 0;
    for (const r of ranges) {
      for (let done = 0; done < r.length; done += CHUNK) {
        const len = Math.min(CHUNK, r.length - done);
        const got = readFull(fd, directFd, chunk, len, fileOffset + done);
        if (got < len) throw new Error('failed to fill whole buffer');
        for (let off = 0; off < len; off += PAGE_SIZE) {
          const page = chunk.subarray(off, off + PAGE_SIZE);
          if (!isZero(page)) mem.pages.set((r.gpa + done + off) / PAGE_SIZE, Buffer.from(page));
        }
      }
      fileOffset += r.length;
    }
    return mem;
  }

  /** On-demand restore: every page is served from `fd` on first touch; the fd stays open until all are. */
  static onDemand(size: number, fd: number, ranges: MemoryRange[], directFd?: number): GuestMemory {
    const mem = new GuestMemory(size);
    const unloaded = new Uint8Array(mem.pageCount);
    let pending = 0;
    for (const r of ranges) {
      for (let p = r.gpa / PAGE_SIZE; p < (r.gpa + r.length) / PAGE_SIZE; p++) {
        unloaded[p] = 1;
        pending++;
      }
    }
    mem.lazy = { fd, directFd, ranges, unloaded, pending };
    if (pending === 0) mem.finishLazy();
    return mem;
  }

  /** Pages still waiting in the source file (0 once fully loaded or when not restored on demand). */
  get pendingPages(): number {
    return this.lazy?.pending ?? 0;
  }

  private finishLazy(): void {
    if (!this.lazy) return;
    closeSync(this.lazy.fd);
    if (this.lazy.directFd !== undefined) closeSync(this.lazy.directFd);
    this.lazy = undefined;
  }

  private fault(page: number): void {
    const lazy = this.lazy;
    if (!lazy || lazy.unloaded[page] !== 1) return;
    const offset = fileOffsetOf(lazy.ranges, page * PAGE_SIZE);
    if (offset !== undefined) {
      const buf = Buffer.alloc(PAGE_SIZE);
      readSync(lazy.fd, buf, 0, PAGE_SIZE, offset);
      // a page written by the guest before this fault would have been faulted first
      if (!isZero(buf)) this.pages.set(page, buf);
    }
    lazy.unloaded[page] = 0;
    lazy.pending--;
    if (lazy.pending === 0) this.finishLazy();
  }

  /** Faults in up to `count` pending pages starting at `fromPage`, a chunk at a time; returns the next page. */
  faultRange(fromPage: number, count: number): number {
    const end = Math.min(this.pageCount, fromPage + count);
    const perChunk = CHUNK / PAGE_SIZE;
    let chunk: Buffer | undefined;
    for (let p = fromPage; p < end && this.lazy; ) {
      const lazy = this.lazy;
      const stop = Math.min(end, p + perChunk);
      const first = fileOffsetOf(lazy.ranges, p * PAGE_SIZE);
      const last = fileOffsetOf(lazy.ranges, (stop - 1) * PAGE_SIZE);
      const contiguous = first !== undefined && last === first + (stop - 1 - p) * PAGE_SIZE;
      if (!contiguous) {
        this.fault(p);
        p++;
        continue;
      }
      chunk ??= chunkBuffer();
      const len = (stop - p) * PAGE_SIZE;
      const got = readFull(lazy.fd, lazy.directFd, chunk, len, first);
      if (got < len) throw new Error('failed to fill whole buffer');
      for (let q = p; q < stop && this.lazy; q++) {
        if (lazy.unloaded[q] !== 1) continue;
        const page = chunk.subarray((q - p) * PAGE_SIZE, (q - p + 1) * PAGE_SIZE);
        if (!isZero(page)) this.pages.set(q, Buffer.from(page));
        lazy.unloaded[q] = 0;
        lazy.pending--;
        if (lazy.pending === 0) this.finishLazy();
      }
      p = stop;
    }
    return end;
  }

  private checkRange(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`guest access ${offset}+${length} outside RAM of ${this.size} bytes`);
    }
  }

  read(offset: number, length: number): Buffer {
    this.checkRange(offset, length);
    const out = Buffer.alloc(length);
    for (let pos = 0; pos < length; ) {
      const page = Math.floor((offset + pos) / PAGE_SIZE);
      const inPage = (offset + pos) % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inPage, length - pos);
      this.fault(page);
      const data = this.pages.get(page);
      if (data) data.copy(out, pos, inPage, inPage + n);
      pos += n;
    }
    return out;
  }

  write(offset: number, data: Buffer): void {
    this.checkRange(offset, data.length);
    for (let pos = 0; pos < data.length; ) {
      const page = Math.floor((offset + pos) / PAGE_SIZE);
      const inPage = (offset + pos) % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inPage, data.length - pos);
      this.fault(page);
      let buf = this.pages.get(page);
      if (!buf) {
        buf = Buffer.alloc(PAGE_SIZE);
        this.pages.set(page, buf);
      }
      data.copy(buf, inPage, pos, pos + n);
      pos += n;
    }
  }

  /** Resident pages in ascending order: what a SEEK_DATA walk of the memfd would find. */
  populatedPages(): number[] {
    return [...this.pages.keys()].sort((a, b) => a - b);
  }

  pageData(page: number): Buffer | undefined {
    return this.pages.get(page);
  }

  residentBytes(): number {
    return this.pages.size * PAGE_SIZE;
  }

  close(): void {
    this.finishLazy();
  }
}
