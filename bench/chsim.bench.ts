// The simulator's own cost per CH API call, so driver benchmarks run against it can
// tell the simulator's share from their own. Run: node --import tsx bench/chsim.bench.ts
// Each request opens a fresh unix-socket connection, as a driver without keep-alive does.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';

const CHSIM = resolve(fileURLToPath(import.meta.url), '../../drivers/vmm/sim/chsim');
const MIB = 1024 * 1024;

function call(socketPath: string, method: string, endpoint: string, body?: unknown): Promise<number> {
  return new Promise((ok, fail) => {
    const req = request({ socketPath, method, path: `/api/v1/${endpoint}`, agent: false }, (res) => {
      res.resume();
      res.on('end', () => ok(res.statusCode ?? 0));
    });
    req.on('error', fail);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function must(socket: string, method: string, endpoint: string, body?: unknown): Promise<void> {
  const status = await call(socket, method, endpoint, body);
  if (status >= 300) throw new Error(`${endpoint} answered ${status}`);
}

function envdCall(base: string, method: string, path: string): Promise<string> {
  return new Promise((ok, fail) => {
    const u = new URL(base);
    const req = request({ host: u.hostname, port: Number(u.port), method, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => ok(body));
    });
    req.on('error', fail);
    req.end();
  });
}

function stats(samples: number[]): string {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return `median ${at(0.5).toFixed(2)} ms  p99 ${at(0.99).toFixed(2)} ms  (n=${s.length})`;
}

async function time(n: number, fn: (i: number) => Promise<void>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    out.push(performance.now() - t0);
  }
  return out;
}

async function startSim(dir: string, name: string, version: number, memory: string): Promise<{ socket: string; proc: ResultPromise; ms: number }> {
  const socket = join(dir, `${name}.sock`);
  const t0 = performance.now();
  const proc = execa(CHSIM, ['--api-socket', socket, '--sim-version', String(version), '--kernel', '/k', '--memory', memory], { reject: false });
  for (;;) {
    if (existsSync(socket) && (await call(socket, 'GET', 'vmm.ping').catch(() => 0)) === 200) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  return { socket, proc, ms: performance.now() - t0 };
}

const dir = mkdtempSync(join(tmpdir(), 'sandboxd-test-chsim-bench-'));
const procs: ResultPromise[] = [];
try {
  const starts = await time(5, async (i) => {
    const s = await startSim(dir, `start${i}`, 52, 'size=512M,shared=on');
    await must(s.socket, 'PUT', 'vmm.shutdown');
    await s.proc;
  });
  console.log(`start-up to first ping (512 MiB)      ${stats(starts)}`);

  const sim = await startSim(dir, 'main', 52, 'size=512M,shared=on');
  procs.push(sim.proc);
  const sock = sim.socket;
  console.log(`vm.info round trip                    ${stats(await time(500, () => must(sock, 'GET', 'vm.info')))}`);
  console.log(`vm.pause + vm.resume                  ${stats(await time(200, async () => {
    await must(sock, 'PUT', 'vm.pause');
    await must(sock, 'PUT', 'vm.resume');
  }))}`);

  await must(sock, 'PUT', 'vm.pause');
  const sparse = await time(10, async (i) => {
    mkdirSync(join(dir, `s${i}`));
    await must(sock, 'PUT', 'vm.snapshot', { destination_url: `file://${join(dir, `s${i}`)}` });
  });
  const st = statSync(join(dir, 's0', 'memory-ranges'));
  console.log(`vm.snapshot 512 MiB, v52 sparse       ${stats(sparse)}  allocated ${(st.blocks * 512 / MIB).toFixed(1)} MiB of ${st.size / MIB} MiB`);

  const dense = await startSim(dir, 'dense', 47, 'size=512M,shared=on');
  procs.push(dense.proc);
  await must(dense.socket, 'PUT', 'vm.pause');
  const denseTimes = await time(3, async (i) => {
    mkdirSync(join(dir, `d${i}`));
    await must(dense.socket, 'PUT', 'vm.snapshot', { destination_url: `file://${join(dir, `d${i}`)}` });
    rmSync(join(dir, `d${i}`), { recursive: true });
  });
  console.log(`vm.snapshot 512 MiB, v47 dense        ${stats(denseTimes)}`);
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  console.log(`  dense / sparse snapshot ratio       ${(median(denseTimes) / median(sparse)).toFixed(1)}x`);

  const restorer = await startSim(dir, 'restorer', 52, 'size=512M,shared=on');
  procs.push(restorer.proc);
  await must(restorer.socket, 'PUT', 'vm.delete');
  const restore = async (mode: 'Copy' | 'OnDemand'): Promise<number[]> =>
    time(10, async (i) => {
      await must(restorer.socket, 'PUT', 'vm.restore', { source_url: `file://${join(dir, `s${i}`)}`, memory_restore_mode: mode });
      await must(restorer.socket, 'PUT', 'vm.delete');
    });
  const copy = await restore('Copy');
  const lazy = await restore('OnDemand');
  console.log(`vm.restore 512 MiB, Copy (+ delete)   ${stats(copy)}`);
  console.log(`vm.restore 512 MiB, OnDemand (+ del)  ${stats(lazy)}`);
  console.log(`  Copy / OnDemand restore ratio       ${(median(copy) / median(lazy)).toFixed(1)}x`);

  const envdUrl = readFileSync(`${restorer.socket}.envd`, 'utf8');
  const loader = await time(5, async (i) => {
    await must(restorer.socket, 'PUT', 'vm.restore', { source_url: `file://${join(dir, `s${i}`)}`, memory_restore_mode: 'OnDemand', resume: true });
    await envdCall(envdUrl, 'POST', '/memory/preload');
    while ((JSON.parse(await envdCall(envdUrl, 'GET', '/memory/preload')) as { state: string }).state !== 'done') {
      await new Promise((r) => setTimeout(r, 2));
    }
    await must(restorer.socket, 'PUT', 'vm.delete');
  });
  console.log(`OnDemand restore + memory loader done ${stats(loader)}`);
} finally {
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(procs);
  rmSync(dir, { recursive: true, force: true });
}
