import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { StateValue } from 'xstate';
import { stepOf } from '../../actors/view.ts';

// stepOf names every step in the logs, the store and state notifications; the
// allocation-light version must name them exactly as the first one did.
function reference(value: StateValue): string {
  if (typeof value === 'string') return value;
  const parts: string[] = [];
  for (const [key, child] of Object.entries(value)) {
    const sub = reference(child as StateValue);
    parts.push(...sub.split('+').map((leaf) => `${key}.${leaf}`));
  }
  return parts.join('+');
}

test('stepOf names states as the reference does', () => {
  const name = fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9]{0,8}$/);
  const { value } = fc.letrec<{ value: StateValue }>((tie) => ({
    value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, name, fc.dictionary(name, tie('value'), { maxKeys: 3 })),
  }));
  fc.assert(fc.property(value, (v) => assert.equal(stepOf(v), reference(v))), { numRuns: 5000 });
  assert.equal(stepOf({ running: { inactivity: 'off', memoryLoader: 'idle' } }), 'running.inactivity.off+running.memoryLoader.idle');
});
