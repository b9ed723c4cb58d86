// A real sandboxd agent process for the crash tests: the host rig's drivers
// (loops, dm over the stand-in dmsetup, netns, the simulator) over a durable
// SQLite store, serving the real WebSocket server. With --crash-at it SIGKILLs
// itself at one step boundary of one sandbox's operation, writing a marker
// line to stderr first so the test knows where it died.
//
//   --root DIR  --prefix P --transit CIDR --host-cidr CIDR  --token-sha256 HEX
//   [--crash-at SANDBOX:OPKIND:STEP#NTH:before|after]
//
// stdout: {"listening":PORT,"pid":PID} once serving (commands wait with
// `starting`), then {"reconciled":REPORT} when start-up reconciliation ends;
// {"event":LIFECYCLE_EVENT} for each lifecycle event.
import { writeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import type { StepImpl } from '../../actors/steps.ts';
import { Supervisor } from '../../actors/supervisor.ts';
import type { Logger } from '../../core/log.ts';
import { SqliteStore } from '../../drivers/store/sqlite-store.ts';
import type { SandboxContext } from '../../machines/sandbox/context.ts';
import type { StepName } from '../../machines/sandbox/steps.ts';
import { createServer } from '../../server/index.ts';
import { buildHostDrivers, MAX_SLOTS } from '../host/host-drivers.ts';

const { values: a } = parseArgs({
  options: {
    root: { type: 'string' },
    prefix: { type: 'string' },
    transit: { type: 'string' },
    'host-cidr': { type: 'string' },
    'token-sha256': { type: 'string' },
    'crash-at': { type: 'string' },
  },
  strict: true,
});
for (const k of ['root', 'prefix', 'transit', 'host-cidr', 'token-sha256'] as const) {
  if (a[k] === undefined) throw new Error(`agent-child: --${k} is required`);
}

interface Crash {
  sandboxId: string;
  kind: string;
  step: StepName;
  nth: number;
  when: 'before' | 'after';
}

function parseCrash(spec: string): Crash {
  const m = /^([^:]+):([a-z]+):([A-Za-z]+)#(\d+):(before|after)$/.exec(spec);
  if (m === null) throw new Error(`agent-child: bad --crash-at ${spec}`);
  return { sandboxId: m[1]!, kind: m[2]!, step: m[3] as StepName, nth: Number(m[4]), when: m[5] as 'before' | 'after' };
}

const crash = a['crash-at'] === undefined ? null : parseCrash(a['crash-at']);
const opKind = (c: SandboxContext) => c.op?.kind ?? (c.destroyOps.length > 0 ? 'destroy' : 'none');
let seen = 0;

function die(when: string): never {
  writeSync(2, `CRASH ${a['crash-at']} ${when}\n`);
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable: SIGKILL sent to self');
}

/** The step's run that the crash point names: counted when it starts. */
const wrapStep = (name: StepName, impl: StepImpl): StepImpl => async (context, signal) => {
  const hit = crash !== null && crash.step === name && crash.sandboxId === context.id && crash.kind === opKind(context) && ++seen === crash.nth;
  if (hit && crash.when === 'before') die('before');
  const out = await impl(context, signal);
  if (hit) die('after');
  return out;
};

// Synchronous to stderr: what the agent logged before it was killed is all there.
const log = pino({ level: process.env.SANDBOXD_LOG_LEVEL ?? 'info', base: { svc: 'sandboxd-child' } }, pino.destination({ dest: 2, sync: true })) as Logger;

const store = new SqliteStore(`${a.root}/data`);
const host = buildHostDrivers({
  root: a.root!,
  net: { prefix: a.prefix!, transitCidr: a.transit!, hostCidr: a['host-cidr']! },
  store,
  log,
});
// As the agent's factory does: a VMM's own working dir goes with it, its logs with the sandbox.
const vmm = host.drivers.vmm;
const drivers = {
  ...host.drivers,
  vmm: new Proxy(vmm, {
    get(target, key) {
      if (key === 'destroy') {
        return async (id: string, o: { signal: AbortSignal }) => {
          await target.destroy(id, o);
          await rm(host.vmSandboxDir(id), { recursive: true, force: true });
        };
      }
      const v = Reflect.get(target, key) as unknown;
      return typeof v === 'function' ? v.bind(target) : v;
    },
  }),
};
const sup = new Supervisor({
  drivers,
  logger: log,
  slots: MAX_SLOTS,
  defaultDiskSizeMB: 64,
  vmSandboxDir: host.vmSandboxDir,
  wrapStep,
  gateUntilReconciled: true,
});
const server = createServer({
  supervisor: sup,
  tokens: [{ sha256: a['token-sha256']!, teamId: null }],
  logger: log,
  isReady: () => sup.ready && !sup.draining,
});
// Lifecycle events on stdout, from before reconciliation: a test cannot miss one emitted while it reconciles.
sup.onEvent((event) => process.stdout.write(`${JSON.stringify({ event })}\n`));
sup.onState((change) => {
  if (change.status !== 'destroyed') return;
  for (const suffix of ['vmm.log', 'serial.log', 'vmm.out']) void rm(join(host.paths.logDir, `${change.sandboxId}.${suffix}`), { force: true });
});
const address = await server.listen(0, '127.0.0.1');
process.stdout.write(`${JSON.stringify({ listening: address.port, pid: process.pid })}\n`);
const report = await sup.reconcile(AbortSignal.timeout(120_000));
process.stdout.write(`${JSON.stringify({ reconciled: report })}\n`);
