import type { GuestMemory } from './memory.ts';

// What the simulated guest keeps in its RAM, so that it survives pause/resume and
// snapshot/restore only as far as the memory pages do. Each region holds a magic,
// a little-endian u32 length and JSON. Regions sit at fixed guest addresses:
//   0 – 1 MiB  "kernel" pages written at boot (a stand-in resident footprint)
//   1 – 2 MiB  envd's defaults (/init)
//   2 – 4 MiB  the guest key/value store (the `kv` guest command)
// They are apart on purpose: /init must not fault in the kv pages, or the
// on-demand snapshot hazard would be hidden by the agent's own init call.

const MIB = 1024 * 1024;
const MAGIC = Buffer.from('CHSIMv1\0');
const HEADER = MAGIC.length + 4;

export interface Region {
  offset: number;
  capacity: number;
}

export const KERNEL_REGION: Region = { offset: 0, capacity: MIB };
export const ENVD_REGION: Region = { offset: MIB, capacity: MIB };
export const KV_REGION: Region = { offset: 2 * MIB, capacity: 2 * MIB };

export class GuestCorruptError extends Error {}

/** Fills the kernel region with a recognisable non-zero pattern, as a fresh boot would. */
export function writeBootImage(mem: GuestMemory): void {
  const page = Buffer.alloc(4096);
  for (let p = 0; p < KERNEL_REGION.capacity / 4096; p++) {
    page.fill(`chsim-kernel-page-${p};`);
    mem.write(KERNEL_REGION.offset + p * 4096, page);
  }
}

/** undefined when the region was never written (all zero); throws when it is garbage. */
export function readRegion(mem: GuestMemory, region: Region): unknown {
  const header = mem.read(region.offset, HEADER);
  if (header.every((b) => b === 0)) return undefined;
  if (!header.subarray(0, MAGIC.length).equals(MAGIC)) throw new GuestCorruptError('guest state region has a bad magic');
  const length = header.readUInt32LE(MAGIC.length);
  if (length > region.capacity - HEADER) throw new GuestCorruptError('guest state region has a bad length');
  try {
    return JSON.parse(mem.read(region.offset + HEADER, length).toString('utf8'));
  } catch {
    throw new GuestCorruptError('guest state region holds invalid JSON');
  }
}

export function writeRegion(mem: GuestMemory, region: Region, value: unknown): void {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  if (json.length > region.capacity - HEADER) throw new RangeError('guest state region is full');
  const header = Buffer.alloc(HEADER);
  MAGIC.copy(header);
  header.writeUInt32LE(json.length, MAGIC.length);
  mem.write(region.offset, Buffer.concat([header, json]));
}

function asStringMap(value: unknown): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return {};
  return Object.fromEntries(Object.entries(value).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

/** The guest key/value store behind the `kv` guest command. */
export const guestKv = {
  all(mem: GuestMemory): Record<string, string> {
    return asStringMap(readRegion(mem, KV_REGION));
  },
  get(mem: GuestMemory, key: string): string | undefined {
    return guestKv.all(mem)[key];
  },
  set(mem: GuestMemory, key: string, value: string): void {
    writeRegion(mem, KV_REGION, { ...guestKv.all(mem), [key]: value });
  },
  delete(mem: GuestMemory, key: string): boolean {
    const all = guestKv.all(mem);
    if (!(key in all)) return false;
    delete all[key];
    writeRegion(mem, KV_REGION, all);
    return true;
  },
};

export interface EnvdDefaults {
  defaultUser?: string;
  defaultWorkdir?: string;
  envVars?: Record<string, string>;
  lifecycleId?: string;
}

export function readEnvdDefaults(mem: GuestMemory): EnvdDefaults {
  const raw = readRegion(mem, ENVD_REGION);
  if (typeof raw !== 'object' || raw === null) return {};
  const r = raw as Record<string, unknown>;
  const out: EnvdDefaults = { envVars: asStringMap(r.envVars) };
  if (typeof r.defaultUser === 'string') out.defaultUser = r.defaultUser;
  if (typeof r.defaultWorkdir === 'string') out.defaultWorkdir = r.defaultWorkdir;
  if (typeof r.lifecycleId === 'string') out.lifecycleId = r.lifecycleId;
  return out;
}

export function writeEnvdDefaults(mem: GuestMemory, defaults: EnvdDefaults): void {
  writeRegion(mem, ENVD_REGION, defaults);
}
