import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { execa } from 'execa';
import { isInventoryEmpty, listNetworkInventory, removeOrphans, type NetworkInventory } from '../../drivers/network/inventory.ts';
import type { SlotLayoutConfig } from '../../drivers/network/slot-addresses.ts';

// Shared by the network tests. Each test file uses its own `sbxt…` prefix and
// its own slot range, so files running side by side never sweep each other's
// objects, and test-only address ranges, away from the agent's defaults.

export const TEST_RANGES: Pick<SlotLayoutConfig, 'transitCidr' | 'hostCidr'> = {
  transitCidr: '169.254.64.0/19',
  hostCidr: '169.254.96.0/20',
};

export function testLayout(prefix: string): Partial<SlotLayoutConfig> {
  return { prefix, ...TEST_RANGES };
}

/** Why a real-network test cannot run here, or undefined when it can (root, ip, nft). */
export async function missingPrivilege(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root';
  for (const tool of [['ip', '-V'], ['nft', '--version'], ['ping', '-V']] as const) {
    const r = await execa(tool[0], [tool[1]], { reject: false, timeout: 5000 });
    if (r.exitCode !== 0) return `needs ${tool[0]}`;
  }
  return undefined;
}

export function signal(ms = 30_000): AbortSignal {
  return AbortSignal.timeout(ms);
}

/** Runs a command the test uses to look at the host; throws with stderr on failure. */
export async function sh(file: string, args: string[]): Promise<string> {
  const r = await execa(file, args, { timeout: 10_000, reject: false });
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.exitCode}: ${r.stderr}`);
  return r.stdout;
}

export async function json<T>(file: string, args: string[]): Promise<T> {
  const out = (await sh(file, args)).trim();
  return (out === '' ? [] : JSON.parse(out)) as T;
}

/** One ping that can only leave through `dev` (or, inside a namespace, from `source`): never through the host's uplink. */
export async function pingOnce(opts: { ns?: string; via: string; to: string }): Promise<boolean> {
  const ping = ['ping', '-n', '-q', '-c', '1', '-W', '2', '-I', opts.via, opts.to];
  const [file, args] = opts.ns === undefined ? ['ping', ping.slice(1)] : ['ip', ['netns', 'exec', opts.ns, ...ping]];
  const r = await execa(file as string, args as string[], { reject: false, timeout: 10_000 });
  return r.exitCode === 0;
}

export async function inventory(prefix: string): Promise<NetworkInventory> {
  return listNetworkInventory(prefix, { signal: signal() });
}

/** Sweeps everything under `prefix` and returns what was still there before the sweep (should be nothing). */
export async function sweep(prefix: string): Promise<NetworkInventory> {
  const before = await inventory(prefix);
  if (!isInventoryEmpty(before)) await removeOrphans(prefix, [], { signal: signal() });
  return before;
}

/** File hooks of a netns test (`skip`: why it cannot run here): sweep before and after, a test egress link, proof the sweep left nothing. */
export function sweptPrefix(prefix: string, egress: string, skip: string | undefined): void {
  before(async () => {
    if (skip) return;
    await sweep(prefix);
    await sh('ip', ['link', 'add', egress, 'type', 'veth', 'peer', 'name', `${prefix}-egpeer`]);
  });
  after(async () => {
    if (skip) return;
    await sweep(prefix);
    const left = await inventory(prefix);
    assert.deepEqual([left.namespaces, left.hostLinks, left.hostTable], [[], [], false], 'sweep left objects behind');
  });
}
