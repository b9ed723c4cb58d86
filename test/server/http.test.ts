import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RpcError } from '../../server/client.ts';
import { installSignalHandlers } from '../../server/signals.ts';
import { FakeSupervisor, recordCalls } from './support/fake-supervisor.ts';
import { startHarness } from './support/harness.ts';

test('/healthz answers 200 and /readyz only once the supervisor is ready', async (t) => {
  let ready = false;
  const h = await startHarness(t, new FakeSupervisor(), { isReady: () => ready });
  assert.equal((await fetch(`${h.httpBase}/healthz`)).status, 200);
  assert.equal((await fetch(`${h.httpBase}/readyz`)).status, 503);
  ready = true;
  assert.equal((await fetch(`${h.httpBase}/readyz`)).status, 200);
  assert.equal((await fetch(`${h.httpBase}/nope`)).status, 404);
  assert.equal((await fetch(`${h.httpBase}/v1`)).status, 426);
  assert.equal((await fetch(`${h.httpBase}/healthz`, { method: 'POST' })).status, 405);
});

test('/metrics reports sandboxes by status, operations, errors, connections and messages', async (t) => {
  const h = await startHarness(t, new FakeSupervisor());
  const a = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  await a.call('sandbox.create', { templateId: 'base' });
  await a.call('sandbox.pause', { id: sandbox.id });
  await assert.rejects(a.call('sandbox.get', { id: 'sb-missing' }), RpcError);

  const res = await fetch(`${h.httpBase}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
  const body = await res.text();
  const value = (line: RegExp) => Number(body.split('\n').find((l) => line.test(l))?.split(' ').at(-1));
  assert.equal(value(/^sandboxd_sandboxes\{status="running"\}/), 1);
  assert.equal(value(/^sandboxd_sandboxes\{status="paused"\}/), 1);
  assert.equal(value(/^sandboxd_operation_duration_seconds_count\{operation="sandbox.create",outcome="ok"\}/), 2);
  assert.equal(value(/^sandboxd_operation_duration_seconds_count\{operation="sandbox.get",outcome="not_found"\}/), 1);
  assert.equal(value(/^sandboxd_errors_total\{code="not_found"\}/), 1);
  assert.equal(value(/^sandboxd_connections /), 1);
  assert.equal(value(/^sandboxd_messages_in_total /), 4);
  assert.ok(value(/^sandboxd_messages_out_total\{kind="reply"\}/) >= 4);
  // From the supervisor's last start-up reconciliation (the fake's: 1 VMM, 2 networks swept).
  assert.equal(value(/^sandboxd_orphans_removed\{kind="vmm"\}/), 1);
  assert.equal(value(/^sandboxd_orphans_removed\{kind="network"\}/), 2);
  // Its own registry: nothing of prom-client's global default registry leaks in.
  assert.doesNotMatch(body, /process_cpu/);
});

test('server.close() closes every connection with 1001 and stops listening', async (t) => {
  const h = await startHarness(t, new FakeSupervisor());
  const a = await h.connect('a');
  const b = await h.connect('b');
  const codes = [a, b].map((c) => new Promise<number>((r) => c.socket.once('close', (code) => r(code))));
  await h.server.close();
  assert.deepEqual(await Promise.all(codes), [1001, 1001]);
  await assert.rejects(fetch(`${h.httpBase}/healthz`));
});

test('SIGTERM shuts the supervisor down first, then closes with 1001; a second signal exits at once', async (t) => {
  const fake = new FakeSupervisor();
  const { supervisor, calls } = recordCalls(fake);
  const h = await startHarness(t, supervisor);
  const a = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  const events: string[] = [];
  await a.subscribe(undefined, (n) => n.method === 'sandbox.event' && events.push(n.params.type));
  const closed = new Promise<number>((r) => a.socket.once('close', (code) => r(code)));

  const exits: number[] = [];
  let exited!: () => void;
  const exitedP = new Promise<void>((r) => (exited = r));
  const uninstall = installSignalHandlers(h.server, supervisor, {
    signals: ['SIGUSR2'],
    exit: (code) => {
      exits.push(code);
      if (code === 0) exited();
    },
  });
  t.after(uninstall);
  process.emit('SIGUSR2', 'SIGUSR2');
  process.emit('SIGUSR2', 'SIGUSR2');
  assert.deepEqual(exits, [130]);
  await exitedP;
  assert.equal(await closed, 1001);
  assert.deepEqual(events, ['auto_paused'], 'the client saw the shutdown pause before the close');
  assert.equal(calls.at(-1), 'shutdown');
  assert.equal(fake.sandboxes.get(sandbox.id)?.status, 'paused');
  assert.deepEqual(exits, [130, 0]);
});
