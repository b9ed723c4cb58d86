import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { execa } from 'execa';
import { ExitCodes } from '../../cli/exit-codes.ts';
import { SMALL, useAgent } from '../integration/support/agent.ts';
import { startHarness, type Harness } from '../server/support/harness.ts';

// sandboxctl shell and template import as real processes, against the server
// in front of the real supervisor on the simulator (whose envd runs real
// processes; its PTYs run on pipes, so piped stdin is what this test drives).

const bin = fileURLToPath(new URL('../../bin/sandboxctl', import.meta.url));

function ctl(h: Harness, args: string[], opts: { token?: string; input?: string } = {}) {
  return execa(bin, args, {
    reject: false,
    timeout: 30_000,
    input: opts.input ?? '',
    env: { SANDBOXD_URL: h.url, SANDBOXD_TOKEN: opts.token ?? h.tokens.a },
    extendEnv: false,
  });
}

test('sandboxctl shell and template import', async (t) => {
  const agent = await useAgent(t);
  const h = await startHarness(t, agent.supervisor);
  const a = await h.connect('a');
  const { sandbox } = await a.call('sandbox.create', SMALL);
  const id = sandbox.id;

  await t.test("shell runs piped input in the guest's shell and exits with the shell's code", async () => {
    const r = await ctl(h, ['shell', id], { input: 'echo hi-$((40+2))\nexit 3\n' });
    assert.equal(r.exitCode, 3, r.stderr);
    assert.match(r.stdout, /hi-42/);
    const ok = await ctl(h, ['shell', id, '--cmd', '/bin/sh'], { input: 'echo fine\nexit 0\n' });
    assert.equal(ok.exitCode, 0, ok.stderr);
    assert.match(ok.stdout, /fine/);
  });

  await t.test('on a terminal (util-linux script gives it a pseudo-terminal) stdin goes raw and the exit code still passes through', async () => {
    // script types the input before sandboxctl is up, so what the local terminal echoes is not checked; what is
    // pinned is that a terminal on stdin/stdout (raw mode, SIGWINCH) still carries the session and its exit code.
    const r = await execa('script', ['-q', '-e', '-c', `${bin} shell ${id} --cmd /bin/sh`, '/dev/null'], {
      reject: false,
      timeout: 30_000,
      input: 'echo tty-$((6*7))\nexit 5\n',
      env: { SANDBOXD_URL: h.url, SANDBOXD_TOKEN: h.tokens.a, PATH: process.env.PATH ?? '/usr/bin:/bin', TERM: 'dumb' },
      extendEnv: false,
    });
    assert.equal(r.exitCode, 5, r.stderr + r.stdout);
    assert.match(r.stdout, /tty-42/);
  });

  await t.test("shell into another team's sandbox is not_found; no id is a usage error", async () => {
    const other = await ctl(h, ['shell', id], { token: h.tokens.b, input: 'exit 0\n' });
    assert.equal(other.exitCode, ExitCodes.not_found, other.stderr);
    assert.equal((await ctl(h, ['shell'])).exitCode, ExitCodes.usage);
  });

  await t.test('template import: admin only, absolute path, the template is listed', async (tt) => {
    const dir = mkdtempSync(join(tmpdir(), 'sandboxd-test-'));
    tt.after(() => rmSync(dir, { recursive: true, force: true }));
    const image = join(dir, 'rootfs.img');
    writeFileSync(image, '');
    truncateSync(image, 1 << 20);
    const refused = await ctl(h, ['template', 'import', 'cli-img', image]);
    assert.equal(refused.exitCode, ExitCodes.usage, 'a team token is refused');
    assert.equal((await ctl(h, ['template', 'import', 'cli-img', 'rootfs.img'], { token: h.tokens.admin })).exitCode, ExitCodes.usage);
    const made = await ctl(h, ['template', 'import', 'cli-img', image, '--json'], { token: h.tokens.admin });
    assert.equal(made.exitCode, 0, made.stderr);
    const t2 = JSON.parse(made.stdout) as { teamId: string; templateId: string; kind: string };
    assert.deepEqual([t2.teamId, t2.templateId, t2.kind], ['system', 'cli-img', 'base']);
    const again = await ctl(h, ['template', 'import', 'cli-img', image], { token: h.tokens.admin });
    assert.equal(again.exitCode, ExitCodes.conflict, 'already exists');
    const listed = await ctl(h, ['templates', 'list'], { token: h.tokens.admin });
    assert.match(listed.stdout, /cli-img/);
  });

  await a.call('sandbox.destroy', { id });
});
