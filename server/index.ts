// The server's public surface, for the agent's entry point (bin/) and tools.
export { createServer, type SandboxdServer, type ServerOptions } from './server.ts';
export { installSignalHandlers, type SignalOptions } from './signals.ts';
export { sha256Hex, type TokenEntry } from './auth.ts';
export { defaultLimits, type ServerLimits } from './limits.ts';
export { SandboxdClient, RpcError, ConnectionError, type ClientOptions } from './client.ts';
export type { Notification, RpcResults, StateNotice, EventNotice } from './protocol.ts';
export { notImplementedMethods, type MethodName, type ParamsOf } from './schemas.ts';
export { createInspectionFeed, InspectionFeed, type InspectEntry, type InspectSummary, type InspectionFeedOptions } from './inspect/feed.ts';
