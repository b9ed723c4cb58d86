// xstate's floor for the runtime bench: the real sandbox machine with no
// supervisor, store, log or driver. Its steps replay what the agent's steps
// returned in one recorded run (create, pause, resume, destroy of one sandbox),
// each after as many injected latencies as the real step made driver calls, so
// the bare machine walks the same states, invokes and release chains as the agent.
import { assign, createActor, emit, setup, type Actor } from 'xstate';
import { Supervisor } from '../actors/supervisor.ts';
import { createFakeDrivers } from '../drivers/fake/index.ts';
import type { GateCall } from '../drivers/fake/faults.ts';
import type { StepOutput } from '../machines/sandbox/context.ts';
import type { SandboxEmitted, SandboxEvent } from '../machines/sandbox/events.ts';
import { sandboxMachine } from '../machines/sandbox/machine.ts';
import { stepActor } from '../machines/sandbox/step-actor.ts';
import { allSteps, type StepName } from '../machines/sandbox/steps.ts';

type Replay = Map<string, { output: StepOutput; calls: number }>;
const key = (op: string | undefined, step: StepName) => `${op ?? '-'}/${step}`;

/**
 * Runs one sandbox through the agent on zero-latency fakes and records each
 * step's output and driver calls. Another sandbox of the same template runs
 * meanwhile, as in a crowd: the template's loop is attached already and stays
 * attached, so the recorded steps make the calls a typical sandbox makes.
 * The memory loader's status poll runs beside the steps and is not counted.
 */
export async function recordSteps(): Promise<Replay> {
  const fakes = createFakeDrivers();
  const log: GateCall[] = [];
  const calls = () => log.filter((c) => c.method !== 'envd.memoryLoaderStatus').length;
  const replay: Replay = new Map();
  let recording = false;
  const sup = new Supervisor({
    drivers: fakes.drivers,
    wrapStep: (name, impl) => async (c, signal) => {
      if (!recording) return impl(c, signal);
      const before = calls();
      const output = (await impl(c, signal)) ?? {};
      replay.set(key(c.op?.kind, name), { output, calls: calls() - before });
      return output;
    },
  });
  const team = { teamId: 'bench' };
  const holder = await sup.create(team, { templateId: 'base' });
  fakes.host.faults.callLog = log;
  recording = true;
  const { sandbox } = await sup.create(team, { templateId: 'base' });
  await sup.pause(team, sandbox.id);
  await sup.resume(team, sandbox.id);
  await sup.destroy(team, sandbox.id);
  recording = false;
  await sup.destroy(team, holder.sandbox.id);
  await sup.shutdown();
  return replay;
}

function wait(ms: number, signal: AbortSignal): Promise<void> {
  if (ms === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  });
}

export type BareSandbox = Actor<typeof sandboxMachine>;

/** The bare machine whose steps replay `replay`, each waiting `latencyMs` per recorded driver call. */
export function bareLogic(replay: Replay, latencyMs: number) {
  const actors = Object.fromEntries(
    allSteps.map((name) => [
      name,
      stepActor(async ({ context }, ctl) => {
        const r = replay.get(key(context.op?.kind, name));
        await wait((r?.calls ?? 0) * latencyMs, ctl.signal);
        return r?.output ?? {};
      }),
    ]),
  );
  return sandboxMachine.provide({ actors: actors as never });
}

let ops = 0;

/** Sends a command (or, for 'CREATE', starts the actor) and resolves when the machine replies to it. */
export function bareOp(actor: BareSandbox, type: 'CREATE' | 'PAUSE' | 'RESUME' | 'DESTROY'): Promise<void> {
  const opId = type === 'CREATE' ? actor.getSnapshot().context.op!.id : `bare-op-${++ops}`;
  return new Promise((resolve, reject) => {
    const sub = actor.on('reply', (e) => {
      const reply = e as Extract<SandboxEmitted, { type: 'reply' }>;
      if (!reply.opIds.includes(opId)) return;
      sub.unsubscribe();
      if (reply.ok) resolve();
      else reject(new Error(`${type} failed on the bare machine: ${reply.error.code}`));
    });
    if (type === 'CREATE') actor.start();
    else actor.send({ type, opId } as SandboxEvent);
  });
}

let made = 0;

/** A bare sandbox, not yet started: `bareOp(actor, 'CREATE')` runs its create. */
export function bareSandbox(logic: ReturnType<typeof bareLogic>): BareSandbox {
  const id = `sb-bare${++made}`;
  return createActor(logic, {
    input: { id, teamId: 'bench', templateId: 'base', vcpus: 1, memoryMB: 512, diskSizeMB: 64, timeoutSec: 0, opId: `${id}-create`, now: Date.now() },
  });
}

/**
 * The leanest machine with `steps` invoked steps: one flat chain, no guards,
 * no parallel region, one assign per step. What xstate costs per invoked step
 * whatever the machine's shape.
 */
export function leanLogic(steps: number) {
  const names = Array.from({ length: steps }, (_, i) => `step${i}`);
  const states: Record<string, object> = { done: { type: 'final', entry: emit({ type: 'reply' }) } };
  names.forEach((name, i) => {
    states[name] = {
      invoke: { src: name, onDone: { target: names[i + 1] ?? 'done', actions: assign({ n: ({ context }) => context.n + 1 }) }, onError: 'done' },
    };
  });
  const actors = Object.fromEntries(names.map((name) => [name, stepActor(async () => ({}))]));
  return setup({ types: { context: {} as { n: number } }, actors }).createMachine({ context: { n: 0 }, initial: names[0]!, states } as never);
}
