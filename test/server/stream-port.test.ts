import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ProcessEvent, ProcessStream } from '../../drivers/envd/envd.ts';
import { ConnectionStreams } from '../../server/streams.ts';
import { realSupervisor } from './support/real-supervisor.ts';

// ConnectionStreams on its own: a hand-fed guest stream, frames captured.

/** A guest stream whose events the test pushes; counts how many the consumer pulled. */
function fedStream() {
  const queue: ProcessEvent[] = [];
  const waiters: Array<(r: IteratorResult<ProcessEvent>) => void> = [];
  let ended = false;
  let pulled = 0;
  let cancelled = false;
  const stream: ProcessStream = {
    events: {
      [Symbol.asyncIterator]: () => ({
        next: () => {
          pulled++;
          const e = queue.shift();
          if (e !== undefined) return Promise.resolve({ done: false, value: e });
          if (ended) return Promise.resolve({ done: true, value: undefined });
          return new Promise((r) => waiters.push(r));
        },
      }),
    },
    cancel: () => {
      cancelled = true;
      ended = true;
      for (const w of waiters.splice(0)) w({ done: true, value: undefined });
    },
  };
  return {
    stream,
    push(e: ProcessEvent) {
      const w = waiters.shift();
      if (w !== undefined) w({ done: false, value: e });
      else queue.push(e);
    },
    /** The guest side ends the stream (after its end event). */
    finish() {
      ended = true;
      for (const w of waiters.splice(0)) w({ done: true, value: undefined });
    },
    get pulled() {
      return pulled;
    },
    get cancelled() {
      return cancelled;
    },
  };
}

async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function frames(sent: string[]): unknown[] {
  return sent.map((f) => JSON.parse(f) as unknown);
}

test('the start pid is the result; output and exit follow as notifications, in order, after the result', async () => {
  const sent: string[] = [];
  const streams = new ConnectionStreams((f) => sent.push(f), 4);
  const fed = fedStream();
  fed.push({ type: 'start', pid: 42 });
  fed.push({ type: 'stdout', data: Buffer.from('a') });
  fed.push({ type: 'stderr', data: Buffer.from('b') });
  fed.push({ type: 'end', exitCode: 5, exited: true, status: 'exit status 5', error: null });
  fed.finish();
  const opened = await streams.open(fed.stream);
  assert.equal(opened.pid, 42);
  assert.equal(sent.length, 0, 'nothing is sent before the result has gone out');
  await until('the exit', () => sent.length === 3);
  assert.deepEqual(frames(sent), [
    { jsonrpc: '2.0', method: 'stream.data', params: { streamId: opened.streamId, stdout: 'YQ==' } },
    { jsonrpc: '2.0', method: 'stream.data', params: { streamId: opened.streamId, stderr: 'Yg==' } },
    { jsonrpc: '2.0', method: 'stream.exit', params: { streamId: opened.streamId, exitCode: 5, exited: true, status: 'exit status 5', error: null } },
  ]);
  assert.equal(streams.size, 0);
});

test('a congested peer stops the reading of guest output until it catches up', async () => {
  const sent: string[] = [];
  let congested = false;
  const streams = new ConnectionStreams((f) => sent.push(f), 4, () => congested);
  const fed = fedStream();
  fed.push({ type: 'start', pid: 1 });
  await streams.open(fed.stream);
  fed.push({ type: 'stdout', data: Buffer.from('1') });
  await until('the first chunk', () => sent.length === 1);
  congested = true;
  const pulledWhileCongested = fed.pulled;
  fed.push({ type: 'stdout', data: Buffer.from('2') });
  fed.push({ type: 'stdout', data: Buffer.from('3') });
  // The pump is parked before asking for more: give it a few polls' worth of chances, then check nothing was pulled.
  const deadline = Date.now() + 100;
  await until('time to pass', () => Date.now() >= deadline);
  // The read already asked for before the congestion delivers '2'; nothing more is read.
  assert.equal(fed.pulled, pulledWhileCongested, 'no further read from the guest while congested');
  assert.equal(sent.length, 2, "chunk 3 stays in the guest's stream");
  congested = false;
  await until('the backlog to flow', () => sent.length === 3);
  streams.closeAll();
});

test('too many streams are refused and the extra stream is cancelled; closeAll cancels the open ones', async () => {
  const streams = new ConnectionStreams(() => undefined, 1);
  const first = fedStream();
  first.push({ type: 'start', pid: 1 });
  await streams.open(first.stream);
  const second = fedStream();
  await assert.rejects(streams.open(second.stream), { code: 'rate_limited' });
  assert.equal(second.cancelled, true);
  streams.closeAll();
  assert.equal(first.cancelled, true);
  const late = fedStream();
  await assert.rejects(streams.open(late.stream), { code: 'cancelled' });
  assert.equal(late.cancelled, true);
});

test('a supervisor whose envd driver has no streams answers operation_failed; another team still gets not_found', async () => {
  const { supervisor } = realSupervisor();
  const team = { teamId: 'team-a' };
  const { sandbox } = await supervisor.create(team, { templateId: 'base' });
  try {
    await assert.rejects(supervisor.execStream(team, sandbox.id, { cmd: 'true', args: [] }), { code: 'operation_failed' });
    await assert.rejects(supervisor.processList({ teamId: 'team-b' }, sandbox.id), { code: 'not_found' });
  } finally {
    await supervisor.destroy(team, sandbox.id);
  }
});
