// Pain points other sandbox agents have shipped, each pinned by a test.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Supervisor } from '../../actors/supervisor.ts';
import { SandboxdError } from '../../core/errors.ts';
import type { LifecycleEvent } from '../../actors/api.ts';
import { assertHoldsForStatus, assertLedgerMatches, harness, settle, TEAM, waitFor, waitStatus } from '../support/harness.ts';

const kv = (h: ReturnType<typeof harness>, id: string, ...args: string[]) => h.sup.exec(TEAM, id, { cmd: 'kv', args });

test('20 pause/resume cycles keep the guest data and the inactivity timeout', async () => {
  const h = harness();
  const { sandbox } = await h.sup.create(TEAM, { templateId: 'base', timeoutSec: 3600 });
  await kv(h, sandbox.id, 'set', 'answer', '42');
  for (let cycle = 0; cycle < 20; cycle++) {
    await kv(h, sandbox.id, 'set', `cycle${cycle}`, String(cycle));
    assert.equal((await h.sup.pause(TEAM, sandbox.id)).status, 'paused');
    assertHoldsForStatus(h, sandbox.id);
    const resumed = await h.sup.resume(TEAM, sandbox.id);
    assert.equal(resumed.status, 'running');
    assert.equal(resumed.timeoutSec, 3600, `timeout lost in cycle ${cycle}`);
    assert.equal(resumed.slot, sandbox.slot, 'a resumed sandbox keeps its slot');
  }
  assert.equal((await kv(h, sandbox.id, 'get', 'answer')).stdout, '42');
  assert.equal((await kv(h, sandbox.id, 'get', 'cycle19')).stdout, '19');
  await h.sup.destroy(TEAM, sandbox.id);
  assert.ok(h.host.ledger.isEmpty());
});

test('a snapshot taken after a lazy restore waits for the memory loader, so no page is lost', async () => {
  const h = harness({ host: { memoryLoaderMs: 30 } });
  const { sandbox } = await h.sup.create(TEAM, { templateId: 'base' });
  await kv(h, sandbox.id, 'set', 'precious', 'yes');
  await h.sup.pause(TEAM, sandbox.id);
  await h.sup.resume(TEAM, sandbox.id); // lazy restore: the loader runs now
  await h.sup.pause(TEAM, sandbox.id); // must wait for it before the snapshot
  await h.sup.resume(TEAM, sandbox.id);
  assert.equal((await kv(h, sandbox.id, 'get', 'precious')).stdout, 'yes');
  await h.sup.destroy(TEAM, sandbox.id);
});

test('a sandbox stuck in any step can still be destroyed, and leaves nothing', async () => {
  const stuckMethods = [
    'templates.resolve', 'loop.attach', 'disk.create', 'network.create', 'vmm.boot', 'envd.waitHealthy',
  ] as const;
  for (const method of stuckMethods) {
    const h = harness();
    h.host.faults.hang(method);
    const create = settle(h.sup.create(TEAM, { id: 'sb-stuck', templateId: 'base' }));
    await waitFor(h, 'sb-stuck', () => (h.host.faults.calls.get(method) ?? 0) > 0, `${method} called`);
    await h.sup.destroy(TEAM, 'sb-stuck');
    const err = await create;
    assert.ok(err instanceof SandboxdError && err.code === 'cancelled', `${method}: create should be cancelled, got ${String(err)}`);
    assert.ok(h.host.ledger.isEmpty(), `${method}: leaked ${JSON.stringify(h.host.ledger.snapshot())}`);
    assert.equal(h.sup.slots.inUse, 0);
  }
  // Past the pause's point of no return a step is never aborted; its bound ends it.
  for (const method of ['vmm.pause', 'files.writeMeta', 'vmm.destroy', 'files.swapIn'] as const) {
    const h = harness({ supervisor: { stepBoundMs: () => 100 } });
    const { sandbox } = await h.sup.create(TEAM, { templateId: 'base' });
    h.host.faults.hang(method, { times: 1 });
    const pause = settle(h.sup.pause(TEAM, sandbox.id));
    await waitFor(h, sandbox.id, () => (h.host.faults.calls.get(method) ?? 0) > 0, `${method} called`);
    await h.sup.destroy(TEAM, sandbox.id);
    await pause;
    assert.equal(h.sup.snapshotOf(sandbox.id), undefined, `${method}: still there`);
    assert.ok(h.host.ledger.isEmpty(), `${method}: leaked ${JSON.stringify(h.host.ledger.snapshot())}`);
  }
});

test('an Error sandbox holds what it could not release, and a destroy releases it', async () => {
  const h = harness();
  const { sandbox } = await h.sup.create(TEAM, { templateId: 'base' });
  h.host.faults.fail('files.swapIn', { times: 1 });
  await assert.rejects(h.sup.pause(TEAM, sandbox.id), (e: SandboxdError) => e.code === 'operation_failed' && e.step === 'swapIn');
  const broken = h.sup.get(TEAM, sandbox.id);
  assert.equal(broken.status, 'error');
  assert.equal(broken.error?.step, 'swapIn');
  assertLedgerMatches(h);
  assert.ok(h.host.ledger.heldBy(sandbox.id).stagingDirs.length === 1, 'staging kept for forensics');
  await assert.rejects(h.sup.resume(TEAM, sandbox.id), (e: SandboxdError) => e.code === 'not_paused');
  await h.sup.destroy(TEAM, sandbox.id);
  assert.ok(h.host.ledger.isEmpty());
  assert.equal(h.sup.slots.inUse, 0);
});

test('duplicate ids are refused, also while the first is still being created', async () => {
  const h = harness();
  h.host.faults.delay('vmm.boot', 20);
  const first = h.sup.create(TEAM, { id: 'sb-dup', templateId: 'base' });
  await assert.rejects(h.sup.create(TEAM, { id: 'sb-dup', templateId: 'base' }), (e: SandboxdError) => e.code === 'already_exists');
  await first;
  await assert.rejects(h.sup.create({ teamId: 'other' }, { id: 'sb-dup', templateId: 'base' }), (e: SandboxdError) => e.code === 'already_exists');
  await h.sup.destroy(TEAM, 'sb-dup');
});

test('destroy racing pause never loses or resurrects a sandbox', async () => {
  for (const delayed of ['vmm.pause', 'vmm.snapshot', 'vmm.destroy', 'files.swapIn'] as const) {
    const h = harness();
    const { sandbox } = await h.sup.create(TEAM, { templateId: 'base' });
    h.host.faults.delay(delayed, 10);
    const pause = settle(h.sup.pause(TEAM, sandbox.id));
    await waitFor(h, sandbox.id, () => (h.host.faults.calls.get(delayed) ?? 0) > 0, `${delayed} called`);
    await h.sup.destroy(TEAM, sandbox.id);
    await pause;
    assert.equal(h.sup.snapshotOf(sandbox.id), undefined);
    assert.throws(() => h.sup.get(TEAM, sandbox.id), (e: SandboxdError) => e.code === 'not_found');
    assert.ok(h.host.ledger.isEmpty(), `${delayed}: leaked`);
  }
});

test('commands in the wrong state get their typed error and change nothing; idempotent ones succeed', async () => {
  const h = harness();
  const { sandbox } = await h.sup.create(TEAM, { templateId: 'base' });
  const before = h.sup.get(TEAM, sandbox.id);
  assert.equal((await h.sup.resume(TEAM, sandbox.id)).status, 'running', 'resume while running succeeds');
  await h.sup.pause(TEAM, sandbox.id);
  assert.equal((await h.sup.pause(TEAM, sandbox.id)).status, 'paused', 'pause while paused succeeds');
  await assert.rejects(h.sup.flatten(TEAM, sandbox.id, { templateId: 'x' }), (e: SandboxdError) => e.code === 'not_running');
  await assert.rejects(h.sup.exec(TEAM, sandbox.id, { cmd: 'echo', args: [] }), (e: SandboxdError) => e.code === 'not_running');
  assert.throws(() => h.sup.ping(TEAM, sandbox.id), (e: SandboxdError) => e.code === 'not_running');
  assert.equal(h.sup.get(TEAM, sandbox.id).status, 'paused');
  assert.equal(h.sup.get(TEAM, sandbox.id).slot, before.slot);
  assert.throws(() => h.sup.get({ teamId: 'other' }, sandbox.id), (e: SandboxdError) => e.code === 'not_found');
  await assert.rejects(h.sup.create(TEAM, { templateId: '../etc' }), (e: SandboxdError) => e.code === 'invalid_argument');
  await assert.rejects(h.sup.create(TEAM, { templateId: 'base', vcpus: 0 }), (e: SandboxdError) => e.code === 'invalid_argument');
  await assert.rejects(h.sup.create(TEAM, { templateId: 'nope' }), (e: SandboxdError) => e.code === 'not_found');
  assert.equal(h.sup.list(TEAM).length, 1, 'a refused create leaves nothing registered');
  await h.sup.destroy(TEAM, sandbox.id);
});

test('inactivity auto-pauses a running sandbox; activity postpones it; a failed auto-pause destroys it', async () => {
  const h = harness({ supervisor: { inactivityDelayMs: (sec) => sec } });
  const events: LifecycleEvent[] = [];
  h.sup.onEvent((e) => events.push(e));
  const { sandbox } = await h.sup.create(TEAM, { templateId: 'base', timeoutSec: 60 });
  assert.equal(sandbox.timeoutSec, 60);
  await waitStatus(h, sandbox.id, 'paused');
  assert.deepEqual(events.map((e) => [e.sandboxId, e.type]), [[sandbox.id, 'auto_paused']]);

  const second = await h.sup.create(TEAM, { templateId: 'base', timeoutSec: 60 });
  h.host.faults.fail('vmm.snapshot', { times: 1 });
  await waitStatus(h, second.sandbox.id, 'gone');
  assert.deepEqual(events.at(-1), { sandboxId: second.sandbox.id, teamId: 'acme', type: 'stopped', reason: 'snapshotVm: injected fault: vmm.snapshot' });
  await h.sup.destroy(TEAM, sandbox.id);
  assert.ok(h.host.ledger.isEmpty());
});

test('timeouts below 60 s are raised to 60; 0 means none', async () => {
  const h = harness();
  const a = await h.sup.create(TEAM, { templateId: 'base', timeoutSec: 5 });
  assert.equal(a.sandbox.timeoutSec, 60);
  const b = await h.sup.create(TEAM, { templateId: 'base', timeoutSec: 0 });
  assert.equal(b.sandbox.timeoutSec, 0);
  h.sup.setTimeout(TEAM, b.sandbox.id, 1);
  assert.equal(h.sup.get(TEAM, b.sandbox.id).timeoutSec, 60);
  await h.sup.destroy(TEAM, a.sandbox.id);
  await h.sup.destroy(TEAM, b.sandbox.id);
});

test('a VMM that dies while running releases everything and reports sandbox.error', async () => {
  const h = harness();
  const events: LifecycleEvent[] = [];
  h.sup.onEvent((e) => events.push(e));
  const { sandbox } = await h.sup.create(TEAM, { templateId: 'base' });
  h.host.crashVm(sandbox.id);
  await waitStatus(h, sandbox.id, 'gone');
  assert.equal(events[0]?.type, 'error');
  assert.ok(h.host.ledger.isEmpty());
  assert.equal(h.sup.slots.inUse, 0);
});

test('a template in use cannot be deleted; once unused it can', async () => {
  const h = harness();
  const { sandbox } = await h.sup.create(TEAM, { templateId: 'base' });
  await h.sup.snapshot(TEAM, sandbox.id, { templateId: 'mine' });
  const child = await h.sup.create(TEAM, { templateId: 'mine' });
  assert.equal((await kv(h, child.sandbox.id, 'get', 'nothing')).exitCode, 1);
  await assert.rejects(h.sup.deleteTemplate(TEAM, 'mine'), (e: SandboxdError) => e.code === 'template_in_use');
  await assert.rejects(h.sup.deleteTemplate({ teamId: 'other' }, 'mine'), (e: SandboxdError) => e.code === 'not_found');
  await h.sup.destroy(TEAM, child.sandbox.id);
  await h.sup.deleteTemplate(TEAM, 'mine');
  await assert.rejects(h.sup.create(TEAM, { templateId: 'mine' }), (e: SandboxdError) => e.code === 'not_found');
  await h.sup.destroy(TEAM, sandbox.id);
});

test('shutdown pauses what runs, destroys what cannot pause, keeps paused, and refuses new work', async () => {
  const h = harness();
  const events: LifecycleEvent[] = [];
  h.sup.onEvent((e) => events.push(e));
  const running = await Promise.all([0, 1, 2].map(() => h.sup.create(TEAM, { templateId: 'base' })));
  const paused = await h.sup.create(TEAM, { templateId: 'base' });
  await h.sup.pause(TEAM, paused.sandbox.id);
  const doomed = await h.sup.create(TEAM, { templateId: 'base' });
  h.host.faults.fail('vmm.pause', { sandboxId: doomed.sandbox.id });
  h.host.faults.hang('vmm.boot');
  const inFlight = settle(h.sup.create(TEAM, { id: 'sb-inflight', templateId: 'base' }));
  await waitFor(h, 'sb-inflight', () => (h.host.faults.calls.get('vmm.boot') ?? 0) > 0, 'boot started');

  await h.sup.shutdown();
  assert.ok((await inFlight) instanceof SandboxdError, 'the create in flight is cancelled');
  for (const r of running) assert.equal(h.sup.get(TEAM, r.sandbox.id).status, 'paused');
  assert.equal(h.sup.get(TEAM, paused.sandbox.id).status, 'paused');
  assert.equal(h.sup.snapshotOf(doomed.sandbox.id), undefined, 'what cannot pause is destroyed');
  assert.deepEqual(events.filter((e) => e.type === 'auto_paused').map((e) => e.sandboxId).sort(), running.map((r) => r.sandbox.id).sort());
  assert.deepEqual(events.filter((e) => e.type === 'stopped').map((e) => e.sandboxId), [doomed.sandbox.id]);
  assert.equal(h.sup.loops.held().size, 0, 'every loop released');
  await assert.rejects(h.sup.create(TEAM, { templateId: 'base' }), (e: SandboxdError) => e.code === 'draining');
  assert.equal(h.sup.info().draining, true);
});

test('after a shutdown, a new agent brings every paused sandbox back with its slot and data', async () => {
  const h = harness();
  const a = await h.sup.create(TEAM, { templateId: 'base', timeoutSec: 600, diskSizeMB: 128 });
  const b = await h.sup.create({ teamId: 'other' }, { templateId: 'snap' });
  await kv(h, a.sandbox.id, 'set', 'kept', 'across restarts');
  await h.sup.shutdown();

  const next = new Supervisor({ drivers: h.drivers, slots: 64 });
  const { recovered, unreadable } = await next.recoverPaused(AbortSignal.timeout(5_000));
  assert.deepEqual(recovered.sort(), [a.sandbox.id, b.sandbox.id].sort());
  assert.deepEqual(unreadable, []);
  const back = next.get(TEAM, a.sandbox.id);
  assert.equal(back.status, 'paused');
  assert.equal(back.slot, a.sandbox.slot, 'the slot is reserved again');
  assert.equal(back.timeoutSec, 600);
  assert.equal(back.diskSizeMB, 128);
  assert.throws(() => next.get(TEAM, b.sandbox.id), (e: SandboxdError) => e.code === 'not_found', 'team isolation survives the restart');
  assert.equal(next.slots.ownerOf(b.sandbox.slot!), b.sandbox.id);
  await next.resume(TEAM, a.sandbox.id);
  assert.equal((await next.exec(TEAM, a.sandbox.id, { cmd: 'kv', args: ['get', 'kept'] })).stdout, 'across restarts');
  const fresh = await next.create(TEAM, { templateId: 'base' });
  assert.notEqual(fresh.sandbox.slot, a.sandbox.slot);
  assert.notEqual(fresh.sandbox.slot, b.sandbox.slot);
  for (const id of [a.sandbox.id, fresh.sandbox.id]) await next.destroy(TEAM, id);
  await next.destroy({ teamId: 'other' }, b.sandbox.id);
  assert.ok(h.host.ledger.isEmpty());
});
