import assert from 'node:assert/strict';
import { test } from 'node:test';
import { removeOrphans } from '../../drivers/network/inventory.ts';
import { NetnsNetwork } from '../../drivers/network/netns-network.ts';
import { HOST_RULES_PER_SLOT } from '../../drivers/network/nft-scripts.ts';
import { inventory, missingPrivilege, pingOnce, sh, signal, sweptPrefix, testLayout } from './helpers.ts';

// Many slots at once share the host table and the netns directory: parallel
// creates must not trample each other, and the orphan sweep must take exactly
// the slots it is not told to keep. Prefix `sbxtp`, slots 4040+.

const PREFIX = 'sbxtp';
const EGRESS = `${PREFIX}-egress`;
const skip = await missingPrivilege();
const net = new NetnsNetwork({ layout: testLayout(PREFIX), egressInterface: EGRESS });
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

sweptPrefix(PREFIX, EGRESS, skip);

test('16 slots created in parallel are all complete and reachable, and all go away when removed in parallel', { skip }, async () => {
  const slots = range(4040, 16);
  const handles = await Promise.all(slots.map((slot) => net.create(slot, { signal: signal(60_000) })));
  assert.equal(new Set(handles.map((h) => h.hostIp)).size, 16, 'host IPs collide');

  const inv = await inventory(PREFIX);
  assert.deepEqual(inv.slots, slots);
  assert.equal(inv.namespaces.length, 16);
  assert.equal(inv.hostRules.length, 16 * HOST_RULES_PER_SLOT, 'egress rules lost or duplicated under concurrency');
  for (const slot of slots) {
    const s = net.layout.slot(slot);
    assert.deepEqual(inv.inNamespace[s.namespace]?.links.sort(), [s.nsVeth, s.tapName].sort(), `slot ${slot} links`);
    assert.equal(inv.inNamespace[s.namespace]?.natRules.length, 2, `slot ${slot} NAT rules`);
    assert.ok(await pingOnce({ via: s.hostVeth, to: s.nsVethIp }), `slot ${slot} unreachable`);
  }

  await Promise.all(slots.map((slot) => net.remove(slot, { signal: signal(60_000) })));
  const afterRemove = await inventory(PREFIX);
  assert.deepEqual(afterRemove.slots, []);
  assert.deepEqual(afterRemove.namespaces, []);
  assert.deepEqual(afterRemove.hostRules, []);
});

test('removeOrphans takes every slot not kept (and half-made leftovers) and leaves kept slots working', { skip }, async () => {
  const slots = range(4060, 3);
  for (const slot of slots) await net.create(slot, { signal: signal() });
  // A crash between `ip netns add` and the veth: a bare namespace with a slot name.
  await sh('ip', ['netns', 'add', `${PREFIX}-ns-4070`]);
  const kept = net.layout.slot(4061);

  const removed = await removeOrphans(PREFIX, [kept.slot], { signal: signal() });
  assert.deepEqual(removed, [4060, 4062, 4070]);
  const inv = await inventory(PREFIX);
  assert.deepEqual(inv.slots, [kept.slot]);
  assert.deepEqual(inv.namespaces, [kept.namespace]);
  assert.deepEqual(inv.hostRules.map((r) => r.comment), Array(HOST_RULES_PER_SLOT).fill(kept.ruleComment));
  assert.ok(await pingOnce({ via: kept.hostVeth, to: kept.nsVethIp }), 'the kept slot was damaged');

  await removeOrphans(PREFIX, [], { signal: signal() });
  const empty = await inventory(PREFIX);
  assert.deepEqual([empty.namespaces, empty.hostLinks, empty.hostTable], [[], [], false]);
});
