import type { CallOpts } from '../call.ts';

export interface EnvdInit {
  defaultUser?: string;
  env?: Record<string, string>;
}

export type MemoryLoaderState = 'idle' | 'running' | 'done' | 'failed' | 'cancelled';

export interface MemoryLoaderStatus {
  state: MemoryLoaderState;
  pages: number;
  error: string | null;
}

export interface ExecRequest {
  cmd: string;
  args: string[];
  env?: Record<string, string>;
  cwd?: string;
  timeoutMs?: number;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface GuestUsage {
  memUsedBytes: number;
  diskUsedBytes: number;
}

/** The daemon inside the guest, addressed by the base URL the VMM driver reported. */
export interface EnvdDriver {
  /** Polls /health until it answers or `budgetMs` runs out. */
  waitHealthy(url: string, budgetMs: number, opts: CallOpts): Promise<void>;
  version(url: string, opts: CallOpts): Promise<string>;
  init(url: string, init: EnvdInit, opts: CallOpts): Promise<void>;
  /** Sync and drop caches before a pause; best effort for callers. */
  prepareSnapshot(url: string, opts: CallOpts): Promise<void>;
  startMemoryLoader(url: string, opts: CallOpts): Promise<MemoryLoaderStatus>;
  memoryLoaderStatus(url: string, opts: CallOpts): Promise<MemoryLoaderStatus>;
  usage(url: string, opts: CallOpts): Promise<GuestUsage>;
  exec(url: string, req: ExecRequest, opts: CallOpts): Promise<ExecResult>;
}

// ---- Streaming guest calls (exec stream, PTY, background processes) ----
// A separate interface so implementations can adopt it one at a time; the real
// client (envd-client.ts) implements both.

export type ProcessEvent =
  | { type: 'start'; pid: number }
  | { type: 'stdout' | 'stderr' | 'pty'; data: Buffer }
  | { type: 'end'; exitCode: number; exited: boolean; status: string; error: string | null }
  | { type: 'keepalive' };

/** Events of one guest process until its `end`; `cancel` closes the stream, the process keeps running. */
export interface ProcessStream {
  events: AsyncIterable<ProcessEvent>;
  cancel(): void;
}

export type ProcessSelector = { pid: number } | { tag: string };

export interface PtySize {
  cols: number;
  rows: number;
}

export interface PtyStartRequest extends Omit<ExecRequest, 'timeoutMs'> {
  tag: string;
  size: PtySize;
}

export interface ProcessStartRequest extends Omit<ExecRequest, 'timeoutMs'> {
  tag?: string;
}

export interface GuestProcess {
  pid: number;
  tag: string | null;
  cmd: string;
  args: string[];
  cwd: string | null;
}

export interface EnvdStreams {
  execStream(url: string, req: ExecRequest, opts: CallOpts): Promise<ProcessStream>;
  ptyStart(url: string, req: PtyStartRequest, opts: CallOpts): Promise<ProcessStream>;
  /** Re-attaches to a PTY process (by tag or pid): its output from now on. */
  ptyAttach(url: string, process: ProcessSelector, opts: CallOpts): Promise<ProcessStream>;
  ptyInput(url: string, process: ProcessSelector, data: Buffer, opts: CallOpts): Promise<void>;
  ptyResize(url: string, process: ProcessSelector, size: PtySize, opts: CallOpts): Promise<void>;
  ptyKill(url: string, process: ProcessSelector, opts: CallOpts): Promise<void>;
  /** Starts a background process and returns its pid once envd reports it; the process outlives the call. */
  processStart(url: string, req: ProcessStartRequest, opts: CallOpts): Promise<{ pid: number }>;
  processConnect(url: string, process: ProcessSelector, opts: CallOpts): Promise<ProcessStream>;
  processList(url: string, opts: CallOpts): Promise<GuestProcess[]>;
  processKill(url: string, process: ProcessSelector, signal: 'SIGTERM' | 'SIGKILL', opts: CallOpts): Promise<void>;
}
