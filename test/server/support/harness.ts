import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { WebSocket } from 'ws';
import type { SupervisorApi } from '../../../actors/api.ts';
import { sha256Hex } from '../../../server/auth.ts';
import { SandboxdClient } from '../../../server/client.ts';
import type { ServerLimits } from '../../../server/limits.ts';
import { createServer, type SandboxdServer } from '../../../server/server.ts';

export const TEAM_A = 'team-a';
export const TEAM_B = 'team-b';

export interface Harness {
  server: SandboxdServer;
  url: string;
  httpBase: string;
  tokens: { a: string; b: string; admin: string };
  connect(who: 'a' | 'b' | 'admin'): Promise<SandboxdClient>;
}

/** A server on 127.0.0.1:0 with one token per team and an admin token; everything is closed by t.after. */
export async function startHarness(
  t: TestContext,
  supervisor: SupervisorApi,
  opts: { limits?: Partial<ServerLimits>; origins?: string[]; isReady?: () => boolean } = {},
): Promise<Harness> {
  const tokens = { a: tok(), b: tok(), admin: tok() };
  const server = createServer({
    supervisor,
    tokens: [
      { sha256: sha256Hex(tokens.a), teamId: TEAM_A },
      { sha256: sha256Hex(tokens.b), teamId: TEAM_B },
      { sha256: sha256Hex(tokens.admin), teamId: null },
    ],
    ...opts,
  });
  const addr = await server.listen(0, '127.0.0.1');
  const clients: SandboxdClient[] = [];
  t.after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await server.close();
  });
  return {
    server,
    url: `ws://127.0.0.1:${addr.port}/v1`,
    httpBase: `http://127.0.0.1:${addr.port}`,
    tokens,
    async connect(who) {
      const client = await SandboxdClient.connect(`ws://127.0.0.1:${addr.port}/v1`, { token: tokens[who], reconnect: false });
      clients.push(client);
      return client;
    },
  };
}

function tok(): string {
  return `sbxt-${randomBytes(16).toString('hex')}`;
}

/** A bare ws peer for frames the typed client would never send; each frame gets exactly one reply. */
export interface RawPeer {
  ws: WebSocket;
  /** Sends a frame and resolves with the next message (a reply, since a raw peer holds no subscription). */
  roundTrip(frame: string | Buffer, binary?: boolean): Promise<RawReply>;
  closed: Promise<{ code: number; reason: string }>;
}

export interface RawReply {
  jsonrpc: string;
  id: string | number | null;
  result?: unknown;
  error?: { code: number; message: string; data?: Record<string, unknown> };
}

export async function rawPeer(t: TestContext, h: Harness, who: 'a' | 'b' | 'admin'): Promise<RawPeer> {
  const ws = new WebSocket(h.url, { headers: { authorization: `Bearer ${h.tokens[who]}` } });
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  t.after(() => ws.terminate());
  const queue: RawReply[] = [];
  const waiters: ((r: RawReply) => void)[] = [];
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString()) as RawReply;
    const w = waiters.shift();
    if (w !== undefined) w(msg);
    else queue.push(msg);
  });
  return {
    ws,
    closed,
    roundTrip(frame, binary = false) {
      ws.send(frame, { binary });
      const ready = queue.shift();
      return ready !== undefined ? Promise.resolve(ready) : new Promise((r) => waiters.push(r));
    },
  };
}
