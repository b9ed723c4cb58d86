import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConnectionError, RpcError, SandboxdClient } from '../server/client.ts';
import { commands, type RunContext } from './commands.ts';
import { ExitCodes, exitCodeFor, UsageError } from './exit-codes.ts';

// sandboxctl: a command-line client of the v1 protocol.
// The token comes from SANDBOXD_TOKEN or --token-file, never from a flag
// (a flag's value is visible to every user in the process list).

const DEFAULT_URL = 'ws://127.0.0.1:7070/v1';

const globalOptions = {
  url: { type: 'string' },
  'token-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const globalHelp = [
  `--url URL          agent endpoint (default: $SANDBOXD_URL or ${DEFAULT_URL})`,
  '--token-file PATH  read the token from a file (default: $SANDBOXD_TOKEN)',
  '--json             machine-readable output on stdout, no progress display',
  '-h, --help         this help',
];

const exitHelp = [
  'exit codes: 0 ok · 1 internal error · 2 usage or invalid argument · 3 not found ·',
  '4 wrong state or already exists · 5 draining or rate limited · 6 timeout or cancelled ·',
  "7 operation failed · 8 cannot connect or token refused · exec: the command's own code",
];

function mainHelp(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    'usage: sandboxctl <command> [options]',
    '',
    'commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'options of every command:',
    ...globalHelp.map((l) => `  ${l}`),
    '',
    ...exitHelp,
    '',
    "run 'sandboxctl <command> --help' for a command's options",
  ].join('\n') + '\n';
}

function commandHelp(name: string): string {
  const c = commands[name]!;
  return [`usage: sandboxctl ${name} ${c.args}`.trimEnd(), '', c.summary, '', 'options:', ...[...c.optionHelp, ...globalHelp].map((l) => `  ${l}`), ''].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainHelp());
    return name === undefined ? ExitCodes.usage : ExitCodes.ok;
  }
  const spec = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (spec === undefined) {
    process.stderr.write(`sandboxctl: unknown command ${JSON.stringify(name)}\n\n${mainHelp()}`);
    return ExitCodes.usage;
  }
  const dash = rest.indexOf('--');
  const [own, afterDash] = dash < 0 ? [rest, []] : [rest.slice(0, dash), rest.slice(dash + 1)];
  let json = false;
  let client: SandboxdClient | null = null;
  try {
    const { values, positionals } = parseCommandLine(own, { ...globalOptions, ...spec.options });
    if (values.help === true) {
      process.stdout.write(commandHelp(name));
      return ExitCodes.ok;
    }
    json = values.json === true;
    const url = (values.url as string | undefined) ?? process.env.SANDBOXD_URL ?? DEFAULT_URL;
    const tokenFile = values['token-file'] as string | undefined;
    const ctx: RunContext = {
      json,
      out: process.stdout,
      err: process.stderr,
      tty: process.stdout.isTTY === true && process.stderr.isTTY === true,
      async client(opts = {}) {
        const token = tokenFile !== undefined ? readFileSync(tokenFile, 'utf8').trim() : process.env.SANDBOXD_TOKEN;
        if (token === undefined || token === '') throw new UsageError('no token: set SANDBOXD_TOKEN or pass --token-file');
        client ??= await SandboxdClient.connect(url, {
          token,
          reconnect: opts.reconnect === true ? { maxDelayMs: 5000 } : false,
          ...(opts.onClose === undefined ? {} : { onClose: opts.onClose }),
        });
        return client;
      },
    };
    return await spec.run(ctx, values as Record<string, string | boolean | string[] | undefined>, positionals, afterDash);
  } catch (err) {
    const code = exitCodeFor(err);
    report(err, json, name);
    return code;
  } finally {
    await (client as SandboxdClient | null)?.close().catch(() => undefined);
  }
}

function parseCommandLine(args: string[], options: NonNullable<ParseArgsConfig['options']>) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

function report(err: unknown, json: boolean, command: string): void {
  const usage = err instanceof UsageError;
  const kind = err instanceof RpcError ? (err.kind ?? String(err.code)) : err instanceof ConnectionError ? err.reason : usage ? 'usage' : 'internal';
  const message = err instanceof Error ? err.message : String(err);
  if (json) {
    const step = err instanceof RpcError ? err.data?.step : undefined;
    process.stderr.write(JSON.stringify({ error: { kind, message, ...(step === undefined ? {} : { step }) } }) + '\n');
    return;
  }
  const step = err instanceof RpcError && err.data?.step !== undefined ? ` (step ${err.data.step})` : '';
  process.stderr.write(`sandboxctl ${command}: ${message}${step} [${kind}]\n`);
  if (err instanceof RpcError && Array.isArray(err.data?.issues)) {
    for (const issue of err.data.issues) process.stderr.write(`  ${issue.path.join('.') || '(params)'}: ${issue.message}\n`);
  }
  if (usage) process.stderr.write(`run 'sandboxctl ${command} --help' for usage\n`);
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/cli/sandboxctl.ts')) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`sandboxctl: ${String(err)}\n`);
      process.exitCode = ExitCodes.internal;
    },
  );
}
