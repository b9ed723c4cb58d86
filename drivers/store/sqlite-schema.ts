import Database from 'better-sqlite3';
import { StoreError, type StoreFailure } from './store-error.ts';

/** Written into the file header (PRAGMA application_id): "SBXD". A file without it is not ours. */
export const APPLICATION_ID = 0x53425844;

export interface Migration {
  /** PRAGMA user_version once applied: 1, 2, 3 … in order, none skipped. */
  version: number;
  description: string;
  up(db: Database.Database): void;
}

/** The schema's history. Append only: a released migration is never edited, a change is a new one. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'sandboxes (one row per sandbox) and the resource ledger',
    up(db) {
      db.exec(`
        CREATE TABLE sandboxes (
          id          TEXT PRIMARY KEY NOT NULL,
          team_id     TEXT NOT NULL,
          template_id TEXT NOT NULL,
          status      TEXT NOT NULL,
          step        TEXT NOT NULL,
          op_id       TEXT,
          incarnation INTEGER NOT NULL,
          slot        INTEGER,
          updated_ms  INTEGER NOT NULL,
          doc         TEXT NOT NULL -- the rest of the record, JSON
        ) STRICT;
        CREATE INDEX sandboxes_by_status ON sandboxes (status);
        CREATE INDEX sandboxes_by_team ON sandboxes (team_id);
        CREATE TABLE resources (
          kind       TEXT NOT NULL,
          name       TEXT NOT NULL,
          sandbox_id TEXT,
          state      TEXT NOT NULL CHECK (state IN ('intended', 'present', 'releasing', 'released')),
          updated_ms INTEGER NOT NULL,
          PRIMARY KEY (kind, name)
        ) STRICT;
        CREATE INDEX resources_by_sandbox ON resources (sandbox_id);
      `);
    },
  },
  {
    version: 2,
    description: 'agent epochs: one per start, the high part of every sandbox incarnation',
    up(db) {
      db.exec(`
        CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) STRICT;
        INSERT INTO meta (key, value) VALUES ('epoch', 0);
      `);
    },
  },
];

/** Maps a SQLite error met while opening or using the file to the store's refusal. */
export function storeFailure(err: unknown, otherwise: StoreFailure): StoreFailure {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return otherwise;
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) return 'corrupt';
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return 'locked';
  return otherwise;
}

function refuse(path: string, err: unknown, otherwise: StoreFailure, doing: string): StoreError {
  if (err instanceof StoreError) return err;
  const failure = storeFailure(err, otherwise);
  const why = err instanceof Error ? err.message : String(err);
  const hint: Partial<Record<StoreFailure, string>> = {
    corrupt: 'it is damaged or not a database; move it aside and reconcile from the host, do not start on it',
    locked: 'another process holds it; is another sandboxd running on this data dir?',
  };
  return new StoreError(failure, `${path}: ${doing}: ${why}${hint[failure] === undefined ? '' : ` (${hint[failure]})`}`, { cause: err });
}

function checkMigrations(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration list out of order: #${i} has version ${m.version}`);
  });
}

/**
 * Opens `path` as sandboxd's database or refuses (StoreError): a file that is
 * not SQLite or fails its quick check, another application's database, or a
 * schema newer than `migrations` know. The file is not modified before these
 * checks pass. Then WAL, synchronous=FULL, and the pending migrations, each
 * in its own transaction with its user_version. The connection holds the file
 * exclusively for its life, so a second agent on the same data dir is refused.
 */
export function openDatabase(path: string, opts: { migrations?: readonly Migration[]; busyTimeoutMs?: number; synchronous?: 'FULL' | 'NORMAL' } = {}): Database.Database {
  const migrations = opts.migrations ?? MIGRATIONS;
  checkMigrations(migrations);
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: opts.busyTimeoutMs ?? 2_000 });
  } catch (err) {
    throw refuse(path, err, 'unopenable', 'cannot open');
  }
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    identify(db, path, migrations.length);
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new StoreError('unopenable', `${path}: SQLite refused WAL mode here (journal_mode is ${String(mode)})`);
    db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
    migrate(db, path, migrations);
    // Take the write lock now (exclusive mode keeps it), not at the first transition.
    db.exec('BEGIN IMMEDIATE; COMMIT');
    return db;
  } catch (err) {
    db.close();
    throw refuse(path, err, 'unopenable', 'cannot open');
  }
}

/** Decides whose file this is, before anything is written to it. */
function identify(db: Database.Database, path: string, latest: number): void {
  let appId: number;
  let version: number;
  let tables: string[];
  try {
    appId = db.pragma('application_id', { simple: true }) as number;
    version = db.pragma('user_version', { simple: true }) as number;
    tables = (db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table'`).all() as { name: string }[]).map((r) => r.name);
    const check = db.pragma('quick_check') as { quick_check: string }[];
    const problems = check.map((r) => r.quick_check).filter((m) => m !== 'ok');
    if (problems.length > 0) throw new StoreError('corrupt', `${path}: SQLite quick_check failed: ${problems.slice(0, 3).join('; ')} (it is damaged; move it aside, do not start on it)`);
  } catch (err) {
    throw refuse(path, err, 'corrupt', 'cannot read');
  }
  const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
  if (appId === 0 && version === 0 && tables.length === 0) return; // new, empty
  if (appId !== APPLICATION_ID) {
    const whose = appId === 0 ? 'has no application id' : `has application id ${hex(appId)}`;
    const has = tables.length === 0 ? '' : ` and tables ${tables.slice(0, 5).join(', ')}`;
    throw new StoreError('foreign', `${path} is not a sandboxd database: it ${whose} (sandboxd's is ${hex(APPLICATION_ID)})${has}; refusing to touch it`);
  }
  if (version > latest) {
    throw new StoreError('newer_schema', `${path} has schema version ${version}, newer than this agent's ${latest}: it was written by a newer sandboxd; upgrade the agent rather than start this one on it`);
  }
  if (version === 0) throw new StoreError('corrupt', `${path} carries sandboxd's application id but no schema version`);
}

function migrate(db: Database.Database, path: string, migrations: readonly Migration[]): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (const m of migrations.slice(current)) {
    try {
      db.transaction(() => {
        m.up(db);
        db.pragma(`user_version = ${m.version}`);
        db.pragma(`application_id = ${APPLICATION_ID}`);
      }).immediate();
    } catch (err) {
      throw new StoreError('migration_failed', `${path}: migration ${m.version} (${m.description}) failed, left at version ${m.version - 1}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
}
