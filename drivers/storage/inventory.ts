import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CallOpts } from '../call.ts';
import type { DmDiskDriver } from './dm-disk.ts';
import { canonical, type LoopAttachment, type LosetupLoopDriver } from './losetup-loop.ts';
import { assertHostPath } from './names.ts';

/** What the agent's storage left on the host; plain data for tests and crash recovery. */
export interface StorageInventory {
  /** Loop devices whose backing file lies under the data dir (origins read-only, CoWs read-write). */
  loops: LoopAttachment[];
  /** dm devices under the disk driver's prefix; null when device-mapper cannot be asked. */
  dmDevices: string[] | null;
  /** Why dmDevices is null. */
  dmError?: string;
  /** sandboxes/{id}/rootfs.cow files. */
  cowFiles: string[];
  /** Half-written copies (".NAME.tmp-*") a crash left in sandbox dirs. */
  tempFiles: string[];
}

export interface InventorySources {
  dataDir: string;
  loops?: LosetupLoopDriver;
  /** Omit for the clone backend, which makes no dm devices. */
  dm?: DmDiskDriver;
}

export async function listStorage(src: InventorySources, opts: CallOpts): Promise<StorageInventory> {
  assertHostPath('data dir', src.dataDir);
  const root = await canonical(src.dataDir);
  const loops = src.loops === undefined ? [] : (await src.loops.list(opts)).filter((l) => l.backingFile.startsWith(`${root}/`));
  let dmDevices: string[] | null = [];
  let dmError: string | undefined;
  if (src.dm !== undefined) {
    try {
      dmDevices = await src.dm.list(opts);
    } catch (err) {
      dmDevices = null;
      dmError = err instanceof Error ? err.message : String(err);
    }
  }
  const cowFiles: string[] = [];
  const tempFiles: string[] = [];
  const sandboxes = join(root, 'sandboxes');
  for (const entry of await readdir(sandboxes, { withFileTypes: true }).catch(() => [])) {
    if (!entry.isDirectory()) continue;
    const dir = join(sandboxes, entry.name);
    for (const f of await readdir(dir).catch(() => [] as string[])) {
      if (f === 'rootfs.cow') cowFiles.push(join(dir, f));
      else if (/^\..+\.tmp-[0-9a-f]+$/.test(f)) tempFiles.push(join(dir, f));
    }
  }
  const out: StorageInventory = { loops, dmDevices, cowFiles: cowFiles.sort(), tempFiles: tempFiles.sort() };
  if (dmError !== undefined) out.dmError = dmError;
  return out;
}
