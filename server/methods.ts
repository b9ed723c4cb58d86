import type { Caller, Fence, SupervisorApi } from '../actors/api.ts';
import { SandboxdError } from '../core/errors.ts';
import { guestMethods } from './guest-methods.ts';
import { inspectMethods, type InspectPort } from './inspect/methods.ts';
import type { RpcResults } from './protocol.ts';
import type { MethodName, ParsedParamsOf } from './schemas.ts';
import type { StreamPort } from './streams.ts';

/**
 * What each method does: a straight call into the supervisor. No decision is
 * made here beyond the caller's identity; the supervisor answers another team's
 * ids with not_found itself.
 */

export interface SubscriptionPort {
  /** Returns the new subscription id; throws rate_limited past the per-connection cap. */
  add(sandboxId: string | null): string;
  /** False when the id is not one of this connection's. */
  remove(subscriptionId: string): boolean;
}

export interface CallContext {
  caller: Caller;
  supervisor: SupervisorApi;
  subscriptions: SubscriptionPort;
  /** Absent when the agent runs without the inspector. */
  inspect?: InspectPort;
  /** The connection's guest streams (absent for callers that cannot carry notifications). */
  streams?: StreamPort;
}

type Handler<M extends MethodName> = (ctx: CallContext, p: ParsedParamsOf<M>) => RpcResults[M] | Promise<RpcResults[M]>;

export interface MethodSpec<M extends MethodName> {
  /** Counts against the team's cap on concurrent lifecycle operations. */
  lifecycle: boolean;
  run: Handler<M>;
}

const none = {} as Record<string, never>;

export const methods: { [M in MethodName]: MethodSpec<M> } = {
  'sandbox.create': {
    lifecycle: true,
    run: ({ caller, supervisor }, p) => {
      // Only an admin token may create for another team; the supervisor decides the rest.
      if (p.teamId !== undefined && caller.teamId !== null && p.teamId !== caller.teamId) {
        throw new SandboxdError('invalid_argument', 'teamId may only be given with an admin token');
      }
      return supervisor.create(caller, p);
    },
  },
  'sandbox.get': { lifecycle: false, run: ({ caller, supervisor }, p) => supervisor.get(caller, p.id) },
  'sandbox.list': {
    lifecycle: false,
    run: ({ caller, supervisor }, p) => ({
      sandboxes: supervisor.list(caller, p.status === undefined ? undefined : { status: p.status }),
    }),
  },
  'sandbox.pause': { lifecycle: true, run: ({ caller, supervisor }, p) => supervisor.pause(caller, p.id, fence(p)) },
  'sandbox.resume': {
    lifecycle: true,
    run: ({ caller, supervisor }, p) =>
      supervisor.resume(caller, p.id, p.timeoutSec === undefined ? fence(p) : { ...fence(p), timeoutSec: p.timeoutSec }),
  },
  'sandbox.destroy': {
    lifecycle: true,
    run: async ({ caller, supervisor }, p) => {
      await supervisor.destroy(caller, p.id, fence(p));
      return none;
    },
  },
  'sandbox.snapshot': {
    lifecycle: true,
    run: ({ caller, supervisor }, p) =>
      supervisor.snapshot(caller, p.id, { ...fence(p), templateId: p.templateId, ...(p.name === undefined ? {} : { name: p.name }) }),
  },
  'sandbox.flatten': {
    lifecycle: true,
    run: ({ caller, supervisor }, p) => supervisor.flatten(caller, p.id, { ...fence(p), templateId: p.templateId }),
  },
  'sandbox.ping': {
    lifecycle: false,
    run: ({ caller, supervisor }, p) => {
      supervisor.ping(caller, p.id);
      return none;
    },
  },
  'sandbox.setTimeout': {
    lifecycle: false,
    run: ({ caller, supervisor }, p) => {
      supervisor.setTimeout(caller, p.id, p.timeoutSec);
      return none;
    },
  },
  'sandbox.exec': {
    lifecycle: false,
    run: ({ caller, supervisor }, { id, ...req }) => supervisor.exec(caller, id, req),
  },
  'sandbox.metrics': {
    lifecycle: false,
    run: ({ caller, supervisor }, p) => ({ points: supervisor.metrics(caller, p.id, p.range) }),
  },
  'sandbox.flushMetrics': {
    lifecycle: false,
    run: ({ caller, supervisor }, p) => supervisor.flushMetrics(caller, p.id),
  },
  'template.list': {
    lifecycle: false,
    run: async ({ caller, supervisor }) => ({ templates: await supervisor.listTemplates(caller) }),
  },
  'template.delete': {
    lifecycle: true,
    run: async ({ caller, supervisor }, p) => {
      await supervisor.deleteTemplate(caller, p.templateId);
      return none;
    },
  },
  'events.subscribe': {
    lifecycle: false,
    run: ({ caller, supervisor, subscriptions }, p) => {
      // get() throws not_found for an unknown id and for another team's.
      if (p.sandboxId !== undefined) supervisor.get(caller, p.sandboxId);
      return { subscriptionId: subscriptions.add(p.sandboxId ?? null) };
    },
  },
  'events.unsubscribe': {
    lifecycle: false,
    run: ({ subscriptions }, p) => {
      if (!subscriptions.remove(p.subscriptionId)) throw new SandboxdError('not_found', `no subscription ${p.subscriptionId}`);
      return none;
    },
  },
  'agent.info': { lifecycle: false, run: ({ supervisor }) => supervisor.info() },
  ...inspectMethods,
  ...guestMethods,
};

/** The optional incarnation a lifecycle command names, as the supervisor takes it. */
function fence(p: { incarnation?: number | undefined }): Fence {
  return p.incarnation === undefined ? {} : { incarnation: p.incarnation };
}
