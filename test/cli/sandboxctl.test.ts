import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { commands } from '../../cli/commands.ts';
import { ExitCodes } from '../../cli/exit-codes.ts';
import { startHarness, type Harness } from '../server/support/harness.ts';
import { realSupervisor } from '../server/support/real-supervisor.ts';

// sandboxctl as a real process (bin/sandboxctl) against a server started here,
// in front of the real supervisor with fake drivers.

const bin = fileURLToPath(new URL('../../bin/sandboxctl', import.meta.url));

async function agent(t: TestContext): Promise<Harness> {
  return startHarness(t, realSupervisor().supervisor);
}

function ctl(h: Harness, args: string[], token: string = h.tokens.a) {
  return execa(bin, args, {
    reject: false,
    timeout: 30_000,
    env: { SANDBOXD_URL: h.url, SANDBOXD_TOKEN: token, SANDBOXD_LOG_LEVEL: 'silent' },
    extendEnv: false,
  });
}

test('create, list, pause, resume and destroy through sandboxctl, with progress lines for each step', async (t) => {
  const h = await agent(t);
  const created = await ctl(h, ['create', '--id', 'sb-cli1', '--memory', '256', '--env', 'A=1']);
  assert.equal(created.exitCode, 0, created.stderr);
  assert.match(created.stdout, /^id:\s+sb-cli1$/m);
  assert.match(created.stdout, /^status:\s+running$/m);
  const progress = created.stderr.split('\n').filter((l) => l.startsWith('progress: '));
  assert.ok(progress.length >= 3, created.stderr);
  assert.ok(progress.every((l) => /^progress: sb-cli1 \w+ .+ \(\+\d+\.\d\ds\)$/.test(l)), progress.join('\n'));
  assert.ok(progress.some((l) => l.includes('creating bootVm')), progress.join('\n'));
  assert.match(progress.at(-1)!, /sb-cli1 running/);
  assert.doesNotMatch(created.stderr, /\x1b\[/, 'no terminal escapes when not on a TTY');

  const listed = await ctl(h, ['list']);
  assert.equal(listed.exitCode, 0);
  assert.match(listed.stdout, /^ID\s+TEAM\s+TEMPLATE\s+STATUS/m);
  assert.match(listed.stdout, /^sb-cli1\s+team-a\s+base\s+running\s+1\s+256 MiB/m);

  const paused = await ctl(h, ['pause', 'sb-cli1']);
  assert.equal(paused.exitCode, 0, paused.stderr);
  assert.match(paused.stdout, /^status:\s+paused$/m);
  assert.match(paused.stderr, /^progress: sb-cli1 pausing snapshotVm/m);
  assert.match((await ctl(h, ['list', '--status', 'paused'])).stdout, /^sb-cli1 /m);

  const resumed = await ctl(h, ['resume', 'sb-cli1', '--timeout', '300']);
  assert.equal(resumed.exitCode, 0, resumed.stderr);
  assert.match(resumed.stdout, /^timeout:\s+300 s$/m);

  const destroyed = await ctl(h, ['destroy', 'sb-cli1']);
  assert.equal(destroyed.exitCode, 0, destroyed.stderr);
  assert.equal(destroyed.stdout, 'destroyed sb-cli1'); // execa strips the final newline
  assert.equal((await ctl(h, ['list'])).stdout, 'no sandboxes');
});

test('--json prints parseable results and no progress', async (t) => {
  const h = await agent(t);
  const created = await ctl(h, ['create', '--json', '--id', 'sb-cli2']);
  assert.equal(created.exitCode, 0, created.stderr);
  assert.equal(JSON.parse(created.stdout).sandbox.id, 'sb-cli2');
  assert.equal(created.stderr, '');
  const list = JSON.parse((await ctl(h, ['list', '--json'])).stdout) as { id: string; status: string }[];
  assert.deepEqual(list.map((s) => [s.id, s.status]), [['sb-cli2', 'running']]);
  const snap = JSON.parse((await ctl(h, ['snapshot', 'sb-cli2', '--template', 'cli-tpl', '--json'])).stdout);
  assert.deepEqual([snap.templateId, snap.kind], ['cli-tpl', 'snapshot']);
  const templates = JSON.parse((await ctl(h, ['templates', '--json'])).stdout) as { templateId: string }[];
  assert.ok(templates.some((tpl) => tpl.templateId === 'cli-tpl'));
  const info = JSON.parse((await ctl(h, ['info', '--json'])).stdout);
  assert.equal(info.sandboxes.running, 1);
  const missing = await ctl(h, ['get', 'sb-nope', '--json']);
  assert.equal(missing.exitCode, ExitCodes.not_found);
  assert.equal(JSON.parse(missing.stderr).error.kind, 'not_found');
});

test('exit codes tell the kinds of failure apart, and exec passes the command code through', async (t) => {
  const h = await agent(t);
  assert.equal((await ctl(h, ['create', '--id', 'sb-cli3'])).exitCode, 0);
  const cases: [string[], number, string?][] = [
    [['get', 'sb-missing'], ExitCodes.not_found],
    [['create', '--id', 'sb-cli3'], ExitCodes.conflict],
    [['get', '../etc'], ExitCodes.usage],
    [['create', '--vcpus', 'many'], ExitCodes.usage],
    [['frobnicate'], ExitCodes.usage],
    [['list', '--bogus'], ExitCodes.usage],
    [['exec', 'sb-cli3', '--', 'echo', 'hello', 'world'], 0],
    [['exec', 'sb-cli3', '--', 'no-such-command'], 127],
    [['list'], ExitCodes.connection, 'sbxt-wrong-token'],
  ];
  for (const [args, code, token] of cases) {
    const r = await ctl(h, args, token);
    assert.equal(r.exitCode, code, `${args.join(' ')}: ${r.stderr}`);
  }
  const echoed = await ctl(h, ['exec', 'sb-cli3', '--', 'echo', 'hello', 'world']);
  assert.equal(echoed.stdout, 'hello world');
  const invalid = await ctl(h, ['get', '../etc']);
  assert.match(invalid.stderr, /\[invalid_argument\]/);
  assert.match(invalid.stderr, /^ {2}id: /m);
  const noToken = await execa(bin, ['list'], { reject: false, env: { SANDBOXD_URL: h.url }, extendEnv: false });
  assert.equal(noToken.exitCode, ExitCodes.usage);
  assert.match(noToken.stderr, /SANDBOXD_TOKEN/);
});

test('every command answers --help with its usage and exit code 0', async () => {
  for (const name of ['', ...Object.keys(commands)]) {
    const r = await execa(bin, name === '' ? ['--help'] : [name, '--help'], { reject: false, env: {}, extendEnv: false });
    assert.equal(r.exitCode, 0, name);
    assert.match(r.stdout, new RegExp(`^usage: sandboxctl ${name === '' ? '<command>' : name}`), name);
  }
});

test('watch streams each state change live until interrupted', async (t) => {
  const h = await agent(t);
  const watch = execa(bin, ['watch', '--json'], {
    reject: false, env: { SANDBOXD_URL: h.url, SANDBOXD_TOKEN: h.tokens.a }, extendEnv: false, buffer: false,
  });
  t.after(() => watch.kill('SIGKILL'));
  const lines: { method: string; params: { sandboxId: string; status: string } }[] = [];
  let sawRunning!: () => void;
  const running = new Promise<void>((r) => (sawRunning = r));
  let partial = '';
  watch.stdout!.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const p of parts) {
      const n = JSON.parse(p);
      lines.push(n);
      if (n.params.sandboxId === 'sb-cli4' && n.params.status === 'running') sawRunning();
    }
  });
  const client = await h.connect('a');
  // watch has subscribed once its connection is counted (one for watch, one for this client) and the
  // subscription reply went out; poll the server rather than sleep.
  const deadline = Date.now() + 20_000;
  while ((await h.server.metrics.operationSeconds.get()).values.every((v) => v.labels.operation !== 'events.subscribe')) {
    assert.ok(Date.now() < deadline, 'watch never subscribed');
    await new Promise((r) => setTimeout(r, 20));
  }
  await client.call('sandbox.create', { templateId: 'base', id: 'sb-cli4' });
  await running;
  watch.kill('SIGINT');
  const done = await watch;
  assert.equal(done.exitCode, 0);
  assert.ok(lines.some((n) => n.params.status === 'creating'));
  assert.ok(lines.every((n) => n.method === 'sandbox.state' || n.method === 'sandbox.event'));
});
