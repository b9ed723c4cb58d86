// Create, pause, resume and destroy latency through the real supervisor on the
// simulator (median and p99), split into the agent's own time and the time spent
// inside driver calls (the VMM driver apart), plus the simulator's own cost per
// API call so later figures on real Cloud Hypervisor can subtract it.
// Run: node --import tsx bench/vm-side.bench.ts   (BENCH_N=… to change the rounds)

import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBaseTemplate } from '../agent/base-template.ts';
import { createRuntime } from '../agent/runtime.ts';
import { loadConfig } from '../core/config.ts';
import { silentLogger } from '../core/log.ts';
import type { Drivers } from '../drivers/index.ts';

const N = Number(process.env.BENCH_N ?? 30);
const TEAM = { teamId: 'bench' };
type Phase = 'create' | 'pause' | 'resume' | 'destroy';

/**
 * Time inside driver calls as a union of intervals: steps run drivers in
 * parallel regions, and overlapping calls must not be counted twice.
 */
class DriverClock {
  active = 0;
  vmmActive = 0;
  since = 0;
  vmmSince = 0;
  total = 0;
  vmm = 0;
  reset(): void {
    this.total = 0;
    this.vmm = 0;
  }
  enter(isVmm: boolean): void {
    const now = performance.now();
    if (this.active++ === 0) this.since = now;
    if (isVmm && this.vmmActive++ === 0) this.vmmSince = now;
  }
  leave(isVmm: boolean): void {
    const now = performance.now();
    if (--this.active === 0) this.total += now - this.since;
    if (isVmm && --this.vmmActive === 0) this.vmm += now - this.vmmSince;
  }
}

function timed(drivers: Drivers, clock: DriverClock): Drivers {
  const wrap = <T extends object>(name: string, impl: T): T =>
    new Proxy(impl, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function' || prop === 'watchExit') return typeof value === 'function' ? value.bind(target) : value;
        return (...args: unknown[]) => {
          const result = (value as (...a: unknown[]) => unknown).apply(target, args);
          if (!(result instanceof Promise)) return result;
          const isVmm = name === 'vmm';
          clock.enter(isVmm);
          return result.finally(() => clock.leave(isVmm));
        };
      },
    });
  return Object.fromEntries(Object.entries(drivers).map(([k, v]) => [k, wrap(k, v as object)])) as unknown as Drivers;
}

function q(samples: number[], p: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
}

function rawInfo(socketPath: string): Promise<void> {
  return new Promise((ok, fail) => {
    const req = request({ socketPath, method: 'GET', path: '/api/v1/vm.info', agent: false }, (res) => {
      res.resume();
      res.on('end', () => ok());
    });
    req.on('error', fail);
    req.end();
  });
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'sandboxd-test-bench-vm-'));
  const clock = new DriverClock();
  try {
    const config = loadConfig({ env: { SANDBOXD_DATA_DIR: dataDir, SANDBOXD_DEFAULT_DISK_MB: '64' } });
    const rt = await createRuntime(config, silentLogger, { wrapDrivers: (d) => timed(d, clock) });
    await ensureBaseTemplate(rt.agent.drivers.templates, rt.agent.dirs.run, silentLogger, { signal: AbortSignal.timeout(60_000), sizeMB: 16 });
    const sv = rt.supervisor;
    await sv.reconcile(AbortSignal.timeout(60_000));
    const rows: Record<Phase, { total: number[]; drivers: number[]; vmm: number[] }> = {
      create: { total: [], drivers: [], vmm: [] },
      pause: { total: [], drivers: [], vmm: [] },
      resume: { total: [], drivers: [], vmm: [] },
      destroy: { total: [], drivers: [], vmm: [] },
    };
    const measure = async (phase: Phase, fn: () => Promise<unknown>) => {
      clock.reset();
      const t0 = performance.now();
      await fn();
      const total = performance.now() - t0;
      rows[phase].total.push(total);
      rows[phase].drivers.push(clock.total);
      rows[phase].vmm.push(clock.vmm);
    };
    // One warm-up round: the first VMM start loads tsx's cache.
    for (let i = -1; i < N; i++) {
      const id = `sb-bench-${i + 1}`;
      const rec = i >= 0;
      const run = async (phase: Phase, fn: () => Promise<unknown>) => (rec ? measure(phase, fn) : fn());
      await run('create', () => sv.create(TEAM, { templateId: 'base', id, memoryMB: 128 }));
      await sv.exec(TEAM, id, { cmd: 'kv', args: ['set', 'k', 'v'] });
      await run('pause', () => sv.pause(TEAM, id));
      await run('resume', () => sv.resume(TEAM, id));
      await run('destroy', () => sv.destroy(TEAM, id));
    }

    console.log(`vm-side on the simulator, ${N} rounds (128 MiB guest, clone disk, no network), ms:`);
    console.log('op        median    p99   | agent own (median)  in drivers (median)  of which VMM driver (median)');
    for (const [phase, r] of Object.entries(rows)) {
      const own = r.total.map((t, i) => t - r.drivers[i]!);
      console.log(
        `${phase.padEnd(8)} ${q(r.total, 0.5).toFixed(1).padStart(7)} ${q(r.total, 0.99).toFixed(1).padStart(7)}   | ` +
          `${q(own, 0.5).toFixed(2).padStart(8)} (${((100 * q(own, 0.5)) / q(r.total, 0.5)).toFixed(1)}%)` +
          `${q(r.drivers, 0.5).toFixed(1).padStart(17)}${q(r.vmm, 0.5).toFixed(1).padStart(22)}`,
      );
    }

    // The simulator's own cost per API call: a raw vm.info round trip on a fresh connection, no driver in between.
    await sv.create(TEAM, { templateId: 'base', id: 'sb-bench-probe', memoryMB: 128 });
    const sock = join(rt.agent.dirs.run, 'sb-bench-probe.sock');
    const raw: number[] = [];
    const viaDriver: number[] = [];
    for (let i = 0; i < 200; i++) {
      let t0 = performance.now();
      await rawInfo(sock);
      raw.push(performance.now() - t0);
      t0 = performance.now();
      await rt.agent.drivers.vmm.info('sb-bench-probe', { signal: AbortSignal.timeout(5000) });
      viaDriver.push(performance.now() - t0);
    }
    console.log(`simulator per API call (vm.info, fresh connection): raw median ${q(raw, 0.5).toFixed(2)} ms p99 ${q(raw, 0.99).toFixed(2)} ms; through ChDriver median ${q(viaDriver, 0.5).toFixed(2)} ms p99 ${q(viaDriver, 0.99).toFixed(2)} ms`);
    await sv.destroy(TEAM, 'sb-bench-probe');
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
