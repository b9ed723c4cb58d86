import { z } from 'zod';
import type { SandboxStatus } from '../../actors/api.ts';
import { SANDBOX_ID } from '../../core/ids.ts';
import type { SandboxRecord } from './store.ts';
import { StoreError } from './store-error.ts';

const STATUSES = [
  'creating',
  'running',
  'pausing',
  'paused',
  'resuming',
  'snapshotting',
  'flattening',
  'destroying',
  'error',
  'destroyed',
] as const satisfies readonly SandboxStatus[];

// Fails to compile when the API gains a status this list lacks: reconciliation decides by status.
type Missing = Exclude<SandboxStatus, (typeof STATUSES)[number]>;
const statusesComplete: Missing extends never ? true : Missing = true;
void statusesComplete;

const count = z.number().int().nonnegative();

/** The columns the store can query by; everything else travels as JSON in `doc`. */
export const RecordColumnsSchema = z.strictObject({
  id: z.string().regex(SANDBOX_ID),
  teamId: z.string().min(1),
  templateId: z.string().min(1),
  status: z.enum(STATUSES),
  step: z.string(),
  opId: z.string().nullable(),
  incarnation: count,
  slot: count.nullable(),
});

export const RecordDocSchema = z.strictObject({
  vcpus: z.number().int().positive(),
  memoryMB: z.number().int().positive(),
  diskSizeMB: count,
  timeoutSec: count,
  hostIp: z.string().nullable(),
  rootfsDevice: z.string().nullable(),
  resources: z.record(z.string(), z.unknown()),
  createdAt: z.iso.datetime(),
  lastActiveAt: z.iso.datetime(),
  metadata: z.record(z.string(), z.string()),
  ledger: z.array(z.strictObject({ kind: z.string(), name: z.string(), state: z.enum(['intended', 'present', 'releasing']) })),
  machine: z.strictObject({ value: z.union([z.string(), z.record(z.string(), z.unknown())]), context: z.record(z.string(), z.unknown()) }),
});

export const SandboxRecordSchema = z.strictObject({ ...RecordColumnsSchema.shape, ...RecordDocSchema.shape });

// What parses is a SandboxRecord (the schema is the narrower: status is one of STATUSES), with every field of it.
type Parsed = z.infer<typeof SandboxRecordSchema>;
const sameShape: Parsed extends SandboxRecord ? (keyof SandboxRecord extends keyof Parsed ? true : false) : false = true;
void sameShape;

export type RecordDoc = z.infer<typeof RecordDocSchema>;

function describe(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** A record about to be written: refused whole (invalid_input) when any field is off. */
export function checkRecord(record: SandboxRecord): SandboxRecord {
  const parsed = SandboxRecordSchema.safeParse(record);
  if (!parsed.success) {
    throw new StoreError('invalid_input', `record of ${JSON.stringify(record?.id)} would not load back: ${describe(parsed.error)}`);
  }
  return parsed.data;
}

/** One stored row back into a record; a row that does not parse is a bad_record naming it. */
export function parseRow(row: Record<string, unknown>, doc: string): { ok: true; record: SandboxRecord } | { ok: false; why: string } {
  let rest: unknown;
  try {
    rest = JSON.parse(doc);
  } catch {
    return { ok: false, why: 'doc is not JSON' };
  }
  if (typeof rest !== 'object' || rest === null || Array.isArray(rest)) return { ok: false, why: 'doc is not a JSON object' };
  const parsed = SandboxRecordSchema.safeParse({ ...rest, ...row });
  return parsed.success ? { ok: true, record: parsed.data } : { ok: false, why: describe(parsed.error) };
}
