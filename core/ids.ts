import { randomBytes } from 'node:crypto';
import { SandboxdError } from './errors.ts';

// IDs reach file paths, dm device names, interface names and command arguments.
// They are checked here, at the edge, against patterns that cannot express a
// path separator, "..", a leading dash or whitespace.

/** Sandbox ids: "sb-" and 1–40 lowercase alphanumerics or dashes; short enough for dm and link names. */
export const SANDBOX_ID = /^sb-[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/;
/** Team and template ids: letter or digit first, then letters, digits, '_', '-', 1–64 in all. */
export const NAME_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export function isSandboxId(value: unknown): value is string {
  return typeof value === 'string' && SANDBOX_ID.test(value);
}

export function isNameId(value: unknown): value is string {
  return typeof value === 'string' && NAME_ID.test(value);
}

export function assertSandboxId(value: unknown): string {
  if (!isSandboxId(value)) throw new SandboxdError('invalid_argument', `invalid sandbox id: ${JSON.stringify(value)}`);
  return value;
}

export function assertNameId(kind: 'team' | 'template', value: unknown): string {
  if (!isNameId(value)) throw new SandboxdError('invalid_argument', `invalid ${kind} id: ${JSON.stringify(value)}`);
  return value;
}

// Random bytes drawn in blocks: one getrandom call per 512 ids instead of one per id.
let pool = Buffer.alloc(0);
let poolAt = 0;

export function newSandboxId(): string {
  if (poolAt + 8 > pool.length) {
    pool = randomBytes(4096);
    poolAt = 0;
  }
  poolAt += 8;
  return `sb-${pool.toString('hex', poolAt - 8, poolAt)}`;
}

let opCounter = 0;
/** Operation ids only need to be unique within this process: they pair a command with its reply. */
export function newOpId(): string {
  return `op${(++opCounter).toString(36)}`;
}
