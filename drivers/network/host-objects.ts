import { SandboxdError } from '../../core/errors.ts';
import { failed, isGone, mustRun, parseJson, COMMAND_TIMEOUT_MS, type CommandRunner } from './run.ts';

/**
 * Small probes and deletions of host network objects, shared by the netns
 * driver and the inventory. Deletions treat "already gone" as success.
 */
export interface HostCtx {
  runner: CommandRunner;
  signal: AbortSignal;
}

export interface LinkInfo {
  ifname: string;
  /** 'veth', 'tun', 'dummy' … or undefined for plain devices such as lo. */
  kind: string | undefined;
  ifindex: number;
  /** For a veth: its other end's ifindex (in the other end's namespace). */
  peerIndex: number | undefined;
}

interface IpLink {
  ifname: string;
  ifindex: number;
  link_index?: number;
  linkinfo?: { info_kind?: string };
}

const toLinkInfo = (l: IpLink): LinkInfo => ({
  ifname: l.ifname,
  kind: l.linkinfo?.info_kind,
  ifindex: l.ifindex,
  peerIndex: l.link_index,
});

export interface HostRule {
  chain: string;
  handle: number;
  comment: string;
}

async function run(ctx: HostCtx, file: string, args: readonly string[], input?: string) {
  return ctx.runner(file, args, {
    signal: ctx.signal,
    timeoutMs: COMMAND_TIMEOUT_MS,
    ...(input === undefined ? {} : { input }),
  });
}

/** `ip` args that act inside `ns`, or on the host when ns is null. */
export function ipIn(ns: string | null, args: readonly string[]): string[] {
  return ns === null ? [...args] : ['-n', ns, ...args];
}

export async function listNamespaces(ctx: HostCtx): Promise<string[]> {
  const out = await mustRun(ctx.runner, 'netns.list', 'ip', ['-j', 'netns', 'list'], ctx);
  return parseJson<{ name: string }[]>(out, 'ip netns list').map((n) => n.name);
}

/** Adds the namespace; one that exists already is kept (whatever it holds is checked by the caller). */
export async function ensureNamespace(ctx: HostCtx, ns: string): Promise<void> {
  const args = ['netns', 'add', ns];
  const r = await run(ctx, 'ip', args);
  if (r.exitCode !== 0 && !/file exists/i.test(r.stderr)) throw failed('netns.add', 'ip', args, r);
}

/** The link called `name` (in `ns`, or on the host), or null when there is none. */
export async function linkInfo(ctx: HostCtx, ns: string | null, name: string): Promise<LinkInfo | null> {
  const args = ipIn(ns, ['-j', '-d', 'link', 'show', 'dev', name]);
  const r = await run(ctx, 'ip', args);
  if (r.exitCode !== 0) {
    if (isGone(r)) return null;
    throw failed('link.show', 'ip', args, r);
  }
  const [link] = parseJson<IpLink[]>(r.stdout, 'ip link show');
  return link ? toLinkInfo(link) : null;
}

export async function listLinks(ctx: HostCtx, ns: string | null): Promise<LinkInfo[]> {
  const args = ipIn(ns, ['-j', '-d', 'link', 'show']);
  const out = await mustRun(ctx.runner, 'link.list', 'ip', args, ctx);
  return parseJson<IpLink[]>(out, 'ip link show').map(toLinkInfo);
}

export async function deleteLink(ctx: HostCtx, ns: string | null, name: string): Promise<void> {
  const args = ipIn(ns, ['link', 'del', 'dev', name]);
  const r = await run(ctx, 'ip', args);
  if (r.exitCode !== 0 && !isGone(r)) throw failed('link.del', 'ip', args, r);
}

export async function deleteNamespace(ctx: HostCtx, ns: string): Promise<void> {
  const args = ['netns', 'del', ns];
  const r = await run(ctx, 'ip', args);
  if (r.exitCode !== 0 && !isGone(r)) throw failed('netns.del', 'ip', args, r);
}

/** Deletes a route only when it still points at `dev`, so another slot's route is never taken. */
export async function deleteRoute(ctx: HostCtx, dst: string, dev: string): Promise<void> {
  const args = ['route', 'del', dst, 'dev', dev];
  const r = await run(ctx, 'ip', args);
  if (r.exitCode !== 0 && !isGone(r)) throw failed('route.del', 'ip', args, r);
}

/** The rules of the host table `ip <table>` that carry a comment, or null when the table does not exist. */
export async function listHostRules(ctx: HostCtx, table: string): Promise<HostRule[] | null> {
  const args = ['-j', 'list', 'table', 'ip', table];
  const r = await run(ctx, 'nft', args);
  if (r.exitCode !== 0) {
    if (isGone(r)) return null;
    throw failed('nft.list', 'nft', args, r);
  }
  const doc = parseJson<{ nftables?: { rule?: { chain: string; handle: number; comment?: string } }[] }>(
    r.stdout,
    'nft list table',
  );
  const rules: HostRule[] = [];
  for (const item of doc.nftables ?? []) {
    if (item.rule?.comment !== undefined) {
      rules.push({ chain: item.rule.chain, handle: item.rule.handle, comment: item.rule.comment });
    }
  }
  return rules;
}

/** Runs an nft script as one transaction (all or nothing), on the host or inside `ns`. */
export async function nftApply(ctx: HostCtx, ns: string | null, step: string, script: string): Promise<void> {
  const [file, args] = ns === null ? ['nft', ['-f', '-']] : ['ip', ['netns', 'exec', ns, 'nft', '-f', '-']];
  await mustRun(ctx.runner, step, file as string, args as string[], { signal: ctx.signal, input: script });
}

/** Deletes the given rules of host table `ip <table>` in one transaction; rules already gone are skipped. */
export async function deleteHostRules(ctx: HostCtx, table: string, rules: readonly HostRule[]): Promise<void> {
  if (rules.length === 0) return;
  const script = rules.map((r) => `delete rule ip ${table} ${r.chain} handle ${r.handle}`).join('\n');
  try {
    await nftApply(ctx, null, 'host.rules.del', script);
  } catch (err) {
    // A rule removed meanwhile fails the whole batch: retry with what is still there.
    if (!(err instanceof SandboxdError) || err.code !== 'operation_failed') throw err;
    const live = new Set(((await listHostRules(ctx, table)) ?? []).map((r) => `${r.chain}/${r.handle}`));
    const still = rules.filter((r) => live.has(`${r.chain}/${r.handle}`));
    if (still.length === rules.length) throw err;
    await deleteHostRules(ctx, table, still);
  }
}

export async function deleteHostTable(ctx: HostCtx, table: string): Promise<void> {
  const args = ['delete', 'table', 'ip', table];
  const r = await run(ctx, 'nft', args);
  if (r.exitCode !== 0 && !isGone(r)) throw failed('host.table.del', 'nft', args, r);
}
