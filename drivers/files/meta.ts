import { z } from 'zod';

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
