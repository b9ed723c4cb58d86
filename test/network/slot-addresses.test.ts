import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SandboxdError } from '../../core/errors.ts';
import { NoneNetwork } from '../../drivers/network/none-network.ts';
import { createSlotLayout, DEFAULT_SLOT_LAYOUT, GUEST_NET, slotOfName } from '../../drivers/network/slot-addresses.ts';

const isInvalid = (err: unknown) => err instanceof SandboxdError && err.code === 'invalid_argument';
const toInt = (ip: string) => ip.split('.').reduce((acc, p) => acc * 256 + Number(p), 0);
const inCidr = (ip: string, cidr: string) => {
  const [base, len] = cidr.split('/') as [string, string];
  const size = 2 ** (32 - Number(len));
  return toInt(ip) >= toInt(base) && toInt(ip) < toInt(base) + size;
};

test('every name of every slot fits the 15-char interface limit and starts with the prefix, for the longest prefix', () => {
  const layout = createSlotLayout({ prefix: 'abcdef' });
  for (let slot = 0; slot < layout.config.maxSlots; slot++) {
    const s = layout.slot(slot);
    for (const name of [s.hostVeth, s.nsVeth, s.tapName]) assert.ok(name.length <= 15, `${name} too long`);
    for (const name of [s.namespace, s.hostVeth, s.nsVeth]) {
      assert.ok(name.startsWith('abcdef-'), name);
      assert.equal(layout.slotOfName(name), slot, `${name} does not map back to its slot`);
    }
  }
});

test('no two slots share a host IP or a veth address, and all stay inside their ranges (default layout)', () => {
  const layout = createSlotLayout();
  const seen = new Set<string>();
  for (let slot = 0; slot < layout.config.maxSlots; slot++) {
    const s = layout.slot(slot);
    for (const ip of [s.hostIp, s.hostVethIp, s.nsVethIp]) {
      assert.ok(!seen.has(ip), `${ip} used twice (slot ${slot})`);
      seen.add(ip);
    }
    assert.ok(inCidr(s.hostIp, DEFAULT_SLOT_LAYOUT.hostCidr));
    assert.ok(inCidr(s.hostVethIp, DEFAULT_SLOT_LAYOUT.transitCidr) && inCidr(s.nsVethIp, DEFAULT_SLOT_LAYOUT.transitCidr));
    assert.equal(toInt(s.nsVethIp), toInt(s.hostVethIp) + 1, 'veth ends are not one /31');
    assert.equal(toInt(s.hostVethIp) % 2, 0, 'veth pair straddles two /31s');
  }
  assert.ok(!seen.has('169.254.169.254') && !seen.has(GUEST_NET.guestIp) && !seen.has(GUEST_NET.tapIp));
});

test('what the guest sees (tap name, MACs, guest and gateway IP) is identical in every slot, so snapshots move between slots', () => {
  const layout = createSlotLayout({ prefix: 'sbxt' });
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 0, max: 4095 }), (a, b) => {
      const [sa, sb] = [layout.slot(a), layout.slot(b)];
      const guestView = (s: typeof sa) => [s.tapName, s.tapMac, s.tapIp, s.guestIp, s.guestMac, s.guestPrefixLen];
      assert.deepEqual(guestView(sa), guestView(sb));
      if (a !== b) assert.notEqual(sa.hostIp, sb.hostIp);
    }),
  );
});

test('slot numbers outside 0..maxSlots-1, non-integers and non-numbers are refused with invalid_argument', () => {
  const layout = createSlotLayout({ maxSlots: 64, transitCidr: '10.200.0.0/24', hostCidr: '10.201.0.0/24' });
  fc.assert(
    fc.property(
      fc.oneof(
        fc.integer({ max: -1 }),
        fc.integer({ min: 64 }),
        fc.double().filter((d) => !Number.isInteger(d)),
        fc.string(),
        fc.constant(null),
        fc.constant(undefined),
        fc.object(),
      ),
      (bad) => assert.throws(() => layout.slot(bad), isInvalid),
    ),
  );
  assert.equal(layout.slot(63).slot, 63);
});

test('layouts that would produce unsafe names or overlapping addresses are refused', () => {
  const bad = [
    { prefix: '' },
    { prefix: 'toolong' },
    { prefix: 'Sbx' },
    { prefix: 'a-b' },
    { prefix: 'a;rm' },
    { maxSlots: 0 },
    { maxSlots: 1.5 },
    { transitCidr: '169.254.128.0/21' }, // 2048 addresses for 4096 slots
    { hostCidr: '169.254.192.0/21' },
    { transitCidr: '169.254.128.1/19' },
    { transitCidr: '10.0.0.0/33' },
    { transitCidr: 'fd00::/64' },
    { hostCidr: '169.254.128.0/20' }, // overlaps the transit range
    { hostCidr: '169.254.160.0/20' }, // covers 169.254.169.254
    { transitCidr: '169.254.0.0/19' }, // covers the guest /30
  ];
  for (const overrides of bad) assert.throws(() => createSlotLayout(overrides), isInvalid, JSON.stringify(overrides));
});

test('names of another prefix or of no slot are not claimed by slotOfName', () => {
  for (const name of ['sbxt-ns-1', 'sbxd-v01', 'sbxd-ns-', 'sbxd-x1', 'sbxd-v1a', 'sbxdv1', 'sbxd-ns-123456', 'eth0']) {
    assert.equal(slotOfName('sbxd', name), null, name);
  }
  assert.equal(createSlotLayout().slotOfName('sbxd-v4096'), null, 'slot beyond maxSlots claimed');
  assert.equal(slotOfName('sbxd', 'sbxd-p0'), 0);
});

test('the none backend makes no host objects, answers on loopback, and still refuses bad slots', async () => {
  const none = new NoneNetwork();
  const signal = AbortSignal.timeout(5000);
  const handle = await none.create(7, { signal });
  assert.deepEqual(handle, {
    slot: 7,
    namespace: null,
    tapName: GUEST_NET.tapName,
    guestMac: GUEST_NET.guestMac,
    guestIp: GUEST_NET.guestIp,
    hostIp: '127.0.0.1',
  });
  await none.remove(7, { signal });
  await none.remove(7, { signal });
  await assert.rejects(none.create(-1, { signal }), isInvalid);
  await assert.rejects(none.remove(4096, { signal }), isInvalid);
});
