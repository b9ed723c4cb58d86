import { readSync, writeSync, fsyncSync } from 'node:fs';

// The persistent exception store of dm-snapshot (dm-snap-persistent.c), as the
// stand-in writes it into the CoW device so that a CoW survives remove + create:
//   chunk 0: header {le32 magic "SnAp", le32 valid, le32 version, le32 chunk_size}
//   then areas: one metadata chunk of {le64 old_chunk, le64 new_chunk} pairs,
//   followed by the data chunks it describes. new_chunk 0 ends the list.

export const SNAP_MAGIC = 0x70416e53;
const HEADER_VERSION = 1;

export interface CowHeader {
  /** 'new' = all-zero magic (a fresh CoW); 'snap' = a SnAp header; 'corrupt' = anything else. */
  kind: 'new' | 'snap' | 'corrupt';
  valid: boolean;
  chunkSectors: number;
}

export interface Exception {
  oldChunk: number;
  newChunk: number;
}

export function readHeader(fd: number): CowHeader {
  const b = Buffer.alloc(16);
  readSync(fd, b, 0, 16, 0);
  const magic = b.readUInt32LE(0);
  if (magic === 0) return { kind: 'new', valid: true, chunkSectors: 0 };
  if (magic !== SNAP_MAGIC) return { kind: 'corrupt', valid: false, chunkSectors: 0 };
  return { kind: 'snap', valid: b.readUInt32LE(4) !== 0, chunkSectors: b.readUInt32LE(12) };
}

export function writeHeader(fd: number, valid: boolean, chunkSectors: number): void {
  const b = Buffer.alloc(chunkSectors * 512);
  b.writeUInt32LE(SNAP_MAGIC, 0);
  b.writeUInt32LE(valid ? 1 : 0, 4);
  b.writeUInt32LE(HEADER_VERSION, 8);
  b.writeUInt32LE(chunkSectors, 12);
  writeSync(fd, b, 0, b.length, 0);
  fsyncSync(fd);
}

/** Geometry of the store for one chunk size. */
export class CowLayout {
  readonly chunkBytes: number;
  /** Exceptions per metadata area. */
  readonly perArea: number;
  constructor(chunkSectors: number, readonly totalChunks: number) {
    this.chunkBytes = chunkSectors * 512;
    this.perArea = this.chunkBytes / 16;
  }

  metadataChunk(area: number): number {
    return 1 + area * (this.perArea + 1);
  }

  isMetadataChunk(c: number): boolean {
    return c >= 1 && (c - 1) % (this.perArea + 1) === 0;
  }

  /** Data chunk of the i-th exception in allocation order. */
  dataChunk(i: number): number {
    const area = Math.floor(i / this.perArea);
    return this.metadataChunk(area) + 1 + (i % this.perArea);
  }

  /** Whether `n` exceptions fit, counting the metadata area that holds the terminator. */
  fits(n: number): boolean {
    if (n === 0) return this.totalChunks >= 2;
    return this.dataChunk(n - 1) < this.totalChunks && this.metadataChunk(Math.floor(n / this.perArea)) < this.totalChunks;
  }

  /** dmsetup status figures: allocated, total and metadata sectors (dm-snap-persistent.c persistent_usage). */
  usage(n: number, chunkSectors: number, totalSectors: number): [number, number, number] {
    const nextFree = n === 0 ? 2 : this.dataChunk(n - 1) + 1;
    const currentArea = Math.floor(n / this.perArea);
    return [nextFree * chunkSectors, totalSectors, (currentArea + 2) * chunkSectors];
  }
}

export function readExceptions(fd: number, layout: CowLayout): Exception[] {
  const out: Exception[] = [];
  const meta = Buffer.alloc(layout.chunkBytes);
  for (let area = 0; layout.metadataChunk(area) < layout.totalChunks; area++) {
    readSync(fd, meta, 0, meta.length, layout.metadataChunk(area) * layout.chunkBytes);
    for (let i = 0; i < layout.perArea; i++) {
      const oldChunk = Number(meta.readBigUInt64LE(i * 16));
      const newChunk = Number(meta.readBigUInt64LE(i * 16 + 8));
      if (newChunk === 0) return out;
      out.push({ oldChunk, newChunk });
    }
  }
  return out;
}

/** Writes the metadata areas for `list` (data chunks are written by the caller). */
export function writeExceptions(fd: number, layout: CowLayout, list: readonly Exception[]): void {
  const areas = Math.floor(list.length / layout.perArea) + 1;
  for (let area = 0; area < areas; area++) {
    const meta = Buffer.alloc(layout.chunkBytes);
    const slice = list.slice(area * layout.perArea, (area + 1) * layout.perArea);
    slice.forEach((e, i) => {
      meta.writeBigUInt64LE(BigInt(e.oldChunk), i * 16);
      meta.writeBigUInt64LE(BigInt(e.newChunk), i * 16 + 8);
    });
    const at = layout.metadataChunk(area);
    if (at < layout.totalChunks) writeSync(fd, meta, 0, meta.length, at * layout.chunkBytes);
  }
  fsyncSync(fd);
}
