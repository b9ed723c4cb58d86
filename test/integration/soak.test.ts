import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { SandboxStatus } from '../../actors/api.ts';
import { SandboxdError } from '../../core/errors.ts';
import { SMALL, TEAM, useAgent, violations } from './support/agent.ts';

// A small real-process soak: 50 random operations over 5 sandbox ids on the
// simulator, each checked against a model of what must happen (which
// operation succeeds, which is refused with which code, what the guest's
// memory holds). Ends with everything destroyed; the harness then checks
// that no process, socket or file is left. The seed is printed on failure.

const IDS = ['sb-soak-0', 'sb-soak-1', 'sb-soak-2', 'sb-soak-3', 'sb-soak-4'] as const;
type Op = { kind: 'create' | 'exec' | 'pause' | 'resume' | 'destroy'; id: (typeof IDS)[number] };

const opArb = fc.record({
  kind: fc.constantFrom<Op['kind']>('create', 'create', 'exec', 'exec', 'pause', 'resume', 'destroy'),
  id: fc.constantFrom(...IDS),
});

test('50 random operations on 5 sandboxes end with everything destroyed and nothing left, within 50 s', async (t) => {
  const seed = Number(process.env.SOAK_SEED ?? Date.now() % 2 ** 31);
  const ops = fc.sample(fc.array(opArb, { minLength: 50, maxLength: 50 }), { numRuns: 1, seed })[0]!;
  t.diagnostic(`seed ${seed}`);
  const agent = await useAgent(t);
  const sv = agent.supervisor;
  const model = new Map<string, { status: SandboxStatus; writes: number }>();
  const started = Date.now();

  for (const [i, op] of ops.entries()) {
    const at = `op ${i} ${op.kind} ${op.id} (seed ${seed})`;
    const m = model.get(op.id);
    const refused = async (p: Promise<unknown>, code: string) =>
      assert.rejects(p, (e: SandboxdError) => e instanceof SandboxdError && e.code === code, `${at}: expected ${code}`);
    switch (op.kind) {
      case 'create':
        if (m) await refused(sv.create(TEAM, { ...SMALL, id: op.id }), 'already_exists');
        else {
          assert.equal((await sv.create(TEAM, { ...SMALL, id: op.id })).sandbox.status, 'running', at);
          model.set(op.id, { status: 'running', writes: 0 });
        }
        break;
      case 'exec':
        if (!m) await refused(sv.exec(TEAM, op.id, { cmd: 'true', args: [] }), 'not_found');
        else if (m.status !== 'running') await refused(sv.exec(TEAM, op.id, { cmd: 'true', args: [] }), 'not_running');
        else {
          // Every earlier write must still be there, whatever pauses came between.
          const got = await sv.exec(TEAM, op.id, { cmd: 'kv', args: ['get', 'writes'] });
          assert.equal(got.exitCode === 0 ? Number(got.stdout) : 0, m.writes, at);
          m.writes++;
          assert.equal((await sv.exec(TEAM, op.id, { cmd: 'kv', args: ['set', 'writes', String(m.writes)] })).exitCode, 0, at);
        }
        break;
      case 'pause':
        if (!m) await refused(sv.pause(TEAM, op.id), 'not_found');
        else {
          assert.equal((await sv.pause(TEAM, op.id)).status, 'paused', at);
          m.status = 'paused';
        }
        break;
      case 'resume':
        if (!m) await refused(sv.resume(TEAM, op.id), 'not_found');
        else {
          assert.equal((await sv.resume(TEAM, op.id)).status, 'running', at);
          m.status = 'running';
        }
        break;
      case 'destroy':
        if (!m) await refused(sv.destroy(TEAM, op.id), 'not_found');
        else {
          await sv.destroy(TEAM, op.id);
          model.delete(op.id);
        }
        break;
    }
    assert.deepEqual(sv.ids().sort(), [...model.keys()].sort(), `${at}: the registry matches the model`);
    assert.equal(agent.vmmPids().length, [...model.values()].filter((s) => s.status === 'running').length, `${at}: one VMM per running sandbox`);
  }

  await Promise.all([...model.keys()].map((id) => sv.destroy(TEAM, id)));
  assert.deepEqual(sv.ids(), []);
  assert.equal(sv.info().capacity.slotsInUse, 0);
  assert.deepEqual(violations(agent), []);
  const elapsed = Date.now() - started;
  t.diagnostic(`50 operations in ${elapsed} ms`);
  assert.ok(elapsed < 50_000, `the soak is bounded in time (${elapsed} ms)`);
});
