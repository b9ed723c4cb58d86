import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ErrorCodes } from '../../core/errors.ts';
import { schemas } from '../../server/schemas.ts';
import type { SupervisorApi } from '../../actors/api.ts';
import { FakeSupervisor } from './support/fake-supervisor.ts';
import { realSupervisor } from './support/real-supervisor.ts';
import { rawPeer, startHarness, type RawReply } from './support/harness.ts';

// Hostile input must always get a well-formed error, never a crash or a state
// change. The sandbox under attack is running; every frame is one of: garbage
// text, a JSON value of any shape, or a request whose params are arbitrary or
// "nearly right" (hostile ids, wrong types, huge numbers, unicode).

const knownRpcCodes = new Set<number>([-32700, -32600, -32601, -32602, ...Object.values(ErrorCodes).map((c) => c.rpc)]);
const methods = [...Object.keys(schemas), 'sandbox.teleport', 'pty.start', '__proto__', 'constructor', ''];

const hostileString = fc.oneof(
  fc.constantFrom('../etc/passwd', '..', '/', '-rf', '--help', 'sb-../x', 'sb-A', ' sb-x', 'sb-x\n', 'sb-\u0000', 'base/../../x', '$(reboot)', ''),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ maxLength: 40 }).map((s) => `-${s}`),
);
const hostileNumber = fc.oneof(
  fc.constantFrom(0, -1, 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, 0.5, 2 ** 53, -0),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
);
const hostileValue = fc.oneof(hostileString, hostileNumber, fc.boolean(), fc.constant(null), fc.array(hostileString, { maxLength: 3 }), fc.dictionary(hostileString, hostileString, { maxKeys: 3 }));
const paramKeys = ['id', 'templateId', 'teamId', 'vcpus', 'memoryMB', 'timeoutSec', 'cmd', 'args', 'env', 'cwd', 'status', 'sandboxId', 'subscriptionId', 'name', '__proto__'];
const hostileParams = fc.oneof(
  fc.dictionary(fc.constantFrom(...paramKeys), hostileValue, { maxKeys: 5 }),
  hostileValue,
  fc.jsonValue(),
);

const frame = fc.oneof(
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
  { weight: 1, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null') },
  {
    weight: 4,
    arbitrary: fc.record({ method: fc.constantFrom(...methods), params: hostileParams, id: fc.oneof(fc.integer(), fc.string({ maxLength: 8 })) }).map((r) =>
      JSON.stringify({ jsonrpc: '2.0', id: r.id, method: r.method, params: r.params }),
    ),
  },
);

function wellFormedError(reply: RawReply): void {
  assert.equal(reply.jsonrpc, '2.0');
  assert.ok(reply.error !== undefined, `expected an error, got ${JSON.stringify(reply)}`);
  assert.ok(Number.isInteger(reply.error.code) && knownRpcCodes.has(reply.error.code), `unknown code ${reply.error.code}`);
  assert.equal(typeof reply.error.message, 'string');
  assert.ok(!/\n\s+at /.test(JSON.stringify(reply)), 'no stack trace leaks');
}

const backends = {
  'in-test supervisor': () => new FakeSupervisor() as SupervisorApi,
  'real supervisor': () => realSupervisor().supervisor as SupervisorApi,
};

for (const [backend, make] of Object.entries(backends)) {
  test(`arbitrary frames and params always get a well-formed error and change no sandbox (${backend})`, async (t) => {
    const supervisor = make();
    const h = await startHarness(t, supervisor, { limits: { ratePerSec: 1e6, burst: 1e6 } });
    const a = await h.connect('a');
    const { sandbox } = await a.call('sandbox.create', { templateId: 'base', id: 'sb-target' });
    const before = JSON.stringify(await a.call('sandbox.get', { id: sandbox.id }));
    const peer = await rawPeer(t, h, 'b');
    const changes: unknown[] = [];
    t.after(supervisor.onState((c) => changes.push(c)));

    await fc.assert(
      fc.asyncProperty(frame, async (f) => {
        const reply = await peer.roundTrip(f);
        if (reply.result !== undefined) {
          // Team b owns nothing: only listings, info and subscriptions can succeed, and they touch nothing.
          assert.ok(/"method":"(sandbox\.list|template\.list|agent\.info|events\.subscribe)"/.test(f), `unexpected success for ${f}`);
          return;
        }
        wellFormedError(reply);
      }),
      { numRuns: 300, seed: Number(process.env.FUZZ_SEED ?? 7) },
    );

    assert.deepEqual(changes, []);
    assert.equal(JSON.stringify(await a.call('sandbox.get', { id: sandbox.id })), before);
    assert.equal(supervisor.list({ teamId: null }).length, 1);
    assert.equal(peer.ws.readyState, peer.ws.OPEN, 'the fuzzing connection is still open');
  });
}

test('params fuzzed against the admin token never create, pause or destroy anything', async (t) => {
  const fake = new FakeSupervisor();
  const h = await startHarness(t, fake, { limits: { ratePerSec: 1e6, burst: 1e6 } });
  const admin = await h.connect('admin');
  await admin.call('sandbox.create', { templateId: 'base', id: 'sb-target', teamId: 'team-a' });
  const peer = await rawPeer(t, h, 'admin');
  const mutating = ['sandbox.pause', 'sandbox.resume', 'sandbox.destroy', 'sandbox.setTimeout', 'template.delete', 'sandbox.snapshot', 'sandbox.flatten'];
  const changes: unknown[] = [];
  t.after(fake.onState((c) => changes.push(c)));
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...mutating), fc.dictionary(fc.constantFrom(...paramKeys), hostileValue, { maxKeys: 4 }), async (method, params) => {
      const reply = await peer.roundTrip(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }));
      wellFormedError(reply);
    }),
    { numRuns: 300, seed: Number(process.env.FUZZ_SEED ?? 11) },
  );
  assert.deepEqual(changes, []);
  assert.equal((await admin.call('sandbox.get', { id: 'sb-target' })).status, 'running');
});
