// Start-up JIT warm-up: throwaway sandboxes on the in-memory fakes, before the
// agent serves its first command.
import { Supervisor } from '../actors/supervisor.ts';
import { createFakeDrivers, type FakeDrivers } from '../drivers/fake/index.ts';

export interface WarmUpReport {
  /** Lifecycles that ran to the end (create, pause, resume, destroy). */
  completed: number;
  /** Lifecycles where an operation failed; the fakes inject nothing, so anything here is a bug. */
  failed: number;
  ms: number;
  /** What the fakes' ledger still holds afterwards: nothing, unless a lifecycle leaked. */
  leftover: string[];
}

export interface WarmUpOptions {
  /** Lifecycles at once. */
  batch?: number;
  /** Tests: the fakes to run on (to watch their calls or inject faults). */
  fakes?: FakeDrivers;
}

const TEAM = { teamId: 'warm-up' };

/**
 * Runs `lifecycles` sandboxes through create, pause, resume and destroy on
 * the in-memory fake drivers, `batch` at a time, then shuts that supervisor
 * down. Nothing of it touches the host, the store or the agent's supervisor.
 *
 * Why: a fresh process runs the supervisor, the step runner and xstate in
 * V8's interpreter until each function has been called often enough to be
 * optimised. The first 1,000 creates at once after start then cost about a
 * fifth more CPU per step than later ones, and with 100 ms steps they fall
 * behind their own waits (bench/runtime.bench.ts, section 2b).
 * Batches in sequence rather than all at once: each batch's calls are what
 * gets the next batch's code optimised, and a small batch keeps the
 * warm-up's own heap small.
 *
 * The signal stops it between batches; the batch in flight finishes so that
 * its supervisor shuts down with nothing held.
 */
export async function warmUp(lifecycles: number, signal: AbortSignal, opts: WarmUpOptions = {}): Promise<WarmUpReport> {
  const batch = opts.batch ?? 100;
  const t0 = performance.now();
  const fakes = opts.fakes ?? createFakeDrivers();
  const sup = new Supervisor({ drivers: fakes.drivers, slots: batch });
  let completed = 0;
  let failed = 0;
  const lifecycle = async () => {
    try {
      const { sandbox } = await sup.create(TEAM, { templateId: 'base' });
      try {
        await sup.pause(TEAM, sandbox.id);
        await sup.resume(TEAM, sandbox.id);
      } finally {
        await sup.destroy(TEAM, sandbox.id);
      }
      completed++;
    } catch {
      failed++;
    }
  };
  try {
    for (let started = 0; started < lifecycles && !signal.aborted; started += batch) {
      await Promise.all(Array.from({ length: Math.min(batch, lifecycles - started) }, lifecycle));
    }
  } finally {
    await sup.shutdown();
  }
  const leftover = Object.entries(fakes.host.ledger.snapshot())
    .filter(([kind, rows]) => kind !== 'templates' && rows.length > 0)
    .map(([kind, rows]) => `${kind}: ${JSON.stringify(rows)}`);
  if (sup.slots.inUse > 0) leftover.push(`slots: ${sup.slots.inUse}`);
  return { completed, failed, ms: performance.now() - t0, leftover };
}
