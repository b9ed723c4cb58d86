import { SandboxdError } from '../../core/errors.ts';
import type { CallOpts } from '../call.ts';
import type { NetworkDriver, NetworkHandle } from './network.ts';
import { createSlotLayout, type SlotLayout, type SlotLayoutConfig } from './slot-addresses.ts';

/**
 * No host objects at all, for unprivileged runs and the simulator: the
 * simulator's envd listens on loopback, so every slot's host IP is 127.0.0.1.
 * Slots are still validated, so a bad slot fails here exactly as with netns.
 */
export class NoneNetwork implements NetworkDriver {
  readonly kind = 'none' as const;
  readonly layout: SlotLayout;

  constructor(opts: { layout?: Partial<SlotLayoutConfig> } = {}) {
    this.layout = createSlotLayout(opts.layout);
  }

  async create(slot: number, opts: CallOpts): Promise<NetworkHandle> {
    const s = this.layout.slot(slot);
    if (opts.signal.aborted) throw new SandboxdError('cancelled', `network create of slot ${slot} cancelled`);
    return { slot: s.slot, namespace: null, tapName: s.tapName, guestMac: s.guestMac, guestIp: s.guestIp, hostIp: '127.0.0.1' };
  }

  async remove(slot: number, opts: CallOpts): Promise<void> {
    this.layout.slot(slot);
    if (opts.signal.aborted) throw new SandboxdError('cancelled', `network remove of slot ${slot} cancelled`);
  }
}
