// The fault plan drives every fault and race suite: a rule that fires on the
// wrong call, a hang that ignores its signal or a gate that schedules timers
// when nothing is injected would make those suites lie or crawl.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { createFakeDrivers } from '../../drivers/fake/index.ts';
import { FaultPlan, type FakeMethod } from '../../drivers/fake/faults.ts';
import { opts } from './script.ts';

const noSignal = (): AbortSignal => new AbortController().signal;

async function settledWithin(p: Promise<unknown>, turns: number): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < turns && !settled; i++) await new Promise((r) => setImmediate(r));
  return settled;
}

test('an injected fail rejects with operation_failed naming the method and leaves the ledger unchanged', async () => {
  const { drivers, host } = createFakeDrivers();
  host.faults.fail('files.makeSandboxDir');
  const before = host.ledger.snapshot();
  await assert.rejects(drivers.files.makeSandboxDir('sb-one', opts()), (err: unknown) => {
    assert.ok(err instanceof SandboxdError);
    assert.equal(err.code, 'operation_failed');
    assert.equal(err.message, 'injected fault: files.makeSandboxDir');
    return true;
  });
  assert.deepEqual(host.ledger.snapshot(), before);
});

test('times limits a rule to N calls; later calls go through', async () => {
  const plan = new FaultPlan();
  plan.fail('vmm.pause', { times: 2 });
  const outcomes: string[] = [];
  for (let i = 0; i < 4; i++) {
    outcomes.push(await plan.gate('vmm.pause', 'sb-a', noSignal()).then(() => 'ok', () => 'fail'));
  }
  assert.deepEqual(outcomes, ['fail', 'fail', 'ok', 'ok']);
});

test('after lets the first N matching calls through before the rule acts', async () => {
  const plan = new FaultPlan();
  plan.fail('disk.create', { after: 2, times: 1 });
  const outcomes: string[] = [];
  for (let i = 0; i < 4; i++) {
    outcomes.push(await plan.gate('disk.create', undefined, noSignal()).then(() => 'ok', () => 'fail'));
  }
  assert.deepEqual(outcomes, ['ok', 'ok', 'fail', 'ok']);
});

test('a rule scoped to one sandbox neither fires for nor counts calls of another', async () => {
  const plan = new FaultPlan();
  const rule = plan.fail('vmm.boot', { sandboxId: 'sb-b', after: 1 });
  await plan.gate('vmm.boot', 'sb-a', noSignal());
  await plan.gate('vmm.boot', undefined, noSignal());
  await plan.gate('vmm.boot', 'sb-b', noSignal()); // skipped by after: 1
  await assert.rejects(plan.gate('vmm.boot', 'sb-b', noSignal()), { code: 'operation_failed' });
  assert.equal(rule.seen, 2);
  assert.equal(rule.fired, 1);
});

test('a hang never settles by itself and rejects promptly with the signal reason on abort', async () => {
  const plan = new FaultPlan();
  plan.hang('envd.waitHealthy');
  const ac = new AbortController();
  const call = plan.gate('envd.waitHealthy', 'sb-a', ac.signal);
  assert.equal(await settledWithin(call, 20), false);
  const reason = new SandboxdError('cancelled', 'destroy won');
  const started = performance.now();
  ac.abort(reason);
  await assert.rejects(call, (err) => err === reason);
  assert.ok(performance.now() - started < 500, 'abort must not wait for a timer');
});

test('a hang aborted without a reason rejects with an AbortError', async () => {
  const plan = new FaultPlan();
  plan.hang('vmm.snapshot');
  const ac = new AbortController();
  const call = plan.gate('vmm.snapshot', 'sb-a', ac.signal);
  ac.abort();
  await assert.rejects(call, { name: 'AbortError' });
});

test('a non-Error abort reason becomes a DOMException AbortError', async () => {
  const plan = new FaultPlan();
  plan.hang('vmm.snapshot');
  const ac = new AbortController();
  const call = plan.gate('vmm.snapshot', 'sb-a', ac.signal);
  ac.abort('just a string');
  await assert.rejects(call, (err) => err instanceof DOMException && err.name === 'AbortError');
});

test('a delay holds the call for its time, then lets it succeed', async () => {
  const plan = new FaultPlan();
  plan.delay('network.create', 200, { times: 1 });
  const started = performance.now();
  await plan.gate('network.create', undefined, noSignal());
  assert.ok(performance.now() - started >= 195);
  const second = performance.now();
  await plan.gate('network.create', undefined, noSignal());
  assert.ok(performance.now() - second < 150, 'times: 1 must not delay the second call');
});

test('a delayed call aborts promptly and the fake changes nothing', async () => {
  const { drivers, host } = createFakeDrivers();
  host.faults.delay('network.create', 10_000);
  const ac = new AbortController();
  const call = drivers.network.create(7, { signal: ac.signal });
  ac.abort();
  await assert.rejects(call, { name: 'AbortError' });
  assert.equal(host.ledger.networks.size, 0);
});

test('latency applies to every method, a method latency overrides the wildcard, 0 removes it', async () => {
  const plan = new FaultPlan();
  plan.latency('*', 100);
  plan.latency('vmm.info', 0);
  plan.latency('vmm.pause', 200);
  const time = async (m: FakeMethod): Promise<number> => {
    const t = performance.now();
    await plan.gate(m, 'sb-a', noSignal());
    return performance.now() - t;
  };
  assert.ok((await time('disk.create')) >= 95);
  assert.ok((await time('vmm.pause')) >= 195);
  // vmm.info's 0 removed its own entry, so the wildcard still applies.
  assert.ok((await time('vmm.info')) >= 95);
  plan.clear();
  assert.ok((await time('disk.create')) < 90);
});

test('latency is abortable', async () => {
  const { drivers, host } = createFakeDrivers({ latencyMs: 10_000 });
  const ac = new AbortController();
  const call = drivers.files.makeSandboxDir('sb-lat', { signal: ac.signal });
  ac.abort(new Error('gone'));
  await assert.rejects(call, { message: 'gone' });
  assert.equal(host.ledger.sandboxDirs.size, 0);
});

test('with nothing injected the gate returns one shared settled promise and schedules no timer', async () => {
  const plan = new FaultPlan();
  const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const a = plan.gate('vmm.boot', 'sb-a', noSignal());
  const b = plan.gate('disk.create', undefined, noSignal());
  assert.equal(a, b);
  assert.equal(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length, timersBefore);
  assert.equal(await settledWithin(a, 1), true);
});

test('an already aborted signal fails the call before it acts', async () => {
  const { drivers, host } = createFakeDrivers();
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(drivers.network.create(3, { signal: ac.signal }), { name: 'AbortError' });
  assert.equal(host.ledger.networks.size, 0);
});

test('calls counts every gated call, failed ones too; callLog records in order only when enabled', async () => {
  const plan = new FaultPlan();
  await plan.gate('vmm.boot', 'sb-a', noSignal());
  assert.equal(plan.callLog, null);
  plan.callLog = [];
  plan.fail('vmm.pause', { times: 1 });
  await plan.gate('vmm.pause', 'sb-a', noSignal()).catch(() => undefined);
  await plan.gate('vmm.pause', 'sb-b', noSignal());
  assert.equal(plan.count('vmm.boot'), 1);
  assert.equal(plan.calls.get('vmm.pause'), 2);
  assert.deepEqual(plan.callLog, [
    { method: 'vmm.pause', sandboxId: 'sb-a' },
    { method: 'vmm.pause', sandboxId: 'sb-b' },
  ]);
});

test('remove drops one rule and clear drops all; the first matching rule wins', async () => {
  const plan = new FaultPlan();
  const hang = plan.hang('vmm.resume');
  plan.fail('vmm.resume');
  const ac = new AbortController();
  const hung = plan.gate('vmm.resume', 'sb-a', ac.signal);
  ac.abort();
  await assert.rejects(hung, { name: 'AbortError' });
  plan.remove(hang);
  await assert.rejects(plan.gate('vmm.resume', 'sb-a', noSignal()), { code: 'operation_failed' });
  plan.clear();
  await plan.gate('vmm.resume', 'sb-a', noSignal());
  assert.equal(plan.rules.length, 0);
});

test('an unknown method name is refused rather than silently never firing', () => {
  const plan = new FaultPlan();
  assert.throws(() => plan.fail('vmm.paus' as FakeMethod), { code: 'invalid_argument' });
  assert.throws(() => plan.latency('disk.create', -1), { code: 'invalid_argument' });
});
