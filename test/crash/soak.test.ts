// Soak: random operations across four sandboxes while the agent (a real child
// process on the host backends) is SIGKILLed again and again, half the time
// at a random step boundary of a random sandbox's operation (--crash-at),
// otherwise at a random moment. After each kill: the host holds exactly what
// the records say; after each restart: every sandbox is Running, Paused or
// gone (never stuck, never Error) and its guest data is the last value
// written or the one being written when the agent died. Bounded by
// SOAK_KILLS kills and SOAK_SECONDS; SOAK_SEED replays a run. Prints the
// agent's RSS and open fds after each start, and their drift.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RpcError, type SandboxdClient } from '../../server/index.ts';
import { assertHostEmpty, assertHostMatchesRecords } from '../host/host-match.ts';
import { missingHost } from '../host/rig.ts';
import { crashArg, crashPoints, type CrashPoint, type OpName } from './points.ts';
import { crashNet, destroyAll, kv, makeWorld, procUsage, statusOf, TEAM, type Agent } from './support.ts';

const skip = await missingHost();
const KILLS = Number(process.env.SOAK_KILLS ?? 25);
const SECONDS = Number(process.env.SOAK_SECONDS ?? 90);
const SEED = Number(process.env.SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31));
const IDS = ['sb-soak0', 'sb-soak1', 'sb-soak2', 'sb-soak3'];
const small = { teamId: TEAM, templateId: 'base', memoryMB: 128, diskSizeMB: 64, timeoutSec: 0 };

/** mulberry32: small, seedable, good enough to pick operations. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** The draw of oneOp that picks each matrix operation (running: write < .3 ≤ pause < .55 ≤ snapshot < .7 ≤ flatten < .8 ≤ destroy < .9). */
const forcedDraw: Record<OpName, number> = {
  'create-base': 0,
  'create-snapshot': 0,
  pause: 0.4,
  'snapshot-live': 0.6,
  flatten: 0.75,
  'destroy-running': 0.85,
  resume: 0.3,
  'snapshot-paused': 0.7,
  'destroy-paused': 0.9,
};
/** The matrix operations that start from each status. */
const opsFrom: Record<string, OpName[]> = {
  gone: ['create-base'],
  running: ['pause', 'snapshot-live', 'flatten', 'destroy-running'],
  paused: ['resume', 'snapshot-paused', 'destroy-paused'],
};

/** What the test knows of a sandbox's guest data: the last acknowledged value, and one that may have landed. */
interface Known {
  value: string | null;
  maybe: string | null;
}

const stable = new Set(['running', 'paused', 'gone']);
/** Refusals a random command may meet (wrong state, template name taken …); anything else is a failure. */
const expectedRefusals = new Set(['not_running', 'not_paused', 'already_exists', 'not_found', 'template_in_use']);

test('random operations under random agent SIGKILLs: host = records after every kill, nothing stuck, data kept, host empty at the end', { skip, timeout: (SECONDS + 240) * 1000 }, async (t) => {
  const world = await makeWorld(crashNet(6));
  t.after(() => world.dispose());
  const rand = prng(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const points = crashPoints().filter((p) => !p.op.startsWith('create-snapshot'));
  const known = new Map<string, Known>(IDS.map((id) => [id, { value: null, maybe: null }]));
  const usage: Array<{ fds: number; rssKB: number; sandboxes: number }> = [];
  const refusals = new Map<string, number>();
  const statuses = new Map<string, string>();
  let kills = 0;
  let crashAtHits = 0;
  let ops = 0;
  let gen = 0;
  const deadline = Date.now() + SECONDS * 1000;
  console.log(`soak seed ${SEED} (SOAK_SEED=${SEED} replays the choices; timings still vary)`);

  /** One random operation fitting the sandbox's status; `forced` names the matrix operation to run instead. */
  const oneOp = async (c: SandboxdClient, id: string, forced?: OpName): Promise<void> => {
    const s = await statusOf(c, id);
    const r = forced === undefined ? rand() : forcedDraw[forced];
    const k = known.get(id)!;
    const write = async () => {
      const v = `v${++gen}`;
      k.maybe = v;
      await kv(c, id, 'set', 'gen', v);
      k.value = v;
      k.maybe = null;
    };
    ops++;
    if (s === 'gone') {
      await c.call('sandbox.create', { ...small, id });
      k.value = null;
      k.maybe = null;
      await write();
    } else if (s === 'running') {
      if (r < 0.3) await write();
      else if (r < 0.55) await c.call('sandbox.pause', { id });
      else if (r < 0.7) await c.call('sandbox.snapshot', { id, templateId: `soak-${id.slice(-1)}` });
      else if (r < 0.8) await c.call('sandbox.flatten', { id, templateId: `soakf-${id.slice(-1)}` });
      else if (r < 0.9) await c.call('sandbox.destroy', { id });
      else assert.equal(await kv(c, id, 'get', 'gen'), k.value, `${id} reads back what was written`);
    } else if (s === 'paused') {
      if (r < 0.6) await c.call('sandbox.resume', { id });
      else if (r < 0.8) await c.call('sandbox.snapshot', { id, templateId: `soakp-${id.slice(-1)}` });
      else await c.call('sandbox.destroy', { id });
    }
  };

  /** Random operations on every sandbox at once, until the agent dies or `rounds` are done. */
  const drive = async (agent: Agent, rounds: number, armed: { id: string; op: OpName } | null): Promise<void> => {
    let c: SandboxdClient;
    try {
      c = await agent.connect();
    } catch (err) {
      // A kill at a random moment may come before the connection is up.
      if ((err as Error).name === 'ConnectionError') return;
      throw err;
    }
    try {
      await Promise.all(
        IDS.map(async (id) => {
          for (let i = 0; i < rounds; i++) {
            try {
              await oneOp(c, id, i === 0 && armed?.id === id ? armed.op : undefined);
            } catch (err) {
              if (err instanceof RpcError && expectedRefusals.has(err.kind ?? '')) {
                refusals.set(err.kind!, (refusals.get(err.kind!) ?? 0) + 1);
                continue;
              }
              if ((err as Error).name === 'ConnectionError' || (err as Error).message.includes('not connected')) return;
              throw err;
            }
          }
        }),
      );
    } finally {
      await c.close().catch(() => undefined);
    }
  };

  const checkAfterStart = async (agent: Agent, where: string): Promise<void> => {
    const report = await agent.reconciled;
    const c = await agent.connect();
    try {
      for (const id of IDS) {
        const s = await statusOf(c, id);
        statuses.set(id, s);
        assert.ok(stable.has(s), `${id} is ${s} ${where} (seed ${SEED}; report ${JSON.stringify(report.outcomes)})`);
        const k = known.get(id)!;
        if (s === 'gone') {
          k.value = null;
          k.maybe = null;
          continue;
        }
        if (s === 'running') {
          const v = await kv(c, id, 'get', 'gen');
          const allowed = [k.value ?? '', k.maybe ?? k.value ?? ''];
          assert.ok(allowed.includes(v), `${id}'s data is ${v}, expected ${allowed.join(' or ')} ${where} (seed ${SEED})`);
          k.value = v === '' ? null : v;
          k.maybe = null;
        }
      }
      const live = (await c.call('sandbox.list', {})).sandboxes.length;
      usage.push({ ...procUsage(agent.pid), sandboxes: live });
    } finally {
      await c.close();
    }
  };

  /** Whether the agent died at its --crash-at point. */
  const diedAtPoint = async (agent: Agent) => (await agent.exited).signal === 'SIGKILL' && /(^|\n)CRASH /.test(agent.stderr());
  // Each round: an agent that may die at a step boundary drives random operations and is killed;
  // the next one reconciles, is checked, and is killed idle: then the host must equal the records.
  let agent: Agent = await world.start();
  await checkAfterStart(agent, 'at the first start');
  while (kills < KILLS && Date.now() < deadline) {
    await agent.kill();
    await assertHostMatchesRecords(world.host, world.records(), `after an idle kill, round ${kills} (seed ${SEED})`);
    // Half the rounds die at a step boundary of an operation the armed sandbox is about to run.
    let armed: { id: string; op: OpName; point: CrashPoint } | null = null;
    if (rand() < 0.5) {
      const id = pick(IDS);
      const op = pick(opsFrom[statuses.get(id) ?? 'gone']!);
      armed = { id, op, point: pick(points.filter((p) => p.op === op)) };
    }
    agent = await world.start(armed === null ? undefined : crashArg(armed.id, armed.point));
    try {
      await agent.reconciled;
      const driving = drive(agent, 1 + Math.floor(rand() * 4), armed);
      // Its crash point, or a random moment within the operations.
      const at = armed === null ? rand() * 1500 : 20_000;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([driving, agent.exited, new Promise((r) => (timer = setTimeout(r, at)))]);
      clearTimeout(timer);
      await agent.kill();
      await driving;
    } catch (err) {
      // Only losing the agent to its own crash point is expected here.
      await agent.kill();
      const lost = (err as Error).name === 'ConnectionError' || /agent exited|not connected/.test((err as Error).message);
      if (!(lost && (await diedAtPoint(agent)))) throw err;
    }
    if (await diedAtPoint(agent)) crashAtHits++;
    kills++;
    agent = await world.start();
    await checkAfterStart(agent, `after kill ${kills}`);
  }

  const c = await agent.connect();
  await destroyAll(c);
  await c.close();
  await agent.kill();
  assert.deepEqual(world.records(), [], 'no record left');
  await assertHostEmpty(world.host, `after destroying everything (seed ${SEED})`);

  const first = usage[0]!;
  const last = usage.at(-1)!;
  const fds = usage.map((u) => u.fds);
  const rss = usage.map((u) => Math.round(u.rssKB / 1024));
  console.log(
    `soak: seed ${SEED}, ${kills} kills (${crashAtHits} at a step boundary), ${ops} operations, ${usage.length} agent starts; refusals ${JSON.stringify(Object.fromEntries(refusals))}\n` +
      `agent after each start: open fds min ${Math.min(...fds)} max ${Math.max(...fds)} first ${first.fds} last ${last.fds} (drift ${last.fds - first.fds}); ` +
      `RSS MiB min ${Math.min(...rss)} max ${Math.max(...rss)} first ${rss[0]} last ${rss.at(-1)} (drift ${rss.at(-1)! - rss[0]!})`,
  );
  assert.ok(kills > 0, 'the agent was killed at least once');
});
