import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RpcError, type SandboxdClient } from '../../server/client.ts';
import { SMALL, useAgent } from '../integration/support/agent.ts';
import { startHarness } from './support/harness.ts';

// Guest streams end to end: the WebSocket server, the real supervisor and the
// runtime's drivers on the simulator, whose stand-in envd runs real processes.

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RpcError) return err.kind;
    throw err;
  }
  return 'ok';
}

function collector() {
  const out = { stdout: '', stderr: '', pty: '', order: [] as string[] };
  return {
    out,
    onOutput: (kind: 'stdout' | 'stderr' | 'pty', data: Buffer) => {
      out[kind] += data.toString('utf8');
      out.order.push(kind);
    },
  };
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('guest streams over the WebSocket', async (t) => {
  const agent = await useAgent(t);
  const h = await startHarness(t, agent.supervisor);
  const a = await h.connect('a');
  const b = await h.connect('b');
  const admin = await h.connect('admin');
  const { sandbox } = await a.call('sandbox.create', SMALL);
  const id = sandbox.id;

  await t.test('execStream output arrives in order, then the exit code', async () => {
    const c = collector();
    const script = 'for i in 1 2 3 4 5 6 7 8; do echo line$i; done; echo oops >&2; exit 7';
    const s = await a.openStream('sandbox.execStream', { id, cmd: '/bin/sh', args: ['-c', script] }, c.onOutput);
    assert.match(s.streamId, /^st-/);
    assert.ok(typeof s.pid === 'number' && s.pid > 0, 'the result carries the guest pid');
    const exit = await s.exit;
    assert.equal(exit.exitCode, 7);
    assert.equal(c.out.stdout, Array.from({ length: 8 }, (_, i) => `line${i + 1}\n`).join(''));
    assert.equal(c.out.stderr, 'oops\n');
  });

  await t.test('output on an open stream counts as activity (lastActiveAt moves without calls)', async () => {
    const c = collector();
    const s = await a.openStream('sandbox.execStream', { id, cmd: '/bin/sh', args: ['-c', 'echo a; sleep 1.3; echo b'] }, c.onOutput);
    await until('the first line', () => c.out.stdout.includes('a'));
    const atStart = Date.parse((await a.call('sandbox.get', { id })).lastActiveAt);
    await s.exit;
    const atEnd = Date.parse((await a.call('sandbox.get', { id })).lastActiveAt);
    assert.ok(atEnd >= atStart + 1000, `lastActiveAt moved by ${atEnd - atStart} ms while only the stream spoke`);
  });

  await t.test('PTY input reaches the shell, resize is accepted, kill ends the stream', async () => {
    const c = collector();
    const pty = await a.openStream('pty.start', { id, cmd: '/bin/sh', cols: 100, rows: 30 }, c.onOutput);
    assert.match(pty.tag, /^pty-/);
    await a.call('pty.input', { id, process: { tag: pty.tag }, data: Buffer.from('echo hello-$((6*7))\n').toString('base64') });
    await until('the PTY echo', () => c.out.pty.includes('hello-42'));
    assert.deepEqual(await a.call('pty.resize', { id, process: { tag: pty.tag }, cols: 120, rows: 40 }), {});
    // A second stream on the same PTY sees output from now on.
    const c2 = collector();
    const attached = await a.openStream('pty.attach', { id, process: { tag: pty.tag } }, c2.onOutput);
    await a.call('pty.input', { id, process: { pid: pty.pid! }, data: Buffer.from('echo again-$((2+3))\n').toString('base64') });
    await until('output on the attached stream', () => c2.out.pty.includes('again-5'));
    await a.call('pty.kill', { id, process: { tag: pty.tag } });
    const [e1, e2] = await Promise.all([pty.exit, attached.exit]);
    assert.match(e1.status, /signal: killed/);
    assert.match(e2.status, /signal: killed/);
    assert.equal(e1.exitCode, -1);
    assert.equal(await code(a.call('pty.input', { id, process: { tag: pty.tag }, data: 'aGk=' })), 'not_found', 'input to a killed PTY');
  });

  await t.test('a background process is listed, connected to, outlives its connection, and is killed', async () => {
    const other = await h.connect('a');
    const { pid } = await other.call('process.start', { id, cmd: '/bin/sh', args: ['-c', 'while true; do echo tick; sleep 0.05; done'], tag: 'ticker' });
    await other.close();
    await until('the process listed after its starter left', async () => {
      const { processes } = await a.call('process.list', { id });
      return processes.some((p) => p.pid === pid && p.tag === 'ticker');
    });
    const c = collector();
    const s = await a.openStream('process.connect', { id, process: { tag: 'ticker' } }, c.onOutput);
    assert.equal(s.pid, pid);
    await until('output of the connected process', () => c.out.stdout.includes('tick'));
    await a.call('process.kill', { id, process: { pid }, signal: 'SIGTERM' });
    const exit = await s.exit;
    assert.match(exit.status, /signal: terminated/);
    const { processes } = await a.call('process.list', { id });
    assert.ok(!processes.some((p) => p.pid === pid), 'the killed process is gone from the list');
  });

  await t.test('closing the connection closes its streams but not a PTY process', async () => {
    const mine = await h.connect('a');
    const pty = await mine.openStream('pty.start', { id, cmd: '/bin/sh', tag: 'left-open' }, () => undefined);
    await mine.close();
    await assert.rejects(pty.exit, /closed/);
    const { processes } = await a.call('process.list', { id });
    assert.ok(processes.some((p) => p.tag === 'left-open'), 'the PTY process keeps running');
    await a.call('pty.kill', { id, process: { tag: 'left-open' } });
  });

  await t.test('another team gets not_found from every guest method; template.import is admin only', async () => {
    const sel = { tag: 'x' };
    const calls: Array<[string, Promise<unknown>]> = [
      ['sandbox.execStream', b.call('sandbox.execStream', { id, cmd: 'true' })],
      ['pty.start', b.call('pty.start', { id })],
      ['pty.attach', b.call('pty.attach', { id, process: sel })],
      ['pty.input', b.call('pty.input', { id, process: sel, data: '' })],
      ['pty.resize', b.call('pty.resize', { id, process: sel, cols: 1, rows: 1 })],
      ['pty.kill', b.call('pty.kill', { id, process: sel })],
      ['process.start', b.call('process.start', { id, cmd: 'true' })],
      ['process.connect', b.call('process.connect', { id, process: sel })],
      ['process.list', b.call('process.list', { id })],
      ['process.kill', b.call('process.kill', { id, process: sel })],
    ];
    for (const [method, p] of calls) assert.equal(await code(p), 'not_found', method);
    assert.equal(await code(a.call('template.import', { templateId: 'mine', path: '/etc/hostname' })), 'invalid_argument');
  });

  await t.test('template.import makes a base template from a host image; bad paths change nothing', async (tt) => {
    const dir = mkdtempSync(join(tmpdir(), 'sandboxd-test-'));
    tt.after(() => rmSync(dir, { recursive: true, force: true }));
    const image = join(dir, 'rootfs.img');
    writeFileSync(image, 'root filesystem bytes');
    truncateSync(image, 4 << 20);
    const made = await admin.call('template.import', { templateId: 'imported', path: image });
    assert.deepEqual([made.teamId, made.templateId, made.kind], ['system', 'imported', 'base']);
    const seen = await admin.call('template.list');
    assert.ok(seen.templates.some((x) => x.teamId === 'system' && x.templateId === 'imported'), 'the imported template is listed');
    const { sandbox: fromImport } = await a.call('sandbox.create', { ...SMALL, templateId: 'imported' });
    await a.call('sandbox.destroy', { id: fromImport.id });
    assert.equal(await code(admin.call('template.import', { templateId: 'imported', path: image })), 'already_exists');
    assert.equal(await code(admin.call('template.import', { templateId: 'nope', path: join(dir, 'missing.img') })), 'not_found');
    assert.equal(await code(admin.call('template.import', { templateId: 'nope', path: dir })), 'invalid_argument');
    const after = await admin.call('template.list');
    assert.ok(!after.templates.some((x) => x.templateId === 'nope'), 'a refused import leaves no template');
  });

  await t.test('a stream ends when the sandbox is paused; guest calls then answer not_running', async () => {
    const c = collector();
    const s = await a.openStream('sandbox.execStream', { id, cmd: '/bin/sh', args: ['-c', 'echo started; sleep 60'] }, c.onOutput);
    await until('the first output', () => c.out.stdout.includes('started'));
    await a.call('sandbox.pause', { id });
    const exit = await s.exit;
    assert.equal(exit.exitCode, null, 'no exit code: the stream was closed, not the process finished');
    assert.ok(exit.error !== null);
    assert.equal(await code(a.call('sandbox.execStream', { id, cmd: 'true' })), 'not_running');
    assert.equal(await code(a.call('process.list', { id })), 'not_running');
    await a.call('sandbox.resume', { id });
  });

  await a.call('sandbox.destroy', { id });
});

export type { SandboxdClient };
