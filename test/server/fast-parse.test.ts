import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { fastEnvelope, fastParams } from '../../server/fast-parse.ts';
import { requestEnvelope, schemas, type MethodName } from '../../server/schemas.ts';

// The fast paths must accept only what zod accepts and return what zod returns;
// what they decline goes to zod. Inputs are fuzzed both as JS values and as
// the JSON frames a peer sends (JSON.parse keeps "__proto__" as an own key).

const nearId = fc.oneof(
  fc.stringMatching(/^sb-[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/),
  fc.constantFrom('sb-a', 'sb-bench', 'sb--', 'sb-a-', 'sb-A', 'sb-', ' sb-a', 'sb-a\n', `sb-${'a'.repeat(40)}`, `sb-${'a'.repeat(41)}`, 'sb-\u0000', ''),
  fc.string({ maxLength: 70 }).map((s) => `sb-${s}`),
  fc.string({ unit: 'grapheme', maxLength: 70 }),
);
const anyValue = fc.oneof(nearId, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.jsonValue(), fc.anything());
const keys = fc.constantFrom('id', 'jsonrpc', 'method', 'params', 'extra', '__proto__', 'constructor', 'ID', '');

const params = fc.oneof(
  fc.record({ id: nearId }),
  fc.record({ id: anyValue }),
  fc.dictionary(keys, anyValue, { maxKeys: 3 }),
  anyValue,
);
const envelope = fc.oneof(
  fc.record(
    {
      jsonrpc: fc.oneof(fc.constant('2.0'), fc.constantFrom('2', '1.0', 2, null, ' 2.0')),
      id: fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 140 }), fc.constantFrom(null, true, [], {}, 'x'.repeat(128), 'x'.repeat(129))),
      method: fc.oneof(fc.constantFrom('sandbox.get', 'sandbox.ping', 'x'.repeat(128), 'x'.repeat(129)), fc.string({ maxLength: 140 }), anyValue),
      params,
    },
    { requiredKeys: [] },
  ),
  fc.tuple(fc.record({ jsonrpc: fc.constant('2.0'), id: fc.integer(), method: fc.constant('sandbox.get') }), fc.dictionary(keys, anyValue, { maxKeys: 2 })).map(([a, b]) => ({ ...b, ...a })),
  anyValue,
);
const viaJson = (v: unknown): unknown => {
  const text = JSON.stringify(v);
  return text === undefined ? v : JSON.parse(text);
};

const byIdMethods = (Object.keys(schemas) as MethodName[]).filter((m) => fastParams(schemas[m], { id: 'sb-a' }) !== undefined);

test('the by-id fast path covers the hot methods', () => {
  for (const m of ['sandbox.get', 'sandbox.ping'] as const) assert.ok(byIdMethods.includes(m), m);
  // Lifecycle commands may name an incarnation: zod parses them (they are not the hot path).
  for (const m of ['sandbox.pause', 'sandbox.destroy'] as const) assert.ok(!byIdMethods.includes(m), m);
  assert.equal(fastParams(schemas['sandbox.create'], { id: 'sb-a' }), undefined);
});

test('fastEnvelope accepts only what requestEnvelope accepts, with the same output', () => {
  let accepted = 0;
  fc.assert(
    fc.property(envelope, fc.boolean(), (raw, json) => {
      const msg = json ? viaJson(raw) : raw;
      const fast = fastEnvelope(msg);
      const slow = requestEnvelope.safeParse(msg);
      if (fast === null) return;
      accepted++;
      assert.ok(slow.success, `fast path accepted what zod rejects: ${String(JSON.stringify(msg))}`);
      assert.deepStrictEqual(fast, slow.data);
    }),
    { numRuns: 20_000 },
  );
  assert.ok(accepted > 1000, `only ${accepted} envelopes took the fast path`);
  const frame = JSON.parse('{"jsonrpc":"2.0","id":1,"method":"sandbox.get","params":{"id":"sb-a"},"__proto__":{}}');
  assert.equal(fastEnvelope(frame), null);
});

test('fastParams accepts only what each by-id schema accepts, with the same output', () => {
  let accepted = 0;
  fc.assert(
    fc.property(fc.constantFrom(...byIdMethods), params, fc.boolean(), (method, raw, json) => {
      const value = json ? viaJson(raw) : raw;
      const fast = fastParams(schemas[method], value);
      const slow = schemas[method].safeParse(value);
      if (fast === undefined) return;
      accepted++;
      assert.ok(slow.success, `fast path accepted what zod rejects: ${String(JSON.stringify(value))}`);
      assert.deepStrictEqual(fast, slow.data);
    }),
    { numRuns: 20_000 },
  );
  assert.ok(accepted > 1000, `only ${accepted} params took the fast path`);
  assert.equal(fastParams(schemas['sandbox.get'], JSON.parse('{"id":"sb-a","__proto__":{}}')), undefined);
});

test('whatever zod accepts for a by-id method from a plain frame, the fast path accepts too', () => {
  fc.assert(
    fc.property(fc.constantFrom(...byIdMethods), nearId, (method, id) => {
      const value = viaJson({ id });
      if (schemas[method].safeParse(value).success) assert.deepStrictEqual(fastParams(schemas[method], value), { id });
    }),
    { numRuns: 5_000 },
  );
});
