// The crash matrix: the agent as a real child process on the real host
// backends (loops, dm over the stand-in dmsetup, namespaces, the simulator)
// SIGKILLs itself before and after every step of every operation, the points
// read from the machine (points.ts). Per point, on a fresh host root: the
// restarted agent puts the sandbox where the README's reconciliation table
// says, a client sees only the old or the new status, the guest's data
// survives where the sandbox does, the host holds exactly what the records
// say once the agent is killed again, and after destroying everything the
// host is empty. CRASH_POINTS=regex runs a subset; CRASH_WORKERS agents at once.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { SandboxdClient } from '../../server/client.ts';
import { assertHostEmpty, assertHostMatchesRecords } from '../host/host-match.ts';
import { missingHost } from '../host/rig.ts';
import { crashArg, crashPoints, pointName, type CrashPoint, type OpName } from './points.ts';
import { crashNet, destroyAll, kv, makeWorld, statusOf, TEAM, watchStatuses, type World } from './support.ts';

const skip = await missingHost();
const ID = 'sb-crash';
const SRC = 'sb-crashsrc';
const WORKERS = Number(process.env.CRASH_WORKERS ?? 3);
const filter = process.env.CRASH_POINTS === undefined ? null : new RegExp(process.env.CRASH_POINTS);

const small = { teamId: TEAM, templateId: 'base', memoryMB: 128, diskSizeMB: 64, timeoutSec: 0 };

interface Operation {
  /** The sandbox's status before the operation ('gone' before a create). */
  from: string;
  setup(c: SandboxdClient): Promise<void>;
  run(c: SandboxdClient): Promise<unknown>;
  /** Whether the guest holds kept=yes (written by the setup, or carried by the snapshot template). */
  hasData: boolean;
}

const running = async (c: SandboxdClient) => {
  await c.call('sandbox.create', { ...small, id: ID });
  await kv(c, ID, 'set', 'kept', 'yes');
};
const paused = async (c: SandboxdClient) => {
  await running(c);
  await c.call('sandbox.pause', { id: ID });
};

const operations: Record<OpName, Operation> = {
  'create-base': { from: 'gone', setup: async () => {}, run: (c) => c.call('sandbox.create', { ...small, id: ID }), hasData: false },
  'create-snapshot': {
    from: 'gone',
    setup: async (c) => {
      await c.call('sandbox.create', { ...small, id: SRC });
      await kv(c, SRC, 'set', 'kept', 'yes');
      await c.call('sandbox.snapshot', { id: SRC, templateId: 'snap' });
      await c.call('sandbox.destroy', { id: SRC });
    },
    run: (c) => c.call('sandbox.create', { ...small, templateId: 'snap', id: ID }),
    hasData: true,
  },
  pause: { from: 'running', setup: running, run: (c) => c.call('sandbox.pause', { id: ID }), hasData: true },
  resume: { from: 'paused', setup: paused, run: (c) => c.call('sandbox.resume', { id: ID }), hasData: true },
  'snapshot-live': { from: 'running', setup: running, run: (c) => c.call('sandbox.snapshot', { id: ID, templateId: 'crash-tmpl' }), hasData: true },
  'snapshot-paused': { from: 'paused', setup: paused, run: (c) => c.call('sandbox.snapshot', { id: ID, templateId: 'crash-tmpl' }), hasData: true },
  flatten: { from: 'running', setup: running, run: (c) => c.call('sandbox.flatten', { id: ID, templateId: 'crash-flat' }), hasData: true },
  'destroy-running': { from: 'running', setup: running, run: (c) => c.call('sandbox.destroy', { id: ID }), hasData: true },
  'destroy-paused': { from: 'paused', setup: paused, run: (c) => c.call('sandbox.destroy', { id: ID }), hasData: true },
};

const PAUSE_COMMIT = /^pausing\.commit\./;
const RESUME_GUEST_RAN = new Set(['waitEnvd', 'deflateBalloon', 'initEnvd', 'startMemoryLoader']);

/** The README's reconciliation table, for a VMM that outlived the agent (a SIGKILL leaves it running). */
function expected(p: CrashPoint): string {
  if (p.kind === 'none') return 'running'; // Running's memory-loader watch: the operation had finished
  switch (p.op) {
    case 'create-base':
    case 'create-snapshot':
    case 'destroy-running':
    case 'destroy-paused':
      return 'gone';
    case 'pause':
      return PAUSE_COMMIT.test(p.state) ? 'paused' : 'running';
    case 'resume':
      return RESUME_GUEST_RAN.has(p.step) || (p.step === 'resumeVm' && p.when === 'after') ? 'running' : 'paused';
    case 'snapshot-live':
    case 'flatten':
      return 'running';
    case 'snapshot-paused':
      return 'paused';
  }
}

/** The status a caller sees while the point's step runs. */
function inFlightStatus(p: CrashPoint): string {
  const top = p.state.split('.')[0]!;
  return ({ snapshottingPaused: 'snapshotting', crashed: 'destroying' } as Record<string, string>)[top] ?? top;
}

const all = crashPoints();
const points = all.filter((p) => filter === null || filter.test(pointName(p)));
const passed: string[] = [];
const failed: string[] = [];
const started = Date.now();
after(() => {
  const uncovered = all.filter((p) => !passed.includes(pointName(p))).map(pointName);
  console.log(
    `crash points: ${passed.length} ran and passed of ${all.length} (${points.length} selected, ${WORKERS} agents at once) in ${((Date.now() - started) / 1000).toFixed(1)} s` +
      (uncovered.length === 0 ? '' : `; not covered: ${uncovered.join(', ')}`),
  );
  if (failed.length > 0) console.log(`failed points:\n  ${failed.join('\n  ')}`);
});

/** Network ranges handed to one point at a time. */
const free = Array.from({ length: WORKERS }, (_, i) => crashNet(i));
const waiting: Array<(i: ReturnType<typeof crashNet>) => void> = [];
const takeNet = () => (free.length > 0 ? Promise.resolve(free.pop()!) : new Promise<ReturnType<typeof crashNet>>((r) => waiting.push(r)));
const giveNet = (n: ReturnType<typeof crashNet>) => (waiting.length > 0 ? waiting.shift()!(n) : free.push(n));

const TIMES = process.env.CRASH_TIMES === '1';
async function runPoint(world: World, p: CrashPoint): Promise<void> {
  let t0 = Date.now();
  const lap = (what: string) => {
    if (TIMES) console.log(`${pointName(p)} ${what} ${Date.now() - t0} ms`);
    t0 = Date.now();
  };
  const op = operations[p.op];
  const want = expected(p);
  const spec = crashArg(ID, p);

  // 1. Dies where it was told to.
  let agent = await world.start(spec);
  await agent.reconciled;
  const client = await agent.connect();  lap('start');

  await op.setup(client);
  lap('setup');
  assert.equal(await statusOf(client, ID), op.from, 'the setup left the sandbox where the operation starts');
  const call = op.run(client).then(
    () => 'answered',
    (err: Error) => err.name,
  );
  const exit = await agent.exited;
  const answer = await call;
  lap('op+death');
  await client.close().catch(() => undefined);
  const markers = agent.stderr().split('\n').filter((l) => l.startsWith('CRASH '));
  assert.equal(exit.signal, 'SIGKILL', `the agent died by SIGKILL (exit ${exit.exitCode}); stderr tail:\n${agent.stderr().slice(-3000)}`);
  assert.deepEqual(markers, [`CRASH ${spec} ${p.when}`], 'it died at this point, not another');
  // Running's memory-loader watch starts as the create answers: the answer may or may not have gone out.
  if (p.kind !== 'none') assert.equal(answer, 'ConnectionError', 'the caller got no answer: the agent died under it');
  else assert.ok(['ConnectionError', 'answered'].includes(answer), `the create answered or the agent died under it: ${answer}`);

  // 2. The restarted agent reconciles to the table's outcome; a client sees only the old or the new status.
  agent = await world.start();
  const watch = await watchStatuses(agent, ID);
  const report = await agent.reconciled;
  lap(`restart+reconcile (reconcile ${report.ms} ms)`);
  const settled = await agent.connect();
  const now = await statusOf(settled, ID);
  await watch.close();
  const outcome = report.outcomes.find((o) => o.sandboxId === ID);
  const where = `(recorded ${outcome?.from ?? 'nothing'} → ${outcome?.to ?? 'nothing'}; report ${JSON.stringify(report)})`;
  assert.equal(now, want, `outcome ${where}`);
  // The operation's own status (what a caller saw when the agent died) may show again while it is undone or finished.
  const inFlight = inFlightStatus(p);
  const shown = [...new Set(watch.seen.map((s) => (s === 'destroyed' ? 'gone' : s)))].sort();
  const third = shown.filter((s) => s !== op.from && s !== want && s !== inFlight);
  assert.deepEqual(third, [], `a client saw only ${op.from}, ${inFlight} or ${want}; saw ${shown.join(', ')} ${where}`);
  if (want !== 'gone') {
    if (want === 'paused') await settled.call('sandbox.resume', { id: ID });
    assert.equal(await kv(settled, ID, 'get', 'kept'), op.hasData ? 'yes' : '', 'the guest kept its data');
    await kv(settled, ID, 'set', 'after', 'crash');
  }
  lap('data');
  await settled.close();

  // 3. Killed again: the host holds exactly what the records say.
  await agent.kill();
  const records = world.records();
  assert.deepEqual(records.map((r) => r.id), want === 'gone' ? [] : [ID], 'the records hold the survivors only');
  await assertHostMatchesRecords(world.host, records, `after the outcome of ${pointName(p)}`);
  lap('kill+inventory');

  // 4. Another start finds nothing to sweep, the sandbox operable; destroying everything empties the host.
  agent = await world.start();
  const idle = await agent.reconciled;
  lap(`restart (reconcile ${idle.ms} ms)`);
  assert.deepEqual(idle.orphans, {}, 'a restart after a kill in idle finds no orphans');
  const last = await agent.connect();
  if (want !== 'gone') assert.equal(await kv(last, ID, 'get', 'after'), 'crash', 'the adopted VMM still serves the guest');
  await destroyAll(last);
  lap('destroyAll');
  await last.close();
  await agent.kill();
  assert.deepEqual(world.records(), [], 'no record left');
  await assertHostEmpty(world.host, `after destroying everything (${pointName(p)})`);
  lap('kill+empty');
}

test('agent SIGKILLed at every step boundary: restart reconciles as documented, nothing lost, nothing leaked', { skip, timeout: 30 * 60_000, concurrency: WORKERS }, async (t) => {
  assert.ok(points.length > 0, 'points selected');
  await Promise.all(
    points.map((p) =>
      t.test(pointName(p), { timeout: 180_000 }, async (st) => {
        const net = await takeNet();
        const world = await makeWorld(net);
        st.after(async () => {
          await world.dispose();
          giveNet(net);
        });
        try {
          await runPoint(world, p);
          passed.push(pointName(p));
        } catch (err) {
          failed.push(`${pointName(p)}: ${(err as Error).message.split('\n').slice(0, 3).join(' | ')}`);
          const tail = world.agent?.stderr() ?? '';
          if (tail !== '') st.diagnostic(tail.slice(-2000));
          throw err;
        }
      }),
    ),
  );
});
