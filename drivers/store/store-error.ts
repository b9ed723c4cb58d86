import { SandboxdError, type ErrorCode } from '../../core/errors.ts';

/**
 * Why the store refused. The first six mean the agent must not start on this
 * database: acting on a guess about sandboxes and host resources is how they leak.
 */
export type StoreFailure =
  | 'corrupt' // not a SQLite file, or SQLite finds it damaged
  | 'foreign' // a SQLite database of another application
  | 'newer_schema' // written by a newer sandboxd; this one cannot read it safely
  | 'migration_failed' // a migration threw; the file is left at its previous version
  | 'locked' // another process (another agent?) holds the database
  | 'unopenable' // missing permissions, a directory in the way, …
  | 'bad_record' // a stored row does not parse as a record
  | 'invalid_transition' // a ledger move the state graph does not allow
  | 'invalid_input' // a record or ledger key that would not be stored as given
  | 'io' // a read or write failed (disk full, I/O error): the transition is not durable
  | 'closed';

const codeOf: Record<StoreFailure, ErrorCode> = {
  corrupt: 'internal',
  foreign: 'internal',
  newer_schema: 'internal',
  migration_failed: 'internal',
  locked: 'internal',
  unopenable: 'internal',
  bad_record: 'internal',
  invalid_transition: 'invalid_argument',
  invalid_input: 'invalid_argument',
  io: 'internal',
  closed: 'internal',
};

/** A SandboxdError whose `failure` tells the store's refusals apart (the agent's start-up matches on it). */
export class StoreError extends SandboxdError {
  readonly failure: StoreFailure;
  constructor(failure: StoreFailure, message: string, opts?: { cause?: unknown }) {
    super(codeOf[failure], message, opts);
    this.name = 'StoreError';
    this.failure = failure;
  }
}
