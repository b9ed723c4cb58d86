import { isAbsolute } from 'node:path';
import { SandboxdError } from '../../../core/errors.ts';
import type { NetworkHandle } from '../../network/network.ts';

/**
 * Cloud Hypervisor command lines (reference §2.1). Every value is one argv entry;
 * CH splits option strings on ',' and '=', so a path holding a comma would
 * silently become two options: such input is refused here.
 */

export interface VmmPaths {
  apiSocket: string;
  logFile: string;
  serialFile: string;
}

export interface BootArgs {
  kernel: string;
  cmdline: string;
  diskPath: string;
  network: NetworkHandle;
  vcpus: number;
  memoryMB: number;
}

const TAP = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const NETNS = /^[A-Za-z0-9_.-]{1,64}$/;

export function checkPath(what: string, path: unknown): string {
  if (typeof path !== 'string' || !isAbsolute(path) || /[,\0\n\r]/.test(path) || path.split('/').includes('..')) {
    throw new SandboxdError('invalid_argument', `${what} must be an absolute path without ',' or '..': ${JSON.stringify(path)}`);
  }
  return path;
}

export function checkNetwork(net: NetworkHandle): void {
  if (!TAP.test(net.tapName)) throw new SandboxdError('invalid_argument', `invalid tap name: ${JSON.stringify(net.tapName)}`);
  if (!MAC.test(net.guestMac)) throw new SandboxdError('invalid_argument', `invalid guest MAC: ${JSON.stringify(net.guestMac)}`);
  if (!IPV4.test(net.hostIp)) throw new SandboxdError('invalid_argument', `invalid host IP: ${JSON.stringify(net.hostIp)}`);
  if (net.namespace !== null && !NETNS.test(net.namespace)) {
    throw new SandboxdError('invalid_argument', `invalid network namespace: ${JSON.stringify(net.namespace)}`);
  }
}

function checkSize(what: string, n: number, min: number, max: number): number {
  if (!Number.isInteger(n) || n < min || n > max) throw new SandboxdError('invalid_argument', `${what} must be an integer in ${min}..${max}: ${n}`);
  return n;
}

export function bootArgs(paths: VmmPaths, boot: BootArgs): string[] {
  checkNetwork(boot.network);
  return [
    '--api-socket', `path=${checkPath('api socket', paths.apiSocket)}`,
    '--kernel', checkPath('kernel', boot.kernel),
    '--cmdline', boot.cmdline,
    '--disk', `path=${checkPath('disk', boot.diskPath)}`,
    '--net', `tap=${boot.network.tapName},mac=${boot.network.guestMac}`,
    '--cpus', `boot=${checkSize('vcpus', boot.vcpus, 1, 256)}`,
    // shared=on: RAM is a memfd, so free-page reporting punches holes and snapshots stay sparse (§2.1, §3).
    '--memory', `size=${checkSize('memoryMB', boot.memoryMB, 64, 1 << 20)}M,shared=on`,
    '--balloon', 'size=0,free_page_reporting=on',
    '--serial', `file=${checkPath('serial log', paths.serialFile)}`,
    '--console', 'off',
    '--log-file', checkPath('log file', paths.logFile),
  ];
}

/** `--restore` belongs to the VMM group: no VM-config flag may come with it, or CH boots instead. */
export function restoreArgs(paths: VmmPaths, sourceDir: string, onDemand: boolean): string[] {
  const source = `source_url=file://${checkPath('snapshot dir', sourceDir)}`;
  return [
    '--api-socket', `path=${checkPath('api socket', paths.apiSocket)}`,
    '--restore', onDemand ? `${source},memory_restore_mode=ondemand` : source,
    '--log-file', checkPath('log file', paths.logFile),
  ];
}

/** Runs the VMM inside the slot's namespace; `ip netns exec` execs in place, so the pid stays the VMM's. */
export function inNamespace(namespace: string | null, binary: string, args: string[]): { file: string; args: string[] } {
  if (namespace === null) return { file: binary, args };
  if (!NETNS.test(namespace)) throw new SandboxdError('invalid_argument', `invalid network namespace: ${JSON.stringify(namespace)}`);
  return { file: 'ip', args: ['netns', 'exec', namespace, binary, ...args] };
}

/** Major version from `cloud-hypervisor --version` ("cloud-hypervisor v52.0…") or vmm.ping ("52.0.0"). */
export function parseMajorVersion(text: string): number | null {
  const m = /\bv?(\d+)\.(\d+)/.exec(text);
  return m ? Number(m[1]) : null;
}

/** On-demand (userfaultfd) restore exists from v52 (§2.3). */
export const ONDEMAND_MIN_VERSION = 52;
