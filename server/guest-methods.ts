import { randomBytes } from 'node:crypto';
import { SandboxdError } from '../core/errors.ts';
import type { CallContext, MethodSpec } from './methods.ts';
import type { StreamPort } from './streams.ts';

/**
 * Guest streams and template.import: straight calls into the supervisor (which
 * checks the team, Running and activity); an opened stream is handed to the
 * connection's StreamPort, which answers its id and forwards its output.
 */

type GuestMethod =
  | 'sandbox.execStream' | 'pty.start' | 'pty.attach' | 'pty.input' | 'pty.resize' | 'pty.kill'
  | 'process.start' | 'process.connect' | 'process.list' | 'process.kill' | 'template.import';

const none = {} as Record<string, never>;

function streamsOf(ctx: CallContext): StreamPort {
  if (ctx.streams === undefined) throw new SandboxdError('internal', 'this connection cannot carry streams');
  return ctx.streams;
}

export const guestMethods: { [M in GuestMethod]: MethodSpec<M> } = {
  'sandbox.execStream': {
    lifecycle: false,
    run: async (ctx, { id, ...req }) => streamsOf(ctx).open(await ctx.supervisor.execStream(ctx.caller, id, req)),
  },
  'pty.start': {
    lifecycle: false,
    run: async (ctx, { id, cols, rows, tag, ...req }) => {
      const ptyTag = tag ?? `pty-${randomBytes(6).toString('hex')}`;
      const stream = await ctx.supervisor.ptyStart(ctx.caller, id, { ...req, tag: ptyTag, size: { cols, rows } });
      return { ...(await streamsOf(ctx).open(stream)), tag: ptyTag };
    },
  },
  'pty.attach': {
    lifecycle: false,
    run: async (ctx, p) => streamsOf(ctx).open(await ctx.supervisor.ptyAttach(ctx.caller, p.id, p.process)),
  },
  'pty.input': {
    lifecycle: false,
    run: async ({ caller, supervisor }, p) => {
      await supervisor.ptyInput(caller, p.id, p.process, Buffer.from(p.data, 'base64'));
      return none;
    },
  },
  'pty.resize': {
    lifecycle: false,
    run: async ({ caller, supervisor }, p) => {
      await supervisor.ptyResize(caller, p.id, p.process, { cols: p.cols, rows: p.rows });
      return none;
    },
  },
  'pty.kill': {
    lifecycle: false,
    run: async ({ caller, supervisor }, p) => {
      await supervisor.ptyKill(caller, p.id, p.process);
      return none;
    },
  },
  'process.start': {
    lifecycle: false,
    run: ({ caller, supervisor }, { id, ...req }) => supervisor.processStart(caller, id, req),
  },
  'process.connect': {
    lifecycle: false,
    run: async (ctx, p) => streamsOf(ctx).open(await ctx.supervisor.processConnect(ctx.caller, p.id, p.process)),
  },
  'process.list': {
    lifecycle: false,
    run: async ({ caller, supervisor }, p) => ({ processes: await supervisor.processList(caller, p.id) }),
  },
  'process.kill': {
    lifecycle: false,
    run: async ({ caller, supervisor }, p) => {
      await supervisor.processKill(caller, p.id, p.process, p.signal);
      return none;
    },
  },
  'template.import': {
    lifecycle: true,
    run: ({ caller, supervisor }, p) => supervisor.importTemplate(caller, p),
  },
};
