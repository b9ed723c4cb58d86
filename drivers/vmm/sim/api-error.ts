import type { VersionTraits } from './version.ts';

// How the simulated VMM fails: an error chain (top-level message first, root cause
// last) and the kind of the root error, which v53 maps to a status code (§1.2).

export type RootKind =
  | 'VmNotCreated'
  | 'VmMissingConfig'
  | 'VmNotRunning'
  | 'VmAlreadyCreated'
  | 'InvalidStateTransition'
  | 'VmRestoring'
  | 'ConfigValidation'
  | 'ConfigValidationConflict'
  | 'NoDeviceToRemove'
  | 'Internal';

export class ApiError extends Error {
  readonly root: RootKind;
  readonly chain: readonly string[];
  constructor(root: RootKind, chain: string[]) {
    super(chain.join(': '));
    this.root = root;
    this.chain = chain;
  }
}

/** An internal API failure: "Error from API" → the action's message → the causes. */
export function apiFailure(root: RootKind, action: string, ...causes: string[]): ApiError {
  return new ApiError(root, ['Error from API', action, ...causes]);
}

/** Errors the HTTP layer produces itself: bad method, bad body, unknown route. */
export class HttpFailure extends Error {
  readonly status: 400 | 404 | 429;
  readonly chain: readonly string[];
  constructor(status: 400 | 404 | 429, chain: string[]) {
    super(chain.join(': '));
    this.status = status;
    this.chain = chain;
  }
}

export function statusOf(err: ApiError, traits: VersionTraits): number {
  if (!traits.mappedStatusCodes) return 500;
  switch (err.root) {
    case 'VmNotCreated':
    case 'VmMissingConfig':
    case 'NoDeviceToRemove':
      return 404;
    case 'ConfigValidationConflict':
      return 409;
    case 'ConfigValidation':
      return 400;
    default:
      return 500;
  }
}

/** v40–v46: the top-level message as plain text; v47+: the whole chain as a JSON array. */
export function errorBody(chain: readonly string[], traits: VersionTraits): string {
  return traits.jsonErrorChain ? JSON.stringify(chain) : (chain[0] ?? '');
}
