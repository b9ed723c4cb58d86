import type { ParseArgsConfig } from 'node:util';
import { newSandboxId } from '../core/ids.ts';
import type { SandboxdClient } from '../server/client.ts';
import type { StateNotice } from '../server/protocol.ts';
import { UsageError } from './exit-codes.ts';
import * as fmt from './format.ts';
import { ProgressDisplay } from './progress.ts';
import { shellCommand, templateCommand } from './shell.ts';

/** What a command gets: a lazily opened client and where to write. */
export interface RunContext {
  client(opts?: { reconnect?: boolean; onClose?: (err: Error | null) => void }): Promise<SandboxdClient>;
  json: boolean;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
  /** Progress redraws in place only when both streams are terminals. */
  tty: boolean;
}

type Values = Record<string, string | boolean | string[] | undefined>;

export interface CommandSpec {
  args: string;
  summary: string;
  options: NonNullable<ParseArgsConfig['options']>;
  /** One line per option, for --help. */
  optionHelp: string[];
  /** Returns the exit code. `rest` is what followed a bare `--`. */
  run(ctx: RunContext, values: Values, positionals: string[], rest: string[]): Promise<number>;
}

const str = { type: 'string' } as const;

export const commands: Record<string, CommandSpec> = {
  create: {
    args: '[--template ID] [--id ID] [--vcpus N] [--memory MIB] [--disk MIB] [--timeout SEC] [--env K=V]… [--user NAME] [--team ID]',
    summary: 'create a sandbox and wait until it runs, showing each step',
    options: { template: str, id: str, vcpus: str, memory: str, disk: str, timeout: str, env: { type: 'string', multiple: true }, user: str, team: str },
    optionHelp: [
      '--template ID   template to boot from (default: base)',
      '--id ID         sandbox id (default: a fresh sb-… id)',
      '--vcpus N, --memory MIB, --disk MIB   resources',
      '--timeout SEC   inactivity limit; 0 = none',
      '--env K=V       default environment (repeatable); --user NAME default user',
      '--team ID       admin tokens only: the team to create for',
    ],
    async run(ctx, v) {
      const id = (v.id as string | undefined) ?? newSandboxId();
      const params = {
        templateId: (v.template as string | undefined) ?? 'base',
        id,
        ...optionalInt('vcpus', v.vcpus), ...optionalInt('memoryMB', v.memory), ...optionalInt('diskSizeMB', v.disk),
        ...optionalInt('timeoutSec', v.timeout),
        ...(v.env === undefined ? {} : { env: parseEnv(v.env as string[]) }),
        ...(v.user === undefined ? {} : { defaultUser: v.user as string }),
        ...(v.team === undefined ? {} : { teamId: v.team as string }),
      };
      const client = await ctx.client();
      const r = await withProgress(ctx, client, id, () => client.call('sandbox.create', params));
      return print(ctx, r, () => fmt.sandboxDetail(r.sandbox));
    },
  },
  list: {
    args: '[--status STATUS]',
    summary: 'list the sandboxes this token may see',
    options: { status: str },
    optionHelp: ['--status STATUS  only sandboxes in this status (running, paused, …)'],
    async run(ctx, v) {
      const client = await ctx.client();
      const r = await client.call('sandbox.list', v.status === undefined ? {} : { status: v.status as never });
      return print(ctx, r.sandboxes, () => fmt.sandboxTable(r.sandboxes));
    },
  },
  get: idCommand('show one sandbox', async (ctx, client, id) => {
    const s = await client.call('sandbox.get', { id });
    return print(ctx, s, () => fmt.sandboxDetail(s));
  }),
  pause: idCommand('pause a running sandbox (snapshot to disk, release its VM)', async (ctx, client, id) => {
    const s = await withProgress(ctx, client, id, () => client.call('sandbox.pause', { id }));
    return print(ctx, s, () => fmt.sandboxDetail(s));
  }),
  resume: {
    args: '<id> [--timeout SEC]',
    summary: 'resume a paused sandbox',
    options: { timeout: str },
    optionHelp: ['--timeout SEC   a new inactivity limit'],
    async run(ctx, v, pos) {
      const id = one(pos, 'sandbox id');
      const client = await ctx.client();
      const s = await withProgress(ctx, client, id, () => client.call('sandbox.resume', { id, ...optionalInt('timeoutSec', v.timeout) }));
      return print(ctx, s, () => fmt.sandboxDetail(s));
    },
  },
  destroy: idCommand('destroy a sandbox in any state', async (ctx, client, id) => {
    const r = await withProgress(ctx, client, id, () => client.call('sandbox.destroy', { id }));
    return print(ctx, r, () => `destroyed ${id}\n`);
  }),
  snapshot: {
    args: '<id> --template ID [--name TEXT]',
    summary: 'save a running or paused sandbox as a snapshot template',
    options: { template: str, name: str },
    optionHelp: ['--template ID   the new template (must not exist)', '--name TEXT     a display name'],
    async run(ctx, v, pos) {
      const id = one(pos, 'sandbox id');
      const templateId = need(v.template, '--template');
      const client = await ctx.client();
      const t = await withProgress(ctx, client, id, () =>
        client.call('sandbox.snapshot', { id, templateId, ...(v.name === undefined ? {} : { name: v.name as string }) }));
      return print(ctx, t, () => fmt.templateDetail(t));
    },
  },
  flatten: {
    args: '<id> --template ID',
    summary: "publish a running sandbox's disk as a base template",
    options: { template: str },
    optionHelp: ['--template ID   the new template (must not exist)'],
    async run(ctx, v, pos) {
      const id = one(pos, 'sandbox id');
      const templateId = need(v.template, '--template');
      const client = await ctx.client();
      const t = await withProgress(ctx, client, id, () => client.call('sandbox.flatten', { id, templateId }));
      return print(ctx, t, () => fmt.templateDetail(t));
    },
  },
  exec: {
    args: '<id> [--cwd DIR] [--env K=V]… [--timeout-ms N] -- <cmd> [args…]',
    summary: "run a command in the sandbox; exits with the command's exit code",
    options: { cwd: str, env: { type: 'string', multiple: true }, 'timeout-ms': str },
    optionHelp: ['--cwd DIR       working directory (absolute)', '--env K=V       environment (repeatable)', '--timeout-ms N  time limit'],
    async run(ctx, v, pos, rest) {
      const id = one(pos, 'sandbox id');
      const [cmd, ...args] = rest;
      if (cmd === undefined) throw new UsageError('give the command after --, e.g. exec sb-1 -- ls -l /');
      const client = await ctx.client();
      const r = await client.call('sandbox.exec', {
        id, cmd, args,
        ...(v.cwd === undefined ? {} : { cwd: v.cwd as string }),
        ...(v.env === undefined ? {} : { env: parseEnv(v.env as string[]) }),
        ...optionalInt('timeoutMs', v['timeout-ms']),
      });
      if (ctx.json) ctx.out.write(JSON.stringify(r) + '\n');
      else {
        ctx.out.write(r.stdout);
        ctx.err.write(r.stderr);
      }
      return r.exitCode;
    },
  },
  metrics: {
    args: '<id> [--range 5m|10m|1h|2h|6h|12h|24h] [--flush]',
    summary: "a running sandbox's CPU, memory and disk samples (--flush: all rings, cleared)",
    options: { range: str, flush: { type: 'boolean' } },
    optionHelp: ['--range R       5m (default), 10m, 1h, 2h, 6h, 12h or 24h', '--flush         return every ring, clear them and stop sampling'],
    async run(ctx, v, pos) {
      const id = one(pos, 'sandbox id');
      const client = await ctx.client();
      if (v.flush === true) {
        const r = await client.call('sandbox.flushMetrics', { id });
        return print(ctx, r, () => fmt.metricTable([...r.points24h, ...r.points2h, ...r.points10m]));
      }
      const r = await client.call('sandbox.metrics', { id, range: (v.range as string | undefined) ?? '5m' });
      return print(ctx, r.points, () => fmt.metricTable(r.points));
    },
  },
  templates: {
    args: '[list | delete <templateId>]',
    summary: 'list templates, or delete one',
    options: {},
    optionHelp: [],
    async run(ctx, _v, pos) {
      const client = await ctx.client();
      const [sub = 'list', templateId, ...extra] = pos;
      if (sub === 'list' && templateId === undefined) {
        const r = await client.call('template.list');
        return print(ctx, r.templates, () => fmt.templateTable(r.templates));
      }
      if (sub === 'delete' && templateId !== undefined && extra.length === 0) {
        const r = await client.call('template.delete', { templateId });
        return print(ctx, r, () => `deleted template ${templateId}\n`);
      }
      throw new UsageError('expected: templates [list | delete <templateId>]');
    },
  },
  shell: shellCommand,
  template: templateCommand,
  watch: {
    args: '[id]',
    summary: 'stream state changes and events live (one sandbox, or all); Ctrl-C stops',
    options: {},
    optionHelp: [],
    async run(ctx, _v, pos) {
      const sandboxId = pos.length === 0 ? undefined : one(pos, 'sandbox id');
      // Handlers first: a signal that arrives once output has started must end the watch cleanly.
      const interrupted = new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      let lost!: (err: Error | null) => void;
      const gone = new Promise<Error | null>((r) => (lost = r));
      const client = await ctx.client({ reconnect: true, onClose: (err) => lost(err) });
      await client.subscribe(sandboxId, (n) => {
        if (ctx.json) ctx.out.write(JSON.stringify(n) + '\n');
        else if (n.method === 'sandbox.state') ctx.out.write(fmt.stateLine(n.params) + '\n');
        else ctx.out.write(`event  ${n.params.sandboxId}  ${n.params.type}${n.params.reason === undefined ? '' : `: ${n.params.reason}`}\n`);
      });
      if (!ctx.json) ctx.err.write(`watching ${sandboxId ?? 'all sandboxes'}; Ctrl-C to stop\n`);
      // Ctrl-C ends the watch (exit 0); losing the agent for good is a connection error.
      const err = await Promise.race([interrupted.then(() => null), gone]);
      if (err !== null) throw err;
      return 0;
    },
  },
  info: {
    args: '',
    summary: "the agent's version, capacity, backends and sandbox counts",
    options: {},
    optionHelp: [],
    async run(ctx) {
      const info = await (await ctx.client()).call('agent.info');
      return print(ctx, info, () => fmt.agentInfo(info));
    },
  },
};

function idCommand(summary: string, run: (ctx: RunContext, client: SandboxdClient, id: string) => Promise<number>): CommandSpec {
  return {
    args: '<id>', summary, options: {}, optionHelp: [],
    run: async (ctx, _v, pos) => {
      const id = one(pos, 'sandbox id');
      return run(ctx, await ctx.client(), id);
    },
  };
}

/** Shows the sandbox's steps while `op` runs (team-wide subscription: a new sandbox has no id on the agent yet). */
async function withProgress<T>(ctx: RunContext, client: SandboxdClient, sandboxId: string, op: () => Promise<T>): Promise<T> {
  if (ctx.json) return op();
  const progress = new ProgressDisplay(ctx.err, ctx.tty);
  const sub = await client.subscribe(undefined, (n) => {
    if (n.method === 'sandbox.state' && n.params.sandboxId === sandboxId) progress.update(n.params as StateNotice);
  });
  try {
    return await op();
  } finally {
    progress.stop();
    await sub.unsubscribe();
  }
}

function print(ctx: RunContext, value: unknown, human: () => string): number {
  ctx.out.write(ctx.json ? JSON.stringify(value, null, 2) + '\n' : human());
  return 0;
}

function one(pos: string[], what: string): string {
  if (pos.length !== 1) throw new UsageError(`expected exactly one ${what}`);
  return pos[0]!;
}

function need(v: unknown, flag: string): string {
  if (typeof v !== 'string') throw new UsageError(`${flag} is required`);
  return v;
}

function optionalInt<K extends string>(key: K, v: unknown): Partial<Record<K, number>> {
  if (v === undefined) return {};
  const n = Number(v);
  if (typeof v !== 'string' || !/^-?\d+$/.test(v) || !Number.isSafeInteger(n)) throw new UsageError(`expected an integer, got ${JSON.stringify(v)}`);
  return { [key]: n } as Partial<Record<K, number>>;
}

function parseEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--env expects K=V, got ${JSON.stringify(pair)}`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}
