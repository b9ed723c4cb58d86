import { posix } from 'node:path';
import { SandboxdError } from '../../core/errors.ts';
import { isSandboxId } from '../../core/ids.ts';

// Checks done before any path or device name reaches a command line.

/** Prefixes are part of every device name the agent owns; keep them short and harmless. */
const PREFIX = /^[a-z][a-z0-9]{0,11}-$/;

export function assertPrefix(prefix: string): string {
  if (!PREFIX.test(prefix)) throw new SandboxdError('invalid_argument', `invalid device name prefix: ${JSON.stringify(prefix)}`);
  return prefix;
}

/** The disk's device name: prefix + validated sandbox id. */
export function diskName(prefix: string, sandboxId: string): string {
  if (!isSandboxId(sandboxId)) throw new SandboxdError('invalid_argument', `invalid sandbox id: ${JSON.stringify(sandboxId)}`);
  return prefix + sandboxId;
}

/** Returns the sandbox id inside `name`, or throws when `name` is not prefix + a valid id. */
export function sandboxIdOf(prefix: string, name: string): string {
  const id = typeof name === 'string' && name.startsWith(prefix) ? name.slice(prefix.length) : '';
  if (!isSandboxId(id)) {
    throw new SandboxdError('invalid_argument', `invalid disk name ${JSON.stringify(name)}: expected ${prefix}<sandbox id>`);
  }
  return id;
}

/** Absolute, normalised (no "." or ".." segments), no control characters. */
export function assertHostPath(what: string, p: unknown): string {
  if (
    typeof p !== 'string' ||
    !p.startsWith('/') ||
    p.length > 4096 ||
    /[\x00-\x1f\x7f]/.test(p) ||
    posix.normalize(p) !== p ||
    (p.length > 1 && p.endsWith('/'))
  ) {
    throw new SandboxdError('invalid_argument', `invalid ${what} path: ${JSON.stringify(p)}`);
  }
  return p;
}

const LOOP_DEVICE = /^\/dev\/loop[0-9]{1,6}$/;

export function assertLoopDevice(device: unknown): string {
  if (typeof device !== 'string' || !LOOP_DEVICE.test(device)) {
    throw new SandboxdError('invalid_argument', `invalid loop device: ${JSON.stringify(device)}`);
  }
  return device;
}

export function assertSize(what: string, n: unknown): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) {
    throw new SandboxdError('invalid_argument', `invalid ${what}: ${JSON.stringify(n)}`);
  }
  return n;
}
