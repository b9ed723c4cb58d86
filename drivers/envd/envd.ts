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
