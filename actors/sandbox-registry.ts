import { createActor, type Actor, type InspectionEvent } from 'xstate';
import { SandboxdError, type ErrorInfo } from '../core/errors.ts';
import { newOpId } from '../core/ids.ts';
import type { Logger } from '../core/log.ts';
import type { SandboxStore } from '../drivers/store/store.ts';
import type { VmmDriver } from '../drivers/vmm/vmm.ts';
import type { SandboxInput } from '../machines/sandbox/context.ts';
import type { SandboxEmitted, SandboxEvent } from '../machines/sandbox/events.ts';
import type { sandboxMachine } from '../machines/sandbox/machine.ts';
import type { LifecycleEvent, StateChange } from './api.ts';
import type { ResourceNames } from './ledger-rows.ts';
import { record, status, stepOf, type SandboxSnapshot } from './view.ts';

type SandboxLogic = typeof sandboxMachine;

/** Incarnation = epoch × this + the count of actors started in the epoch. */
const INCARNATIONS_PER_EPOCH = 1_000_000_000;

export interface Entry {
  actor: Actor<SandboxLogic>;
  teamId: string;
  /** Unique across sandboxes and agent starts: a command or result naming another one is stale. */
  incarnation: number;
  /** The snapshot last written to the store, so one state is saved once. */
  saved: SandboxSnapshot | null;
  seq: number;
  /** The step last announced. */
  step: string;
  /** stepOf the last snapshot asked about: intent and announcement of one state share it. */
  stepMemo: { snapshot: SandboxSnapshot | null; step: string };
  log: Logger | null;
  /** Operations awaiting a reply from this sandbox. */
  ops: Set<string>;
  unwatchVm: (() => void) | null;
}

/** A command as the supervisor sends it; the registry gives it its operation id. */
export type Command = DistributiveOmit<Exclude<SandboxEvent, { type: 'ACTIVITY' | 'VM_EXITED' | 'STOP_TIMERS' }>, 'opId'>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

interface Pending {
  sandboxId: string;
  resolve: () => void;
  reject: (err: SandboxdError) => void;
}

export interface RegistryOptions {
  store: SandboxStore;
  /** Driver-given host names for the ledger rows of each record. */
  names: ResourceNames;
  vmm: VmmDriver;
  log: Logger;
  inspect?: (event: InspectionEvent) => void;
  /** A sandbox reached its final state and left the registry. */
  onGone(sandboxId: string): void;
}

/**
 * The sandbox actors and their plumbing: starting them, pairing each command
 * with the machine's reply, persisting each transition before announcing it,
 * relaying lifecycle events, and feeding VMM exits back in. Policy (who may do
 * what, when) stays with the supervisor.
 */
export class SandboxRegistry {
  readonly #entries = new Map<string, Entry>();
  readonly #pending = new Map<string, Pending>();
  readonly #stateListeners = new Set<(change: StateChange) => void>();
  readonly #eventListeners = new Set<(event: LifecycleEvent) => void>();

  readonly #epoch: number;
  #started = 0;

  constructor(private readonly opts: RegistryOptions) {
    this.#epoch = opts.store.nextEpoch();
  }

  get(id: string): Entry | undefined {
    return this.#entries.get(id);
  }

  has(id: string): boolean {
    return this.#entries.has(id);
  }

  entries(): Array<[string, Entry]> {
    return [...this.#entries.entries()];
  }

  /** Starts a sandbox actor, fresh from `input` or from a `restored` snapshot. */
  start(logic: SandboxLogic, input: SandboxInput, restored?: SandboxSnapshot): Entry {
    const actor = createActor(logic, {
      input,
      ...(restored === undefined ? {} : { snapshot: restored }),
      ...(this.opts.inspect === undefined ? {} : { inspect: this.opts.inspect }),
    });
    const incarnation = this.#epoch * INCARNATIONS_PER_EPOCH + ++this.#started;
    const entry: Entry = {
      actor,
      teamId: input.teamId,
      incarnation,
      saved: null,
      seq: 0,
      step: '',
      stepMemo: { snapshot: null, step: '' },
      log: null,
      ops: new Set(),
      unwatchVm: null,
    };
    this.#entries.set(input.id, entry);
    actor.on('reply', (e) => this.#onReply(e as Extract<SandboxEmitted, { type: 'reply' }>));
    actor.on('lifecycle', (e) => {
      const { kind, reason } = e as Extract<SandboxEmitted, { type: 'lifecycle' }>;
      const event: LifecycleEvent = { sandboxId: input.id, teamId: input.teamId, type: kind };
      this.emit(reason === undefined ? event : { ...event, reason });
    });
    actor.subscribe({
      next: (snapshot) => this.#onSnapshot(input.id, entry, snapshot),
      error: (err) => this.#onActorError(input.id, entry, err),
    });
    actor.start();
    // A restored actor announces nothing until it moves: record where it starts.
    if (restored !== undefined) this.#onSnapshot(input.id, entry, actor.getSnapshot());
    return entry;
  }

  /**
   * Writes the sandbox's current state to the store now. The step runner calls
   * it before each step touches the host, so after a crash the record names the
   * step that may have been under way (its intent) and what was held before it.
   */
  persist(id: string): number | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    const snapshot = entry.actor.getSnapshot();
    if (entry.saved !== snapshot && snapshot.status === 'active') {
      // Throws: a step whose intent is not on disk must not run.
      this.opts.store.save(record(snapshot, entry.incarnation, this.opts.names, stepMemo(entry, snapshot)));
      entry.saved = snapshot;
    }
    return entry.incarnation;
  }

  /** Sends a command and resolves or rejects with the machine's reply to it. */
  command(sandboxId: string, entry: Entry, event: Command): Promise<void> {
    const opId = newOpId();
    const done = this.reply(sandboxId, entry, opId);
    entry.actor.send({ opId, ...event } as SandboxEvent);
    return done;
  }

  /** The machine's reply to operation `opId` (a create's comes with its input). */
  reply(sandboxId: string, entry: Entry, opId: string): Promise<void> {
    entry.ops.add(opId);
    return new Promise<void>((resolve, reject) => this.#pending.set(opId, { sandboxId, resolve, reject }));
  }

  /** Resolves once the sandbox is in no transitional state. */
  settled(entry: Entry): Promise<void> {
    const busy = (s: SandboxSnapshot) => s.status === 'active' && s.hasTag('busy');
    if (!busy(entry.actor.getSnapshot())) return Promise.resolve();
    return new Promise((resolve) => {
      const sub = entry.actor.subscribe({
        next: (s) => {
          if (!busy(s)) (sub.unsubscribe(), resolve());
        },
        complete: () => resolve(),
        error: () => resolve(),
      });
    });
  }

  /** Once a VM exists: its unasked exit reaches the machine as VM_EXITED. */
  watchVm(id: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined) return;
    entry.unwatchVm?.();
    entry.unwatchVm = this.opts.vmm.watchExit(id, (exit) => {
      entry.unwatchVm = null;
      entry.actor.send({ type: 'VM_EXITED', reason: `VMM exited (code ${exit.code}, signal ${exit.signal})` });
    });
  }

  unwatchVm(id: string): void {
    const entry = this.#entries.get(id);
    if (entry?.unwatchVm) {
      entry.unwatchVm();
      entry.unwatchVm = null;
    }
  }

  emit(event: LifecycleEvent): void {
    const step = this.#entries.get(event.sandboxId)?.step ?? 'gone';
    this.logFor(event.sandboxId).info({ step, event: event.type, reason: event.reason }, 'lifecycle event');
    for (const listener of this.#eventListeners) listener(event);
  }

  /** The sandbox's child logger, made on first use. */
  logFor(id: string): Logger {
    const entry = this.#entries.get(id);
    if (entry === undefined) return this.opts.log.child({ sandboxId: id });
    return (entry.log ??= this.opts.log.child({ sandboxId: id }));
  }

  onState(listener: (change: StateChange) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  onEvent(listener: (event: LifecycleEvent) => void): () => void {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  #onSnapshot(id: string, entry: Entry, snapshot: SandboxSnapshot): void {
    const step = stepMemo(entry, snapshot);
    if (step === entry.step && snapshot.status === 'active') return;
    entry.step = step;
    entry.seq++;
    const st = status(snapshot);
    // Saved before it is announced: whoever hears of a state can find it in the store.
    if (snapshot.status === 'done') {
      this.#durably(id, entry, () => this.opts.store.remove(id));
      this.unwatchVm(id);
      this.#entries.delete(id);
      this.opts.onGone(id);
    } else {
      this.#save(entry, snapshot);
    }
    // The level check first: a sandbox's child logger and the line's object cost more than the transition.
    if (this.opts.log.isLevelEnabled('info')) this.logFor(id).info({ step, status: st }, 'state');
    if (this.#stateListeners.size === 0) return;
    const change: StateChange = { sandboxId: id, teamId: entry.teamId, status: st, step, at: new Date().toISOString(), seq: entry.seq };
    for (const listener of this.#stateListeners) listener(change);
  }

  #save(entry: Entry, snapshot: SandboxSnapshot): void {
    // A rebuilt sandbox's record stays as found until RECOVER moves it: a crash meanwhile decides again from it.
    if (entry.saved === snapshot || snapshot.status !== 'active' || snapshot.value === 'recovering') return;
    entry.saved = snapshot;
    this.#durably(snapshot.context.id, entry, () =>
      this.opts.store.save(record(snapshot, entry.incarnation, this.opts.names, stepMemo(entry, snapshot))),
    );
  }

  /**
   * A transition that already happened cannot be undone because its record did
   * not reach the disk: it is logged loudly, and the next save carries it.
   * (A failed intent, by contrast, fails its step: see StepRunner.)
   */
  #durably(id: string, entry: Entry, write: () => void): void {
    try {
      write();
    } catch (err) {
      entry.saved = null;
      this.logFor(id).error({ step: entry.step, err: err instanceof Error ? err.message : String(err) }, 'store write failed');
    }
  }

  #onActorError(id: string, entry: Entry, err: unknown): void {
    // Every invoke has onError, so this is a bug in an action or guard: contain it to this sandbox.
    this.logFor(id).error({ step: entry.step, err: err instanceof Error ? err.stack : String(err) }, 'sandbox actor failed');
    const failure = new SandboxdError('internal', `sandbox actor failed: ${err instanceof Error ? err.message : String(err)}`);
    for (const opId of entry.ops) {
      const p = this.#pending.get(opId);
      this.#pending.delete(opId);
      p?.reject(failure);
    }
    this.emit({ sandboxId: id, teamId: entry.teamId, type: 'error', reason: failure.message });
  }

  #onReply(e: Extract<SandboxEmitted, { type: 'reply' }>): void {
    for (const opId of e.opIds) {
      const p = this.#pending.get(opId);
      if (p === undefined) continue;
      this.#pending.delete(opId);
      this.#entries.get(p.sandboxId)?.ops.delete(opId);
      if (e.ok) p.resolve();
      else p.reject(SandboxdError.from(e.error as ErrorInfo));
    }
  }
}

function stepMemo(entry: Entry, snapshot: SandboxSnapshot): string {
  const memo = entry.stepMemo;
  if (memo.snapshot !== snapshot) {
    memo.snapshot = snapshot;
    memo.step = stepOf(snapshot.value);
  }
  return memo.step;
}
