import { appendFileSync } from 'node:fs';

// The simulator's own log (CH's --log-file / -v levels) and its contract-violation
// log. Both are plain appends: the process is short-lived and the lines must be on
// disk before a crash fault kills it.

export type Level = 'error' | 'warn' | 'info' | 'debug';
const RANK: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface SimLog {
  log(level: Level, msg: string): void;
}

/** verbosity: 0 = warn (CH's default), 1 = info, 2 = debug, 3+ = trace (treated as debug). */
export function createSimLog(file: string | undefined, verbosity: number): SimLog {
  const started = process.hrtime.bigint();
  const max = Math.min(1 + verbosity, RANK.debug);
  return {
    log(level, msg) {
      if (RANK[level] > max) return;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const line = `cloud-hypervisor: ${ms.toFixed(6)}ms: <chsim> ${level.toUpperCase()}: ${msg}\n`;
      try {
        if (file) appendFileSync(file, line);
        else process.stderr.write(line);
      } catch {
        // a log that cannot be written must not take the VMM down
      }
    },
  };
}

export interface Violation {
  ts: string;
  rule: string;
  detail: string;
}

export interface ViolationLog {
  record(rule: string, detail: string): void;
}

/**
 * Requests that a real CH would accept or reject but that break the reference's
 * rules for a well-behaved driver (a body on a bodyless PUT, a chunked body, a
 * snapshot of half-loaded memory…). One JSON object a line, so a driver's tests can
 * assert that the file stays empty.
 */
export function createViolationLog(file: string | undefined, log: SimLog): ViolationLog {
  return {
    record(rule, detail) {
      log.log('warn', `contract violation ${rule}: ${detail}`);
      if (!file) return;
      const entry: Violation = { ts: new Date().toISOString(), rule, detail };
      try {
        appendFileSync(file, `${JSON.stringify(entry)}\n`);
      } catch (err) {
        log.log('error', `cannot write violations file ${file}: ${String(err)}`);
      }
    },
  };
}
