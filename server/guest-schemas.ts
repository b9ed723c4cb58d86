import { z } from 'zod';
import type { TemplateView } from '../actors/api.ts';
import { NAME_ID, SANDBOX_ID } from '../core/ids.ts';
import type { GuestProcess } from '../drivers/envd/envd.ts';

// Params of the guest-stream methods and template.import (merged into schemas.ts).
// Strict like the rest: unknown fields are errors, every string and number bounded.

const sandboxId = z.string().max(64).regex(SANDBOX_ID, 'must be a sandbox id (sb-…, lowercase, no leading dash)');
const nameId = z.string().max(64).regex(NAME_ID, 'must start with a letter or digit, then letters, digits, _ or -');
const noNul = (s: string) => !s.includes('\0');
const envName = z.string().max(256).regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name');
const env = z
  .record(envName, z.string().max(32_768).refine(noNul, 'must not contain NUL'))
  .refine((e) => Object.keys(e).length <= 256, 'at most 256 variables');
const cmd = z.string().min(1).max(4096).refine(noNul, 'must not contain NUL');
const args = z.array(z.string().max(65_536).refine(noNul, 'must not contain NUL')).max(1024).default([]);
const cwd = z.string().max(4096).startsWith('/', 'must be an absolute path').refine(noNul, 'must not contain NUL');
const tag = z.string().min(1).max(128).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be letters, digits, _ . or -');
const dimension = z.int().min(1).max(1000);

/** A guest process by pid or by the tag it was started with. */
const processSelector = z.union([z.strictObject({ pid: z.int().min(1).max(4_194_304) }), z.strictObject({ tag })]);
const onProcess = z.strictObject({ id: sandboxId, process: processSelector });
// Base64 of at most 64 KiB of terminal input per call.
const base64 = z.string().max(87_384).regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');

export const guestSchemas = {
  'sandbox.execStream': z.strictObject({
    id: sandboxId,
    cmd,
    args,
    env: env.optional(),
    cwd: cwd.optional(),
    timeoutMs: z.int().min(1).max(24 * 3600 * 1000).optional(),
  }),
  'pty.start': z.strictObject({
    id: sandboxId,
    cmd: cmd.default('/bin/bash'),
    args,
    env: env.optional(),
    cwd: cwd.optional(),
    tag: tag.optional(),
    cols: dimension.default(80),
    rows: dimension.default(24),
  }),
  'pty.attach': onProcess,
  'pty.input': z.strictObject({ id: sandboxId, process: processSelector, data: base64 }),
  'pty.resize': z.strictObject({ id: sandboxId, process: processSelector, cols: dimension, rows: dimension }),
  'pty.kill': onProcess,
  'process.start': z.strictObject({ id: sandboxId, cmd, args, env: env.optional(), cwd: cwd.optional(), tag: tag.optional() }),
  'process.connect': onProcess,
  'process.list': z.strictObject({ id: sandboxId }),
  'process.kill': z.strictObject({ id: sandboxId, process: processSelector, signal: z.enum(['SIGTERM', 'SIGKILL']).default('SIGKILL') }),
  'template.import': z.strictObject({
    templateId: nameId,
    path: z.string().min(1).max(4096).startsWith('/', 'must be an absolute path').refine(noNul, 'must not contain NUL'),
    teamId: nameId.optional(),
  }),
} as const;

/** An opened stream: its output follows as stream.data / stream.exit notifications carrying `streamId`. */
export interface StreamOpened {
  streamId: string;
  /** The guest pid, as envd reported it when the stream started (null if it did not say). */
  pid: number | null;
}

export interface GuestResults {
  'sandbox.execStream': StreamOpened;
  'pty.start': StreamOpened & { tag: string };
  'pty.attach': StreamOpened;
  'pty.input': Record<string, never>;
  'pty.resize': Record<string, never>;
  'pty.kill': Record<string, never>;
  'process.start': { pid: number };
  'process.connect': StreamOpened;
  'process.list': { processes: GuestProcess[] };
  'process.kill': Record<string, never>;
  'template.import': TemplateView;
}
