import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { NetnsNetwork } from '../../drivers/network/netns-network.ts';
import { HOST_RULES_PER_SLOT } from '../../drivers/network/nft-scripts.ts';
import type { CommandRunner } from '../../drivers/network/run.ts';
import { inventory, json, missingPrivilege, pingOnce, sh, signal, sweep, testLayout } from './helpers.ts';

// Real namespaces, veths, taps, routes and nft rules on this host, all under
// the prefix `sbxtn` and slots 4000+; nothing is sent beyond them.

const PREFIX = 'sbxtn';
const EGRESS = `${PREFIX}-egress`;
const skip = await missingPrivilege();
const net = new NetnsNetwork({ layout: testLayout(PREFIX), egressInterface: EGRESS });

interface Link {
  ifname: string;
  flags: string[];
  address: string;
  linkinfo?: { info_kind?: string };
  addr_info?: { local: string; prefixlen: number }[];
}
interface Route {
  dst: string;
  gateway?: string;
  dev: string;
}
interface NftDoc {
  nftables: { rule?: { chain: string; comment?: string; expr: unknown[] } }[];
}

let hostForwarding = '';
let hostDefaultRoute = '';

before(async () => {
  if (skip) return;
  await sweep(PREFIX);
  // A stand-in uplink for the egress rules: a veth pair that ends on this host.
  await sh('ip', ['link', 'add', EGRESS, 'type', 'veth', 'peer', 'name', `${PREFIX}-egpeer`]);
  hostForwarding = await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8');
  hostDefaultRoute = await sh('ip', ['-j', 'route', 'show', 'default']);
});

after(async () => {
  if (skip) return;
  await sweep(PREFIX);
  const left = await inventory(PREFIX);
  assert.deepEqual([left.namespaces, left.hostLinks, left.hostTable], [[], [], false], 'sweep left objects behind');
});

const rulesOf = (doc: NftDoc, comment: string) => doc.nftables.flatMap((i) => (i.rule?.comment === comment ? [i.rule] : []));

test('create builds every piece a VMM and the host rely on (namespace, veth, tap, addresses, routes, NAT, egress rules)', { skip }, async () => {
  const s = net.layout.slot(4000);
  const handle = await net.create(4000, { signal: signal() });
  assert.deepEqual(handle, {
    slot: 4000,
    namespace: s.namespace,
    tapName: s.tapName,
    guestMac: s.guestMac,
    guestIp: s.guestIp,
    hostIp: s.hostIp,
  });

  const namespaces = await json<{ name: string }[]>('ip', ['-j', 'netns', 'list']);
  assert.ok(namespaces.some((n) => n.name === s.namespace), 'namespace missing');

  const [hostVeth] = await json<Link[]>('ip', ['-j', '-d', 'addr', 'show', 'dev', s.hostVeth]);
  assert.equal(hostVeth?.linkinfo?.info_kind, 'veth');
  assert.ok(hostVeth?.flags.includes('UP'), 'host veth is down');
  assert.ok(hostVeth?.addr_info?.some((a) => a.local === s.hostVethIp && a.prefixlen === 31));

  const nsLinks = await json<Link[]>('ip', ['-n', s.namespace, '-j', '-d', 'addr', 'show']);
  const peer = nsLinks.find((l) => l.ifname === s.nsVeth);
  assert.equal(peer?.linkinfo?.info_kind, 'veth', 'veth peer is not inside the namespace');
  assert.ok(peer?.flags.includes('UP'));
  assert.ok(peer?.addr_info?.some((a) => a.local === s.nsVethIp && a.prefixlen === 31));
  const tap = nsLinks.find((l) => l.ifname === s.tapName);
  assert.equal(tap?.linkinfo?.info_kind, 'tun', 'tap missing from the namespace');
  assert.equal(tap?.address, s.tapMac);
  assert.ok(tap?.flags.includes('UP'));
  assert.ok(tap?.addr_info?.some((a) => a.local === s.tapIp && a.prefixlen === 30));
  assert.ok(nsLinks.find((l) => l.ifname === 'lo')?.flags.includes('UP'), 'loopback down in the namespace');

  const nsRoutes = await json<Route[]>('ip', ['-n', s.namespace, '-j', 'route', 'show', 'default']);
  assert.deepEqual(nsRoutes.map((r) => [r.gateway, r.dev]), [[s.hostVethIp, s.nsVeth]]);
  const hostRoutes = await json<Route[]>('ip', ['-j', 'route', 'show', `${s.hostIp}/32`]);
  assert.deepEqual(hostRoutes.map((r) => [r.gateway, r.dev]), [[s.nsVethIp, s.hostVeth]]);
  const nsForwarding = await sh('ip', ['netns', 'exec', s.namespace, 'sysctl', '-n', 'net.ipv4.ip_forward']);
  assert.equal(nsForwarding.trim(), '1', 'namespace does not forward between veth and tap');

  const nsNft = await json<NftDoc>('ip', ['netns', 'exec', s.namespace, 'nft', '-j', 'list', 'ruleset']);
  const nat = rulesOf(nsNft, s.ruleComment);
  assert.equal(nat.length, 2);
  const natText = JSON.stringify(nat);
  assert.match(natText, new RegExp(`"dnat":\\{"addr":"${s.guestIp}"`));
  assert.match(natText, new RegExp(`"snat":\\{"addr":"${s.hostIp}"`));

  const hostNft = await json<NftDoc>('nft', ['-j', 'list', 'table', 'ip', PREFIX]);
  const egress = rulesOf(hostNft, s.ruleComment);
  assert.equal(egress.length, HOST_RULES_PER_SLOT);
  assert.match(JSON.stringify(egress), /masquerade/);

  assert.equal(await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8'), hostForwarding, 'host ip_forward was changed');
  assert.equal(await sh('ip', ['-j', 'route', 'show', 'default']), hostDefaultRoute, 'host default route was changed');
});

test('host and namespace reach each other over the veth, and the host IP reaches the guest address through the NAT', { skip }, async () => {
  const s = net.layout.slot(4001);
  await net.create(4001, { signal: signal() });
  assert.ok(await pingOnce({ via: s.hostVeth, to: s.nsVethIp }), 'host cannot reach the namespace end');
  assert.ok(await pingOnce({ ns: s.namespace, via: s.nsVeth, to: s.hostVethIp }), 'namespace cannot reach the host end');

  // No VM here: the guest address on the namespace's loopback stands in for the guest.
  await sh('ip', ['-n', s.namespace, 'addr', 'add', `${s.guestIp}/32`, 'dev', 'lo']);
  assert.ok(await pingOnce({ via: s.hostVeth, to: s.hostIp }), 'host IP is not forwarded to the guest (DNAT)');
  // Without the SNAT rule the host would answer 169.254.0.21 through its uplink: check it is there before pinging.
  const nat = (await inventory(PREFIX)).inNamespace[s.namespace]?.natRules;
  assert.deepEqual(nat, [s.ruleComment, s.ruleComment]);
  assert.ok(await pingOnce({ ns: s.namespace, via: s.guestIp, to: s.hostVethIp }), 'guest traffic is not sent as the host IP (SNAT)');
  await net.remove(4001, { signal: signal() });
});

test('create over an existing slot converges without duplicating addresses or rules', { skip }, async () => {
  const s = net.layout.slot(4002);
  await net.create(4002, { signal: signal() });
  const first = await inventory(PREFIX);
  await net.create(4002, { signal: signal() });
  const second = await inventory(PREFIX);
  assert.deepEqual(second.inNamespace[s.namespace], first.inNamespace[s.namespace]);
  assert.deepEqual(second.hostAddresses, first.hostAddresses);
  assert.deepEqual(second.hostRoutes, first.hostRoutes);
  assert.equal(second.hostRules.filter((r) => r.comment === s.ruleComment).length, HOST_RULES_PER_SLOT);
  assert.equal(second.inNamespace[s.namespace]?.natRules.length, 2);
  await net.remove(4002, { signal: signal() });
});

test('remove deletes the whole slot, and removing a slot that is gone is not an error', { skip }, async () => {
  const s = net.layout.slot(4003);
  await net.create(4003, { signal: signal() });
  await net.remove(4003, { signal: signal() });
  await net.remove(4003, { signal: signal() });
  const inv = await inventory(PREFIX);
  assert.ok(!inv.slots.includes(4003), `slot 4003 left: ${JSON.stringify(inv)}`);
  assert.ok(!inv.hostRoutes.some((r) => r.dst === s.hostIp));
});

test('two slots side by side: each has its own addresses, and removing one leaves the other working', { skip }, async () => {
  const [a, b] = [net.layout.slot(4004), net.layout.slot(4005)];
  await Promise.all([net.create(4004, { signal: signal() }), net.create(4005, { signal: signal() })]);
  assert.notEqual(a.hostIp, b.hostIp);
  assert.notEqual(a.hostVethIp, b.hostVethIp);
  assert.equal(a.guestIp, b.guestIp, 'guest IP must be the same in every slot');
  await net.remove(4004, { signal: signal() });
  assert.ok(await pingOnce({ via: b.hostVeth, to: b.nsVethIp }), 'removing slot 4004 broke slot 4005');
  const inv = await inventory(PREFIX);
  assert.equal(inv.hostRules.filter((r) => r.comment === b.ruleComment).length, HOST_RULES_PER_SLOT);
  assert.ok(!inv.slots.includes(4004));
  await net.remove(4005, { signal: signal() });
});

test('a leftover link under the slot’s veth name (from a crash) is replaced, not trusted', { skip }, async () => {
  const s = net.layout.slot(4006);
  await sh('ip', ['link', 'add', s.hostVeth, 'type', 'veth', 'peer', 'name', `${PREFIX}-stale`]);
  await net.create(4006, { signal: signal() });
  const peer = await json<Link[]>('ip', ['-n', s.namespace, '-j', 'link', 'show', 'dev', s.nsVeth]);
  assert.equal(peer.length, 1, 'the veth was not rebuilt into the namespace');
  assert.ok(!(await inventory(PREFIX)).hostLinks.includes(`${PREFIX}-stale`), 'the stale pair survived');
  assert.ok(await pingOnce({ via: s.hostVeth, to: s.nsVethIp }));
  await net.remove(4006, { signal: signal() });
});

test('two leftover veths with the slot’s names that are not each other’s ends are rebuilt as one pair', { skip }, async () => {
  const s = net.layout.slot(4007);
  await sh('ip', ['link', 'add', s.hostVeth, 'type', 'veth', 'peer', 'name', `${PREFIX}-x4007`]);
  await sh('ip', ['netns', 'add', s.namespace]);
  await sh('ip', ['link', 'add', `${PREFIX}-y4007`, 'type', 'veth', 'peer', 'name', s.nsVeth, 'netns', s.namespace]);
  await net.create(4007, { signal: signal() });
  const hostLinks = (await inventory(PREFIX)).hostLinks;
  assert.ok(!hostLinks.includes(`${PREFIX}-x4007`) && !hostLinks.includes(`${PREFIX}-y4007`), `stale ends survived: ${hostLinks}`);
  assert.ok(await pingOnce({ via: s.hostVeth, to: s.nsVethIp }), 'the slot’s veth ends are not connected');
  await net.remove(4007, { signal: signal() });
});

test('invalid slots are refused with invalid_argument before any command runs', async () => {
  const calls: string[] = [];
  const recording: CommandRunner = async (file, args) => {
    calls.push(`${file} ${args.join(' ')}`);
    return { exitCode: 1, stdout: '', stderr: 'should not run' };
  };
  const guarded = new NetnsNetwork({ layout: testLayout(PREFIX), runner: recording });
  for (const bad of [-1, 1.5, Number.NaN, Infinity, 4096, 2 ** 53, '7', null, undefined]) {
    for (const op of ['create', 'remove'] as const) {
      await assert.rejects(
        guarded[op](bad as number, { signal: signal() }),
        (err: unknown) => err instanceof SandboxdError && err.code === 'invalid_argument',
        `${op}(${String(bad)})`,
      );
    }
  }
  assert.deepEqual(calls, []);
});
