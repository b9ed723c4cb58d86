// Step bounds on one timer: each step still times out on its own bound, and
// nothing is left armed once no step is in flight.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { StepDeadlines, type Deadline } from '../../actors/step-deadlines.ts';
import { SandboxdError } from '../../core/errors.ts';

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

test('a step past its bound is aborted with a timeout naming it; the others are not', async () => {
  const deadlines = new StepDeadlines();
  const slow = new AbortController();
  const settled = new AbortController();
  const patient = new AbortController();
  const patientBound = deadlines.add(patient, 'waitEnvd', 60_000);
  const settledBound = deadlines.add(settled, 'pauseVm', 20);
  deadlines.add(slow, 'probeVm', 30);
  deadlines.remove(settledBound);
  await once(slow.signal, 'abort');
  assert.ok(slow.signal.reason instanceof SandboxdError);
  assert.equal(slow.signal.reason.code, 'timeout');
  assert.match(slow.signal.reason.message, /^probeVm took longer than 30 ms$/);
  assert.equal(settled.signal.aborted, false, 'a step that settled before its bound is never aborted');
  assert.equal(patient.signal.aborted, false);
  assert.equal(deadlines.size, 1);
  deadlines.remove(patientBound);
});

test('a shorter bound added after a longer one fires first', async () => {
  const deadlines = new StepDeadlines();
  const long = new AbortController();
  const short = new AbortController();
  const longBound = deadlines.add(long, 'snapshotVm', 60_000);
  deadlines.add(short, 'probeVm', 10);
  await once(short.signal, 'abort');
  assert.equal(long.signal.aborted, false);
  deadlines.remove(longBound);
});

test('steps that expire together are all aborted by one firing', async () => {
  const deadlines = new StepDeadlines();
  const ctls = Array.from({ length: 50 }, () => new AbortController());
  for (const ctl of ctls) deadlines.add(ctl, 'quiesce', 15);
  await Promise.all(ctls.map((ctl) => once(ctl.signal, 'abort')));
  assert.equal(deadlines.size, 0);
  assert.equal(timers(), 0, 'no timer left armed');
});

test('no timer stays armed once the last step in flight settles', () => {
  const before = timers();
  const deadlines = new StepDeadlines();
  const a = new AbortController();
  const b = new AbortController();
  const aBound = deadlines.add(a, 'createDisk', 120_000);
  const bBound = deadlines.add(b, 'probeVm', 3_000);
  assert.equal(timers(), before + 1, 'one timer for both steps');
  deadlines.remove(bBound);
  assert.equal(timers(), before + 1, 'still armed while a step is in flight');
  deadlines.remove(aBound);
  assert.equal(timers(), before, 'an idle runner holds no timer');
});

test('steps of one bound expire whichever of them settled first', async () => {
  const deadlines = new StepDeadlines();
  const first = new AbortController();
  const second = new AbortController();
  const third = new AbortController();
  const firstBound = deadlines.add(first, 'pauseVm', 15);
  deadlines.add(second, 'pauseVm', 15);
  const thirdBound = deadlines.add(third, 'pauseVm', 15);
  deadlines.remove(firstBound);
  deadlines.remove(thirdBound);
  await once(second.signal, 'abort');
  assert.equal(first.signal.aborted, false);
  assert.equal(third.signal.aborted, false);
  assert.equal(deadlines.size, 0);
});

test('settled steps are not kept: 10,000 steps through one bound leave the queues about the size of what is in flight', () => {
  const deadlines = new StepDeadlines();
  const hung = deadlines.add(new AbortController(), 'createDisk', 120_000);
  const window: Deadline[] = [];
  for (let i = 0; i < 10_000; i++) {
    window.push(deadlines.add(new AbortController(), 'probeVm', 3_000));
    // 100 in flight at a time, settling in the order they started, beside one that hangs.
    if (window.length > 100) deadlines.remove(window.shift()!);
  }
  assert.equal(deadlines.size, 101);
  assert.ok(deadlines.kept <= 2 * 101 + 64, `kept ${deadlines.kept} entries for 101 steps in flight`);
  for (const d of [hung, ...window]) deadlines.remove(d);
  assert.equal(deadlines.kept, 0);
  assert.equal(timers(), 0);
});
