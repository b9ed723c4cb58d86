// Opening the store refuses, with its own StoreError, every file the agent must
// not start on (garbage, a damaged database, another application's database, a
// newer schema, a database another agent holds) and leaves that file as it was.
// Migrations run in order, once each, each in its own transaction.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { APPLICATION_ID, MIGRATIONS, type Migration } from '../../drivers/store/sqlite-schema.ts';
import { DB_FILE, SqliteStore } from '../../drivers/store/sqlite-store.ts';
import { StoreError } from '../../drivers/store/store-error.ts';
import { openStore, sampleRecord, tempDir } from './helpers.ts';

function refusedWith(name: StoreError['failure'], pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof StoreError, `not a StoreError: ${String(err)}`);
    assert.equal(err.failure, name, err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

/** Asserts that opening refuses and leaves the file byte for byte, with no WAL beside it. */
function assertRefusedUntouched(dir: string, name: StoreError['failure'], pattern: RegExp): void {
  const path = join(dir, DB_FILE);
  const before = readFileSync(path);
  assert.throws(() => new SqliteStore(dir, { busyTimeoutMs: 50 }), refusedWith(name, pattern));
  assert.deepEqual(readFileSync(path), before, 'the refused file was modified');
  assert.equal(existsSync(`${path}-wal`), false, 'a WAL was created beside the refused file');
}

test('a new data dir gets our application id, the latest schema version and WAL; reopening migrates nothing', (t) => {
  const dir = join(tempDir(t), 'not-yet-made');
  const counted: Migration[] = MIGRATIONS.map((m) => ({ ...m, up: (db) => (runs.push(m.version), m.up(db)) }));
  const runs: number[] = [];
  const store = new SqliteStore(dir, { migrations: counted });
  store.save(sampleRecord('sb-a'));
  store.close();
  const again = openStore(t, dir, { migrations: counted });
  assert.deepEqual(runs, MIGRATIONS.map((m) => m.version));
  assert.deepEqual(again.loadAll(), [sampleRecord('sb-a')]);
  // Per connection, so only the store itself can say: a save must reach the disk before it returns.
  assert.deepEqual(again.durability(), { journalMode: 'wal', synchronous: 'FULL', lockingMode: 'exclusive' });
  again.close();
  const raw = new Database(join(dir, DB_FILE), { readonly: true });
  t.after(() => raw.close());
  assert.equal(raw.pragma('application_id', { simple: true }), APPLICATION_ID);
  assert.equal(raw.pragma('user_version', { simple: true }), MIGRATIONS.length);
  assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
});

test('an older schema gets only its pending migrations, in order, and keeps its rows', (t) => {
  const dir = tempDir(t);
  const old = new SqliteStore(dir);
  old.save(sampleRecord('sb-old'));
  old.close();
  const runs: string[] = [];
  const next: Migration[] = [
    ...MIGRATIONS,
    { version: MIGRATIONS.length + 1, description: 'index a', up: (db) => (runs.push('a'), db.exec('CREATE INDEX t_a ON sandboxes (slot)')) },
    { version: MIGRATIONS.length + 2, description: 'index b', up: (db) => (runs.push('b'), db.exec('CREATE INDEX t_b ON sandboxes (op_id)')) },
  ];
  new SqliteStore(dir, { migrations: next }).close();
  const store = openStore(t, dir, { migrations: next });
  assert.deepEqual(runs, ['a', 'b']);
  assert.deepEqual(store.loadAll(), [sampleRecord('sb-old')]);
});

test('a migration that throws leaves the file at the previous version with none of its changes', (t) => {
  const dir = tempDir(t);
  new SqliteStore(dir).close();
  const broken: Migration[] = [
    ...MIGRATIONS,
    {
      version: MIGRATIONS.length + 1,
      description: 'half done',
      up: (db) => {
        db.exec('CREATE TABLE half (x INTEGER)');
        throw new Error('disk went away');
      },
    },
  ];
  assert.throws(() => new SqliteStore(dir, { migrations: broken }), refusedWith('migration_failed', new RegExp(`migration ${MIGRATIONS.length + 1} \\(half done\\) failed, left at version ${MIGRATIONS.length}: disk went away`)));
  const raw = new Database(join(dir, DB_FILE), { readonly: true });
  t.after(() => raw.close());
  assert.equal(raw.pragma('user_version', { simple: true }), MIGRATIONS.length);
  assert.deepEqual(raw.prepare(`SELECT name FROM sqlite_schema WHERE name = 'half'`).all(), []);
  raw.close();
  openStore(t, dir).close();
});

test('garbage bytes where the database should be: refused as corrupt, file untouched', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, DB_FILE), Buffer.from('this was never a database\n'.repeat(300)));
  assertRefusedUntouched(dir, 'corrupt', /not a database/);
});

test('a sandboxd database with a damaged page: refused as corrupt rather than read half', (t) => {
  const dir = tempDir(t);
  const store = new SqliteStore(dir);
  for (let i = 0; i < 200; i++) store.save(sampleRecord(`sb-${i}`));
  store.close();
  const path = join(dir, DB_FILE);
  const bytes = readFileSync(path);
  const pageSize = bytes.readUInt16BE(16);
  assert.ok(bytes.length > 4 * pageSize, 'database smaller than expected');
  bytes.fill(0xa5, 2 * pageSize, 3 * pageSize); // scribble over a b-tree page, header intact
  writeFileSync(path, bytes);
  assertRefusedUntouched(dir, 'corrupt', /quick_check failed|malformed/);
});

test('another application\'s SQLite database (its tables, no application id): refused as foreign, untouched', (t) => {
  const dir = tempDir(t);
  const other = new Database(join(dir, DB_FILE));
  other.exec(`CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT); INSERT INTO moz_places (url) VALUES ('https://example.org')`);
  other.close();
  assertRefusedUntouched(dir, 'foreign', /not a sandboxd database: it has no application id .* and tables moz_places/);
});

test('a database stamped with another application id, even without tables: refused as foreign', (t) => {
  const dir = tempDir(t);
  const other = new Database(join(dir, DB_FILE));
  other.pragma('application_id = 0x0f055112'); // Fossil's
  other.close();
  assertRefusedUntouched(dir, 'foreign', /application id 0x0f055112 \(sandboxd's is 0x53425844\)/);
});

test('a schema newer than this agent knows: refused as newer_schema, untouched', (t) => {
  const dir = tempDir(t);
  new SqliteStore(dir).close();
  const raw = new Database(join(dir, DB_FILE));
  raw.pragma('journal_mode = DELETE'); // so the untouched check can see the whole file
  raw.pragma(`user_version = ${MIGRATIONS.length + 1}`);
  raw.close();
  assertRefusedUntouched(dir, 'newer_schema', new RegExp(`schema version ${MIGRATIONS.length + 1}, newer than this agent's ${MIGRATIONS.length}`));
});

test('a second agent on the same data dir is refused while the first holds the database', (t) => {
  const dir = tempDir(t);
  const first = openStore(t, dir);
  first.save(sampleRecord('sb-a'));
  assert.throws(() => new SqliteStore(dir, { busyTimeoutMs: 50 }), refusedWith('locked', /another sandboxd running/));
  first.close();
  assert.deepEqual(openStore(t, dir).loadAll(), [sampleRecord('sb-a')]);
});
