import type { AgentInfo, FlushedMetrics, LifecycleEvent, MetricPoint, SandboxView, StateChange, TemplateView } from '../actors/api.ts';
import type { ExecResult } from '../drivers/envd/envd.ts';
import type { InspectEntry } from './inspect/feed.ts';
import type { GuestResults } from './guest-schemas.ts';
import type { StreamDataNotice, StreamExitNotice } from './streams.ts';
import type { InspectResults } from './inspect/schemas.ts';
import type { MethodName, ParamsOf } from './schemas.ts';

// Wire types shared by the server, the typed client and the CLI.

export interface RpcResults extends InspectResults, GuestResults {
  'sandbox.create': { sandbox: SandboxView; diskSizeBytes: number };
  'sandbox.get': SandboxView;
  'sandbox.list': { sandboxes: SandboxView[] };
  'sandbox.pause': SandboxView;
  'sandbox.resume': SandboxView;
  'sandbox.destroy': Record<string, never>;
  'sandbox.snapshot': TemplateView;
  'sandbox.flatten': TemplateView;
  'sandbox.ping': Record<string, never>;
  'sandbox.setTimeout': Record<string, never>;
  'sandbox.exec': ExecResult;
  'sandbox.metrics': { points: MetricPoint[] };
  'sandbox.flushMetrics': FlushedMetrics;
  'template.list': { templates: TemplateView[] };
  'template.delete': Record<string, never>;
  'events.subscribe': { subscriptionId: string };
  'events.unsubscribe': Record<string, never>;
  'agent.info': AgentInfo;
}

export type ResultOf<M extends MethodName> = RpcResults[M];
export type { MethodName, ParamsOf };

/** `sandbox.state` notification params (teamId stays on the agent). */
export type StateNotice = Omit<StateChange, 'teamId'>;
/** `sandbox.event` notification params. */
export type EventNotice = Omit<LifecycleEvent, 'teamId'>;

export type Notification =
  | { method: 'sandbox.state'; params: StateNotice }
  | { method: 'sandbox.event'; params: EventNotice };

/** Output of a guest stream, sent to the connection that opened it only. */
export type StreamNotification = { method: 'stream.data'; params: StreamDataNotice } | { method: 'stream.exit'; params: StreamExitNotice };

/** Notifications of inspect.subscribe; `inspect.gap` says entries were dropped (fetch inspect.history again). */
export type InspectNotification = { method: 'inspect.event'; params: InspectEntry } | { method: 'inspect.gap'; params: Record<string, never> };

export interface RpcErrorBody {
  code: number;
  message: string;
  data?: { code?: string; step?: string; issues?: { path: (string | number)[]; message: string }[] } & Record<string, unknown>;
}

/** Standard JSON-RPC codes; application codes come from core/errors.ts. */
export const RpcCodes = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
} as const;

/** The subprotocol a browser sends beside `bearer.TOKEN`. */
export const SUBPROTOCOL = 'sandboxd.v1';
