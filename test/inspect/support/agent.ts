import { randomBytes } from 'node:crypto';
import { createSupervisor, type Supervisor } from '../../../actors/supervisor.ts';
import { createFakeDrivers, type FakeDrivers } from '../../../drivers/fake/index.ts';
import { sha256Hex } from '../../../server/auth.ts';
import { SandboxdClient } from '../../../server/client.ts';
import { createInspectionFeed, type InspectionFeed } from '../../../server/inspect/feed.ts';
import { createServer, type SandboxdServer } from '../../../server/server.ts';

export const TEAM_A = 'team-a';
export const TEAM_B = 'team-b';

export interface InspectAgent {
  supervisor: Supervisor;
  fake: FakeDrivers;
  feed: InspectionFeed;
  server: SandboxdServer;
  base: string;
  tokens: { a: string; b: string; admin: string };
  connect(who: 'a' | 'b' | 'admin'): Promise<SandboxdClient>;
  close(): Promise<void>;
}

/** The real supervisor over fake drivers, wired to an inspection feed and a server on 127.0.0.1:0. */
export async function startInspectAgent(opts: { latencyMs?: number; historySize?: number } = {}): Promise<InspectAgent> {
  const feed = createInspectionFeed(opts.historySize === undefined ? {} : { historySize: opts.historySize });
  const fake = createFakeDrivers(opts.latencyMs === undefined ? {} : { latencyMs: opts.latencyMs });
  const supervisor = createSupervisor({ drivers: fake.drivers, inspect: feed.inspect });
  const tokens = { a: tok(), b: tok(), admin: tok() };
  const server = createServer({
    supervisor,
    inspector: feed,
    tokens: [
      { sha256: sha256Hex(tokens.a), teamId: TEAM_A },
      { sha256: sha256Hex(tokens.b), teamId: TEAM_B },
      { sha256: sha256Hex(tokens.admin), teamId: null },
    ],
  });
  const addr = await server.listen(0, '127.0.0.1');
  const clients: SandboxdClient[] = [];
  const base = `http://127.0.0.1:${addr.port}`;
  return {
    supervisor,
    fake,
    feed,
    server,
    base,
    tokens,
    async connect(who) {
      const c = await SandboxdClient.connect(`ws://127.0.0.1:${addr.port}/v1`, { token: tokens[who], reconnect: false });
      clients.push(c);
      return c;
    },
    async close() {
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      await server.close();
      await Promise.allSettled(supervisor.ids().map((id) => supervisor.destroy({ teamId: null }, id)));
    },
  };
}

function tok(): string {
  return `sbxt-${randomBytes(16).toString('hex')}`;
}
