import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { assertNothingLeft, pgrep, waitFor } from './support/agent.ts';

// What `npm start` runs, as a real process with a fresh data dir: it makes the
// base template and the admin token, warms up, serves /readyz, and sandboxctl drives a
// sandbox through it. SIGTERM ends it with code 0 and nothing left behind.

const REPO = resolve(import.meta.dirname, '../..');
const run = promisify(execFile);

test('npm start boots on a fresh data dir, sandboxctl creates, execs and destroys, and SIGTERM exits 0 leaving nothing', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'sandboxd-test-'));
  const env = { ...process.env, SANDBOXD_DATA_DIR: dataDir, SANDBOXD_PORT: '0', SANDBOXD_LOG_LEVEL: 'info', SANDBOXD_DEFAULT_DISK_MB: '64' };
  const agent = spawn(process.execPath, ['--import', 'tsx', 'bin/sandboxd.ts'], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  agent.stdout.on('data', (d: Buffer) => (out += d.toString()));
  agent.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => agent.on('exit', (code) => r(code)));
  t.after(async () => {
    if (agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
    for (const pid of pgrep(dataDir)) process.kill(pid, 'SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  let url = '';
  await waitFor(() => {
    const m = /"url":"(ws:\/\/127\.0\.0\.1:(\d+)\/v1)"/.exec(out);
    if (m) url = m[1]!;
    return m !== null;
  }, 30_000, `the agent logs its listen URL (output so far: ${out.slice(-500)})`);
  const port = new URL(url).port;
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.status === 200, 10_000, '/readyz');

  const tokenFile = join(dataDir, 'admin.token');
  assert.equal(statSync(tokenFile).mode & 0o777, 0o600, 'the admin token is readable by its owner only');
  const token = readFileSync(tokenFile, 'utf8').trim();
  assert.ok(!out.includes(token), 'the token itself never reaches the log');
  assert.match(out, /export SANDBOXD_URL=.* SANDBOXD_TOKEN=\$\(cat .*admin\.token\)/, 'the log tells a newcomer how to use it');
  assert.match(out, /backends: disk=clone network=none vmm=simulator/);
  assert.match(out, /"completed":1000,"failed":0,"ms":\d+,"msg":"JIT warm-up done"/, 'the default warm-up ran before /readyz');

  const ctl = (...args: string[]) =>
    run(join(REPO, 'bin/sandboxctl'), args, { env: { ...process.env, SANDBOXD_URL: url, SANDBOXD_TOKEN: token }, timeout: 30_000 });
  await ctl('create', '--team', 'newcomer', '--id', 'sb-npm-start', '--memory', '128');
  const exec = await ctl('exec', 'sb-npm-start', '--', 'echo', 'hi');
  assert.equal(exec.stdout, 'hi\n');
  const info = JSON.parse((await ctl('get', 'sb-npm-start', '--json')).stdout) as { status: string };
  assert.equal(info.status, 'running');
  await ctl('destroy', 'sb-npm-start');

  agent.kill('SIGTERM');
  assert.equal(await exited, 0, `exit code 0 after SIGTERM (output: ${out.slice(-800)})`);
  assert.deepEqual(pgrep(dataDir), [], 'no simulator process left');
  rmSync(tokenFile);
  assertNothingLeft(dataDir);
});
