// The agent's entry point (`npm start`): configuration, drivers and store, the
// first-start base template and admin token, the WebSocket server, the JIT
// warm-up and start-up reconciliation (README) before any command is served,
// until SIGTERM/SIGINT.
import { parseArgs } from 'node:util';
import { ensureAdminToken } from '../agent/admin-token.ts';
import { ensureBaseTemplate } from '../agent/base-template.ts';
import { createRuntime } from '../agent/runtime.ts';
import { warmUp } from '../agent/warm-up.ts';
import { loadConfig, type AgentConfig } from '../core/config.ts';
import { SandboxdError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { createInspectionFeed, createServer, installSignalHandlers, type TokenEntry } from '../server/index.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help) {
    process.stdout.write('usage: sandboxd [--config FILE]   (settings: README, "Configuration"; env SANDBOXD_* overrides the file)\n');
    return;
  }
  let config: AgentConfig;
  try {
    config = loadConfig(values.config === undefined ? {} : { configPath: values.config });
  } catch (err) {
    process.stderr.write(`sandboxd: ${(err as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  const log = createLogger({ level: config.logLevel });
  const inspector = createInspectionFeed();
  const runtime = await createRuntime(config, log, { inspect: inspector.inspect });
  const { supervisor, agent } = runtime;
  // Checkpoints the WAL into the database on every way out (a SIGKILL leaves it for the next start).
  process.on('exit', () => runtime.close());

  const base = await ensureBaseTemplate(agent.drivers.templates, agent.dirs.run, log, { signal: AbortSignal.timeout(120_000) });
  if (base.kind === 'mkfs-missing') log.error(base.detail);

  const tokens: TokenEntry[] = config.tokens.map((t) => ({ sha256: t.sha256.toLowerCase(), teamId: t.teamId }));
  let tokenHint: string | null = null;
  if (tokens.length === 0) {
    const admin = await ensureAdminToken(config.dataDir);
    tokens.push({ sha256: admin.sha256, teamId: null });
    log.info({ path: admin.path, created: admin.created }, 'no tokens configured: using the admin token file');
    tokenHint = admin.path;
  }

  // Listening before reconciliation: probes see /healthz and a false /readyz, commands get `starting`.
  const server = createServer({ supervisor, tokens, logger: log, inspector, isReady: () => supervisor.ready && !supervisor.draining });
  installSignalHandlers(server, supervisor, { logger: log });
  const address = await server.listen(config.listen.port, config.listen.host);
  if (config.warmUpLifecycles > 0) {
    const warm = await warmUp(config.warmUpLifecycles, AbortSignal.timeout(60_000));
    const fields = { completed: warm.completed, failed: warm.failed, ms: Math.round(warm.ms) };
    if (warm.failed > 0 || warm.leftover.length > 0) log.warn({ ...fields, leftover: warm.leftover }, 'JIT warm-up on the fakes did not end clean');
    else log.info(fields, 'JIT warm-up done');
  }
  const report = await supervisor.reconcile(AbortSignal.timeout(10 * 60_000));
  const moved = report.outcomes.filter((o) => o.from.split('.')[0] !== o.to).map((o) => `${o.sandboxId}: ${o.from} -> ${o.to}`);
  log.info({ outcomes: moved, pausedFromDisk: report.pausedFromDisk, unreadable: report.unreadable }, 'start-up reconciliation done');
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `ws://${host}:${address.port}/v1`;
  log.info({ url, port: address.port, backends: agent.backends }, `listening on ${url}`);
  log.info(`inspector: http://${host}:${address.port}/inspect  ·  health: /readyz  ·  Prometheus: /metrics`);
  if (tokenHint !== null) {
    // The path, never the token: a newcomer copies it into the shell.
    log.info(`to drive it: export SANDBOXD_URL=${url} SANDBOXD_TOKEN=$(cat ${tokenHint}); bin/sandboxctl create`);
  }
}

main().catch((err: unknown) => {
  const message = err instanceof SandboxdError ? `${err.code}: ${err.message}` : err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`sandboxd: start-up failed: ${message}\n`);
  process.exit(1);
});
