import { SandboxdError } from '../../core/errors.ts';

/** Turns a slot number into every name and address of that slot's network. Pure; validates first. */
export interface SlotLayout {
  readonly config: Readonly<SlotLayoutConfig>;
  /** Throws invalid_argument unless 0 ≤ slot < maxSlots (an integer). */
  slot(slot: unknown): SlotNetwork;
  /** The slot a namespace or host veth name of this prefix belongs to, or null for any other name. */
  slotOfName(name: string): number | null;
}

export interface SlotLayoutConfig {
  /** Starts every host object's name: `sbxd` for the agent, `sbxt` for tests. 1–6 chars, [a-z][a-z0-9]*. */
  prefix: string;
  maxSlots: number;
  /** Veth pairs, one /31 per slot: needs 2 × maxSlots addresses. */
  transitCidr: string;
  /** One /32 per slot: the address the host uses to reach that slot's guest. */
  hostCidr: string;
}

export interface SlotNetwork {
  slot: number;
  namespace: string;
  /** Host end of the veth pair. */
  hostVeth: string;
  /** Namespace end of the veth pair (created directly inside the namespace). */
  nsVeth: string;
  hostVethIp: string;
  nsVethIp: string;
  transitPrefixLen: 31;
  hostIp: string;
  tapName: string;
  tapMac: string;
  tapIp: string;
  guestIp: string;
  guestMac: string;
  guestPrefixLen: 30;
  /** Tags this slot's nft rules on the host so they can be listed and deleted. */
  ruleComment: string;
}

/**
 * What the guest sees, identical in every slot. A memory snapshot carries the
 * guest's IP, its MAC and its cached ARP entry for the gateway, and Cloud
 * Hypervisor's config.json names the tap; keeping all four fixed is what lets a
 * snapshot taken in one slot restore into any other. Each tap lives in its own
 * namespace, so the repetition never clashes. (Values follow E2B's layout.)
 */
export const GUEST_NET = {
  tapName: 'tap0',
  tapMac: '02:fc:00:00:00:06',
  /** The guest's gateway. */
  tapIp: '169.254.0.22',
  guestIp: '169.254.0.21',
  guestMac: '02:fc:00:00:00:05',
  prefixLen: 30,
  netmask: '255.255.255.252',
} as const;

/**
 * Defaults are link-local (169.254/16): routers never forward it, so a slot
 * address cannot leak onto or collide with a real network, and this host's
 * own networks (192.0.2.0/24, fd00::/64 when this was written) are far away.
 * Both ranges avoid the guest /30 at 169.254.0.20 and the cloud metadata
 * address 169.254.169.254. Configure private ranges instead where 169.254/16 is taken.
 */
export const DEFAULT_SLOT_LAYOUT: SlotLayoutConfig = {
  prefix: 'sbxd',
  maxSlots: 4096,
  transitCidr: '169.254.128.0/19',
  hostCidr: '169.254.192.0/20',
};

const PREFIX = /^[a-z][a-z0-9]{0,5}$/;
/** Addresses no slot range may cover. */
const RESERVED = [
  { name: 'guest /30', base: ipToInt('169.254.0.20'), size: 4 },
  { name: 'metadata address', base: ipToInt('169.254.169.254'), size: 1 },
];

export function createSlotLayout(overrides: Partial<SlotLayoutConfig> = {}): SlotLayout {
  const config: SlotLayoutConfig = { ...DEFAULT_SLOT_LAYOUT, ...overrides };
  const { prefix, maxSlots } = config;
  assertPrefix(prefix);
  if (!Number.isSafeInteger(maxSlots) || maxSlots < 1 || maxSlots > 65536) {
    throw invalid(`maxSlots must be an integer in 1..65536: ${maxSlots}`);
  }
  const transit = parseCidr('transitCidr', config.transitCidr);
  const host = parseCidr('hostCidr', config.hostCidr);
  if (transit.size < 2 * maxSlots) throw invalid(`transitCidr ${config.transitCidr} is too small for ${maxSlots} slots`);
  if (host.size < maxSlots) throw invalid(`hostCidr ${config.hostCidr} is too small for ${maxSlots} slots`);
  const used = [
    { name: 'transitCidr', base: transit.base, size: 2 * maxSlots },
    { name: 'hostCidr', base: host.base, size: maxSlots },
  ];
  for (const [a, b] of [[used[0]!, used[1]!], ...used.flatMap((u) => RESERVED.map((r) => [u, r] as const))] as const) {
    if (a.base < b.base + b.size && b.base < a.base + a.size) throw invalid(`${a.name} overlaps the ${b.name}`);
  }

  return {
    config: Object.freeze({ ...config }),
    slot(value) {
      const slot = assertSlot(value, maxSlots);
      return {
        slot,
        namespace: `${prefix}-ns-${slot}`,
        hostVeth: `${prefix}-v${slot}`,
        nsVeth: `${prefix}-p${slot}`,
        hostVethIp: intToIp(transit.base + 2 * slot),
        nsVethIp: intToIp(transit.base + 2 * slot + 1),
        transitPrefixLen: 31,
        hostIp: intToIp(host.base + slot),
        tapName: GUEST_NET.tapName,
        tapMac: GUEST_NET.tapMac,
        tapIp: GUEST_NET.tapIp,
        guestIp: GUEST_NET.guestIp,
        guestMac: GUEST_NET.guestMac,
        guestPrefixLen: GUEST_NET.prefixLen,
        ruleComment: `${prefix}-slot-${slot}`,
      };
    },
    slotOfName(name) {
      const slot = slotOfName(prefix, name);
      return slot !== null && slot < maxSlots ? slot : null;
    },
  };
}

/** The slot in a namespace (`P-ns-N`) or veth (`P-vN`, `P-pN`) name, or null when the name is not of that shape. */
export function slotOfName(prefix: string, name: string): number | null {
  if (!name.startsWith(`${prefix}-`)) return null;
  const m = /^(?:ns-|[vp])(0|[1-9][0-9]{0,4})$/.exec(name.slice(prefix.length + 1));
  return m ? Number(m[1]) : null;
}

export function assertPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
    throw invalid(`network prefix must match ${PREFIX}: ${JSON.stringify(prefix)}`);
  }
  return prefix;
}

export function assertSlot(value: unknown, maxSlots: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= maxSlots) {
    throw invalid(`invalid network slot ${JSON.stringify(value)}: must be an integer in 0..${maxSlots - 1}`);
  }
  return value;
}

/** Interface names (an egress device, say) that may be passed to ip and nft: 1–15 safe chars. */
export function assertIfName(value: unknown): string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/.test(value)) {
    throw invalid(`invalid interface name ${JSON.stringify(value)}`);
  }
  return value;
}

function parseCidr(field: string, cidr: string): { base: number; size: number } {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(cidr);
  const len = m ? Number(m[2]) : NaN;
  if (!m || !(len >= 8 && len <= 30)) throw invalid(`${field} must be an IPv4 CIDR with a /8../30 prefix: ${cidr}`);
  const addr = ipToInt(m[1]!);
  const size = 2 ** (32 - len);
  if (addr % size !== 0) throw invalid(`${field} ${cidr} has host bits set`);
  return { base: addr, size };
}

function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw invalid(`bad IPv4 address ${ip}`);
  return parts.reduce((acc, p) => acc * 256 + p, 0);
}

function intToIp(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
}

function invalid(message: string): SandboxdError {
  return new SandboxdError('invalid_argument', message);
}
