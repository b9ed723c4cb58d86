// The crash tests' world: one fresh host root and network range per agent,
// the agent as a child process (agent-child.ts) driven through the typed
// WebSocket client, its records read from the killed agent's database, and a
// cleanup that removes everything the world made even when the test failed.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import Database from 'better-sqlite3';
import { execa, type ResultPromise } from 'execa';
import type { LifecycleEvent } from '../../actors/api.ts';
import type { ReconcileReport } from '../../actors/reconcile.ts';
import { removeOrphans } from '../../drivers/network/inventory.ts';
import { parseRow } from '../../drivers/store/record-schema.ts';
import { DB_FILE } from '../../drivers/store/sqlite-store.ts';
import { MemoryStore } from '../../drivers/store/memory-store.ts';
import type { SandboxRecord } from '../../drivers/store/store.ts';
import { RpcError, sha256Hex, SandboxdClient } from '../../server/index.ts';
import { buildHostDrivers, prepareHostRoot, type HostPaths, type NetRange } from '../host/host-drivers.ts';
import type { HostSide } from '../host/host-match.ts';
import { killVmms, lockPrefix, opts } from '../host/rig.ts';
import { detachLoopsUnder } from '../storage/helpers.ts';

const REPO = resolve(import.meta.dirname, '../..');
const CHILD = join(REPO, 'test/crash/agent-child.ts');

/**
 * The agent child bundled once per test process (esbuild, packages left
 * external): it starts in half the time of loading each module through tsx,
 * and the matrix starts it four times per point. Each file's import.meta is
 * fixed to its source location, so paths to the simulator and the stand-in
 * dmsetup resolve as they do unbundled. CRASH_BUNDLE=0 runs the sources.
 */
let bundled: Promise<string[]> | null = null;
function childCommand(): Promise<string[]> {
  if (process.env.CRASH_BUNDLE === '0') return Promise.resolve(['--import', 'tsx', CHILD]);
  bundled ??= (async () => {
    // Under node_modules so the external packages resolve from the bundle.
    const dir = join(REPO, 'node_modules', '.cache', `sandboxd-test-crash-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const outfile = join(dir, 'agent-child.mjs');
    await build({
      entryPoints: [CHILD],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      logLevel: 'warning',
      plugins: [
        {
          name: 'import-meta-of-source',
          setup(b) {
            b.onLoad({ filter: /\.ts$/ }, async (file) => {
              const src = (await readFile(file.path, 'utf8'))
                .replaceAll('import.meta.dirname', JSON.stringify(dirname(file.path)))
                .replaceAll('import.meta.url', JSON.stringify(pathToFileURL(file.path).href));
              return { contents: src, loader: 'ts' };
            });
          },
        },
      ],
    });
    return [outfile];
  })();
  return bundled;
}
export const TEAM = 'acme';

/** Network ranges no other test file uses, one per agent running at a time. */
export const crashNet = (i: number): NetRange => ({
  prefix: `sbxtc${'abcdefgh'[i]}`,
  transitCidr: `169.254.${60 + 2 * i}.0/24`,
  hostCidr: `169.254.${61 + 2 * i}.0/24`,
});

type Undo = () => unknown;

export interface World {
  paths: HostPaths;
  net: NetRange;
  token: string;
  host: HostSide;
  /** The agent running now, if any. */
  agent: Agent | null;
  start(crashAt?: string): Promise<Agent>;
  /** The records the (dead) agent left, read-only. */
  records(): SandboxRecord[];
  /** Removes everything; safe to call twice. */
  dispose(): Promise<void>;
}

export interface Agent {
  pid: number;
  port: number;
  url: string;
  /** Settles when start-up reconciliation ends (rejects if the agent dies first). */
  reconciled: Promise<ReconcileReport>;
  exited: Promise<{ signal: string | undefined; exitCode: number | undefined }>;
  stderr(): string;
  /** Lifecycle events the agent emitted so far. */
  events: LifecycleEvent[];
  /** SIGKILL, then wait for the exit. */
  kill(): Promise<void>;
  connect(): Promise<SandboxdClient>;
}

/** A fresh root under /tmp and a locked network range; undo() runs in reverse order. */
export async function makeWorld(net: NetRange): Promise<World> {
  const undos: Undo[] = [];
  const undo = (fn: Undo) => undos.push(fn);
  await lockPrefix(net.prefix, undo);
  const root = mkdtempSync('/tmp/sandboxd-test-crash-');
  undo(() => rmSync(root, { recursive: true, force: true }));
  const paths = prepareHostRoot(root);
  undo(() => detachLoopsUnder(root));
  undo(() => removeOrphans(net.prefix, [], opts()));
  undo(() => killVmms(paths.runDir));
  const token = randomBytes(16).toString('hex');
  const probe = buildHostDrivers({ root, net, store: new MemoryStore() });
  const host: HostSide = { dataDir: paths.dataDir, runDir: paths.runDir, net, loops: probe.loops, dm: probe.dm, files: probe.files };
  let disposed = false;
  const world: World = {
    paths,
    net,
    token,
    host,
    agent: null,
    async start(crashAt) {
      assert.equal(world.agent, null, 'one agent at a time');
      const agent = await startAgent(world, crashAt);
      world.agent = agent;
      void agent.exited.then(() => {
        if (world.agent === agent) world.agent = null;
      });
      return agent;
    },
    records: () => readRecords(paths.dataDir),
    async dispose() {
      if (disposed) return;
      disposed = true;
      await world.agent?.kill();
      for (const fn of undos.reverse()) {
        try {
          await fn();
        } catch (err) {
          process.stderr.write(`crash-test cleanup: ${(err as Error).message}\n`);
        }
      }
    },
  };
  return world;
}

async function startAgent(world: World, crashAt?: string): Promise<Agent> {
  const args = [
    ...(await childCommand()),
    '--root', world.paths.root,
    '--prefix', world.net.prefix,
    '--transit', world.net.transitCidr,
    '--host-cidr', world.net.hostCidr,
    '--token-sha256', sha256Hex(world.token),
    ...(crashAt === undefined ? [] : ['--crash-at', crashAt]),
  ];
  const proc: ResultPromise = execa(process.execPath, args, {
    cwd: REPO,
    buffer: false,
    reject: false,
    stdin: 'ignore',
    env: { SANDBOXD_LOG_LEVEL: process.env.CRASH_LOG_LEVEL ?? 'info' },
  });
  let err = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (err += d));
  const exited = proc.then((r) => ({ signal: r.signal, exitCode: r.exitCode }));
  const lines = createInterface({ input: proc.stdout! });
  let onListening!: (port: number) => void;
  let onReconciled!: (r: ReconcileReport) => void;
  const listening = new Promise<number>((res) => (onListening = res));
  const reconciled = new Promise<ReconcileReport>((res) => (onReconciled = res));
  const events: LifecycleEvent[] = [];
  lines.on('line', (line) => {
    const msg = JSON.parse(line) as { listening?: number; reconciled?: ReconcileReport; event?: LifecycleEvent };
    if (msg.event !== undefined) events.push(msg.event);
    if (msg.listening !== undefined) onListening(msg.listening);
    if (msg.reconciled !== undefined) onReconciled(msg.reconciled);
  });
  const died = exited.then((e) => {
    throw new Error(`agent exited (${e.signal ?? e.exitCode}) before it was ready:\n${err.slice(-4000)}`);
  });
  died.catch(() => undefined);
  const port = await Promise.race([listening, died, timeout(60_000, 'agent listening')]);
  const url = `ws://127.0.0.1:${port}/v1`;
  const agent: Agent = {
    pid: proc.pid!,
    port,
    url,
    reconciled: Promise.race([reconciled, died, timeout(120_000, 'start-up reconciliation')]),
    exited,
    stderr: () => err,
    events,
    async kill() {
      proc.kill('SIGKILL');
      await exited;
    },
    connect: () => SandboxdClient.connect(url, { token: world.token, reconnect: false }),
  };
  agent.reconciled.catch(() => undefined);
  return agent;
}

function timeout(ms: number, what: string): Promise<never> {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms).unref());
}

/** The records in an agent's database, read without taking its lock. */
export function readRecords(dataDir: string): SandboxRecord[] {
  const db = new Database(join(dataDir, DB_FILE), { readonly: true, fileMustExist: true });
  try {
    const rows = db
      .prepare(`SELECT id, team_id AS teamId, template_id AS templateId, status, step, op_id AS opId, incarnation, slot, doc FROM sandboxes ORDER BY id`)
      .all() as Array<Record<string, unknown> & { doc: string }>;
    return rows.map(({ doc, ...columns }) => {
      const parsed = parseRow(columns, doc);
      if (!parsed.ok) throw new Error(`record ${String(columns.id)} does not parse: ${parsed.why}`);
      return parsed.record;
    });
  } finally {
    db.close();
  }
}

/** A sandbox's status as a client sees it, or 'gone'. */
export async function statusOf(client: SandboxdClient, id: string): Promise<string> {
  try {
    return (await client.call('sandbox.get', { id })).status;
  } catch (err) {
    if (err instanceof RpcError && err.kind === 'not_found') return 'gone';
    throw err;
  }
}

export const kv = async (client: SandboxdClient, id: string, ...args: string[]) =>
  (await client.call('sandbox.exec', { id, cmd: 'kv', args, timeoutMs: 10_000 })).stdout.trim();

/**
 * Every status a client is shown for `id` from now on: state notifications
 * and answers to sandbox.get, the agent's `starting` refusals skipped.
 */
export async function watchStatuses(agent: Agent, id: string): Promise<{ seen: string[]; close(): Promise<void> }> {
  const client = await agent.connect();
  const seen: string[] = [];
  // All sandboxes: subscribing to one is refused while the agent reconciles.
  await client.subscribe(undefined, (n) => {
    if (n.method === 'sandbox.state' && n.params.sandboxId === id) seen.push(n.params.status);
  });
  let stop = false;
  const polling = (async () => {
    while (!stop) {
      try {
        seen.push(await statusOf(client, id));
      } catch (err) {
        if (!(err instanceof RpcError && err.kind === 'starting')) throw err;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    seen,
    async close() {
      stop = true;
      await polling;
      await client.close();
    },
  };
}

/** Open fds and resident memory of a process, from /proc. */
export function procUsage(pid: number): { fds: number; rssKB: number } {
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return { fds, rssKB: Number(rss ?? 0) };
}

/** Destroys every sandbox the agent has (admin token: every team). */
export async function destroyAll(client: SandboxdClient): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const all = (await client.call('sandbox.list', {})).sandboxes;
    if (all.length === 0) return;
    await Promise.allSettled(all.map((s) => client.call('sandbox.destroy', { id: s.id })));
  }
  assert.deepEqual((await client.call('sandbox.list', {})).sandboxes.map((s) => `${s.id}:${s.status}`), [], 'every sandbox destroyed');
}
