import type { LifecycleEvent, StateChange } from '../actors/api.ts';
import { notification } from './rpc.ts';

/**
 * Routes the supervisor's state changes and events to the connections that
 * subscribed, by index (sandbox id, team, admin-all) so a change costs the
 * number of its subscribers, not the number of connections. Team isolation is
 * enforced here as well as at subscribe time: a notification goes only to a
 * subscriber of the sandbox's own team, or to an admin.
 */
export interface Subscriber {
  /** null = admin. */
  readonly teamId: string | null;
  /** `frame` serialises the notification once for all receivers. */
  deliverState(change: StateChange, frame: () => Buffer): void;
  deliverEvent(event: LifecycleEvent, frame: () => Buffer): void;
}

interface Sub {
  subscriber: Subscriber;
  sandboxId: string | null;
}

export class SubscriptionHub {
  private readonly subs = new Map<string, Sub>();
  private readonly bySandbox = new Map<string, Map<Subscriber, number>>();
  private readonly byTeam = new Map<string, Map<Subscriber, number>>();
  private readonly admins = new Map<Subscriber, number>();
  private nextId = 1;

  add(subscriber: Subscriber, sandboxId: string | null): string {
    const id = `sub-${this.nextId++}`;
    this.subs.set(id, { subscriber, sandboxId });
    bump(this.indexOf(subscriber, sandboxId, true)!, subscriber, 1);
    return id;
  }

  remove(id: string): boolean {
    const sub = this.subs.get(id);
    if (sub === undefined) return false;
    this.subs.delete(id);
    const index = this.indexOf(sub.subscriber, sub.sandboxId, false);
    if (index !== undefined && bump(index, sub.subscriber, -1) && index.size === 0) {
      if (sub.sandboxId !== null) this.bySandbox.delete(sub.sandboxId);
      else if (sub.subscriber.teamId !== null) this.byTeam.delete(sub.subscriber.teamId);
    }
    return true;
  }

  get size(): number {
    return this.subs.size;
  }

  publishState(change: StateChange): void {
    const frame = once(() => stateFrame(change));
    for (const s of this.receivers(change)) s.deliverState(change, frame);
  }

  publishEvent(event: LifecycleEvent): void {
    const frame = once(() => eventFrame(event));
    for (const s of this.receivers(event)) s.deliverEvent(event, frame);
  }

  private receivers(n: { sandboxId: string; teamId: string }): Set<Subscriber> {
    const out = new Set<Subscriber>(this.admins.keys());
    for (const s of this.byTeam.get(n.teamId)?.keys() ?? []) out.add(s);
    for (const s of this.bySandbox.get(n.sandboxId)?.keys() ?? []) {
      if (s.teamId === null || s.teamId === n.teamId) out.add(s);
    }
    return out;
  }

  private indexOf(s: Subscriber, sandboxId: string | null, create: boolean): Map<Subscriber, number> | undefined {
    if (sandboxId === null && s.teamId === null) return this.admins;
    const [map, key] = sandboxId !== null ? [this.bySandbox, sandboxId] : [this.byTeam, s.teamId as string];
    let index = map.get(key);
    if (index === undefined && create) map.set(key, (index = new Map()));
    return index;
  }
}

/** Adds `delta` to a subscriber's count; returns true when the count reached zero and was removed. */
function bump(index: Map<Subscriber, number>, s: Subscriber, delta: number): boolean {
  const n = (index.get(s) ?? 0) + delta;
  if (n > 0) {
    index.set(s, n);
    return false;
  }
  index.delete(s);
  return true;
}

/** The wire form of a state change; the team stays on the agent. */
export function stateFrame(change: StateChange): Buffer {
  const { teamId: _team, ...params } = change;
  return Buffer.from(notification('sandbox.state', params));
}

export function eventFrame(event: LifecycleEvent): Buffer {
  const { teamId: _team, ...params } = event;
  return Buffer.from(notification('sandbox.event', params));
}

function once(make: () => Buffer): () => Buffer {
  let value: Buffer | undefined;
  return () => (value ??= make());
}
