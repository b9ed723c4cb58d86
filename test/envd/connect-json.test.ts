import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  codeFromHttpStatus, ConnectError, encodeEnvelope, endStreamError, EnvelopeDecoder, errorFromResponse, FLAG_END_STREAM, messageOf,
} from '../../drivers/envd/connect-json.ts';
import { toProcessEvent } from '../../drivers/envd/process-stream.ts';

test('the envelope header is flags then a big-endian length (reference example: 54 bytes → 00 00 00 00 36)', () => {
  const frame = encodeEnvelope({ process: { cmd: 'echo', args: ['hi'] }, stdin: false });
  assert.deepEqual([...frame.subarray(0, 5)], [0, 0, 0, 0, 0x36]);
  assert.equal(frame.length, 5 + 54);
  assert.equal(encodeEnvelope({}, FLAG_END_STREAM)[0], 2);
});

test('the decoder yields the same frames whatever the chunk boundaries', () => {
  const message = fc.oneof(
    fc.record({ event: fc.record({ data: fc.record({ stdout: fc.base64String() }) }) }),
    fc.record({ event: fc.record({ start: fc.record({ pid: fc.nat() }) }) }),
    fc.dictionary(fc.string(), fc.string()),
  );
  fc.assert(
    fc.property(fc.array(fc.tuple(message, fc.constantFrom(0, FLAG_END_STREAM)), { maxLength: 12 }), fc.array(fc.nat({ max: 64 }), { maxLength: 40 }), (msgs, cuts) => {
      const wire = Buffer.concat(msgs.map(([m, flags]) => encodeEnvelope(m, flags)));
      const decoder = new EnvelopeDecoder();
      const got: { flags: number; msg: unknown }[] = [];
      let at = 0;
      for (const cut of cuts) {
        const next = Math.min(wire.length, at + cut);
        for (const f of decoder.push(wire.subarray(at, next))) got.push({ flags: f.flags, msg: JSON.parse(f.payload.toString()) });
        at = next;
      }
      for (const f of decoder.push(wire.subarray(at))) got.push({ flags: f.flags, msg: JSON.parse(f.payload.toString()) });
      assert.deepEqual(got, msgs.map(([m, flags]) => ({ flags, msg: JSON.parse(JSON.stringify(m)) as unknown })));
      assert.equal(decoder.pending, 0);
    }),
    { numRuns: 300 },
  );
});

test('a truncated stream leaves pending bytes instead of a made-up frame', () => {
  const wire = encodeEnvelope({ event: { start: { pid: 7 } } });
  const decoder = new EnvelopeDecoder();
  assert.deepEqual(decoder.push(wire.subarray(0, wire.length - 1)), []);
  assert.equal(decoder.pending, wire.length - 1);
});

test('a frame claiming more than the bound is refused before it is buffered', () => {
  const decoder = new EnvelopeDecoder(1024);
  const head = Buffer.from([0, 0, 0, 0x10, 0]);
  assert.throws(() => decoder.push(head), (e: unknown) => e instanceof ConnectError && e.connectCode === 'resource_exhausted');
});

test('end-of-stream: {} is a clean end, an error object becomes a typed error', () => {
  assert.equal(endStreamError(Buffer.from('{}')), null);
  assert.equal(endStreamError(Buffer.from('{"metadata":{"x":["y"]}}')), null);
  const err = endStreamError(Buffer.from(JSON.stringify({ error: { code: 'not_found', message: 'process with pid 9 not found' } })));
  assert.ok(err instanceof ConnectError);
  assert.equal(err.connectCode, 'not_found');
  assert.equal(err.code, 'not_found');
  assert.match(err.message, /pid 9/);
  assert.equal(endStreamError(Buffer.from('{"error":{"code":"deadline_exceeded"}}'))?.code, 'timeout');
  assert.equal(endStreamError(Buffer.from('{"error":{"code":"brand_new_code"}}'))?.connectCode, 'unknown');
  assert.equal(endStreamError(Buffer.from('nope'))?.connectCode, 'internal');
});

test('non-200 answers: a Connect error body wins, else the code is inferred from the status (E2B 401 has a numeric code)', () => {
  assert.equal(errorFromResponse(400, JSON.stringify({ code: 'invalid_argument', message: 'bad cwd' })).code, 'invalid_argument');
  const e2b401 = errorFromResponse(401, JSON.stringify({ code: 401, message: 'unauthorized access' }));
  assert.equal(e2b401.connectCode, 'unauthenticated');
  assert.equal(e2b401.code, 'operation_failed');
  assert.equal(errorFromResponse(415, '').connectCode, 'unknown');
  assert.deepEqual([400, 401, 403, 404, 429, 502, 503, 504, 418].map(codeFromHttpStatus), [
    'internal', 'unauthenticated', 'permission_denied', 'unimplemented', 'unavailable', 'unavailable', 'unavailable', 'unavailable', 'unknown',
  ]);
});

test('process events: scalars omitted at their default read as 0/false, bytes are base64, snake_case accepted', () => {
  assert.deepEqual(toProcessEvent({ event: { start: {} } }), { type: 'start', pid: 0 });
  assert.deepEqual(toProcessEvent({ event: { data: { stdout: 'aGkK' } } }), { type: 'stdout', data: Buffer.from('hi\n') });
  assert.deepEqual(toProcessEvent({ event: { end: { exited: true, status: 'exit status 0' } } }), { type: 'end', exitCode: 0, exited: true, status: 'exit status 0', error: null });
  assert.deepEqual(toProcessEvent({ event: { end: { exit_code: -1, status: 'signal: killed' } } }), { type: 'end', exitCode: -1, exited: false, status: 'signal: killed', error: null });
  assert.deepEqual(toProcessEvent({ event: { keepalive: {} } }), { type: 'keepalive' });
  assert.throws(() => toProcessEvent({ nothing: true }), ConnectError);
  assert.throws(() => messageOf({ flags: 1, payload: Buffer.from('{}') }), ConnectError);
});
