import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { NetnsNetwork } from '../../drivers/network/netns-network.ts';
import { execaRunner, type CommandRunner } from '../../drivers/network/run.ts';
import { inventory, missingPrivilege, signal, sweptPrefix, testLayout } from './helpers.ts';

// A create that fails (or is cancelled) at any point must leave no namespace,
// link, route or rule of its slot; a remove that fails must keep the namespace
// so the slot can still be found and finished later. Prefix `sbxtr`, slots 4020+.

const PREFIX = 'sbxtr';
const EGRESS = `${PREFIX}-egress`;
const skip = await missingPrivilege();
const layout = testLayout(PREFIX);

sweptPrefix(PREFIX, EGRESS, skip);

/** Passes commands to the real runner; `onCall` may replace the n-th one's outcome. */
function wrapped(onCall: (n: number, file: string, args: readonly string[]) => 'fail' | 'throw' | void): {
  runner: CommandRunner;
  count: () => number;
} {
  let n = 0;
  const runner: CommandRunner = async (file, args, opts) => {
    const action = onCall(n++, file, args);
    if (action === 'fail') return { exitCode: 2, stdout: '', stderr: 'injected failure' };
    if (action === 'throw') throw new SandboxdError('timeout', 'injected timeout');
    return execaRunner(file, args, opts);
  };
  return { runner, count: () => n };
}

async function assertSlotGone(slot: number, why: string): Promise<void> {
  const inv = await inventory(PREFIX);
  assert.ok(!inv.slots.includes(slot), `${why}: slot ${slot} left ${JSON.stringify(inv)}`);
  assert.deepEqual(inv.hostRoutes, [], `${why}: routes left`);
}

/** How many commands a clean create of `slot` runs. */
async function commandsPerCreate(slot: number): Promise<number> {
  const counting = wrapped(() => undefined);
  const probe = new NetnsNetwork({ layout, egressInterface: EGRESS, runner: counting.runner });
  await probe.create(slot, { signal: signal() });
  const steps = counting.count();
  await probe.remove(slot, { signal: signal() });
  assert.ok(steps >= 8, `a create took only ${steps} commands`);
  return steps;
}

test('a create that fails at any one of its commands (exit status or timeout) leaves nothing of the slot behind', { skip }, async () => {
  const slot = 4020;
  const steps = await commandsPerCreate(slot);

  for (let k = 0; k < steps; k++) {
    for (const mode of ['fail', 'throw'] as const) {
      let createDone = false;
      const faulty = wrapped((n) => (n === k && !createDone ? mode : undefined));
      const net = new NetnsNetwork({ layout, egressInterface: EGRESS, runner: faulty.runner });
      await assert.rejects(
        net.create(slot, { signal: signal() }),
        (err: unknown) => err instanceof SandboxdError && err.code === (mode === 'fail' ? 'operation_failed' : 'timeout'),
        `command ${k} (${mode}) did not fail the create`,
      );
      createDone = true;
      await assertSlotGone(slot, `after command ${k} ${mode}`);
    }
  }
});

test('a create cancelled midway rolls back and reports cancelled', { skip }, async () => {
  const slot = 4021;
  const steps = await commandsPerCreate(slot);
  for (const k of [1, Math.floor(steps / 2), steps - 1]) {
    const ac = new AbortController();
    const cancelling = wrapped((n) => {
      if (n === k) ac.abort();
    });
    const net = new NetnsNetwork({ layout, egressInterface: EGRESS, runner: cancelling.runner });
    await assert.rejects(
      net.create(slot, { signal: ac.signal }),
      (err: unknown) => err instanceof SandboxdError && err.code === 'cancelled',
    );
    await assertSlotGone(slot, `cancelled at command ${k}`);
  }
});

test('a remove that fails keeps the namespace (so the slot can be found), and a later remove finishes the job', { skip }, async () => {
  const slot = 4022;
  const real = new NetnsNetwork({ layout, egressInterface: EGRESS });
  const s = real.layout.slot(slot);
  await real.create(slot, { signal: signal() });
  const failingLinkDel = wrapped((_, file, args) => (file === 'ip' && args.join(' ') === `link del dev ${s.hostVeth}` ? 'fail' : undefined));
  const flaky = new NetnsNetwork({ layout, egressInterface: EGRESS, runner: failingLinkDel.runner });
  await assert.rejects(
    flaky.remove(slot, { signal: signal() }),
    (err: unknown) => err instanceof SandboxdError && err.code === 'operation_failed',
  );
  assert.ok((await inventory(PREFIX)).namespaces.includes(s.namespace), 'namespace deleted although the host side was not clean');
  await real.remove(slot, { signal: signal() });
  await assertSlotGone(slot, 'after the second remove');
});

test('a remove cancelled before it starts runs nothing and says cancelled', { skip }, async () => {
  const calls = wrapped(() => undefined);
  const net = new NetnsNetwork({ layout, runner: calls.runner });
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(net.remove(4023, { signal: ac.signal }), (err: unknown) => err instanceof SandboxdError && err.code === 'cancelled');
  await assert.rejects(net.create(4023, { signal: ac.signal }), (err: unknown) => err instanceof SandboxdError && err.code === 'cancelled');
  assert.equal(calls.count(), 0);
});
