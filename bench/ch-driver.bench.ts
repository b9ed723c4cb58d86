// Latency of the Cloud Hypervisor driver's lifecycle calls against the simulator:
// boot (spawn + API up + Running + envd address), pause, resume, destroy
// (vmm.shutdown + reap), and restore from a snapshot, as median and p99.
// Run: node --import tsx bench/ch-driver.bench.ts [rounds]
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { ChApiClient } from '../drivers/vmm/ch/api-client.ts';
import { bootArgs } from '../drivers/vmm/ch/args.ts';
import { CHSIM, loopbackNet, makeSimHost } from '../test/vmm/support/sim-host.ts';

const rounds = Number(process.argv[2] ?? 40);
const host = makeSimHost();
const driver = host.driver();
const opts = () => ({ signal: AbortSignal.timeout(30_000) });
const samples: Record<string, number[]> = { 'bare chsim start': [], boot: [], pause: [], resume: [], snapshot: [], destroy: [], restore: [], 'destroy (restored)': [] };

async function timed<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t = process.hrtime.bigint();
  const out = await fn();
  samples[name]?.push(Number(process.hrtime.bigint() - t) / 1e6);
  return out;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

async function bareStart(i: number): Promise<void> {
  const sock = join(host.root, `bare-${i}.sock`);
  const args = bootArgs(
    { apiSocket: sock, logFile: join(host.root, 'bare.log'), serialFile: join(host.root, 'bare.serial') },
    { kernel: join(host.root, 'vmlinux'), cmdline: 'console=ttyS0', diskPath: host.disk(`bare-${i}`), network: loopbackNet, vcpus: 1, memoryMB: 64 },
  );
  const t = process.hrtime.bigint();
  const sub = execa(CHSIM, args, { reject: false, stdio: 'ignore' });
  const api = new ChApiClient(sock, { defaultTimeoutMs: 1000 });
  for (;;) {
    const state = await api.info({ signal: AbortSignal.timeout(1000) }).then((r) => r.state, () => null);
    if (state === 'Running') break;
    await new Promise((r) => setTimeout(r, 2));
  }
  samples['bare chsim start']?.push(Number(process.hrtime.bigint() - t) / 1e6);
  sub.kill('SIGKILL');
  await sub;
  rmSync(`${sock}.guest`, { recursive: true, force: true });
  rmSync(`${sock}.envd`, { force: true });
  rmSync(sock, { force: true });
}

try {
  // Warm-up: the first spawn pays for tsx's compile cache.
  await driver.boot(host.spec('sb-warm'), opts());
  await driver.destroy('sb-warm', opts());
  for (let i = 0; i < rounds; i++) {
    // Baseline: the simulator alone, spawned and polled tightly until its VM runs; no driver around it.
    await bareStart(i);
    const id = `sb-bench-${i}`;
    await timed('boot', () => driver.boot(host.spec(id), opts()));
    await timed('pause', () => driver.pause(id, opts()));
    await timed('resume', () => driver.resume(id, opts()));
    await driver.pause(id, opts());
    const snap = join(host.root, `snap-${i}`);
    mkdirSync(snap);
    await timed('snapshot', () => driver.snapshot(id, snap, opts()));
    await timed('destroy', () => driver.destroy(id, opts()));
    const rid = `sb-bench-r${i}`;
    await timed('restore', () => driver.restore({ ...host.spec(rid), snapshotDir: snap, lazyMemory: true }, opts()));
    await timed('destroy (restored)', () => driver.destroy(rid, opts()));
    rmSync(snap, { recursive: true, force: true });
  }
  console.log(`ch-driver on chsim (64 MiB guest), ${rounds} rounds`);
  console.log('call'.padEnd(20), 'median ms'.padStart(10), 'p99 ms'.padStart(10), 'max ms'.padStart(10));
  for (const [name, xs] of Object.entries(samples)) {
    const sorted = [...xs].sort((a, b) => a - b);
    console.log(name.padEnd(20), quantile(sorted, 0.5).toFixed(2).padStart(10), quantile(sorted, 0.99).toFixed(2).padStart(10), (sorted.at(-1) ?? NaN).toFixed(2).padStart(10));
  }
  const med = (n: string) => quantile([...(samples[n] ?? [])].sort((a, b) => a - b), 0.5);
  console.log(`driver overhead on boot: ${(med('boot') - med('bare chsim start')).toFixed(1)} ms over the bare simulator start`);
  console.log(`ratios: boot/pause ${(med('boot') / med('pause')).toFixed(0)}×, restore/boot ${(med('restore') / med('boot')).toFixed(2)}×, destroy/boot ${(med('destroy') / med('boot')).toFixed(2)}×`);
} finally {
  for (const id of [...Array(rounds).keys()].flatMap((i) => [`sb-bench-${i}`, `sb-bench-r${i}`, 'sb-warm'])) {
    await driver.destroy(id, opts()).catch(() => undefined);
  }
  host.remove();
}
