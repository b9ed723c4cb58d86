import type { LoopRegistry } from './loop-registry.ts';
import { forEachLimited } from '../core/each-limited.ts';
import type { SandboxRegistry } from './sandbox-registry.ts';
import { status } from './view.ts';

/** At most this many pauses at once on shutdown: each writes guest RAM to disk. */
const PAUSE_ALL_CONCURRENCY = 8;

/**
 * lifecycle.md's Shutdown, once admission is closed: stop the inactivity
 * timers, cancel creates in flight, let other operations settle, pause what
 * runs (8 at once, `auto_paused` each), destroy what is neither paused nor
 * pausable (`stopped` each), release every loop. The caller then stops the actors.
 */
export async function shutdownAll(reg: SandboxRegistry, loops: LoopRegistry): Promise<void> {
  const now = () => reg.entries();
  const inStatus = (st: string) => now().filter(([, e]) => status(e.actor.getSnapshot()) === st);
  for (const [, entry] of now()) entry.actor.send({ type: 'STOP_TIMERS' });
  await Promise.allSettled(inStatus('creating').map(([id, e]) => reg.command(id, e, { type: 'DESTROY' })));
  await Promise.all(now().map(([, e]) => reg.settled(e)));

  await forEachLimited(inStatus('running'), PAUSE_ALL_CONCURRENCY, async ([id, e]) => {
    try {
      await reg.command(id, e, { type: 'PAUSE' });
      reg.emit({ sandboxId: id, teamId: e.teamId, type: 'auto_paused', reason: 'agent shutdown' });
    } catch (err) {
      reg.logFor(id).warn({ step: 'shutdown', err: (err as Error).message }, 'pause on shutdown failed');
    }
  });

  const rest = now().filter(([, e]) => status(e.actor.getSnapshot()) !== 'paused');
  await Promise.allSettled(
    rest.map(async ([id, e]) => {
      await reg.command(id, e, { type: 'DESTROY' });
      reg.emit({ sandboxId: id, teamId: e.teamId, type: 'stopped', reason: 'agent shutdown' });
    }),
  );
  await loops.releaseAll(AbortSignal.timeout(60_000));
}
