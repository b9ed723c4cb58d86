import type { SupervisorApi } from '../actors/api.ts';
import { silentLogger, type Logger } from '../core/log.ts';
import type { SandboxdServer } from './server.ts';

export interface SignalOptions {
  logger?: Logger;
  /** Defaults to process.exit; tests pass their own. */
  exit?: (code: number) => void;
  signals?: readonly NodeJS.Signals[];
}

/**
 * SIGTERM/SIGINT: let the supervisor shut down (pause what runs, destroy the
 * rest) while clients still watch its notifications, then close every
 * connection with 1001 and exit. A second signal exits at once. Returns a
 * function that removes the handlers.
 */
export function installSignalHandlers(server: Pick<SandboxdServer, 'close'>, supervisor: Pick<SupervisorApi, 'shutdown'>, opts: SignalOptions = {}): () => void {
  const log = opts.logger ?? silentLogger;
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const signals = opts.signals ?? ['SIGTERM', 'SIGINT'];
  let stopping = false;

  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      exit(130);
      return;
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    supervisor
      .shutdown()
      .catch((err: unknown) => {
        log.error({ err }, 'supervisor shutdown failed');
        return 'failed' as const;
      })
      .then(async (outcome) => {
        await server.close();
        exit(outcome === 'failed' ? 1 : 0);
      })
      .catch((err: unknown) => {
        log.error({ err }, 'closing the server failed');
        exit(1);
      });
  };

  for (const s of signals) process.on(s, onSignal);
  return () => {
    for (const s of signals) process.off(s, onSignal);
  };
}
