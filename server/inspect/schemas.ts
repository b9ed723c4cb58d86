import { z } from 'zod';
import { SANDBOX_ID } from '../../core/ids.ts';
import type { InspectEntry, InspectSummary } from './feed.ts';

// The inspector's methods, merged into server/schemas.ts and server/methods.ts.

const sandboxId = z.string().max(64).regex(SANDBOX_ID, 'must be a sandbox id (sb-…, lowercase, no leading dash)');

export const inspectSchemas = {
  /** Live `inspect.event` notifications for one sandbox or every visible one; answers the visible sandboxes. */
  'inspect.subscribe': z.strictObject({ sandboxId: sandboxId.optional() }),
  'inspect.unsubscribe': z.strictObject({ subscriptionId: z.string().max(32).regex(/^isub-[0-9]+$/) }),
  /** The kept history of one sandbox (up to the last 200 entries), oldest first. */
  'inspect.history': z.strictObject({ sandboxId }),
  'inspect.list': z.strictObject({}),
} as const;

export interface InspectResults {
  'inspect.subscribe': { subscriptionId: string; sandboxes: InspectSummary[] };
  'inspect.unsubscribe': Record<string, never>;
  'inspect.history': { sandboxId: string; entries: InspectEntry[] };
  'inspect.list': { sandboxes: InspectSummary[] };
}
