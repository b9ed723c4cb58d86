import type { CallOpts } from '../call.ts';

/** What a VMM needs to plug a sandbox into its slot's network, and how the host reaches the guest. */
export interface NetworkHandle {
  slot: number;
  /** The network namespace the VMM runs in, or null for the `none` backend. */
  namespace: string | null;
  tapName: string;
  guestMac: string;
  /** Same in every slot so one snapshot restores into any slot. */
  guestIp: string;
  /** The address on the host through which this sandbox's guest is reached; stable for a slot. */
  hostIp: string;
}

/**
 * One network per slot: namespace, veth pair, tap, host route and NAT rules
 * (netns backend), or nothing at all (`none`, for unprivileged runs). Every name
 * is derived from the slot with a fixed prefix so leftovers can be found.
 */
export interface NetworkDriver {
  readonly kind: 'netns' | 'none';
  /** Creates the slot's network; if it exists already it is checked and returned. */
  create(slot: number, opts: CallOpts): Promise<NetworkHandle>;
  /** Removes the slot's network in reverse order of creation; removing what is gone is not an error. */
  remove(slot: number, opts: CallOpts): Promise<void>;
}
