import type { ActorRefLike, InspectionEvent, StateValue } from 'xstate';
import type { Caller, SandboxStatus } from '../../actors/api.ts';
import { stepOf } from '../../actors/view.ts';
import { notification } from '../rpc.ts';
import { sanitize } from './sanitize.ts';

/**
 * The live inspector's feed. `inspect` goes to the supervisor as xstate's
 * inspection callback; it keeps a bounded history per sandbox (root actors
 * only: step actors are noise here) and relays compact entries to subscribers,
 * team-scoped like every other notification (an admin sees all).
 *
 * Kept cheap while nobody watches: recording stores references into a ring
 * (events and state values are immutable in xstate) and nothing is sanitised
 * or serialised until a subscriber or a history request asks for it.
 */

export type InspectEntry =
  | { kind: 'actor'; sandboxId: string; seq: number; at: number; state: 'started' | 'stopped' }
  | { kind: 'event'; sandboxId: string; seq: number; at: number; type: string; from: string | null; payload: unknown }
  | {
      kind: 'snapshot';
      sandboxId: string;
      seq: number;
      at: number;
      value: StateValue;
      status: SandboxStatus;
      step: string;
      tags: string[];
    };

export interface InspectSummary {
  sandboxId: string;
  teamId: string;
  createdAt: number;
  status: SandboxStatus;
  step: string;
  lastEvent: { type: string; at: number } | null;
  stopped: boolean;
}

export interface InspectSubscriber {
  readonly teamId: string | null;
  /** `frame` serialises the `inspect.event` notification once for all receivers. */
  deliverInspect(entry: InspectEntry, frame: () => Buffer): void;
}

export interface InspectionFeedOptions {
  /** Entries kept per sandbox (default 200). */
  historySize?: number;
  /** Destroyed sandboxes whose history is kept for a late page (default 32). */
  keepFinished?: number;
  now?: () => number;
}

type Raw =
  | { k: 'actor'; seq: number; at: number; state: 'started' | 'stopped' }
  | { k: 'event'; seq: number; at: number; event: { type: string }; from: string | null }
  | { k: 'snapshot'; seq: number; at: number; value: StateValue; machine: string; tags: ReadonlySet<string> };

interface Track {
  sandboxId: string;
  teamId: string;
  createdAt: number;
  ring: (Raw | undefined)[];
  next: number;
  seq: number;
  value: StateValue;
  machine: string;
  lastEvent: { type: string; at: number } | null;
  stopped: boolean;
}

interface Sub {
  subscriber: InspectSubscriber;
  sandboxId: string | null;
}

const statusOf: Record<string, SandboxStatus> = { snapshottingPaused: 'snapshotting', crashed: 'destroying' };

/** The caller-facing status of a machine state (the same mapping as actors/view.ts). */
function statusFor(value: StateValue, machine: string): SandboxStatus {
  if (machine === 'done') return 'destroyed';
  if (machine === 'error') return 'error';
  const top = typeof value === 'string' ? value : (Object.keys(value)[0] ?? 'creating');
  return statusOf[top] ?? (top as SandboxStatus);
}

export class InspectionFeed {
  readonly #size: number;
  readonly #keepFinished: number;
  readonly #now: () => number;
  readonly #byActor = new WeakMap<ActorRefLike, Track>();
  readonly #bySandbox = new Map<string, Track>();
  readonly #finished: string[] = [];
  readonly #subs = new Map<string, Sub>();
  #nextSub = 1;

  constructor(opts: InspectionFeedOptions = {}) {
    this.#size = Math.max(1, opts.historySize ?? 200);
    this.#keepFinished = opts.keepFinished ?? 32;
    this.#now = opts.now ?? Date.now;
  }

  /** xstate's `inspect` callback; pass it to the supervisor. Never throws. */
  readonly inspect = (ev: InspectionEvent): void => {
    if (ev.type === '@xstate.event') {
      if (ev.actorRef.sessionId !== ev.rootId) return;
      const track = this.#byActor.get(ev.actorRef) ?? this.#open(ev.actorRef);
      if (track === undefined) return;
      const at = this.#now();
      track.lastEvent = { type: ev.event.type, at };
      this.#record(track, { k: 'event', seq: ++track.seq, at, event: ev.event, from: (ev.sourceRef as { id?: string } | undefined)?.id ?? null });
    } else if (ev.type === '@xstate.snapshot') {
      if (ev.actorRef.sessionId !== ev.rootId) return;
      const track = this.#byActor.get(ev.actorRef);
      if (track === undefined || track.stopped) return;
      const snap = ev.snapshot as unknown as { value: StateValue; status: string; tags?: ReadonlySet<string> };
      track.value = snap.value;
      track.machine = snap.status;
      const at = this.#now();
      this.#record(track, { k: 'snapshot', seq: ++track.seq, at, value: snap.value, machine: snap.status, tags: snap.tags ?? new Set() });
      if (snap.status !== 'active') this.#stop(track, at);
    }
  };

  /** Sandboxes the caller may see, newest first. */
  list(caller: Caller): InspectSummary[] {
    const out: InspectSummary[] = [];
    for (const t of this.#bySandbox.values()) {
      if (caller.teamId !== null && t.teamId !== caller.teamId) continue;
      out.push({
        sandboxId: t.sandboxId,
        teamId: t.teamId,
        createdAt: t.createdAt,
        status: statusFor(t.value, t.machine),
        step: stepOf(t.value),
        lastEvent: t.lastEvent,
        stopped: t.stopped,
      });
    }
    return out.sort((a, b) => b.createdAt - a.createdAt);
  }

  /** The kept entries of one sandbox, oldest first; null when unknown or another team's. */
  history(caller: Caller, sandboxId: string): InspectEntry[] | null {
    const t = this.#visible(caller, sandboxId);
    if (t === null) return null;
    const out: InspectEntry[] = [];
    for (let i = 0; i < this.#size; i++) {
      const raw = t.ring[(t.next + i) % this.#size];
      if (raw !== undefined) out.push(this.#wire(t, raw));
    }
    return out;
  }

  /** True when the caller may watch this sandbox. */
  knows(caller: Caller, sandboxId: string): boolean {
    return this.#visible(caller, sandboxId) !== null;
  }

  subscribe(subscriber: InspectSubscriber, sandboxId: string | null): string {
    const id = `isub-${this.#nextSub++}`;
    this.#subs.set(id, { subscriber, sandboxId });
    return id;
  }

  unsubscribe(id: string): boolean {
    return this.#subs.delete(id);
  }

  get subscriptionCount(): number {
    return this.#subs.size;
  }

  #visible(caller: Caller, sandboxId: string): Track | null {
    const t = this.#bySandbox.get(sandboxId);
    if (t === undefined || (caller.teamId !== null && t.teamId !== caller.teamId)) return null;
    return t;
  }

  /** First event of a root actor: its context is there from xstate.init on. */
  #open(actorRef: ActorRefLike): Track | undefined {
    const ctx = (actorRef.getSnapshot() as { context?: { id?: unknown; teamId?: unknown; createdAt?: unknown } } | undefined)?.context;
    if (typeof ctx?.id !== 'string' || typeof ctx.teamId !== 'string') return undefined;
    const at = this.#now();
    const track: Track = {
      sandboxId: ctx.id,
      teamId: ctx.teamId,
      createdAt: typeof ctx.createdAt === 'number' ? ctx.createdAt : at,
      ring: new Array(this.#size),
      next: 0,
      seq: 0,
      value: 'creating',
      machine: 'active',
      lastEvent: null,
      stopped: false,
    };
    // An id reused after a destroy starts a fresh history.
    const old = this.#bySandbox.get(track.sandboxId);
    if (old !== undefined) this.#forget(old.sandboxId);
    this.#byActor.set(actorRef, track);
    this.#bySandbox.set(track.sandboxId, track);
    this.#record(track, { k: 'actor', seq: ++track.seq, at, state: 'started' });
    return track;
  }

  #stop(track: Track, at: number): void {
    track.stopped = true;
    this.#record(track, { k: 'actor', seq: ++track.seq, at, state: 'stopped' });
    this.#finished.push(track.sandboxId);
    while (this.#finished.length > this.#keepFinished) this.#forget(this.#finished.shift()!);
  }

  #forget(sandboxId: string): void {
    const i = this.#finished.indexOf(sandboxId);
    if (i >= 0) this.#finished.splice(i, 1);
    this.#bySandbox.delete(sandboxId);
  }

  #record(track: Track, raw: Raw): void {
    track.ring[track.next] = raw;
    track.next = (track.next + 1) % this.#size;
    if (this.#subs.size === 0) return;
    let entry: InspectEntry | undefined;
    let frame: Buffer | undefined;
    const make = () => (frame ??= Buffer.from(notification('inspect.event', (entry ??= this.#wire(track, raw)))));
    for (const { subscriber, sandboxId } of this.#subs.values()) {
      if (subscriber.teamId !== null && subscriber.teamId !== track.teamId) continue;
      if (sandboxId !== null && sandboxId !== track.sandboxId) continue;
      subscriber.deliverInspect((entry ??= this.#wire(track, raw)), make);
    }
  }

  #wire(t: Track, raw: Raw): InspectEntry {
    const base = { sandboxId: t.sandboxId, seq: raw.seq, at: raw.at };
    switch (raw.k) {
      case 'actor':
        return { kind: 'actor', ...base, state: raw.state };
      case 'event': {
        const { type, ...rest } = raw.event as { type: string } & Record<string, unknown>;
        return { kind: 'event', ...base, type, from: raw.from, payload: sanitize(rest) };
      }
      case 'snapshot':
        return {
          kind: 'snapshot',
          ...base,
          value: raw.value,
          status: statusFor(raw.value, raw.machine),
          step: stepOf(raw.value),
          tags: [...raw.tags],
        };
    }
  }
}

export function createInspectionFeed(opts?: InspectionFeedOptions): InspectionFeed {
  return new InspectionFeed(opts);
}
