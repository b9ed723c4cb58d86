import type { CallOpts } from '../call.ts';
import { NetnsNetwork, type NetnsNetworkOptions } from './netns-network.ts';
import type { NetworkDriver } from './network.ts';
import { NoneNetwork } from './none-network.ts';
import { execaRunner, type CommandRunner } from './run.ts';

export type NetworkBackend = 'netns' | 'none';

export { NetnsNetwork, defaultRouteInterface } from './netns-network.ts';
export { NoneNetwork } from './none-network.ts';
export { listNetworkInventory, removeOrphans, isInventoryEmpty } from './inventory.ts';
export { GUEST_NET, DEFAULT_SLOT_LAYOUT, createSlotLayout } from './slot-addresses.ts';

export function createNetworkDriver(backend: NetworkBackend, opts: NetnsNetworkOptions = {}): NetworkDriver {
  return backend === 'netns' ? new NetnsNetwork(opts) : new NoneNetwork(opts.layout === undefined ? {} : { layout: opts.layout });
}

/**
 * 'netns' where this process may build namespaces (root, with ip and nft
 * installed), else 'none'. Probes only; changes nothing.
 */
export async function detectNetworkBackend(opts: CallOpts & { runner?: CommandRunner }): Promise<NetworkBackend> {
  if (process.getuid?.() !== 0) return 'none';
  const runner = opts.runner ?? execaRunner;
  for (const [file, arg] of [['ip', '-V'], ['nft', '--version']] as const) {
    try {
      const r = await runner(file, [arg], { signal: opts.signal, timeoutMs: 5000 });
      if (r.exitCode !== 0) return 'none';
    } catch {
      return 'none';
    }
  }
  return 'netns';
}
