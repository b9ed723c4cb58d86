import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PassThrough } from 'node:stream';
import { ProgressDisplay } from '../../cli/progress.ts';
import type { StateNotice } from '../../server/protocol.ts';

function notice(status: StateNotice['status'], step: string, seq: number): StateNotice {
  return { sandboxId: 'sb-p1', status, step, at: new Date(0).toISOString(), seq };
}

function capture() {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString()));
  return { out, text: () => text };
}

test('on a terminal the progress line is redrawn in place and cleared at the end', () => {
  const { out, text } = capture();
  const p = new ProgressDisplay(out, true);
  p.update(notice('pausing', 'pausing.quiesce', 1));
  p.update(notice('pausing', 'pausing.snapshotVm', 2));
  p.stop();
  const written = text();
  assert.doesNotMatch(written, /\n/, 'a terminal line never scrolls');
  const frames = written.split('\r\x1b[2K').filter((f) => f !== '');
  assert.match(frames[0]!, /^\S sb-p1 pausing quiesce \(\d+\.\d\ds\)$/);
  assert.match(frames[1]!, /^\S sb-p1 pausing snapshotVm \(\d+\.\d\ds\)$/);
  assert.ok(written.endsWith('\r\x1b[2K'), 'the line is cleared before the result prints');
});

test('off a terminal each distinct step is one plain line, repeats are not printed twice', () => {
  const { out, text } = capture();
  const p = new ProgressDisplay(out, false);
  p.update(notice('creating', 'creating.provision.disk.acquireLoop+creating.provision.network.allocateSlot', 1));
  p.update(notice('creating', 'creating.provision.disk.acquireLoop+creating.provision.network.allocateSlot', 2));
  p.update(notice('running', 'running', 3));
  p.stop();
  const lines = text().trimEnd().split('\n');
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^progress: sb-p1 creating provision\.disk\.acquireLoop \+ provision\.network\.allocateSlot \(\+\d+\.\d\ds\)$/);
  assert.match(lines[1]!, /^progress: sb-p1 running \(\+/);
  assert.doesNotMatch(text(), /\x1b/);
});
