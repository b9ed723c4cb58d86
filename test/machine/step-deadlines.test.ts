// Step bounds on one timer: each step still times out on its own bound, and
// nothing is left armed once no step is in flight.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { StepDeadlines } from '../../actors/step-deadlines.ts';
import { SandboxdError } from '../../core/errors.ts';

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

test('a step past its bound is aborted with a timeout naming it; the others are not', async () => {
  const deadlines = new StepDeadlines();
  const slow = new AbortController();
  const settled = new AbortController();
  const patient = new AbortController();
  deadlines.add(patient, 'waitEnvd', 60_000);
  deadlines.add(settled, 'pauseVm', 20);
  deadlines.add(slow, 'probeVm', 30);
  deadlines.remove(settled);
  await once(slow.signal, 'abort');
  assert.ok(slow.signal.reason instanceof SandboxdError);
  assert.equal(slow.signal.reason.code, 'timeout');
  assert.match(slow.signal.reason.message, /^probeVm took longer than 30 ms$/);
  assert.equal(settled.signal.aborted, false, 'a step that settled before its bound is never aborted');
  assert.equal(patient.signal.aborted, false);
  assert.equal(deadlines.size, 1);
  deadlines.remove(patient);
});

test('a shorter bound added after a longer one fires first', async () => {
  const deadlines = new StepDeadlines();
  const long = new AbortController();
  const short = new AbortController();
  deadlines.add(long, 'snapshotVm', 60_000);
  deadlines.add(short, 'probeVm', 10);
  await once(short.signal, 'abort');
  assert.equal(long.signal.aborted, false);
  deadlines.remove(long);
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
  deadlines.add(a, 'createDisk', 120_000);
  deadlines.add(b, 'probeVm', 3_000);
  assert.equal(timers(), before + 1, 'one timer for both steps');
  deadlines.remove(b);
  assert.equal(timers(), before + 1, 'still armed while a step is in flight');
  deadlines.remove(a);
  assert.equal(timers(), before, 'an idle runner holds no timer');
});
