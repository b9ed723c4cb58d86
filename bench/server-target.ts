// The server under test for bench/server.bench.ts, run as a child process so
// that the load generator in the parent does not share its event loop.
//   argv[2] = 'echo'     : a bare `ws` server answering every frame with itself;
//   argv[2] = 'sandboxd' : the agent's server over a supervisor with fake drivers,
//                          one sandbox `sb-bench` of team `bench`, token argv[3].
// Talks to the parent over the fork IPC channel (TargetRequest / TargetReply).
// The parent imports only this file's types (importing it would start a server).
import { once } from 'node:events';
import { WebSocketServer } from 'ws';
import { createSupervisor } from '../actors/supervisor.ts';
import { createFakeDrivers } from '../drivers/fake/index.ts';
import { sha256Hex } from '../server/auth.ts';
import { createServer } from '../server/server.ts';

export type TargetKind = 'echo' | 'sandboxd';
const BENCH_SANDBOX = 'sb-bench';

export type TargetRequest =
  | { type: 'cpu' }
  | { type: 'clock' }
  | { type: 'op'; op: 'pause' | 'resume' }
  | { type: 'stop' };

export type TargetReply =
  | { type: 'ready'; url: string; sandboxId: string }
  | { type: 'cpu'; userUs: number; systemUs: number; atMs: number }
  | { type: 'clock'; epochMs: number }
  | { type: 'op'; emitted: { seq: number; epochMs: number }[] };

/** A clock comparable across processes once the parent has measured the offset. */
const epochNow = (): number => performance.timeOrigin + performance.now();

function reply(msg: TargetReply): void {
  process.send?.(msg);
}

async function startEcho(): Promise<{ url: string; stop: () => Promise<void> }> {
  const echo = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false, maxPayload: 64 * 1024 });
  await once(echo, 'listening');
  echo.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  const { port } = echo.address() as { port: number };
  return {
    url: `ws://127.0.0.1:${port}`,
    stop: async () => {
      for (const c of echo.clients) c.terminate();
      await new Promise<void>((r) => echo.close(() => r()));
    },
  };
}

async function startSandboxd(token: string, emitted: { seq: number; epochMs: number }[]) {
  const { drivers } = createFakeDrivers();
  const supervisor = createSupervisor({ drivers });
  // Default limits except the connection cap; the per-connection rate limit
  // (100/s) stays on, and the load stays below it.
  const server = createServer({
    supervisor,
    tokens: [{ sha256: sha256Hex(token), teamId: 'bench' }],
    limits: { maxConnections: 20_000 },
  });
  const { port } = await server.listen(0, '127.0.0.1');
  await supervisor.create({ teamId: 'bench' }, { templateId: 'base', id: BENCH_SANDBOX });
  supervisor.onState((c) => emitted.push({ seq: c.seq, epochMs: epochNow() }));
  return {
    url: `ws://127.0.0.1:${port}/v1`,
    op: (op: 'pause' | 'resume') => supervisor[op]({ teamId: 'bench' }, BENCH_SANDBOX),
    stop: async () => {
      await server.close();
      await supervisor.shutdown();
    },
  };
}

async function main(): Promise<void> {
  const kind = process.argv[2] as TargetKind;
  const emitted: { seq: number; epochMs: number }[] = [];
  const target = kind === 'echo' ? { ...(await startEcho()), op: undefined } : await startSandboxd(process.argv[3] ?? '', emitted);
  process.on('message', (msg: TargetRequest) => {
    switch (msg.type) {
      case 'cpu': {
        const u = process.cpuUsage();
        return reply({ type: 'cpu', userUs: u.user, systemUs: u.system, atMs: performance.now() });
      }
      case 'clock':
        return reply({ type: 'clock', epochMs: epochNow() });
      case 'op':
        if (target.op === undefined) throw new Error('the echo server has no sandbox');
        emitted.length = 0;
        void target.op(msg.op).then(() => reply({ type: 'op', emitted: emitted.splice(0) }));
        return;
      case 'stop':
        void target.stop().then(() => process.exit(0));
        return;
    }
  });
  reply({ type: 'ready', url: target.url, sandboxId: BENCH_SANDBOX });
}

await main();
