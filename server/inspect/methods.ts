import { SandboxdError } from '../../core/errors.ts';
import type { CallContext, MethodSpec } from '../methods.ts';
import type { InspectionFeed } from './feed.ts';
import type { inspectSchemas } from './schemas.ts';

/** A connection's handle on the feed: its subscriptions end with the connection. */
export interface InspectPort {
  feed: InspectionFeed;
  /** Throws rate_limited past the per-connection cap. */
  add(sandboxId: string | null): string;
  remove(subscriptionId: string): boolean;
}

function port(ctx: CallContext): InspectPort {
  if (ctx.inspect === undefined) throw new SandboxdError('not_found', 'the inspector is not enabled on this agent');
  return ctx.inspect;
}

const none = {} as Record<string, never>;

export const inspectMethods: { [M in keyof typeof inspectSchemas]: MethodSpec<M> } = {
  'inspect.subscribe': {
    lifecycle: false,
    run: (ctx, p) => {
      const inspect = port(ctx);
      // Another team's id is "not found", as everywhere else.
      if (p.sandboxId !== undefined && !inspect.feed.knows(ctx.caller, p.sandboxId)) {
        throw new SandboxdError('not_found', `sandbox ${p.sandboxId} not found`);
      }
      const subscriptionId = inspect.add(p.sandboxId ?? null);
      const all = inspect.feed.list(ctx.caller);
      return { subscriptionId, sandboxes: p.sandboxId === undefined ? all : all.filter((s) => s.sandboxId === p.sandboxId) };
    },
  },
  'inspect.unsubscribe': {
    lifecycle: false,
    run: (ctx, p) => {
      if (!port(ctx).remove(p.subscriptionId)) throw new SandboxdError('not_found', `no subscription ${p.subscriptionId}`);
      return none;
    },
  },
  'inspect.history': {
    lifecycle: false,
    run: (ctx, p) => {
      const entries = port(ctx).feed.history(ctx.caller, p.sandboxId);
      if (entries === null) throw new SandboxdError('not_found', `sandbox ${p.sandboxId} not found`);
      return { sandboxId: p.sandboxId, entries };
    },
  },
  'inspect.list': { lifecycle: false, run: (ctx) => ({ sandboxes: port(ctx).feed.list(ctx.caller) }) },
};
