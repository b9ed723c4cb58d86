import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ChDriver, type ChDriverOptions } from '../../../drivers/vmm/ch/ch-driver.ts';
import type { NetworkHandle } from '../../../drivers/network/network.ts';
import type { VmSpec } from '../../../drivers/vmm/vmm.ts';

// A scratch host for driving ChDriver against the simulator: run/log dirs, a
// sparse disk file and a dummy kernel under one sandboxd-test- temp dir.

export const CHSIM = resolve(import.meta.dirname, '../../../drivers/vmm/sim/chsim');

export const loopbackNet: NetworkHandle = {
  slot: 1,
  namespace: null,
  tapName: 'sbxt-tap1',
  guestMac: '02:fc:00:00:00:01',
  guestIp: '169.254.0.21',
  hostIp: '127.0.0.1',
};

export interface SimHost {
  root: string;
  runDir: string;
  driver(extra?: Partial<ChDriverOptions>): ChDriver;
  disk(name: string): string;
  spec(sandboxId: string, extra?: Partial<VmSpec>): VmSpec;
  /** Files left in runDir (sockets, pidfiles, restore dirs). */
  leftovers(): string[];
  remove(): void;
}

export function makeSimHost(): SimHost {
  const root = mkdtempSync(join(tmpdir(), 'sandboxd-test-'));
  const runDir = join(root, 'run');
  const logDir = join(root, 'logs');
  mkdirSync(runDir);
  const kernel = join(root, 'vmlinux');
  writeFileSync(kernel, 'not a kernel');
  const disk = (name: string): string => {
    const path = join(root, `${name}.img`);
    if (!existsSync(path)) {
      writeFileSync(path, '');
      truncateSync(path, 64 << 20);
    }
    return path;
  };
  return {
    root,
    runDir,
    driver: (extra = {}) =>
      new ChDriver({ binary: CHSIM, kernelPath: kernel, runDir, logDir, envdAddress: 'sim-port-file', startTimeoutMs: 20_000, shutdownGraceMs: 3000, ...extra }),
    disk,
    spec: (sandboxId, extra = {}) => ({
      sandboxId,
      vcpus: 1,
      memoryMB: 64,
      diskPath: disk(sandboxId),
      network: loopbackNet,
      sandboxDir: join(root, 'sbdir', sandboxId),
      ...extra,
    }),
    leftovers: () => readdirSync(runDir),
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** True while a process with this pid exists (zombies included). */
export function pidExists(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}
