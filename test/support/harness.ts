import assert from 'node:assert/strict';
import { Supervisor, type SupervisorOptions } from '../../actors/supervisor.ts';
import type { StepImpl } from '../../actors/steps.ts';
import type { SandboxStatus } from '../../actors/api.ts';
import { createFakeDrivers, type FakeDrivers, type FakeHostOptions } from '../../drivers/fake/index.ts';
import type { Resources } from '../../machines/sandbox/context.ts';
import type { StepName } from '../../machines/sandbox/steps.ts';
import type { SandboxSnapshot } from '../../actors/view.ts';
import { status } from '../../actors/view.ts';

export const TEAM = { teamId: 'acme' };

export interface Harness extends FakeDrivers {
  sup: Supervisor;
}

export function harness(
  opts: { host?: FakeHostOptions; supervisor?: Partial<SupervisorOptions> } = {},
): Harness {
  const fakes = createFakeDrivers(opts.host);
  const sup = new Supervisor({ drivers: fakes.drivers, slots: 64, ...opts.supervisor });
  return { ...fakes, sup };
}

/** Resolves when the sandbox's snapshot satisfies `pred` (or it is gone and `pred(undefined)` holds). */
export function waitFor(
  h: Harness,
  id: string,
  pred: (s: SandboxSnapshot | undefined) => boolean,
  what = 'condition',
  timeoutMs = 5_000,
): Promise<void> {
  if (pred(h.sup.snapshotOf(id))) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}; sandbox is at ${h.sup.snapshotOf(id) === undefined ? 'gone' : JSON.stringify(h.sup.snapshotOf(id)!.value)}`));
    }, timeoutMs);
    const off = h.sup.onState((change) => {
      if (change.sandboxId === id && pred(h.sup.snapshotOf(id))) {
        clearTimeout(timer);
        off();
        resolve();
      }
    });
  });
}

export const waitStatus = (h: Harness, id: string, want: SandboxStatus | 'gone', timeoutMs?: number) =>
  waitFor(h, id, (s) => (s === undefined ? want === 'gone' : status(s) === want), `status ${want}`, timeoutMs);

/** Everything the fake host holds, as owned resources: one entry per thing. */
function hostHoldings(h: Harness): string[] {
  const l = h.host.ledger;
  return [
    ...[...l.loops.values()].map((x) => `loop:${x.imagePath}`),
    ...[...l.disks.values()].map((d) => `disk:${d.name}`),
    ...[...l.cows].map((c) => `cow:${c}`),
    ...[...l.networks].map((n) => `network:${n}`),
    ...[...l.vms.keys()].map((v) => `vm:${v}`),
    ...[...l.sandboxDirs].map((d) => `dir:${d}`),
    ...[...l.stagingDirs].map((d) => `staging:${d}`),
    ...[...h.sup.slots.held().keys()].map((s) => `slot:${s}`),
  ].sort();
}

/** What the sandboxes' contexts say they hold, in the same form. */
function contextHoldings(h: Harness): string[] {
  const out: string[] = [];
  const loops = new Set<string>();
  for (const id of h.sup.ids()) {
    const r: Resources = h.sup.snapshotOf(id)!.context.res;
    if (r.loopDevice !== null && r.originPath !== null) loops.add(`loop:${r.originPath}`);
    if (r.disk !== null) out.push(`disk:${r.disk.name}`);
    if (r.cowPath !== null) out.push(`cow:${r.cowPath}`);
    if (r.network !== null) out.push(`network:${r.network.slot}`);
    // A VMM that died on its own is gone from the host before stopVm cleans up after it.
    if (r.vm !== null && !h.sup.snapshotOf(id)!.context.vmExited) out.push(`vm:${id}`);
    if (r.sandboxDir) out.push(`dir:${id}`);
    if (r.stagingDir !== null) out.push(`staging:${r.stagingDir}`);
    if (r.slot !== null) out.push(`slot:${r.slot}`);
  }
  return [...out, ...loops].sort();
}

/**
 * The ledger matches the state: every resource the host holds is one a live
 * sandbox says it holds, and the reverse; loop refcounts equal their holders.
 */
export function assertLedgerMatches(h: Harness, where = ''): void {
  assert.deepEqual(hostHoldings(h), contextHoldings(h), `host ledger differs from sandbox state ${where}`);
  const holders = new Map<string, number>();
  for (const id of h.sup.ids()) {
    const r = h.sup.snapshotOf(id)!.context.res;
    if (r.loopDevice !== null && r.originPath !== null) holders.set(r.originPath, (holders.get(r.originPath) ?? 0) + 1);
  }
  assert.deepEqual(new Map([...h.sup.loops.held()].sort()), new Map([...holders].sort()), `loop refcounts ${where}`);
  assert.deepEqual(h.host.ledger.problems(new Map()), [], `host contradictions ${where}`);
}

/** Resource kinds a sandbox in a stable status must hold, exactly. */
export function assertHoldsForStatus(h: Harness, id: string): void {
  const snapshot = h.sup.snapshotOf(id);
  if (snapshot === undefined) {
    const held = h.host.ledger.heldBy(id);
    assert.deepEqual(held, { disks: [], cows: [], vm: null, sandboxDir: false, stagingDirs: [] }, `${id} is gone but holds things`);
    assert.ok(![...h.sup.slots.held().values()].includes(id), `${id} is gone but holds a slot`);
    return;
  }
  const r = snapshot.context.res;
  const kinds = {
    loop: r.loopDevice !== null,
    disk: r.disk !== null,
    cow: r.cowPath !== null,
    slot: r.slot !== null,
    network: r.network !== null,
    vm: r.vm !== null,
    dir: r.sandboxDir,
    staging: r.stagingDir !== null,
  };
  const st = status(snapshot);
  // A staging dir whose removal failed in a rollback stays held until the next one or a destroy.
  if (st === 'running') {
    assert.deepEqual({ ...kinds, staging: false }, { loop: true, disk: true, cow: true, slot: true, network: true, vm: true, dir: true, staging: false }, `running ${id}`);
  } else if (st === 'paused') {
    assert.deepEqual(kinds, { loop: false, disk: false, cow: true, slot: true, network: false, vm: false, dir: true, staging: false }, `paused ${id}`);
  }
}

/**
 * Holds every step until the test lets it run (for real, on the fakes) or
 * fails it, so a test can walk a machine path event by event.
 */
export class StepGate {
  #auto = false;
  readonly #waiting = new Map<string, Array<{ run: () => void; fail: (err: Error) => void }>>();
  readonly #arrivals = new Set<() => void>();

  wrap = (name: StepName, impl: StepImpl): StepImpl => {
    return (context, signal) =>
      new Promise((resolve, reject) => {
        const key = `${context.id}:${name}`;
        let cancelled = false;
        const entry = {
          // A step told to run after a cancel stands for a driver call that finished before it saw the abort.
          run: () => impl(context, cancelled ? new AbortController().signal : signal).then(resolve, reject),
          fail: (err: Error) => reject(err),
        };
        if (this.#auto) return entry.run();
        const list = this.#waiting.get(key) ?? [];
        list.push(entry);
        this.#waiting.set(key, list);
        signal.addEventListener('abort', () => {
          // A cancel (destroy during a step) is cooperative: the step still settles when the
          // test says so, as a real driver call would. Leaving the state drops the step.
          if ((signal.reason as { code?: string } | undefined)?.code === 'cancelled') {
            cancelled = true;
            return;
          }
          const l = this.#waiting.get(key);
          const i = l?.indexOf(entry) ?? -1;
          if (l !== undefined && i >= 0) l.splice(i, 1);
          reject(signal.reason);
        }, { once: true });
        for (const wake of [...this.#arrivals]) wake();
      });
  };

  /** From now on every step runs at once, including those held now. */
  releaseAll(): void {
    this.#auto = true;
    for (const list of this.#waiting.values()) for (const entry of list.splice(0)) entry.run();
  }

  /** Waits until `step` of `id` is held, then takes it. */
  async take(id: string, step: StepName, timeoutMs = 5_000): Promise<{ run: () => void; fail: (err: Error) => void }> {
    const key = `${id}:${step}`;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const entry = this.#waiting.get(key)?.shift();
      if (entry !== undefined) return entry;
      if (Date.now() > deadline) throw new Error(`step ${step} of ${id} was never started; held: ${[...this.#waiting].filter(([, l]) => l.length > 0).map(([k]) => k).join(', ')}`);
      await new Promise<void>((resolve) => {
        const wake = () => (this.#arrivals.delete(wake), clearTimeout(t), resolve());
        const t = setTimeout(wake, Math.max(0, deadline - Date.now()) + 1);
        this.#arrivals.add(wake);
      });
    }
  }
}

/** Swallows the rejection of an operation whose outcome the test checks another way. */
export const settle = (p: Promise<unknown>): Promise<unknown> => p.then((v) => v, (e: unknown) => e);
