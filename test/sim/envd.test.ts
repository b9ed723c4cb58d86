import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { protoForTests } from '../../drivers/vmm/sim/envd/proto.ts';
import { api, envd, eventually, exec, frame, frames, openStream, spawnSim, startJson } from './harness.ts';

// The stand-in envd must speak what the Wrenn host relies on (envd.md §7), with real
// processes, or the agent's envd client is tested against a fiction.

const JSON_HEADERS = { 'Content-Type': 'application/json', 'Connect-Protocol-Version': 1 };

function procState(pid: number): string {
  return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] ?? '?';
}

test('REST routes: health with version, init 204, prepare 204, metrics and activity fields', async (t) => {
  const sim = await spawnSim(t);
  const health = await envd(sim, 'GET', '/health');
  assert.equal(health.status, 200);
  assert.equal(typeof (health.json() as { version: string }).version, 'string');
  assert.equal(health.headers['cache-control'], 'no-store');
  assert.equal((await envd(sim, 'POST', '/init', JSON.stringify({ envVars: { GREETING: 'hej' }, defaultUser: 'user', lifecycle_id: 'l1', sandbox_id: 'sb-1' }), { 'Content-Type': 'application/json' })).status, 204);
  assert.equal((await envd(sim, 'POST', '/init')).status, 204);
  assert.equal((await envd(sim, 'POST', '/init', '{"envVars":')).status, 400);
  assert.deepEqual((await envd(sim, 'GET', '/envs')).json(), { GREETING: 'hej', WRENN_SANDBOX_ID: 'sb-1' });
  assert.equal((await envd(sim, 'POST', '/snapshot/prepare')).status, 204);
  const metrics = (await envd(sim, 'GET', '/metrics')).json() as Record<string, number>;
  for (const k of ['ts', 'cpu_count', 'cpu_used_pct', 'mem_total', 'mem_used', 'disk_used', 'disk_total']) assert.equal(typeof metrics[k], 'number', k);
  assert.equal(metrics.mem_total, 64 * 1024 * 1024);
  assert.ok((metrics.mem_used ?? 0) > 0 && (metrics.disk_used ?? 0) > 0);
  const activity = (await envd(sim, 'GET', '/activity')).json() as Record<string, number>;
  assert.deepEqual(Object.keys(activity).sort(), ['cpu_count', 'cpu_used_pct', 'disk_bps', 'net_bps']);
  assert.equal((await envd(sim, 'GET', '/nope')).status, 404);
});

test('memory preload: POST starts (200 status), GET polls to done, cancel 204, init resets to idle', async (t) => {
  const sim = await spawnSim(t);
  assert.equal(((await envd(sim, 'GET', '/memory/preload')).json() as { state: string }).state, 'idle');
  const started = await envd(sim, 'POST', '/memory/preload');
  assert.equal(started.status, 200);
  assert.ok(['running', 'done'].includes((started.json() as { state: string }).state));
  await eventually('done', async () => ((await envd(sim, 'GET', '/memory/preload')).json() as { state: string }).state === 'done');
  const done = (await envd(sim, 'GET', '/memory/preload')).json() as Record<string, unknown>;
  assert.equal(done.regions, 1);
  assert.equal(done.bytes, 64 * 1024 * 1024);
  assert.equal(done.error, null);
  assert.equal((await envd(sim, 'POST', '/memory/preload/cancel')).status, 204);
  assert.equal((await envd(sim, 'POST', '/init', '{}')).status, 204);
  assert.equal(((await envd(sim, 'GET', '/memory/preload')).json() as { state: string }).state, 'idle');
});

test('Start streams start → data → end → end-of-stream {} with the JSON codec, from a real process', async (t) => {
  const sim = await spawnSim(t);
  const r = await startJson(sim, { process: { cmd: 'echo', args: ['hi'] }, stdin: false });
  assert.equal(r.status, 200);
  const events = r.messages as { event: Record<string, Record<string, unknown>> }[];
  assert.ok(typeof events[0]?.event.start?.pid === 'number');
  assert.deepEqual(events[1], { event: { data: { stdout: Buffer.from('hi\n').toString('base64') } } });
  assert.deepEqual(events[2], { event: { end: { exited: true, status: 'exit status 0' } } });
  assert.equal(events.length, 3);
  assert.equal(r.endFlags, 2);
  assert.deepEqual(r.end, {});
  const failing = await exec(sim, 'sh', ['-c', 'echo oops >&2; exit 3']);
  assert.equal(failing.stderr, 'oops\n');
  assert.deepEqual(failing.end, { exitCode: 3, exited: true, status: 'exit status 3' });
});

test('a command that cannot start ends the stream with invalid_argument', async (t) => {
  const sim = await spawnSim(t);
  const r = await startJson(sim, { process: { cmd: '/nonexistent/sbxt-binary' } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.messages, []);
  assert.equal((r.end as { error: { code: string } }).error.code, 'invalid_argument');
  const badCwd = await startJson(sim, { process: { cmd: 'true', cwd: '/no/such/dir' } });
  assert.equal((badCwd.end as { error: { code: string } }).error.code, 'invalid_argument');
});

test('processes run in the scratch dir with the init defaults; a workdir is created inside it', async (t) => {
  const sim = await spawnSim(t);
  assert.equal((await envd(sim, 'POST', '/init', JSON.stringify({ defaultUser: 'user', defaultWorkdir: '/home/user/work', envVars: { A: '1' } }))).status, 204);
  const r = await exec(sim, 'sh', ['-c', 'pwd; echo $A $B $USER'], { envs: { B: '2' } });
  assert.equal(r.stdout, `${sim.socket}.guest/home/user/work\n1 2 user\n`);
});

test('unary calls: List, unknown selector → not_found 404, bad content type → 415', async (t) => {
  const sim = await spawnSim(t);
  const list = await envd(sim, 'POST', '/process.Process/List', '{}', JSON_HEADERS);
  assert.equal(list.status, 200);
  assert.deepEqual(list.json(), { processes: [] });
  const missing = await envd(sim, 'POST', '/process.Process/SendSignal', JSON.stringify({ process: { pid: 999999 }, signal: 'SIGNAL_SIGKILL' }), JSON_HEADERS);
  assert.equal(missing.status, 404);
  assert.deepEqual(missing.json(), { code: 'not_found', message: 'process with pid 999999 not found' });
  const byTag = await envd(sim, 'POST', '/process.Process/Connect', frame(0, Buffer.from('{"process":{"tag":"ghost"}}')), { 'Content-Type': 'application/connect+json' });
  assert.equal((JSON.parse(frames(byTag.body).at(-1)?.payload.toString() ?? '{}') as { error: { code: string } }).error.code, 'not_found');
  assert.equal((await envd(sim, 'POST', '/process.Process/List', '{}', { 'Content-Type': 'text/plain' })).status, 415);
  assert.equal((await envd(sim, 'POST', '/process.Process/Start', '{}', JSON_HEADERS)).status, 415);
});

test('background process: Start with tag, Connect re-attaches, SendInput reaches stdin, CloseStdin ends it', async (t) => {
  const sim = await spawnSim(t);
  const first = openStream(sim, 'Start', { process: { cmd: 'cat' }, tag: 'cat1', stdin: true });
  await first.attached;
  const l = (await envd(sim, 'POST', '/process.Process/List', '{}', JSON_HEADERS)).json() as { processes: { pid: number; tag: string }[] };
  const pid = l.processes.find((p) => p.tag === 'cat1')?.pid ?? 0;
  const attached = openStream(sim, 'Connect', { process: { tag: 'cat1' } });
  await attached.attached;
  const input = await envd(sim, 'POST', '/process.Process/SendInput', JSON.stringify({ process: { pid }, input: { stdin: Buffer.from('hello\n').toString('base64') } }), JSON_HEADERS);
  assert.equal(input.status, 200);
  assert.equal((await envd(sim, 'POST', '/process.Process/CloseStdin', JSON.stringify({ process: { tag: 'cat1' } }), JSON_HEADERS)).status, 200);
  for (const body of [await first.body, await attached.body]) {
    const msgs = frames(body).map((f) => JSON.parse(f.payload.toString()) as { event?: Record<string, Record<string, string>> });
    assert.deepEqual(msgs[0]?.event?.start, { pid });
    assert.deepEqual(msgs.at(-2)?.event?.end, { exited: true, status: 'exit status 0' });
    assert.deepEqual(msgs.at(-1), {});
  }
  const out = frames(await first.body).map((f) => JSON.parse(f.payload.toString()) as { event?: { data?: { stdout?: string } } });
  assert.equal(out.map((m) => Buffer.from(m.event?.data?.stdout ?? '', 'base64').toString()).join(''), 'hello\n');
});

test('SendSignal SIGKILL ends a process with exitCode -1 and "signal: killed"', async (t) => {
  const sim = await spawnSim(t);
  const run = startJson(sim, { process: { cmd: 'sleep', args: ['60'] }, tag: 'nap', stdin: false });
  await eventually('nap listed', async () => ((await envd(sim, 'POST', '/process.Process/List', '{}', JSON_HEADERS)).json() as { processes: unknown[] }).processes.length === 1);
  const sigint = await envd(sim, 'POST', '/process.Process/SendSignal', JSON.stringify({ process: { tag: 'nap' }, signal: 2 }), JSON_HEADERS);
  assert.equal(sigint.status, 501);
  assert.equal((sigint.json() as { code: string }).code, 'unimplemented');
  assert.equal((await envd(sim, 'POST', '/process.Process/SendSignal', JSON.stringify({ process: { tag: 'nap' }, signal: 'SIGNAL_SIGKILL' }), JSON_HEADERS)).status, 200);
  const r = await run;
  assert.deepEqual((r.messages.at(-1) as { event: unknown }).event, { end: { exitCode: -1, status: 'signal: killed' } });
});

test('while Paused envd holds requests and guest processes are stopped; resume releases both', async (t) => {
  const sim = await spawnSim(t);
  void startJson(sim, { process: { cmd: 'sleep', args: ['60'] }, tag: 'frozen', stdin: false }).catch(() => undefined);
  let pid = 0;
  await eventually('sleep listed', async () => {
    const l = (await envd(sim, 'POST', '/process.Process/List', '{}', JSON_HEADERS)).json() as { processes: { pid: number }[] };
    pid = l.processes[0]?.pid ?? 0;
    return pid > 0;
  });
  assert.equal((await api(sim, 'PUT', 'vm.pause')).status, 204);
  await eventually('the process to stop', async () => procState(pid) === 'T');
  let answered = false;
  const held = envd(sim, 'GET', '/health').then((r) => {
    answered = true;
    return r;
  });
  const deadline = Date.now() + 300;
  while (Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(answered, false, 'a paused guest answered');
  assert.equal((await api(sim, 'PUT', 'vm.resume')).status, 204);
  assert.equal((await held).status, 200);
  await eventually('the process to continue', async () => procState(pid) !== 'T');
});

test('the binary protobuf codec: unary List and a Start stream', async (t) => {
  const sim = await spawnSim(t);
  const { Writer, parse, encodeConfig } = protoForTests;
  const list = await envd(sim, 'POST', '/process.Process/List', Buffer.alloc(0), { 'Content-Type': 'application/proto' });
  assert.equal(list.status, 200);
  assert.equal(list.headers['content-type'], 'application/proto');
  assert.equal(list.body.length, 0);
  const req = new Writer().bytes(1, encodeConfig({ cmd: 'printf', args: ['%s', 'pb'], envs: {} })).uint(4, 0).finish();
  const reply = await envd(sim, 'POST', '/process.Process/Start', frame(0, req), { 'Content-Type': 'application/connect+proto' });
  assert.equal(reply.headers['content-type'], 'application/connect+proto');
  const fs = frames(reply.body);
  assert.equal(fs.length, 4);
  const events = fs.slice(0, 3).map((f) => parse(parse(f.payload).get(1)?.[0] as Buffer));
  assert.ok(events[0]?.has(1), 'start first');
  assert.equal((parse(events[1]?.get(2)?.[0] as Buffer).get(1)?.[0] as Buffer).toString(), 'pb');
  const end = parse(events[2]?.get(3)?.[0] as Buffer);
  assert.equal(end.get(2)?.[0], 1);
  assert.equal((end.get(3)?.[0] as Buffer).toString(), 'exit status 0');
  assert.equal(fs[3]?.flags, 2);
  assert.equal(fs[3]?.payload.toString(), '{}');
});

test('guest processes die with the simulator even when it is SIGKILLed', async (t) => {
  const sim = await spawnSim(t);
  const run = openStream(sim, 'Start', { process: { cmd: 'sleep', args: ['300'] }, stdin: false });
  const streamClosed = run.body.catch(() => undefined); // the stream breaks when the simulator dies
  await run.attached;
  const l = (await envd(sim, 'POST', '/process.Process/List', '{}', JSON_HEADERS)).json() as { processes: { pid: number }[] };
  const pid = l.processes[0]?.pid ?? 0;
  assert.ok(pid > 0);
  sim.proc.kill('SIGKILL');
  await sim.proc;
  await eventually('the orphan to die', async () => {
    try {
      return procState(pid) === 'Z';
    } catch {
      return true;
    }
  });
  await streamClosed;
});

test('a pty process reports its output as pty data; Update (resize) and pty input are accepted', async (t) => {
  const sim = await spawnSim(t);
  const run = openStream(sim, 'Start', { process: { cmd: 'cat' }, pty: { size: { cols: 80, rows: 24 } }, tag: 'tty', stdin: true });
  await run.attached;
  const update = await envd(sim, 'POST', '/process.Process/Update', JSON.stringify({ process: { tag: 'tty' }, pty: { size: { cols: 120, rows: 40 } } }), JSON_HEADERS);
  assert.equal(update.status, 200);
  assert.deepEqual(update.json(), {});
  const input = await envd(sim, 'POST', '/process.Process/SendInput', JSON.stringify({ process: { tag: 'tty' }, input: { pty: Buffer.from('typed\n').toString('base64') } }), JSON_HEADERS);
  assert.equal(input.status, 200);
  const closeStdin = await envd(sim, 'POST', '/process.Process/CloseStdin', JSON.stringify({ process: { tag: 'tty' } }), JSON_HEADERS);
  assert.equal(closeStdin.status, 400, 'CloseStdin is refused for a PTY process');
  const ptyText = (body: Buffer): string =>
    frames(body)
      .map((f) => JSON.parse(f.payload.toString()) as { event?: { data?: { pty?: string; stdout?: string } } })
      .map((m) => {
        assert.equal(m.event?.data?.stdout, undefined, 'pty output must not be reported as stdout');
        return Buffer.from(m.event?.data?.pty ?? '', 'base64').toString();
      })
      .join('');
  await eventually('the echo', async () => ptyText(run.soFar()).includes('typed\n'));
  await envd(sim, 'POST', '/process.Process/SendSignal', JSON.stringify({ process: { tag: 'tty' }, signal: 'SIGNAL_SIGKILL' }), JSON_HEADERS);
  const echoed = ptyText(await run.body);
  assert.equal(echoed, 'typed\n');
});
