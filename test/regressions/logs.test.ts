// Every log line about a sandbox must name the sandbox and the step it was in,
// or an operator cannot tell which transition a line belongs to.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { harness, TEAM } from '../support/harness.ts';

test('each sandbox log line is JSON with the sandbox id and the step', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const h = harness({ supervisor: { logger } });
  const { sandbox } = await h.sup.create(TEAM, { templateId: 'base' });
  h.host.faults.fail('envd.prepareSnapshot', { times: 1 }); // a warning line too
  await h.sup.pause(TEAM, sandbox.id);
  await h.sup.resume(TEAM, sandbox.id);
  h.host.crashVm(sandbox.id);
  await new Promise<void>((resolve) => h.sup.onState((c) => c.status === 'destroyed' && resolve()));
  const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const about = records.filter((r) => r.sandboxId === sandbox.id);
  assert.ok(about.length > 40, `only ${about.length} lines`);
  for (const r of about) assert.equal(typeof r.step, 'string', `no step in ${JSON.stringify(r)}`);
  assert.ok(about.some((r) => r.step === 'quiesce' && r.level === 40), 'the failed best-effort step is logged as a warning');
  assert.ok(about.some((r) => r.event === 'error'), 'the crash is logged');
});
