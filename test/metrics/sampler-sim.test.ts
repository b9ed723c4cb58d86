import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MetricsSampler } from '../../actors/metrics/sampler.ts';
import { EnvdClient } from '../../drivers/envd/envd-client.ts';
import { makeSimHost } from '../vmm/support/sim-host.ts';

// The sampler wired to the real pieces: /proc of a live simulated VMM and the
// stand-in envd's /metrics, on the real clock at a short interval.

test('sampling a live VMM yields points with the guest-reported memory and disk use', async (t) => {
  const host = makeSimHost();
  const driver = host.driver();
  const sampler = new MetricsSampler({ envd: new EnvdClient(), intervalMs: 50 });
  t.after(async () => {
    sampler.stop('sb-metrics');
    await driver.destroy('sb-metrics', { signal: AbortSignal.timeout(15_000) }).catch(() => undefined);
    host.remove();
  });
  const vm = await driver.boot(host.spec('sb-metrics'), { signal: AbortSignal.timeout(20_000) });
  await new EnvdClient().waitHealthy(vm.envdUrl, 10_000, { signal: AbortSignal.timeout(20_000) });
  sampler.start('sb-metrics', { pid: vm.pid, envdUrl: vm.envdUrl, vcpus: 1 });
  const deadline = Date.now() + 10_000;
  while (sampler.points('sb-metrics', '5m').length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const points = sampler.points('sb-metrics', '5m');
  assert.ok(points.length >= 4, `only ${points.length} points`);
  for (const p of points) {
    assert.ok(p.cpuPct >= 0 && p.cpuPct <= 100);
    assert.ok(p.memBytes > 0, 'guest memory use reported');
    assert.ok(p.diskBytes >= 0);
  }
  assert.ok(points.every((p, i) => i === 0 || p.ts > (points[i - 1]?.ts ?? 0)), 'time moves forward');
  const flushed = sampler.flush('sb-metrics');
  assert.ok(flushed.points10m.length >= points.length);
  assert.equal(sampler.active, 0);
});
