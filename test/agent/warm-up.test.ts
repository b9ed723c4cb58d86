import assert from 'node:assert/strict';
import { test } from 'node:test';
import { warmUp } from '../../agent/warm-up.ts';
import { createFakeDrivers } from '../../drivers/fake/index.ts';

// The start-up JIT warm-up: throwaway lifecycles on in-memory fakes that must
// run every operation, end with nothing held, and stop when told.

const running = () => new AbortController().signal;

test('every warm-up lifecycle boots, pauses, resumes and destroys a sandbox on the fakes and leaves nothing held', async () => {
  const fakes = createFakeDrivers();
  const report = await warmUp(30, running(), { fakes, batch: 10 });
  assert.equal(report.completed, 30);
  assert.equal(report.failed, 0);
  assert.deepEqual(report.leftover, []);
  const calls = fakes.host.faults;
  assert.equal(calls.count('vmm.boot'), 30);
  assert.equal(calls.count('vmm.snapshot'), 30, 'each pause snapshots');
  assert.equal(calls.count('vmm.restore'), 30, 'each resume restores');
  assert.equal(calls.count('files.removeSandboxDir'), 30, 'each destroy removes its dir');
  assert.equal(fakes.host.ledger.isEmpty(), true);
});

test('a failed operation is counted, not thrown, and its sandbox is still destroyed', async () => {
  const fakes = createFakeDrivers();
  fakes.host.faults.fail('vmm.snapshot', { times: 1 });
  const report = await warmUp(12, running(), { fakes, batch: 4 });
  assert.equal(report.failed, 1);
  assert.equal(report.completed, 11);
  assert.deepEqual(report.leftover, []);
});

test('an aborted signal stops the warm-up between batches: the batch in flight ends clean, no other starts', async () => {
  const fakes = createFakeDrivers();
  const stop = new AbortController();
  const pause = fakes.drivers.vmm.pause.bind(fakes.drivers.vmm);
  fakes.drivers.vmm.pause = (...args) => (stop.abort(), pause(...args));
  const report = await warmUp(50, stop.signal, { fakes, batch: 10 });
  assert.equal(report.completed, 10);
  assert.equal(fakes.host.faults.count('vmm.boot'), 10);
  assert.deepEqual(report.leftover, []);

  const none = createFakeDrivers();
  assert.equal((await warmUp(50, AbortSignal.abort(), { fakes: none })).completed, 0);
  assert.equal(none.host.faults.count('vmm.boot'), 0);
});
