import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { SANDBOX_ID } from '../../core/ids.ts';
import { checkKey, decideMove, type LedgerEntry, type LedgerState, type ResourceLedger } from './ledger.ts';
import { checkRecord, parseRow } from './record-schema.ts';
import { openDatabase, storeFailure, type Migration } from './sqlite-schema.ts';
import { StoreError } from './store-error.ts';
import type { LedgerRow, SandboxRecord, SandboxStore } from './store.ts';

export const DB_FILE = 'sandboxd.db';

export interface SqliteStoreOptions {
  /** How long to wait for a lock another process holds before refusing (default 2 s). */
  busyTimeoutMs?: number;
  /** Tests: another migration list than the agent's. */
  migrations?: readonly Migration[];
  /** FULL (default) survives power loss per commit; NORMAL exists for the benchmark's comparison only. */
  synchronous?: 'FULL' | 'NORMAL';
}

interface SandboxRow {
  id: string;
  teamId: string;
  templateId: string;
  status: string;
  step: string;
  opId: string | null;
  incarnation: number;
  slot: number | null;
  doc: string;
}

interface ResourceRow {
  kind: string;
  name: string;
  sandboxId: string | null;
  state: LedgerState;
  updatedMs: number;
}

const SANDBOX_COLUMNS = `id, team_id AS teamId, template_id AS templateId, status, step, op_id AS opId, incarnation, slot, doc`;
const RESOURCE_COLUMNS = `kind, name, sandbox_id AS sandboxId, state, updated_ms AS updatedMs`;

/**
 * The durable SandboxStore: `<dataDir>/sandboxd.db`, one row per sandbox
 * written in its own committed transaction on every transition (WAL,
 * synchronous=FULL: a save that returned survives a crash of the agent or
 * the host), with the sandbox's rows of the resource ledger in the same
 * transaction; a removed sandbox takes its rows with it. Opening refuses a corrupt, foreign or
 * newer database (StoreError): the agent must not start on one.
 */
export class SqliteStore implements SandboxStore, ResourceLedger {
  readonly path: string;
  #db: Database.Database | null;
  readonly #sql: ReturnType<typeof prepare>;

  constructor(dataDir: string, opts: SqliteStoreOptions = {}) {
    try {
      mkdirSync(dataDir, { recursive: true });
    } catch (err) {
      throw new StoreError('unopenable', `cannot make data dir ${dataDir}: ${(err as Error).message}`, { cause: err });
    }
    this.path = join(dataDir, DB_FILE);
    this.#db = openDatabase(this.path, opts);
    this.#sql = prepare(this.#db);
  }

  save(record: SandboxRecord): void {
    const r = checkRecord(record);
    const doc = JSON.stringify({
      vcpus: r.vcpus,
      memoryMB: r.memoryMB,
      diskSizeMB: r.diskSizeMB,
      timeoutSec: r.timeoutSec,
      hostIp: r.hostIp,
      rootfsDevice: r.rootfsDevice,
      resources: r.resources,
      createdAt: r.createdAt,
      lastActiveAt: r.lastActiveAt,
      metadata: r.metadata,
      machine: r.machine,
      ledger: r.ledger,
    });
    const row = { id: r.id, teamId: r.teamId, templateId: r.templateId, status: r.status, step: r.step, opId: r.opId, incarnation: r.incarnation, slot: r.slot, doc, now: Date.now() };
    this.#use('save', () => this.#sql.save(row, r.ledger));
  }

  remove(sandboxId: string): void {
    if (typeof sandboxId !== 'string' || !SANDBOX_ID.test(sandboxId)) throw new StoreError('invalid_input', `invalid sandbox id: ${JSON.stringify(sandboxId)}`);
    this.#use('remove', () => this.#sql.removeAll(sandboxId));
  }

  /** Every record; throws bad_record naming each row that does not parse rather than skip it. */
  loadAll(): SandboxRecord[] {
    const rows = this.#use('load', () => this.#sql.all.all() as SandboxRow[]);
    return this.#parse(rows);
  }

  nextEpoch(): number {
    return this.#use('epoch', () => (this.#sql.bumpEpoch.get() as { value: number }).value);
  }

  get(sandboxId: string): SandboxRecord | undefined {
    const row = this.#use('load', () => this.#sql.one.get(sandboxId) as SandboxRow | undefined);
    return row === undefined ? undefined : this.#parse([row])[0];
  }

  intend(kind: string, name: string, sandboxId: string | null): LedgerEntry {
    return this.#move(kind, name, sandboxId, 'intended');
  }

  markPresent(kind: string, name: string, sandboxId: string | null): LedgerEntry {
    return this.#move(kind, name, sandboxId, 'present');
  }

  markReleasing(kind: string, name: string, sandboxId: string | null): LedgerEntry {
    return this.#move(kind, name, sandboxId, 'releasing');
  }

  markReleased(kind: string, name: string, sandboxId: string | null): LedgerEntry {
    return this.#move(kind, name, sandboxId, 'released');
  }

  ledger(sandboxId?: string | null): LedgerEntry[] {
    const rows = this.#use('ledger', () =>
      sandboxId === undefined ? this.#sql.ledgerAll.all() : sandboxId === null ? this.#sql.ledgerAgent.all() : this.#sql.ledgerOf.all(sandboxId),
    ) as ResourceRow[];
    return rows.map(entryOf);
  }

  /** The connection's durability settings as SQLite reports them (they are per connection). */
  durability(): { journalMode: string; synchronous: string; lockingMode: string } {
    return this.#use('read settings', () => {
      const db = this.#db!;
      const sync = db.pragma('synchronous', { simple: true }) as number;
      return {
        journalMode: String(db.pragma('journal_mode', { simple: true })),
        synchronous: ['OFF', 'NORMAL', 'FULL', 'EXTRA'][sync] ?? String(sync),
        lockingMode: String(db.pragma('locking_mode', { simple: true })),
      };
    });
  }

  /** Idempotent. Checkpoints the WAL into the main file. */
  close(): void {
    this.#db?.close();
    this.#db = null;
  }

  #move(kind: string, name: string, sandboxId: string | null, to: LedgerState): LedgerEntry {
    checkKey(kind, name, sandboxId);
    return this.#use('ledger', () => this.#sql.move.immediate(kind, name, sandboxId, to));
  }

  #parse(rows: SandboxRow[]): SandboxRecord[] {
    const records: SandboxRecord[] = [];
    const bad: string[] = [];
    for (const { doc, ...columns } of rows) {
      const parsed = parseRow(columns, doc);
      if (parsed.ok) records.push(parsed.record);
      else bad.push(`${columns.id}: ${parsed.why}`);
    }
    if (bad.length > 0) {
      throw new StoreError('bad_record', `${this.path}: ${bad.length} sandbox row(s) do not parse; refusing to guess their state: ${bad.join(' | ')}`);
    }
    return records;
  }

  #use<T>(doing: string, fn: () => T): T {
    if (this.#db === null) throw new StoreError('closed', `${this.path}: ${doing} after close`);
    try {
      return fn();
    } catch (err) {
      if (err instanceof StoreError) throw err;
      const failure = storeFailure(err, 'io');
      throw new StoreError(failure, `${this.path}: ${doing} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
}

function entryOf(row: ResourceRow): LedgerEntry {
  return { kind: row.kind, name: row.name, sandboxId: row.sandboxId, state: row.state, updatedAt: new Date(row.updatedMs).toISOString() };
}

function prepare(db: Database.Database) {
  const stmts = {
    upsert: db.prepare(
      `INSERT INTO sandboxes (id, team_id, template_id, status, step, op_id, incarnation, slot, updated_ms, doc)
       VALUES (@id, @teamId, @templateId, @status, @step, @opId, @incarnation, @slot, @now, @doc)
       ON CONFLICT (id) DO UPDATE SET team_id = excluded.team_id, template_id = excluded.template_id, status = excluded.status,
         step = excluded.step, op_id = excluded.op_id, incarnation = excluded.incarnation, slot = excluded.slot,
         updated_ms = excluded.updated_ms, doc = excluded.doc`,
    ),
    remove: db.prepare(`DELETE FROM sandboxes WHERE id = ?`),
    forget: db.prepare(`DELETE FROM resources WHERE sandbox_id = ?`),
    bumpEpoch: db.prepare(`UPDATE meta SET value = value + 1 WHERE key = 'epoch' RETURNING value`),
    all: db.prepare(`SELECT ${SANDBOX_COLUMNS} FROM sandboxes ORDER BY id`),
    one: db.prepare(`SELECT ${SANDBOX_COLUMNS} FROM sandboxes WHERE id = ?`),
    resource: db.prepare(`SELECT ${RESOURCE_COLUMNS} FROM resources WHERE kind = ? AND name = ?`),
    putResource: db.prepare(
      `INSERT INTO resources (kind, name, sandbox_id, state, updated_ms) VALUES (@kind, @name, @sandboxId, @state, @updatedMs)
       ON CONFLICT (kind, name) DO UPDATE SET sandbox_id = excluded.sandbox_id, state = excluded.state, updated_ms = excluded.updated_ms`,
    ),
    ledgerAll: db.prepare(`SELECT ${RESOURCE_COLUMNS} FROM resources ORDER BY kind, name`),
    ledgerAgent: db.prepare(`SELECT ${RESOURCE_COLUMNS} FROM resources WHERE sandbox_id IS NULL ORDER BY kind, name`),
    ledgerOf: db.prepare(`SELECT ${RESOURCE_COLUMNS} FROM resources WHERE sandbox_id = ? ORDER BY kind, name`),
  };
  // Read, decide and write in one transaction: the move is committed (and synced) before the caller acts.
  const move = db.transaction((kind: string, name: string, sandboxId: string | null, to: LedgerState): LedgerEntry => {
    const current = stmts.resource.get(kind, name) as ResourceRow | undefined;
    if (decideMove(current, to, { kind, name, sandboxId }) === 'same') return entryOf(current!);
    const row: ResourceRow = { kind, name, sandboxId, state: to, updatedMs: Date.now() };
    stmts.putResource.run(row);
    return entryOf(row);
  });
  // The record and its ledger rows commit together: the rows are what the record says, never a step behind.
  const save = db.transaction((row: Record<string, unknown> & { id: string; now: number }, rows: LedgerRow[]) => {
    stmts.upsert.run(row);
    const keyOf = (r: { kind: string; name: string }) => `${r.kind}\0${r.name}`;
    const wanted = new Set(rows.map(keyOf));
    const mine = new Map<string, ResourceRow>();
    for (const current of stmts.ledgerOf.all(row.id) as ResourceRow[]) {
      mine.set(keyOf(current), current);
      if (current.state !== 'released' && !wanted.has(keyOf(current))) stmts.putResource.run({ ...current, state: 'released', updatedMs: row.now });
    }
    // Only what moved is written; a row another sandbox left behind is taken over.
    for (const r of rows) {
      if (mine.get(keyOf(r))?.state === r.state) continue;
      stmts.putResource.run({ kind: r.kind, name: r.name, sandboxId: row.id, state: r.state, updatedMs: row.now });
    }
  });
  const removeAll = db.transaction((id: string) => {
    stmts.remove.run(id);
    stmts.forget.run(id);
  });
  return { ...stmts, move, save, removeAll };
}
