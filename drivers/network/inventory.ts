import type { CallOpts } from '../call.ts';
import {
  deleteHostRules,
  deleteHostTable,
  deleteLink,
  deleteNamespace,
  listHostRules,
  listLinks,
  listNamespaces,
  type HostCtx,
  type HostRule,
} from './host-objects.ts';
import { execaRunner, failed, isGone, mustRun, parseJson, COMMAND_TIMEOUT_MS, type CommandRunner } from './run.ts';
import { assertPrefix, slotOfName } from './slot-addresses.ts';

/**
 * Everything on this host that carries a network prefix: for tests (proving
 * nothing leaked) and for the agent's start-up sweep of slots a crash left behind.
 */
export interface NetworkInventory {
  prefix: string;
  namespaces: string[];
  /** Host links named `<prefix>-…` (veth host ends; a peer here means a half-made pair). */
  hostLinks: string[];
  hostAddresses: { ifname: string; address: string }[];
  hostRoutes: { dst: string; dev: string }[];
  /** Whether the agent's host nft table `ip <prefix>` exists, and its slot rules. */
  hostTable: boolean;
  hostRules: HostRule[];
  /** Per namespace: its links (lo aside), addresses and NAT rule comments. */
  inNamespace: Record<string, { links: string[]; addresses: string[]; natRules: string[] }>;
  /** Every slot something above belongs to (by name or rule comment). */
  slots: number[];
}

type InvOpts = CallOpts & { runner?: CommandRunner };

export async function listNetworkInventory(prefix: string, opts: InvOpts): Promise<NetworkInventory> {
  assertPrefix(prefix);
  const ctx: HostCtx = { runner: opts.runner ?? execaRunner, signal: opts.signal };
  const mine = (name: string) => name.startsWith(`${prefix}-`);

  const namespaces = (await listNamespaces(ctx)).filter(mine);
  const hostLinks = (await listLinks(ctx, null)).map((l) => l.ifname).filter(mine);
  const addrOut = await mustRun(ctx.runner, 'addr.list', 'ip', ['-j', 'addr', 'show'], ctx);
  const hostAddresses = parseJson<{ ifname: string; addr_info?: { local: string; prefixlen: number }[] }[]>(addrOut, 'ip addr')
    .filter((l) => mine(l.ifname))
    .flatMap((l) => (l.addr_info ?? []).map((a) => ({ ifname: l.ifname, address: `${a.local}/${a.prefixlen}` })));
  const routeOut = await mustRun(ctx.runner, 'route.list', 'ip', ['-j', '-4', 'route', 'show'], ctx);
  const hostRoutes = parseJson<{ dst: string; dev?: string }[]>(routeOut, 'ip route')
    .filter((r) => r.dev !== undefined && mine(r.dev))
    .map((r) => ({ dst: r.dst, dev: r.dev as string }));
  const rules = await listHostRules(ctx, prefix);
  const hostRules = (rules ?? []).filter((r) => r.comment.startsWith(`${prefix}-slot-`));

  const inNamespace: NetworkInventory['inNamespace'] = {};
  for (const ns of namespaces) {
    const seen = await namespaceContents(ctx, ns);
    if (seen !== null) inNamespace[ns] = seen;
  }

  const slots = new Set<number>();
  for (const name of [...namespaces, ...hostLinks]) {
    const slot = slotOfName(prefix, name);
    if (slot !== null) slots.add(slot);
  }
  for (const r of hostRules) {
    const slot = slotOfComment(prefix, r.comment);
    if (slot !== null) slots.add(slot);
  }
  return {
    prefix,
    namespaces,
    hostLinks,
    hostAddresses,
    hostRoutes,
    hostTable: rules !== null,
    hostRules,
    inNamespace,
    slots: [...slots].sort((a, b) => a - b),
  };
}

/** True when nothing at all carries the prefix (the host table included). */
export function isInventoryEmpty(inv: NetworkInventory): boolean {
  return inv.namespaces.length === 0 && inv.hostLinks.length === 0 && inv.hostRoutes.length === 0 && !inv.hostTable;
}

/**
 * Removes every namespace, link and host rule under `prefix` whose slot is not
 * in `keepSlots` (names that carry no slot are removed too), and the host table
 * when no slot is kept. Returns what it found to remove, by slot.
 */
export async function removeOrphans(prefix: string, keepSlots: Iterable<number>, opts: InvOpts): Promise<number[]> {
  const keep = new Set(keepSlots);
  const inv = await listNetworkInventory(prefix, opts);
  const ctx: HostCtx = { runner: opts.runner ?? execaRunner, signal: opts.signal };
  const orphan = (slot: number | null) => slot === null || !keep.has(slot);

  await deleteHostRules(
    ctx,
    prefix,
    inv.hostRules.filter((r) => orphan(slotOfComment(prefix, r.comment))),
  );
  for (const link of inv.hostLinks.filter((l) => orphan(slotOfName(prefix, l)))) await deleteLink(ctx, null, link);
  for (const ns of inv.namespaces.filter((n) => orphan(slotOfName(prefix, n)))) await deleteNamespace(ctx, ns);
  if (keep.size === 0 && inv.hostTable) await deleteHostTable(ctx, prefix);
  return inv.slots.filter((s) => !keep.has(s));
}

function slotOfComment(prefix: string, comment: string): number | null {
  const m = /^(0|[1-9][0-9]{0,4})$/.exec(comment.slice(`${prefix}-slot-`.length));
  return comment.startsWith(`${prefix}-slot-`) && m ? Number(m[1]) : null;
}

/** Null when the namespace vanished (or is not yet openable) while we looked. */
async function namespaceContents(ctx: HostCtx, ns: string): Promise<NetworkInventory['inNamespace'][string] | null> {
  const args = ['-n', ns, '-j', 'addr', 'show'];
  const r = await ctx.runner('ip', args, { signal: ctx.signal, timeoutMs: COMMAND_TIMEOUT_MS });
  if (r.exitCode !== 0) {
    if (isGone(r)) return null;
    throw failed('ns.addr.list', 'ip', args, r);
  }
  const links = parseJson<{ ifname: string; addr_info?: { local: string; prefixlen: number }[] }[]>(r.stdout, 'ip addr');
  const nft = await ctx.runner('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', 'ruleset'], {
    signal: ctx.signal,
    timeoutMs: COMMAND_TIMEOUT_MS,
  });
  const natRules =
    nft.exitCode !== 0
      ? []
      : (parseJson<{ nftables?: { rule?: { comment?: string } }[] }>(nft.stdout, 'nft list ruleset').nftables ?? [])
          .map((i) => i.rule?.comment)
          .filter((c): c is string => c !== undefined);
  return {
    links: links.map((l) => l.ifname).filter((n) => n !== 'lo'),
    addresses: links.flatMap((l) => (l.addr_info ?? []).filter((a) => l.ifname !== 'lo').map((a) => `${l.ifname} ${a.local}/${a.prefixlen}`)),
    natRules,
  };
}
