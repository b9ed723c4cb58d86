// Model-based: paths derived from the real sandbox machine by xstate/graph,
// each driven on a real actor with the fake drivers. A state the real actor
// does not reach, or a host ledger that disagrees with the state after any
// event, fails the path.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { machinePaths, operationPaths } from './paths.ts';
import { walk } from './walk.ts';

test('every shortest path to every state: actor follows the machine and the ledger matches at each step', async () => {
  const paths = machinePaths();
  assert.ok(paths.length > 1000, `only ${paths.length} paths`);
  for (const [i, path] of paths.entries()) {
    await walk(path.steps as never).catch((err: Error) => {
      throw new Error(`shortest path ${i} (${path.steps.map((s) => s.event.type).join(' ')}): ${err.message}`);
    });
  }
  console.log(`model: ${paths.length} shortest paths ran`);
});

test('every simple path through Create, with each step succeeding or failing, rolls back or runs', async () => {
  const paths = operationPaths([], (s) => s.matches('creating'));
  assert.ok(paths.length > 1000, `only ${paths.length} paths`);
  for (const [i, path] of paths.entries()) {
    await walk(path.steps as never).catch((err: Error) => {
      throw new Error(`create path ${i} (${path.steps.map((s) => s.event.type).join(' ')}): ${err.message}`);
    });
  }
  console.log(`model: ${paths.length} simple Create paths ran`);
});
