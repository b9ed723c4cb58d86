import { lstat, mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SandboxdError } from '../../../core/errors.ts';
import type { NetworkHandle } from '../../network/network.ts';

/**
 * CH rebuilds a restored VM's devices from the snapshot's config.json, which names
 * the disk, tap and serial file of the VM that was snapshotted (reference §2.2).
 * A template restored into another sandbox, or a sandbox resumed into a new dm
 * device, needs those re-pointed. The snapshot dir itself is shared and must stay
 * untouched, so each restore gets its own source dir: an edited config.json next to
 * symlinks to the original state.json and memory-ranges. CH opens memory-ranges
 * once, so lazy faults keep reading the file even after a later pause swaps dirs.
 */

export interface RestoreTargets {
  diskPath: string;
  network: NetworkHandle;
  serialFile: string;
}

const SNAPSHOT_FILES = ['state.json', 'memory-ranges'] as const;
const MAX_CONFIG_BYTES = 4 << 20;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Re-points the one disk and one NIC a sandbox has; every other key is kept as CH wrote it. */
export function repointConfig(config: Json, targets: RestoreTargets): Json {
  const out: Json = { ...config };
  const disks = config.disks;
  if (!Array.isArray(disks) || disks.length !== 1 || !isObject(disks[0])) {
    throw new SandboxdError('invalid_argument', 'snapshot config.json must hold exactly one disk');
  }
  out.disks = [{ ...disks[0], path: targets.diskPath }];
  const net = config.net;
  if (Array.isArray(net) && net.length > 0) {
    if (net.length !== 1 || !isObject(net[0])) throw new SandboxdError('invalid_argument', 'snapshot config.json must hold at most one NIC');
    out.net = [{ ...net[0], tap: targets.network.tapName, mac: targets.network.guestMac }];
  }
  if (isObject(config.serial) && config.serial.mode === 'File') out.serial = { ...config.serial, file: targets.serialFile };
  return out;
}

/** Builds `workDir` as the restore source for `snapshotDir`; idempotent (rebuilt from scratch each time). */
export async function prepareRestoreSource(snapshotDir: string, workDir: string, targets: RestoreTargets): Promise<void> {
  let text: string;
  try {
    const st = await lstat(join(snapshotDir, 'config.json'));
    if (st.size > MAX_CONFIG_BYTES) throw new SandboxdError('invalid_argument', `snapshot config.json is larger than ${MAX_CONFIG_BYTES} bytes`);
    text = await readFile(join(snapshotDir, 'config.json'), 'utf8');
  } catch (err) {
    if (err instanceof SandboxdError) throw err;
    throw new SandboxdError('not_found', `snapshot dir ${snapshotDir} has no readable config.json`, { cause: err });
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (err) {
    throw new SandboxdError('invalid_argument', `snapshot ${snapshotDir}: config.json is not JSON`, { cause: err });
  }
  if (!isObject(config)) throw new SandboxdError('invalid_argument', `snapshot ${snapshotDir}: config.json is not an object`);
  for (const name of SNAPSHOT_FILES) {
    try {
      await lstat(join(snapshotDir, name));
    } catch (err) {
      throw new SandboxdError('not_found', `snapshot dir ${snapshotDir} has no ${name}`, { cause: err });
    }
  }
  const edited = repointConfig(config, targets);

  await rm(workDir, { recursive: true, force: true });
  await mkdir(workDir, { recursive: true, mode: 0o700 });
  for (const name of SNAPSHOT_FILES) await symlink(join(snapshotDir, name), join(workDir, name));
  const tmp = join(workDir, 'config.json.tmp');
  await writeFile(tmp, JSON.stringify(edited), { mode: 0o600 });
  await rename(tmp, join(workDir, 'config.json'));
}
