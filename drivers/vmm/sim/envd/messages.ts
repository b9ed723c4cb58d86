// The process service's messages in decoded form (envd.md §3), shared by the JSON
// and the binary protobuf codecs. Bytes fields are Buffers here.

export interface ProcessConfig {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd?: string;
}

export interface PtySize {
  cols: number;
  rows: number;
}

export interface Selector {
  pid?: number;
  tag?: string;
}

export interface StartRequest {
  process: ProcessConfig;
  pty?: { size?: PtySize };
  tag?: string;
  /** Keep stdin open; true when omitted. */
  stdin?: boolean;
}

export interface ConnectRequest {
  process: Selector;
}

export interface UpdateRequest {
  process: Selector;
  pty?: { size?: PtySize };
}

export interface SendInputRequest {
  process: Selector;
  input: { stdin?: Buffer; pty?: Buffer };
}

export interface SendSignalRequest {
  process: Selector;
  /** 15 = SIGTERM, 9 = SIGKILL, anything else is unimplemented. */
  signal: number;
}

export interface CloseStdinRequest {
  process: Selector;
}

export type ProcessEvent =
  | { start: { pid: number } }
  | { data: { stdout?: Buffer; stderr?: Buffer; pty?: Buffer } }
  | { end: { exitCode: number; exited: boolean; status: string; error?: string } }
  | { keepalive: Record<string, never> };

export interface ProcessInfo {
  config: ProcessConfig;
  pid: number;
  tag?: string;
}

export interface ListResponse {
  processes: ProcessInfo[];
}

export type Method = 'Start' | 'Connect' | 'List' | 'Update' | 'SendInput' | 'SendSignal' | 'CloseStdin';
export const STREAMING_METHODS: ReadonlySet<Method> = new Set(['Start', 'Connect']);
export const METHODS: ReadonlySet<string> = new Set(['Start', 'Connect', 'List', 'Update', 'SendInput', 'SendSignal', 'CloseStdin']);

export type ConnectCode =
  | 'canceled' | 'unknown' | 'invalid_argument' | 'deadline_exceeded' | 'not_found' | 'already_exists'
  | 'permission_denied' | 'resource_exhausted' | 'failed_precondition' | 'aborted' | 'out_of_range'
  | 'unimplemented' | 'internal' | 'unavailable' | 'data_loss' | 'unauthenticated';

export const HTTP_STATUS: Record<ConnectCode, number> = {
  canceled: 499, unknown: 500, invalid_argument: 400, deadline_exceeded: 504, not_found: 404, already_exists: 409,
  permission_denied: 403, resource_exhausted: 429, failed_precondition: 400, aborted: 409, out_of_range: 400,
  unimplemented: 501, internal: 500, unavailable: 503, data_loss: 500, unauthenticated: 401,
};

export class ConnectError extends Error {
  readonly code: ConnectCode;
  constructor(code: ConnectCode, message: string) {
    super(message);
    this.code = code;
  }
}
