import { z } from 'zod';
import { SandboxdError } from '../../core/errors.ts';

/**
 * The agent's own metadata beside a VMM snapshot (snapshot.json), versioned and
 * parsed, never trusted. Pause snapshots carry the slot and the CoW; snapshot
 * templates carry neither (each launch gets a fresh slot and CoW).
 */
export const SnapshotMetaSchema = z.strictObject({
  version: z.literal(1),
  kind: z.enum(['pause', 'template']),
  templateName: z.string().max(200).optional(),
  teamId: z.string(),
  templateId: z.string(),
  vcpus: z.number().int().positive(),
  memoryMB: z.number().int().positive(),
  timeoutSec: z.number().int().nonnegative(),
  /** Pause snapshots: the disk size asked for at create, so a restart brings the sandbox back whole. */
  diskSizeMB: z.number().int().positive().optional(),
  slot: z.number().int().nonnegative().optional(),
  /** The rootfs.ext4 the CoW is layered over. */
  baseTemplatePath: z.string(),
  cowPath: z.string().optional(),
  /** The VMM's sandbox dir baked into config.json; restores must recreate exactly this path. */
  sandboxDir: z.string(),
  createdAt: z.string(),
});

export type SnapshotMeta = z.infer<typeof SnapshotMetaSchema>;

export const SNAPSHOT_META_FILE = 'snapshot.json';

/** snapshot.json is a few hundred bytes; anything far larger is not ours. */
export const SNAPSHOT_META_MAX_BYTES = 64 * 1024;

/**
 * Parses the text of a snapshot.json. A truncated, foreign or newer file is
 * refused with operation_failed naming `source` and what is wrong, so a
 * resume fails with a reason instead of restoring from a guess.
 */
export function parseSnapshotMeta(text: string, source: string): SnapshotMeta {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    const what = text.trim() === '' ? 'empty' : 'not complete JSON (truncated or foreign)';
    throw new SandboxdError('operation_failed', `${source} is ${what}`);
  }
  const version = (raw as { version?: unknown } | null)?.version;
  if (typeof version === 'number' && version !== 1) {
    throw new SandboxdError('operation_failed', `${source} has unsupported version ${version} (this agent reads version 1)`);
  }
  const parsed = SnapshotMetaSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new SandboxdError('operation_failed', `${source} is not a sandboxd snapshot metadata file: ${issues}`);
  }
  return parsed.data;
}
