import { SandboxdError } from '../../core/errors.ts';
import type { CallOpts } from '../call.ts';
import type { NetworkDriver, NetworkHandle } from '../network/network.ts';
import type { FakeHost } from './host.ts';

/** Highest slot whose host IP fits 10.11.0.0/16. */
export const MAX_FAKE_SLOT = 65_535;

/** One fake network per slot; every name and address derives from the slot alone. */
export class FakeNetwork implements NetworkDriver {
  readonly kind = 'netns' as const;
  readonly #host: FakeHost;

  constructor(host: FakeHost) {
    this.#host = host;
  }

  async create(slot: number, { signal }: CallOpts): Promise<NetworkHandle> {
    await this.#host.faults.gate('network.create', undefined, signal);
    checkSlot(slot);
    this.#host.ledger.networks.add(slot);
    return fakeNetworkHandle(slot);
  }

  async remove(slot: number, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('network.remove', undefined, signal);
    checkSlot(slot);
    this.#host.ledger.networks.delete(slot);
  }
}

function checkSlot(slot: number): void {
  if (!Number.isInteger(slot) || slot < 0 || slot > MAX_FAKE_SLOT) {
    throw new SandboxdError('invalid_argument', `slot must be an integer in 0..${MAX_FAKE_SLOT}, got ${slot}`);
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}

export function fakeNetworkHandle(slot: number): NetworkHandle {
  const hi = slot >> 8;
  const lo = slot & 0xff;
  return {
    slot,
    namespace: `fake-ns-${slot}`,
    tapName: 'tap0',
    guestMac: `02:fc:00:00:${hex(hi)}:${hex(lo)}`,
    guestIp: '169.254.0.21',
    hostIp: `10.11.${hi}.${lo}`,
  };
}
