// The inactivity timer is not reset by each activity: it checks, when it
// fires, whether activity moved the deadline, and re-arms for what is left.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { harness, TEAM, waitStatus } from '../support/harness.ts';

const LIMIT_MS = 300; // timeoutSec 60, shortened

test('activity keeps a sandbox running past its limit; it pauses one limit after the last activity', async (t) => {
  const h = harness({ supervisor: { inactivityDelayMs: (sec) => (sec * LIMIT_MS) / 60 } });
  t.after(() => h.sup.shutdown());
  let pausingAt = 0;
  const { sandbox } = await h.sup.create(TEAM, { templateId: 'base', timeoutSec: 60 });
  h.sup.onState((c) => {
    if (c.sandboxId === sandbox.id && c.status === 'pausing' && pausingAt === 0) pausingAt = Date.now();
  });
  const startedAt = Date.now();
  let lastPing = 0;
  // Activity every 40 ms for three limits; several pings land in one millisecond each time.
  while (Date.now() - startedAt < 3 * LIMIT_MS) {
    for (let i = 0; i < 5; i++) h.sup.ping(TEAM, sandbox.id);
    lastPing = Date.now();
    assert.equal(h.sup.get(TEAM, sandbox.id).status, 'running');
    await new Promise((r) => setTimeout(r, 40));
  }
  assert.equal(Date.parse(h.sup.get(TEAM, sandbox.id).lastActiveAt), lastPing);
  await waitStatus(h, sandbox.id, 'paused', 10_000);
  const idleMs = pausingAt - lastPing;
  assert.ok(idleMs >= LIMIT_MS, `paused ${idleMs} ms after the last activity, before the ${LIMIT_MS} ms limit`);
  assert.ok(idleMs < LIMIT_MS + 1000, `paused ${idleMs} ms after the last activity`);
});

test('without activity the timer pauses after one limit, counted from when it was set', async (t) => {
  const h = harness({ supervisor: { inactivityDelayMs: (sec) => (sec * LIMIT_MS) / 60 } });
  t.after(() => h.sup.shutdown());
  let runningAt = 0;
  let pausingAt = 0;
  h.sup.onState((c) => {
    if (c.status === 'running' && runningAt === 0) runningAt = Date.now();
    if (c.status === 'pausing' && pausingAt === 0) pausingAt = Date.now();
  });
  const { sandbox } = await h.sup.create(TEAM, { templateId: 'base', timeoutSec: 60 });
  await waitStatus(h, sandbox.id, 'paused', 10_000);
  assert.ok(pausingAt - runningAt >= LIMIT_MS - 1, `paused ${pausingAt - runningAt} ms after it started running`);
});
