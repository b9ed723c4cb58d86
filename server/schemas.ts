import { z } from 'zod';
import { NAME_ID, SANDBOX_ID } from '../core/ids.ts';
import { guestSchemas } from './guest-schemas.ts';
import { inspectSchemas } from './inspect/schemas.ts';

// The one place that says what a client may send. Every object is strict (an
// unknown field is an error, so a typo never silently does the default), every
// id is matched against core/ids.ts and every number is bounded.

const sandboxId = z.string().max(64).regex(SANDBOX_ID, 'must be a sandbox id (sb-…, lowercase, no leading dash)');
const nameId = z.string().max(64).regex(NAME_ID, 'must start with a letter or digit, then letters, digits, _ or -');

// Bounds generous enough for any real sandbox, small enough that arithmetic on
// them (MiB → bytes, s → ms) stays exact.
const vcpus = z.int().min(1).max(64);
const memoryMB = z.int().min(128).max(262_144);
const diskSizeMB = z.int().min(1).max(4_194_304);
const timeoutSec = z.int().min(0).max(30 * 24 * 3600);

const noNul = (s: string) => !s.includes('\0');
const envName = z.string().max(256).regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name');
const env = z
  .record(envName, z.string().max(32_768).refine(noNul, 'must not contain NUL'))
  .refine((e) => Object.keys(e).length <= 256, 'at most 256 variables');
const unixUser = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a unix user name');

export const sandboxStatuses = [
  'creating', 'running', 'pausing', 'paused', 'resuming',
  'snapshotting', 'flattening', 'destroying', 'error', 'destroyed',
] as const;

const empty = z.strictObject({});
export const byId = z.strictObject({ id: sandboxId });
/** A lifecycle command may name the incarnation it means (README, "Durable state"). */
const incarnation = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const fenced = z.strictObject({ id: sandboxId, incarnation: incarnation.optional() });

export const schemas = {
  'sandbox.create': z.strictObject({
    templateId: nameId,
    teamId: nameId.optional(),
    id: sandboxId.optional(),
    vcpus: vcpus.optional(),
    memoryMB: memoryMB.optional(),
    diskSizeMB: diskSizeMB.optional(),
    timeoutSec: timeoutSec.optional(),
    defaultUser: unixUser.optional(),
    env: env.optional(),
  }),
  'sandbox.get': byId,
  'sandbox.list': z.strictObject({ status: z.enum(sandboxStatuses).optional() }),
  'sandbox.pause': fenced,
  'sandbox.resume': z.strictObject({ id: sandboxId, timeoutSec: timeoutSec.optional(), incarnation: incarnation.optional() }),
  'sandbox.destroy': fenced,
  'sandbox.snapshot': z.strictObject({
    id: sandboxId,
    templateId: nameId,
    name: z.string().min(1).max(128).refine(noNul, 'must not contain NUL').optional(),
    incarnation: incarnation.optional(),
  }),
  'sandbox.flatten': z.strictObject({ id: sandboxId, templateId: nameId, incarnation: incarnation.optional() }),
  'sandbox.ping': byId,
  'sandbox.setTimeout': z.strictObject({ id: sandboxId, timeoutSec }),
  'sandbox.exec': z.strictObject({
    id: sandboxId,
    cmd: z.string().min(1).max(4096).refine(noNul, 'must not contain NUL'),
    args: z.array(z.string().max(65_536).refine(noNul, 'must not contain NUL')).max(1024).default([]),
    env: env.optional(),
    cwd: z.string().max(4096).startsWith('/', 'must be an absolute path').refine(noNul, 'must not contain NUL').optional(),
    timeoutMs: z.int().min(1).max(24 * 3600 * 1000).optional(),
  }),
  // The range is judged by the supervisor, so a bad one answers invalid_range (lifecycle.md), not invalid params.
  'sandbox.metrics': z.strictObject({ id: sandboxId, range: z.string().max(16) }),
  'sandbox.flushMetrics': byId,
  'template.list': empty,
  'template.delete': z.strictObject({ templateId: nameId }),
  'events.subscribe': z.strictObject({ sandboxId: sandboxId.optional() }),
  'events.unsubscribe': z.strictObject({ subscriptionId: z.string().max(32).regex(/^sub-[0-9]+$/) }),
  'agent.info': empty,
  ...guestSchemas,
  ...inspectSchemas,
} as const;

export type MethodName = keyof typeof schemas;
/** What a client sends for a method (defaults not yet applied). */
export type ParamsOf<M extends MethodName> = z.input<(typeof schemas)[M]>;
/** What a handler receives after parsing. */
export type ParsedParamsOf<M extends MethodName> = z.output<(typeof schemas)[M]>;

/** Methods of protocol.md that the supervisor does not back yet: answered -32601. */
export const notImplementedMethods: readonly string[] = [];

export function isMethodName(name: string): name is MethodName {
  return Object.hasOwn(schemas, name);
}

/** JSON-RPC 2.0 request envelope; a request must carry an id (protocol.md). */
export const requestEnvelope = z.strictObject({
  jsonrpc: z.literal('2.0'),
  id: z.union([z.string().max(128), z.number().finite()]),
  method: z.string().max(128),
  params: z.unknown().optional(),
});

export interface IssueView {
  path: (string | number)[];
  message: string;
}

export function issuesOf(err: z.ZodError): IssueView[] {
  return err.issues.slice(0, 20).map((i) => ({
    path: i.path.map((p) => (typeof p === 'symbol' ? String(p) : p)),
    message: i.message.length > 200 ? `${i.message.slice(0, 200)}…` : i.message,
  }));
}
