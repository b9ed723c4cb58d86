import { fileURLToPath } from 'node:url';
import { SandboxdError } from '../../core/errors.ts';
import { CloneDiskDriver } from './clone-disk.ts';
import { DmDiskDriver, deviceMapperAvailable } from './dm-disk.ts';
import { FileLoopDriver } from './file-loop.ts';
import { LosetupLoopDriver } from './losetup-loop.ts';
import type { DiskDriver, LoopDriver } from './storage.ts';

/** The stand-in dmsetup (for hosts without device-mapper; tests and demos). */
export const DMSETUP_STANDIN = fileURLToPath(new URL('./dmsetup-standin/dmsetup', import.meta.url));

export interface StorageConfig {
  /** 'auto' = device-mapper where the kernel has it, else the clone backend. */
  backend?: 'auto' | 'dm' | 'clone';
  /** Device name prefix (default 'sbxd-'). */
  prefix?: string;
  /** dm only: where device nodes appear (default /dev/mapper). */
  mapperDir?: string;
  /** dm only: run the stand-in dmsetup with its state in this dir (device files in STATE/mapper). */
  standinStateDir?: string;
}

export interface StorageDrivers {
  kind: 'dm' | 'clone';
  loop: LoopDriver;
  disk: DiskDriver;
}

export function makeStorage(config: StorageConfig = {}): StorageDrivers {
  const backend = config.backend ?? 'auto';
  const dm = backend === 'dm' || (backend === 'auto' && (deviceMapperAvailable() || config.standinStateDir !== undefined));
  if (!dm) {
    const disk = new CloneDiskDriver(config.prefix === undefined ? {} : { prefix: config.prefix });
    return { kind: 'clone', loop: new FileLoopDriver(), disk };
  }
  if (config.standinStateDir === undefined && !deviceMapperAvailable()) {
    throw new SandboxdError('invalid_argument', 'the dm storage backend needs device-mapper in the kernel (or the stand-in dmsetup)');
  }
  const loops = new LosetupLoopDriver();
  const standin = config.standinStateDir;
  const disk = new DmDiskDriver({
    loops,
    ...(config.prefix === undefined ? {} : { prefix: config.prefix }),
    ...(standin === undefined
      ? config.mapperDir === undefined ? {} : { mapperDir: config.mapperDir }
      : { dmsetupPath: DMSETUP_STANDIN, dmsetupEnv: { SANDBOXD_DMSETUP_STATE: standin }, mapperDir: `${standin}/mapper` }),
  });
  return { kind: 'dm', loop: loops, disk };
}
