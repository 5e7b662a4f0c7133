//! The SQLite backend: one connection behind a mutex, WAL, versioned migrations.
//!
//! Several `horizon run` processes may share one database file. Every write is a single
//! `BEGIN IMMEDIATE` transaction, so writers take SQLite's write lock up front and serialize (a
//! busy writer waits up to [`BUSY_TIMEOUT`]); reads are deferred transactions, which in WAL mode
//! see a consistent snapshot without blocking writers.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, ToSql, Transaction, TransactionBehavior};

use crate::sql::{Dialect, Row, Tx, Value, impl_storage};
use crate::{Result, StoreError};

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;

/// The schema, one migration per version: `MIGRATIONS[i]` moves `user_version` from `i` to `i + 1`.
/// Never edit a released migration; append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE studies (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    spec_json         TEXT NOT NULL,
    identity_json     TEXT NOT NULL,
    created_at        REAL NOT NULL,
    next_sample_index INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE trials (
    id              INTEGER PRIMARY KEY,
    study_id        INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    number          INTEGER NOT NULL,
    sample_index    INTEGER,
    params_json     TEXT NOT NULL,
    max_train_steps INTEGER NOT NULL,
    state           TEXT NOT NULL
                    CHECK (state IN ('waiting', 'running', 'complete', 'diverged', 'failed')),
    attempt         INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    best_step       INTEGER,
    best_value      REAL,
    final_step      INTEGER,
    final_value     REAL,
    message         TEXT,
    created_at      REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    lease_worker    TEXT,
    lease_host      TEXT,
    lease_pid       INTEGER,
    heartbeat_at    REAL,
    UNIQUE (study_id, number),
    UNIQUE (study_id, sample_index)
);
CREATE INDEX trials_by_state ON trials (study_id, state, number);

CREATE TABLE metrics (
    trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    step     INTEGER NOT NULL,
    name     TEXT NOT NULL,
    value    REAL,
    PRIMARY KEY (trial_id, step, name)
) WITHOUT ROWID;

CREATE TABLE checkpoints (
    trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    attempt  INTEGER NOT NULL,
    step     INTEGER NOT NULL,
    path     TEXT NOT NULL,
    deleted  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (trial_id, step)
) WITHOUT ROWID;

CREATE TABLE warnings (
    id       INTEGER PRIMARY KEY,
    trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    attempt  INTEGER NOT NULL,
    message  TEXT NOT NULL
);
CREATE INDEX warnings_by_trial ON warnings (trial_id, id);

CREATE TABLE attempts (
    trial_id    INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    worker      TEXT NOT NULL,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    outcome     TEXT,
    message     TEXT,
    exit_code   INTEGER,
    PRIMARY KEY (trial_id, attempt)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE imports (
    trial_id INTEGER PRIMARY KEY REFERENCES trials(id) ON DELETE CASCADE,
    study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    origin   TEXT NOT NULL,
    source   TEXT,
    UNIQUE (study_id, origin)
);
"#,
    r#"
-- A run is identified by its content (run_key), not by where it was read from: an edited or
-- renamed file must not import the same run twice. Rows of version 2 keep their origin as key.
CREATE TABLE imports_v3 (
    trial_id INTEGER PRIMARY KEY REFERENCES trials(id) ON DELETE CASCADE,
    study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    run_key  TEXT NOT NULL,
    origin   TEXT NOT NULL,
    source   TEXT,
    UNIQUE (study_id, run_key)
);
INSERT INTO imports_v3 (trial_id, study_id, run_key, origin, source)
    SELECT trial_id, study_id, origin, origin, source FROM imports;
DROP TABLE imports;
ALTER TABLE imports_v3 RENAME TO imports;
"#,
    r#"
-- A new state, 'incomplete' (exited successfully well short of the budget). SQLite cannot
-- change a CHECK constraint in place: the table is rebuilt (its rows, ids and index kept).
-- migrate() runs this with foreign keys off, so dropping the old table deletes no metrics.
CREATE TABLE trials_v4 (
    id              INTEGER PRIMARY KEY,
    study_id        INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    number          INTEGER NOT NULL,
    sample_index    INTEGER,
    params_json     TEXT NOT NULL,
    max_train_steps INTEGER NOT NULL,
    state           TEXT NOT NULL
                    CHECK (state IN ('waiting', 'running', 'complete', 'incomplete', 'diverged', 'failed')),
    attempt         INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    best_step       INTEGER,
    best_value      REAL,
    final_step      INTEGER,
    final_value     REAL,
    message         TEXT,
    created_at      REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    lease_worker    TEXT,
    lease_host      TEXT,
    lease_pid       INTEGER,
    heartbeat_at    REAL,
    UNIQUE (study_id, number),
    UNIQUE (study_id, sample_index)
);
INSERT INTO trials_v4 SELECT * FROM trials;
DROP TABLE trials;
ALTER TABLE trials_v4 RENAME TO trials;
CREATE INDEX trials_by_state ON trials (study_id, state, number);
"#,
    r#"
-- Ladders: a trial runs at rungs of growing budgets. The trial row is its current rung; each
-- rung's run is a row of `rungs`; metrics are kept per rung, so a promoted trial keeps what it
-- recorded at earlier rungs. Existing trials are at rung 0.
ALTER TABLE trials ADD COLUMN rung INTEGER NOT NULL DEFAULT 0;
ALTER TABLE checkpoints ADD COLUMN rung INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN rung INTEGER NOT NULL DEFAULT 0;
CREATE TABLE rungs (
    trial_id        INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    rung            INTEGER NOT NULL,
    budget          INTEGER NOT NULL,
    state           TEXT NOT NULL
                    CHECK (state IN ('waiting', 'running', 'complete', 'incomplete', 'diverged', 'failed')),
    entry           TEXT NOT NULL CHECK (entry IN ('started', 'resumed', 'restarted')),
    resumed_step    INTEGER,
    resume_path     TEXT,
    best_step       INTEGER,
    best_value      REAL,
    final_step      INTEGER,
    final_value     REAL,
    budget_independent_until INTEGER,
    steps_run       INTEGER NOT NULL DEFAULT 0,
    message         TEXT,
    started_at      REAL,
    finished_at     REAL,
    PRIMARY KEY (trial_id, rung)
) WITHOUT ROWID;
INSERT INTO rungs (trial_id, rung, budget, state, entry, best_step, best_value, final_step, final_value,
                   steps_run, message, started_at, finished_at)
    SELECT id, 0, max_train_steps, state, 'started', best_step, best_value, final_step, final_value,
           COALESCE((SELECT MAX(step) FROM metrics m WHERE m.trial_id = trials.id), 0), message, started_at, finished_at
    FROM trials;
CREATE TABLE metrics_v5 (
    trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    rung     INTEGER NOT NULL,
    step     INTEGER NOT NULL,
    name     TEXT NOT NULL,
    value    REAL,
    PRIMARY KEY (trial_id, rung, step, name)
) WITHOUT ROWID;
INSERT INTO metrics_v5 (trial_id, rung, step, name, value) SELECT trial_id, 0, step, name, value FROM metrics;
DROP TABLE metrics;
ALTER TABLE metrics_v5 RENAME TO metrics;
"#,
    r#"
-- Rounds carry a trial on with its schedule transferred (its parameters change): each rung
-- keeps the parameters it ran with; NULL means the trial's own.
ALTER TABLE rungs ADD COLUMN params_json TEXT;
"#,
    r#"
-- Trial numbers are allocated by one update of the study's row, as sample indices are (not
-- MAX(number) + 1, which two writers on a server database could both read).
ALTER TABLE studies ADD COLUMN next_trial_number INTEGER NOT NULL DEFAULT 0;
UPDATE studies SET next_trial_number = COALESCE((SELECT MAX(number) + 1 FROM trials WHERE study_id = studies.id), 0);
"#,
    r#"
-- The database's identity, made once: a study directory records it, so that one database
-- reached by two names (a host and its address, a proxy) is known to be the same one.
CREATE TABLE horizon_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO horizon_meta (key, value) VALUES ('database_id', lower(hex(randomblob(16))));
"#,
    r#"
-- A lease carries its holder's timeout: other workers judge it by that, not by their own.
ALTER TABLE trials ADD COLUMN lease_timeout REAL;
"#,
];

const MEMORY_PATH: &str = ":memory:";
/// Storage on an SQLite database file (or in memory).
pub struct SqliteStorage {
    conn: Mutex<Connection>,
    path: String,
}

impl SqliteStorage {
    /// Open (creating it and its directory if needed) the database at `path` and bring its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| cannot_open(&name, &format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(|source| sqlite_error(&name, source))?;
        Self::init(conn, name, true)
    }

    /// Open an existing database for reading only: nothing is created, migrated or written (the
    /// write methods fail), so it works on a study the user may only read.
    ///
    /// A WAL database needs its `-shm` index, which a reader creates; in a directory the user
    /// cannot write, after the last writer closed cleanly (no `-wal` left), SQLite cannot, and
    /// the file is then opened `immutable` (its content is all there is). A `-wal` file with
    /// content that cannot be read this way is an error rather than a stale view. A schema older
    /// than this build's is [`StoreError::SchemaTooOld`] (it cannot be upgraded read-only).
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        if !path.is_file() {
            return Err(cannot_open(&name, "no such database file"));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let sql_err = |source| sqlite_error(&name, source);
        let conn = match Connection::open_with_flags(path, flags).and_then(|c| probe(&c).map(|_| c)) {
            Ok(conn) => conn,
            Err(e) if matches!(e.sqlite_error_code(), Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen)) => {
                let wal = path.with_file_name(format!("{}-wal", path.file_name().unwrap_or_default().to_string_lossy()));
                if wal.metadata().is_ok_and(|m| m.len() > 0) {
                    return Err(cannot_open(
                        &name,
                        &format!(
                            "{} holds changes not yet in the database, and reading them needs write access to its directory ({e})\n  \
                         fix: let a horizon command run by a user who may write there finish (it folds them in when it closes), \
                         or copy the study directory somewhere you may write",
                            wal.display()
                        ),
                    ));
                }
                let conn = Connection::open_with_flags(immutable_uri(path), flags).map_err(sql_err)?;
                probe(&conn).map_err(sql_err)?;
                conn
            }
            Err(e) => return Err(sql_err(e)),
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
        let known = MIGRATIONS.len() as i64;
        let found = probe(&conn).map_err(sql_err)?;
        if found > known {
            return Err(StoreError::SchemaTooNew { path: name, found, known });
        }
        if found < known {
            return Err(StoreError::SchemaTooOld { path: name, found, known });
        }
        Ok(SqliteStorage { conn: Mutex::new(conn), path: name })
    }

    /// A private database that lives as long as the value (for tests and dry runs).
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|source| sqlite_error(MEMORY_PATH, source))?;
        Self::init(conn, MEMORY_PATH.into(), false)
    }

    /// The database file, or `:memory:`.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn init(mut conn: Connection, path: String, wal: bool) -> Result<Self> {
        configure(&conn, wal).map_err(Fail::from).and_then(|()| migrate(&mut conn, &path)).map_err(|f| f.at(&path))?;
        Ok(SqliteStorage { conn: Mutex::new(conn), path })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held dropped (rolled back) its transaction: the connection
        // is still usable.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `f` in one `BEGIN IMMEDIATE` transaction, committed if it succeeds.
    fn write<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T> {
        self.transaction(TransactionBehavior::Immediate, f)
    }

    /// Run `f` in one read (deferred) transaction, so that it sees one consistent snapshot.
    fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T> {
        self.transaction(TransactionBehavior::Deferred, f)
    }

    fn transaction<T>(&self, behavior: TransactionBehavior, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let path = self.path.as_str();
        let tx = conn.transaction_with_behavior(behavior).map_err(|e| sqlite_error(path, e))?;
        let value = f(&mut SqliteTx { tx: &tx, path })?;
        tx.commit().map_err(|e| sqlite_error(path, e))?;
        Ok(value)
    }
}

impl SqliteStorage {
    /// A local file: calls do not hang on a network (a busy writer waits [`BUSY_TIMEOUT`]).
    fn set_call_limit(&self, _limit: Duration) {}
}

impl_storage!(SqliteStorage);

// ---------------------------------------------------------------------------------------------
// Errors

/// An error inside a transaction, before the database path is attached.
enum Fail {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl Fail {
    fn at(self, path: &str) -> StoreError {
        use rusqlite::Error as E;
        match self {
            Fail::Store(e) => e,
            Fail::Sql(e @ (E::FromSqlConversionFailure(..) | E::IntegralValueOutOfRange(..) | E::InvalidColumnType(..))) => {
                StoreError::Corrupt(format!("database {path}: {e}"))
            }
            Fail::Sql(source) => sqlite_error(path, source),
        }
    }
}

/// Read the schema (SQLite opens files lazily): the schema version.
fn probe(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |_| Ok(()))?;
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// `file:PATH?immutable=1`, the path percent-encoded as SQLite's URIs need.
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

fn cannot_open(path: &str, why: &str) -> StoreError {
    StoreError::Backend {
        backend: "sqlite",
        target: path.to_string(),
        kind: crate::BackendErrorKind::CannotOpen,
        message: why.to_string(),
    }
}

/// A SQLite error as the backend-neutral [`StoreError::Backend`].
fn sqlite_error(path: &str, e: rusqlite::Error) -> StoreError {
    use crate::BackendErrorKind as K;
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied) => K::Permission,
        Some(ErrorCode::ReadOnly) => K::ReadOnly,
        Some(ErrorCode::CannotOpen) => K::CannotOpen,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => K::Busy,
        _ => K::Other,
    };
    StoreError::Backend { backend: "sqlite", target: path.to_string(), kind, message: e.to_string() }
}

// ---------------------------------------------------------------------------------------------
// Connection setup and migrations

fn configure(conn: &Connection, wal: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Every statement horizon runs stays prepared (rusqlite keeps 16 by default, fewer than a
    // claim runs), and multi-row inserts of a few sizes.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if wal {
        enable_wal(conn)?;
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Switch the file to WAL (persistent; a no-op once another process has done it).
///
/// The switch needs an exclusive lock, and SQLite reports `SQLITE_BUSY` for it at once instead
/// of calling the busy handler, so processes opening a new database together retry here.
fn enable_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Apply the migrations this database lacks, in one immediate transaction so that processes
/// opening a new file at the same time migrate it exactly once.
fn migrate(conn: &mut Connection, path: &str) -> Result<(), Fail> {
    // A migration may rebuild a table that others reference; with foreign keys on, dropping the
    // old table would cascade into them. Off for the migration (it cannot change inside a
    // transaction), checked before commit, on again after.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let migrated = migrate_in_transaction(conn, path);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrated
}

fn migrate_in_transaction(conn: &mut Connection, path: &str) -> Result<(), Fail> {
    let known = MIGRATIONS.len() as i64;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::SchemaTooNew { path: path.to_string(), found, known }.into());
    }
    for sql in &MIGRATIONS[found as usize..] {
        tx.execute_batch(sql)?;
    }
    if found < known {
        let broken: Option<String> =
            tx.query_row("SELECT \"table\" FROM pragma_foreign_key_check LIMIT 1", [], |r| r.get(0)).optional()?;
        if let Some(table) = broken {
            return Err(StoreError::Corrupt(format!(
                "database {path}: upgrading the schema to version {known} left rows of {table} without their trial; nothing was changed"
            ))
            .into());
        }
        tx.pragma_update(None, "user_version", known)?;
    }
    tx.commit()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Statements

/// The database's clock in Unix seconds, as SQL (works on every SQLite version).
const DB_NOW: &str = "((julianday('now') - 2440587.5) * 86400.0)";

const DIALECT: Dialect = Dialect { now: DB_NOW, greatest: "MAX", row_locks: false };

/// A transaction of the connection, as the shared SQL runs it.
struct SqliteTx<'a> {
    tx: &'a Transaction<'a>,
    path: &'a str,
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::from(rusqlite::types::Null),
            Value::Int(i) => ToSqlOutput::from(*i),
            // SQLite cannot store NaN: NULL, read back as NaN.
            Value::Real(f) if f.is_nan() => ToSqlOutput::from(rusqlite::types::Null),
            Value::Real(f) => ToSqlOutput::from(*f),
            Value::Text(t) => ToSqlOutput::from(t.as_str()),
        })
    }
}

fn value_of(v: ValueRef<'_>) -> std::result::Result<Value, String> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8(t.to_vec()).map_err(|e| e.to_string())?),
        ValueRef::Blob(_) => return Err("a blob where horizon stores none".into()),
    })
}

impl Tx for SqliteTx<'_> {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let err = |e| sqlite_error(self.path, e);
        let mut stmt = self.tx.prepare_cached(sql).map_err(err)?;
        let columns: Arc<[String]> = stmt.column_names().map(String::from).collect();
        let n = columns.len();
        let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                let v = row.get_ref(i).map_err(err)?;
                values.push(
                    value_of(v)
                        .map_err(|e| StoreError::Corrupt(format!("database {}: column {}: {e}", self.path, columns[i])))?,
                );
            }
            out.push(Row { columns: Arc::clone(&columns), values });
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let err = |e| sqlite_error(self.path, e);
        let changed = self.tx.prepare_cached(sql).map_err(err)?.execute(rusqlite::params_from_iter(params)).map_err(err)?;
        Ok(changed as u64)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.tx.execute_batch(sql).map_err(|e| sqlite_error(self.path, e))
    }

    fn dialect(&self) -> Dialect {
        DIALECT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImportedTrial, NewStudy, Storage};
    use horizon_core::Params;
    use horizon_core::trial::TrialState;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn storage_is_shareable_between_threads() {
        assert_send_sync::<SqliteStorage>();
    }

    /// The immutable fallback of a read-only open names the file by URI: characters that mean
    /// something in a URI (`?`, `#`, `%`, spaces) must still name the same file.
    #[test]
    fn immutable_uris_name_odd_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a dir?x=1#frag %41").join("horizon.db");
        let store = SqliteStorage::open(&path).unwrap();
        store.open_or_create_study(&NewStudy { name: "odd".into(), spec_json: "{}".into(), identity_json: "{}".into() }).unwrap();
        drop(store);
        let conn =
            Connection::open_with_flags(immutable_uri(&path), OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)
                .unwrap();
        let name: String = conn.query_row("SELECT name FROM studies", [], |r| r.get(0)).unwrap();
        assert_eq!(name, "odd");
        assert_eq!(probe(&conn).unwrap(), MIGRATIONS.len() as i64);
    }

    /// An older horizon still running on a database this one upgraded numbers its trials by
    /// `MAX(number) + 1` without the counter: the next number allocated here still comes after
    /// them, never a duplicate.
    #[test]
    fn trial_numbers_stay_past_trials_numbered_without_the_counter() {
        let store = SqliteStorage::open_in_memory().unwrap();
        let study = store
            .open_or_create_study(&NewStudy { name: "s".into(), spec_json: "{}".into(), identity_json: "{}".into() })
            .unwrap();
        store
            .lock()
            .execute(
                "INSERT INTO trials (study_id, number, sample_index, params_json, max_train_steps, state, attempt, failures, created_at)
                 VALUES (?1, 4, NULL, '{}', 10, 'complete', 1, 0, 0)",
                [study.id],
            )
            .unwrap();
        let run = ImportedTrial {
            params: Params::default(),
            max_train_steps: 10,
            state: TrialState::Complete,
            message: None,
            selection: None,
            metrics: vec![],
            run_key: "k".into(),
            origin: "o:1".into(),
            source: None,
            at: 1.0,
        };
        let stored = store.import_trials(study.id, &[run]).unwrap();
        assert_eq!(stored[0].number, 5);
    }

    #[test]
    fn migrations_set_the_schema_version() {
        let store = SqliteStorage::open_in_memory().unwrap();
        let version: i64 = store.lock().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        assert_eq!(store.path(), ":memory:");
    }

    /// A database written by an older horizon (schema version 1: sampled trials; version 2: an
    /// import) upgrades in place: its trials and imports stay, and claims and imports continue.
    #[test]
    fn older_databases_are_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute_batch(
                "INSERT INTO studies (id, name, spec_json, identity_json, created_at, next_sample_index) VALUES (1, 's', '{}', '{}', 0, 1);
                 INSERT INTO trials (id, study_id, number, sample_index, params_json, max_train_steps, state, attempt, failures, created_at)
                     VALUES (1, 1, 0, 0, '{}', 100, 'complete', 1, 0, 0);
                 INSERT INTO trials (id, study_id, number, sample_index, params_json, max_train_steps, state, attempt, failures, created_at)
                     VALUES (2, 1, 1, NULL, '{}', 100, 'complete', 1, 0, 0);
                 INSERT INTO imports (trial_id, study_id, origin, source) VALUES (2, 1, '/data/runs.jsonl:1', 'elsewhere');
                 INSERT INTO metrics (trial_id, step, name, value) VALUES (1, 10, 'valid/loss', 0.5), (1, 20, 'valid/loss', 0.25);
                 INSERT INTO warnings (trial_id, attempt, message) VALUES (1, 1, 'a warning');
                 INSERT INTO checkpoints (trial_id, attempt, step, path) VALUES (1, 1, 20, 'ckpt-20');",
            )
            .unwrap();
        }
        let store = SqliteStorage::open(&path).unwrap();
        let version: i64 = store.lock().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let study = store.study("s").unwrap().unwrap();
        assert_eq!(
            store.trials(study.id).unwrap().iter().map(|t| (t.number, t.sample_index)).collect::<Vec<_>>(),
            [(0, Some(0)), (1, None)]
        );
        let imports = store.imports(study.id).unwrap();
        assert_eq!(
            (imports.len(), imports[0].trial, imports[0].origin.as_str(), imports[0].source.as_deref()),
            (1, 2, "/data/runs.jsonl:1", Some("elsewhere"))
        );
        let run = ImportedTrial {
            params: Params::default(),
            max_train_steps: 100,
            state: TrialState::Complete,
            message: None,
            selection: None,
            metrics: vec![],
            run_key: "new".into(),
            origin: "/data/runs.jsonl:1".into(),
            source: None,
            at: 1.0,
        };
        let stored = store.import_trials(study.id, &[run]).unwrap();
        assert_eq!(stored[0].number, 2, "numbers continue; an old origin no longer blocks a different run");
        // Rebuilding the trials table (version 4) kept what refers to the trials.
        assert_eq!(store.metrics(1).unwrap().len(), 2, "metrics survive the rebuild of trials");
        assert_eq!(store.warnings(1).unwrap().len(), 1);
        assert_eq!(store.checkpoints(1).unwrap().len(), 1);
        // Version 5: every trial is at rung 0, its record mirrors the trial, its metrics are rung 0's.
        let rungs = store.rungs(study.id).unwrap();
        let summary: Vec<(u64, u32, u64, TrialState, u64)> =
            rungs.iter().map(|r| (r.number, r.rung, r.budget, r.state, r.steps_run)).collect();
        assert_eq!(
            summary,
            [(0, 0, 100, TrialState::Complete, 20), (1, 0, 100, TrialState::Complete, 0), (2, 0, 100, TrialState::Complete, 0)]
        );
        assert_eq!(store.rung_metrics(1, 0).unwrap(), store.metrics(1).unwrap());
        assert_eq!(store.trial(1).unwrap().rung, 0);
        let fk: bool = store.lock().pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
        assert!(fk, "foreign keys are on again after migrating");
        // ... and the new state is storable.
        let run = ImportedTrial { state: TrialState::Incomplete, run_key: "short".into(), origin: "x".into(), ..stored_run() };
        store.import_trials(study.id, &[run]).unwrap();
        assert_eq!(store.trials_in_state(study.id, TrialState::Incomplete).unwrap().len(), 1);
    }

    fn stored_run() -> ImportedTrial {
        ImportedTrial {
            params: Params::default(),
            max_train_steps: 100,
            state: TrialState::Complete,
            message: None,
            selection: None,
            metrics: vec![],
            run_key: "k".into(),
            origin: "o".into(),
            source: None,
            at: 1.0,
        }
    }
}
