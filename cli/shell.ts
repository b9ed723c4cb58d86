import type { CommandSpec, RunContext } from './commands.ts';
import { ExitCodes, UsageError } from './exit-codes.ts';
import * as fmt from './format.ts';

/**
 * `sandboxctl shell <id>`: an interactive PTY in the sandbox. On a terminal,
 * stdin goes raw (every key, Ctrl-C included, goes to the guest) and window
 * size changes follow; piped stdin is sent as it is. The shell's exit code is
 * sandboxctl's.
 */
export const shellCommand: CommandSpec = {
  args: '<id> [--cmd PATH] [-- ARGS…]',
  summary: 'an interactive shell (PTY) in a running sandbox; exits with the shell\'s code',
  options: { cmd: { type: 'string' } },
  optionHelp: ['--cmd PATH      the program to run (default: /bin/bash); its arguments follow --'],
  async run(ctx, v, pos, rest) {
    if (pos.length !== 1) throw new UsageError('expected exactly one sandbox id');
    return runShell(ctx, pos[0]!, (v.cmd as string | undefined) ?? '/bin/bash', rest);
  },
};

async function runShell(ctx: RunContext, id: string, cmd: string, args: string[]): Promise<number> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  const size = () => ({ cols: clamp(stdout.columns ?? 80), rows: clamp(stdout.rows ?? 24) });
  const client = await ctx.client();
  const pty = await client.openStream('pty.start', { id, cmd, args, ...size() }, (_kind, data) => stdout.write(data));
  const process_ = { tag: pty.tag };

  // Keystrokes go in order, one call at a time; a failed call ends the input side.
  let sending: Promise<unknown> = Promise.resolve();
  let inputFailed: unknown = null;
  const send = (data: Buffer) => {
    sending = sending.then(() =>
      inputFailed === null
        ? client.call('pty.input', { id, process: process_, data: data.toString('base64') }).catch((err: unknown) => (inputFailed = err))
        : undefined,
    );
  };
  const onData = (chunk: Buffer) => {
    for (let i = 0; i < chunk.length; i += 48 * 1024) send(chunk.subarray(i, i + 48 * 1024));
  };
  // End of piped input: ^D, which a shell on a terminal reads as end of file.
  const onEnd = () => send(Buffer.from([4]));
  const onResize = () => void client.call('pty.resize', { id, process: process_, ...size() }).catch(() => undefined);

  const raw = stdin.isTTY === true;
  if (raw) stdin.setRawMode(true);
  stdin.on('data', onData);
  stdin.once('end', onEnd);
  if (stdout.isTTY === true) process.on('SIGWINCH', onResize);
  try {
    const exit = await pty.exit;
    if (exit.exitCode === null) {
      ctx.err.write(`\r\nsandboxctl shell: the session ended without the shell's exit: ${exit.error ?? 'closed'}\r\n`);
      return ExitCodes.failed;
    }
    if (ctx.json) ctx.err.write(JSON.stringify({ exitCode: exit.exitCode, status: exit.status }) + '\n');
    else if (!exit.exited) ctx.err.write(`\r\nsandboxctl shell: ${exit.status}\r\n`);
    return exit.exitCode >= 0 && exit.exitCode <= 255 ? exit.exitCode : ExitCodes.internal;
  } finally {
    process.off('SIGWINCH', onResize);
    stdin.off('data', onData);
    stdin.off('end', onEnd);
    if (raw) stdin.setRawMode(false);
    stdin.pause();
    stdin.destroy();
  }
}

function clamp(n: number): number {
  return Math.min(1000, Math.max(1, Math.trunc(n)));
}

/** `sandboxctl template import <templateId> <path>` (admin token): a host rootfs image becomes a base template. */
export const templateCommand: CommandSpec = {
  args: 'import <templateId> <path> [--team ID]',
  summary: 'import a rootfs image on the agent\'s host as a base template (admin token)',
  options: { team: { type: 'string' } },
  optionHelp: ['--team ID       the owning team (default: system, visible to every team)', '<path> is on the agent\'s host and must be absolute'],
  async run(ctx, v, pos) {
    const [sub, templateId, path, ...extra] = pos;
    if (sub !== 'import' || templateId === undefined || path === undefined || extra.length > 0) {
      throw new UsageError('expected: template import <templateId> <path>');
    }
    if (!path.startsWith('/')) throw new UsageError(`the image path must be absolute (it is read on the agent's host): ${path}`);
    const client = await ctx.client();
    const t = await client.call('template.import', { templateId, path, ...(v.team === undefined ? {} : { teamId: v.team as string }) });
    ctx.out.write(ctx.json ? JSON.stringify(t, null, 2) + '\n' : fmt.templateDetail(t));
    return ExitCodes.ok;
  },
};
