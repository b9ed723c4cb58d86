import { SandboxdError } from '../core/errors.ts';
import { assertNameId } from '../core/ids.ts';
import type { SandboxInput } from '../machines/sandbox/context.ts';
import type { CreateParams } from './api.ts';

/** Bounds on what a create may ask for. */
export const limits = {
  vcpus: { min: 1, max: 64, default: 1 },
  memoryMB: { min: 128, max: 256 * 1024, default: 512 },
  diskSizeMB: { min: 64, max: 2 * 1024 * 1024 },
  timeoutSec: { max: 30 * 24 * 3600 },
} as const;

function intIn(name: string, value: number | undefined, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new SandboxdError('invalid_argument', `${name} must be an integer from ${min} to ${max}`);
  }
  return value;
}

/**
 * 0 means no inactivity limit; a positive value below 60 is raised to 60,
 * because a shorter one races the start-up window.
 */
export function normalizeTimeout(timeoutSec: number): number {
  const t = intIn('timeoutSec', timeoutSec, 0, limits.timeoutSec.max, 0);
  return t === 0 ? 0 : Math.max(60, t);
}

export function normalizeCreate(
  params: CreateParams,
  teamId: string,
  defaultDiskSizeMB: number,
): Omit<SandboxInput, 'id' | 'opId' | 'now'> {
  const input: Omit<SandboxInput, 'id' | 'opId' | 'now'> = {
    teamId,
    templateId: assertNameId('template', params.templateId),
    vcpus: intIn('vcpus', params.vcpus, limits.vcpus.min, limits.vcpus.max, limits.vcpus.default),
    memoryMB: intIn('memoryMB', params.memoryMB, limits.memoryMB.min, limits.memoryMB.max, limits.memoryMB.default),
    diskSizeMB: intIn('diskSizeMB', params.diskSizeMB, limits.diskSizeMB.min, limits.diskSizeMB.max, defaultDiskSizeMB),
    timeoutSec: normalizeTimeout(params.timeoutSec ?? 0),
  };
  if (params.defaultUser !== undefined) {
    if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(params.defaultUser)) {
      throw new SandboxdError('invalid_argument', 'defaultUser must be a valid user name');
    }
    input.defaultUser = params.defaultUser;
  }
  if (params.env !== undefined) {
    for (const key of Object.keys(params.env)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new SandboxdError('invalid_argument', `invalid env name ${JSON.stringify(key)}`);
    }
    input.env = { ...params.env };
  }
  return input;
}
