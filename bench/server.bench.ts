// The WebSocket API under load, all on loopback, beside a bare `ws` echo server
// in the same run (the floor: framing and sockets without JSON-RPC, auth,
// zod or the supervisor):
//  1. 1,000 concurrent connections each doing sandbox.get / sandbox.ping in turn;
//  2. the same load against an echo server answering each frame with itself;
//  3. fan-out: 1,000 subscribers of one sandbox while it pauses and resumes.
// Client and servers share this process (and its 2 cores), so the figures are
// a lower bound for the server alone; the ratio is what to compare.
// Run: node --import tsx bench/server.bench.ts [connections] [callsPerConnection]
import { once } from 'node:events';
import { WebSocket, WebSocketServer } from 'ws';
import { createSupervisor } from '../actors/supervisor.ts';
import { createFakeDrivers } from '../drivers/fake/index.ts';
import { sha256Hex } from '../server/auth.ts';
import { SandboxdClient } from '../server/client.ts';
import { createServer } from '../server/server.ts';

const CONNECTIONS = Number(process.argv[2] ?? 1000);
const CALLS = Number(process.argv[3] ?? 20);
const CYCLES = 3;
const TOKEN = 'sbxt-bench-token';

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}

function summary(label: string, latencies: number[], wallMs: number): void {
  latencies.sort((a, b) => a - b);
  const rate = latencies.length / (wallMs / 1000);
  console.log(
    `${label.padEnd(28)} ${String(latencies.length).padStart(6)} calls  ${rate.toFixed(0).padStart(7)} calls/s  ` +
      `p50 ${pct(latencies, 0.5).toFixed(2).padStart(7)} ms  p99 ${pct(latencies, 0.99).toFixed(2).padStart(7)} ms  max ${latencies.at(-1)!.toFixed(1)} ms`,
  );
}

/** Opens `n` connections a hundred at a time (a burst of 1,000 SYNs overflows the loopback backlog). */
async function openMany<T>(n: number, open: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i += 100) out.push(...(await Promise.all(Array.from({ length: Math.min(100, n - i) }, open))));
  return out;
}

async function loadSandboxd(url: string, sandboxId: string): Promise<{ latencies: number[]; wallMs: number; clients: SandboxdClient[] }> {
  const clients = await openMany(CONNECTIONS, () => SandboxdClient.connect(url, { token: TOKEN, reconnect: false }));
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    clients.map(async (c) => {
      for (let i = 0; i < CALLS; i++) {
        const s = performance.now();
        if (i % 2 === 0) await c.call('sandbox.get', { id: sandboxId });
        else await c.call('sandbox.ping', { id: sandboxId });
        latencies.push(performance.now() - s);
      }
    }),
  );
  return { latencies, wallMs: performance.now() - t0, clients };
}

async function loadEcho(url: string, frame: string): Promise<{ latencies: number[]; wallMs: number }> {
  const sockets = await openMany(CONNECTIONS, async () => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    await once(ws, 'open');
    return ws;
  });
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    sockets.map(async (ws) => {
      for (let i = 0; i < CALLS; i++) {
        const s = performance.now();
        ws.send(frame);
        await once(ws, 'message');
        latencies.push(performance.now() - s);
      }
    }),
  );
  const wallMs = performance.now() - t0;
  for (const ws of sockets) ws.terminate();
  return { latencies, wallMs };
}

async function main(): Promise<void> {
  const { drivers } = createFakeDrivers();
  const supervisor = createSupervisor({ drivers });
  const server = createServer({
    supervisor,
    tokens: [{ sha256: sha256Hex(TOKEN), teamId: 'bench' }],
    limits: { maxConnections: 20_000 },
  });
  const { port } = await server.listen(0);
  const url = `ws://127.0.0.1:${port}/v1`;
  const { sandbox } = await supervisor.create({ teamId: 'bench' }, { templateId: 'base', id: 'sb-bench' });

  const echo = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  await once(echo, 'listening');
  echo.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  const echoUrl = `ws://127.0.0.1:${(echo.address() as { port: number }).port}`;
  const sampleFrame = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'sandbox.get', params: { id: sandbox.id } });

  console.log(`# ${CONNECTIONS} connections × ${CALLS} sequential calls each, loopback, one process (node ${process.version})`);
  const bare = await loadEcho(echoUrl, sampleFrame);
  const api = await loadSandboxd(url, sandbox.id);
  summary('bare ws echo', bare.latencies, bare.wallMs);
  summary('sandboxd get/ping', api.latencies, api.wallMs);
  const ratio = (bare.latencies.length / bare.wallMs) / (api.latencies.length / api.wallMs);
  console.log(`throughput ratio echo/sandboxd: ${ratio.toFixed(2)}×`);

  // Fan-out: every connection subscribes to the one sandbox; measure from the
  // supervisor's announcement to each subscriber's receipt.
  const emitted = new Map<number, number>();
  const received = new Map<number, number[]>();
  supervisor.onState((c) => emitted.set(c.seq, performance.now()));
  await Promise.all(
    api.clients.map((c) =>
      c.subscribe(sandbox.id, (n) => {
        if (n.method !== 'sandbox.state') return;
        const at = performance.now();
        const list = received.get(n.params.seq) ?? [];
        list.push(at);
        received.set(n.params.seq, list);
      }),
    ),
  );
  // Each operation: from its call until every subscriber holds its final state.
  const allSeen = async () => {
    const lastSeq = Math.max(...emitted.keys());
    const deadline = Date.now() + 60_000;
    while ((received.get(lastSeq)?.length ?? 0) < CONNECTIONS && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  };
  const opMs: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < CYCLES; i++) {
    for (const op of ['pause', 'resume'] as const) {
      const s = performance.now();
      await supervisor[op]({ teamId: 'bench' }, sandbox.id);
      await allSeen();
      opMs.push(performance.now() - s);
    }
  }
  const wallMs = performance.now() - t0;
  const all: number[] = [];
  const lastOfEach: number[] = [];
  let delivered = 0;
  for (const [seq, at] of emitted) {
    const got = received.get(seq) ?? [];
    delivered += got.length;
    for (const r of got) all.push(r - at);
    if (got.length > 0) lastOfEach.push(Math.max(...got) - at);
  }
  const expected = emitted.size * CONNECTIONS;
  console.log(`# fan-out: ${emitted.size} state changes (${CYCLES} pause/resume cycles) × ${CONNECTIONS} subscribers`);
  console.log(`delivered ${delivered}/${expected} notifications (${((delivered / wallMs) * 1000).toFixed(0)}/s over ${(wallMs / 1000).toFixed(2)} s incl. the operations)`);
  all.sort((a, b) => a - b);
  lastOfEach.sort((a, b) => a - b);
  console.log(`one pause or resume (~${Math.round(emitted.size / (2 * CYCLES))} changes) until all ${CONNECTIONS} subscribers hold its final state: ${opMs.map((m) => m.toFixed(0)).join(', ')} ms`);
  console.log(`announce → receipt: p50 ${pct(all, 0.5).toFixed(2)} ms  p99 ${pct(all, 0.99).toFixed(2)} ms; announce → last subscriber: p50 ${pct(lastOfEach, 0.5).toFixed(2)} ms  max ${lastOfEach.at(-1)?.toFixed(2)} ms`);

  await Promise.all(api.clients.map((c) => c.close()));
  await server.close();
  echo.close();
  await supervisor.shutdown();
}

await main();
