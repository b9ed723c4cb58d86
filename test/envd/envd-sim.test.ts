import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { EnvdClient } from '../../drivers/envd/envd-client.ts';
import type { ProcessEvent, ProcessStream } from '../../drivers/envd/envd.ts';
import { makeSimHost } from '../vmm/support/sim-host.ts';

// The envd client against the simulator's stand-in envd (the Connect JSON codec
// end to end): background processes, re-attach, PTY input/resize/kill.

const envd = new EnvdClient({ healthPollMs: 10 });
const opts = () => ({ signal: AbortSignal.timeout(20_000) });

/** Reads events until `done` says so or the stream ends; the stream stays open for the next read. */
async function readUntil(stream: ProcessStream, done: (seen: ProcessEvent[]) => boolean): Promise<ProcessEvent[]> {
  const it = stream.events[Symbol.asyncIterator]();
  const seen: ProcessEvent[] = [];
  for (;;) {
    const next = await it.next();
    if (next.done) return seen;
    seen.push(next.value);
    if (done(seen)) return seen;
  }
}

const text = (events: ProcessEvent[]): string =>
  events.map((e) => (e.type === 'stdout' || e.type === 'pty' ? e.data.toString() : '')).join('');

test('background process, PTY and exec stream on the simulator: started, listed, re-attached, fed, killed', async (t) => {
  const host = makeSimHost();
  const driver = host.driver();
  t.after(async () => {
    await driver.destroy('sb-envd', { signal: AbortSignal.timeout(15_000) }).catch(() => undefined);
    host.remove();
  });
  const vm = await driver.boot(host.spec('sb-envd'), opts());
  const url = vm.envdUrl;
  await envd.waitHealthy(url, 10_000, opts());

  // exec stream: the same events exec collects, one by one
  const streamed = await readUntil(await envd.execStream(url, { cmd: 'sh', args: ['-c', 'echo one; echo two'] }, opts()), () => false);
  assert.equal(streamed[0]?.type, 'start');
  assert.equal(text(streamed), 'one\ntwo\n');
  assert.equal(streamed.at(-1)?.type, 'end');

  // background process: start returns at once; list shows it; connect re-attaches by tag
  const { pid } = await envd.processStart(url, { cmd: 'sh', args: ['-c', 'while true; do echo tick; sleep 0.05; done'], tag: 'ticker' }, opts());
  assert.ok(pid > 0);
  const listed = await envd.processList(url, opts());
  assert.ok(listed.some((p) => p.pid === pid && p.tag === 'ticker'), JSON.stringify(listed));
  const attached = await envd.processConnect(url, { tag: 'ticker' }, opts());
  const ticks = await readUntil(attached, (seen) => text(seen).includes('tick'));
  assert.equal(ticks[0]?.type, 'start');
  await envd.processKill(url, { pid }, 'SIGKILL', opts());
  const rest = await readUntil(attached, () => false);
  const end = rest.find((e) => e.type === 'end');
  assert.ok(end && end.type === 'end' && !end.exited, 'a killed process ends without exiting');
  await assert.rejects(envd.processKill(url, { tag: 'ticker' }, 'SIGKILL', opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'not_found');

  // PTY: keystrokes in, echo out, resize, kill
  const pty = await envd.ptyStart(url, { cmd: 'cat', args: [], tag: 'term', size: { cols: 80, rows: 24 } }, opts());
  const started = await readUntil(pty, (seen) => seen.some((e) => e.type === 'start'));
  assert.equal(started[0]?.type, 'start');
  await envd.ptyInput(url, { tag: 'term' }, Buffer.from('hello pty\n'), opts());
  const echoed = await readUntil(pty, (seen) => text(seen).includes('hello pty'));
  assert.ok(echoed.every((e) => e.type !== 'stdout'), 'PTY output arrives as pty data');
  await envd.ptyResize(url, { tag: 'term' }, { cols: 100, rows: 30 }, opts());
  await envd.ptyKill(url, { tag: 'term' }, opts());
  const after = await readUntil(pty, () => false);
  assert.ok(after.some((e) => e.type === 'end'));

  await driver.destroy('sb-envd', opts());
  assert.deepEqual(host.leftovers(), []);
});
