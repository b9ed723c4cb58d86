import { SANDBOX_ID } from '../../core/ids.ts';
import { StoreError } from './store-error.ts';

/**
 * The resource ledger: one row per host resource the agent makes (loop, dm
 * device, CoW file, namespace, VMM process, dir …). The runtime commits an
 * intent before each side effect and the outcome after it, so that after a
 * crash every resource that may exist is known, and start-up can compare the
 * host with the ledger.
 *
 *   (none | released) ─intend─▶ intended ─markPresent─▶ present
 *   intended | present ─markReleasing─▶ releasing ─markReleased─▶ released
 *
 * intended → releasing is the path of an effect whose outcome is unknown (it
 * failed, or the agent died during it): it must be undone all the same.
 * Repeating the move that led to the current state is a no-op, so a step
 * re-run after a crash can repeat its ledger calls.
 */
export interface ResourceLedger {
  intend(kind: string, name: string, sandboxId: string | null): LedgerEntry;
  markPresent(kind: string, name: string, sandboxId: string | null): LedgerEntry;
  markReleasing(kind: string, name: string, sandboxId: string | null): LedgerEntry;
  markReleased(kind: string, name: string, sandboxId: string | null): LedgerEntry;
  /** Every row (released ones too), or those of one sandbox; null = the agent's shared resources. */
  ledger(sandboxId?: string | null): LedgerEntry[];
}

export const LEDGER_STATES = ['intended', 'present', 'releasing', 'released'] as const;
export type LedgerState = (typeof LEDGER_STATES)[number];

export interface LedgerEntry {
  kind: string;
  name: string;
  /** The owner; null for a resource the agent shares between sandboxes (a template's loop device). */
  sandboxId: string | null;
  state: LedgerState;
  updatedAt: string;
}

/** Where each move may start from. */
export const MOVES: Record<LedgerState, readonly (LedgerState | 'none')[]> = {
  intended: ['none', 'released'],
  present: ['intended'],
  releasing: ['intended', 'present'],
  released: ['releasing'],
};

/** Kinds are short identifiers ("loop", "dm", "netns"); names are paths or device names. */
const KIND = /^[a-z][a-z0-9_]{0,31}$/;
const MAX_NAME = 4096;

export function checkKey(kind: string, name: string, sandboxId: string | null): void {
  if (typeof kind !== 'string' || !KIND.test(kind)) throw new StoreError('invalid_input', `invalid resource kind: ${JSON.stringify(kind)}`);
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME || name.includes('\0')) {
    throw new StoreError('invalid_input', `invalid resource name: ${JSON.stringify(name)}`);
  }
  if (sandboxId !== null && (typeof sandboxId !== 'string' || !SANDBOX_ID.test(sandboxId))) {
    throw new StoreError('invalid_input', `invalid sandbox id: ${JSON.stringify(sandboxId)}`);
  }
}

/**
 * Decides a move: 'write' to apply it, 'same' when it is already done. Throws
 * invalid_transition for a move the graph lacks or one by another owner.
 */
export function decideMove(
  current: { state: LedgerState; sandboxId: string | null } | undefined,
  to: LedgerState,
  key: { kind: string; name: string; sandboxId: string | null },
): 'write' | 'same' {
  const what = `${key.kind} ${JSON.stringify(key.name)}`;
  // A released row may be taken by a new owner (intend); every other move is the owner's.
  const reuse = to === 'intended' && current?.state === 'released';
  if (current !== undefined && !reuse && current.sandboxId !== key.sandboxId) {
    throw new StoreError(
      'invalid_transition',
      `${what} is ${current.state} for ${current.sandboxId ?? 'the agent'}, not ${key.sandboxId ?? 'the agent'}: cannot mark it ${to}`,
    );
  }
  if (current?.state === to) return 'same';
  const from = current?.state ?? 'none';
  if (!MOVES[to].includes(from)) {
    const state = current === undefined ? 'not in the ledger' : `${current.state}`;
    throw new StoreError('invalid_transition', `${what} is ${state}: cannot mark it ${to} (allowed from ${MOVES[to].join(' or ')})`);
  }
  return 'write';
}
