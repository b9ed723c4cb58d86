import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Histogram, Registry } from 'prom-client';
import { OperationHistogram } from '../../server/op-histogram.ts';

// The server's own histogram must scrape exactly like prom-client's for the same observations.

const name = 'sandboxd_operation_duration_seconds';
const help = 'Duration of API calls by method and outcome (ok or error code)';
const buckets = [0.001, 0.005, 0.02, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

test('OperationHistogram scrapes exactly like a prom-client Histogram', async () => {
  const observation = fc.record({
    operation: fc.constantFrom('sandbox.get', 'sandbox.ping', 'sandbox.create', 'we"ird\\op\n'),
    outcome: fc.constantFrom('ok', 'not_found', 'rate_limited'),
    seconds: fc.oneof(fc.constantFrom(0, ...buckets), fc.double({ min: 0, max: 200, noNaN: true })),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(observation, { maxLength: 60 }), async (observations) => {
      const theirs = new Registry();
      const ours = new Registry();
      const reference = new Histogram({ name, help, labelNames: ['operation', 'outcome'], buckets, registers: [theirs] });
      const histogram = new OperationHistogram(name, help, buckets, ours);
      for (const { operation, outcome, seconds } of observations) {
        reference.observe({ operation, outcome }, seconds);
        histogram.observe(operation, outcome, seconds);
      }
      assert.equal(await ours.metrics(), await theirs.metrics());
      // prom-client adds an empty exemplar slot to each value; nothing else may differ.
      const withoutExemplar = (v: object) => Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'exemplar'));
      assert.deepStrictEqual((await histogram.get()).values, (await reference.get()).values.map(withoutExemplar));
    }),
    { numRuns: 300 },
  );
});
