import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Caller, LifecycleEvent } from '../../../actors/api.ts';
import { ensureBaseTemplate } from '../../../agent/base-template.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../../agent/runtime.ts';
import { loadConfig } from '../../../core/config.ts';
import { silentLogger } from '../../../core/log.ts';

// The real agent runtime for integration tests: ChDriver running the simulator
// as real detached processes on real unix sockets, the stand-in envd on
// loopback, clone disks, no network, files and templates under a fresh
// sandboxd-test- data dir. `useAgent` tears it down after the test, failed or
// not, and then asserts that nothing the agent made is left.

export const TEAM: Caller = { teamId: 'team-a' };
export const ADMIN: Caller = { teamId: null };
/** Small guests keep the simulator's page walks short. */
export const SMALL = { templateId: 'base', memoryMB: 128, diskSizeMB: 64 } as const;

export interface TestAgent extends Runtime {
  dataDir: string;
  /** The VMM environment; mutate it to give the next spawned VMM other faults. */
  vmmEnv: Record<string, string>;
  events: LifecycleEvent[];
  /** PIDs of simulator processes running from this data dir. */
  vmmPids(): number[];
}

interface Hooks {
  after(fn: () => Promise<void> | void): void;
}

export async function useAgent(t: Hooks, opts: RuntimeOptions & { vmmEnv?: Record<string, string> } = {}): Promise<TestAgent> {
  const dataDir = mkdtempSync(join(tmpdir(), 'sandboxd-test-'));
  const vmmEnv: Record<string, string> = { CHSIM_VIOLATIONS: join(tmpdir(), `${dataDir.split('/').pop()}.violations`), ...opts.vmmEnv };
  const vmmPids = () => pgrep(dataDir);
  let runtime: Runtime | undefined;
  t.after(async () => {
    try {
      if (runtime !== undefined) await teardown(runtime);
      // Last resort for a failed teardown: the processes this test started, by pid.
      const stray = vmmPids();
      for (const pid of stray) process.kill(pid, 'SIGKILL');
      assert.deepEqual(stray, [], 'no simulator process outlives the test');
      assertNothingLeft(dataDir);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(vmmEnv.CHSIM_VIOLATIONS!, { force: true });
    }
  });
  const config = loadConfig({ env: { SANDBOXD_DATA_DIR: dataDir, SANDBOXD_DEFAULT_DISK_MB: '64' } });
  runtime = await createRuntime(config, silentLogger, {
    vmmTimeouts: { startTimeoutMs: 20_000, shutdownGraceMs: 2_000 },
    diskPrefix: 'sbxt-',
    metricsIntervalMs: 100,
    ...opts,
    vmmEnv,
  });
  const base = await ensureBaseTemplate(runtime.agent.drivers.templates, runtime.agent.dirs.run, silentLogger, { signal: AbortSignal.timeout(60_000), sizeMB: 16 });
  assert.equal(base.kind, 'created', 'mkfs.ext4 (e2fsprogs) makes the base template');
  await runtime.supervisor.reconcile(AbortSignal.timeout(60_000));
  const events: LifecycleEvent[] = [];
  runtime.supervisor.onEvent((e) => events.push(e));
  return { ...runtime, dataDir, vmmEnv, events, vmmPids };
}

/** Destroys every sandbox and every template but system/base, then waits for the VMM logs to go. */
async function teardown(runtime: Runtime): Promise<void> {
  const { supervisor } = runtime;
  await Promise.allSettled(supervisor.ids().map((id) => supervisor.destroy(ADMIN, id)));
  const templates = await supervisor.listTemplates(ADMIN);
  for (const t of templates) {
    if (t.teamId === 'system' && t.templateId === 'base') continue;
    await supervisor.deleteTemplate({ teamId: t.teamId }, t.templateId);
  }
  await waitFor(() => readdirSync(runtime.agent.dirs.logs).length === 0, 10_000, 'VMM logs removed after destroy');
  runtime.close();
}

/** After every sandbox is gone: the data dir holds the base template, the placeholder kernel, the closed database and empty dirs only. */
export function assertNothingLeft(dataDir: string): void {
  const left: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else left.push(path.slice(dataDir.length + 1));
    }
  };
  if (existsSync(dataDir)) walk(dataDir);
  assert.deepEqual(left.sort(), ['images/teams/system/base/rootfs.ext4', 'run/sim-vmlinux', 'sandboxd.db'], 'files left in the data dir');
  for (const dir of ['sandboxes', 'run/vm', 'logs']) {
    const path = join(dataDir, dir);
    if (existsSync(path)) assert.deepEqual(readdirSync(path), [], `${dir} is empty`);
  }
}

export function pgrep(pattern: string): number[] {
  try {
    const out = execFileSync('pgrep', ['-f', pattern], { encoding: 'utf8' });
    return out.split('\n').filter(Boolean).map(Number).filter((pid) => pid !== process.pid);
  } catch {
    return []; // exit 1: none
  }
}

/** Polls a condition with a deadline (the timer keeps the event loop alive meanwhile). */
export async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Apparent and allocated size of a file: a sparse file allocates less than it claims. */
export function sizes(path: string): { apparent: number; allocated: number } {
  const st = statSync(path);
  return { apparent: st.size, allocated: st.blocks * 512 };
}

export function violations(agent: TestAgent): string[] {
  const file = agent.vmmEnv.CHSIM_VIOLATIONS!;
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean);
}
