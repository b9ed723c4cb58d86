import type { HostRule } from './host-objects.ts';
import type { SlotNetwork } from './slot-addresses.ts';

// nftables scripts, built from validated names and addresses only. Each script
// is applied with `nft -f -`, which runs it as one transaction.

/**
 * The slot's own table inside its namespace: traffic from the guest leaves the
 * namespace as the slot's host IP, and traffic to the host IP is handed to the
 * guest. Declared whole after a delete, so re-applying replaces rather than
 * duplicates (the `add` first makes the delete safe when the table is new).
 */
export function namespaceNatScript(table: string, s: SlotNetwork): string {
  return [
    `add table ip ${table}`,
    `delete table ip ${table}`,
    `table ip ${table} {`,
    `  chain prerouting {`,
    `    type nat hook prerouting priority dstnat; policy accept;`,
    `    iifname "${s.nsVeth}" ip daddr ${s.hostIp} dnat to ${s.guestIp} comment "${s.ruleComment}"`,
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    oifname "${s.nsVeth}" ip saddr ${s.guestIp} snat to ${s.hostIp} comment "${s.ruleComment}"`,
    `  }`,
    `}`,
    '',
  ].join('\n');
}

/**
 * The slot's egress rules in the agent's shared host table: forward from the
 * slot's veth to the egress device (replies only the other way) and
 * masquerade the slot's host IP there. Stale rules of the same slot (`stale`)
 * are deleted in the same transaction, so re-creating never duplicates.
 *
 * These rules only matter when the host forwards IPv4 (net.ipv4.ip_forward=1),
 * which this driver never turns on: that is the operator's decision. Chains of
 * other tables (a default-drop FORWARD, say) still apply: an accept here does
 * not override a drop elsewhere.
 */
export function hostEgressScript(table: string, s: SlotNetwork, egress: string, stale: readonly HostRule[]): string {
  const c = `comment "${s.ruleComment}"`;
  return [
    `add table ip ${table}`,
    `add chain ip ${table} forward { type filter hook forward priority filter; policy accept; }`,
    `add chain ip ${table} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    ...stale.map((r) => `delete rule ip ${table} ${r.chain} handle ${r.handle}`),
    `add rule ip ${table} forward iifname "${s.hostVeth}" oifname "${egress}" accept ${c}`,
    `add rule ip ${table} forward iifname "${egress}" oifname "${s.hostVeth}" ct state established,related accept ${c}`,
    `add rule ip ${table} postrouting oifname "${egress}" ip saddr ${s.hostIp} masquerade ${c}`,
    '',
  ].join('\n');
}

/** How many host rules one slot with egress owns (for checks and tests). */
export const HOST_RULES_PER_SLOT = 3;
