import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * The agent's root logger: pino JSON on stdout. Each sandbox gets a child with
 * its id (actors/), and each line it writes carries the step it was in.
 * SANDBOXD_LOG_LEVEL=silent turns logging off (tests do that by default).
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino({
    level: process.env.SANDBOXD_LOG_LEVEL ?? 'info',
    base: { svc: 'sandboxd' },
    redact: { paths: ['token', '*.token', 'env', '*.env', 'authorization', '*.authorization'], censor: '[redacted]' },
    ...opts,
  });
}

export const silentLogger: Logger = pino({ level: 'silent' });
