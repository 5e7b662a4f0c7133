//! The SQLite backend: one connection behind a mutex, WAL, versioned migrations.
//!
//! Several `horizon run` processes may share one database file. Every write is a single
//! `BEGIN IMMEDIATE` transaction, so writers take SQLite's write lock up front and serialize (a
//! busy writer waits up to [`BUSY_TIMEOUT`]); reads are deferred transactions, which in WAL mode
//! see a consistent snapshot without blocking writers.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use horizon_core::selection::Selection;
use horizon_core::trial::{Lease, TrialRecord, TrialState};
use horizon_core::{MetricPoint, Params};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, ToSql, Transaction, TransactionBehavior, params};

use horizon_core::claim::{ClaimDecision, ClaimView};
use horizon_core::trial::{RungEntry, RungRecord};

use crate::{
    AttemptRecord, CheckpointRecord, Claim, ClaimRequest, ClaimedTrial, Finish, ImportRecord, ImportedTrial, NewStudy, Requeue,
    Result, Storage, StoreError, StudyId, StudyRecord, TrialId, WarningRecord,
};

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

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
];

const MEMORY_PATH: &str = ":memory:";

const TRIAL_COLUMNS: &str = "id, number, sample_index, params_json, max_train_steps, state, attempt, failures, \
    best_step, best_value, final_step, final_value, message, created_at, started_at, finished_at, \
    lease_worker, lease_host, lease_pid, heartbeat_at, rung";

const RUNG_COLUMNS: &str = "r.trial_id, t.number, r.rung, r.budget, r.state, r.entry, r.resumed_step, r.best_step, r.best_value, \
    r.final_step, r.final_value, r.budget_independent_until, r.steps_run, r.message, r.started_at, r.finished_at, \
    COALESCE(r.params_json, t.params_json) AS rung_params";

const STUDY_COLUMNS: &str = "id, name, spec_json, identity_json, created_at, next_sample_index";

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
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, Fail>) -> Result<T> {
        let mut conn = self.lock();
        let run = || {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run().map_err(|f: Fail| f.at(&self.path))
    }

    /// Run `f` in one read (deferred) transaction, so that it sees one consistent snapshot.
    fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, Fail>) -> Result<T> {
        let mut conn = self.lock();
        let run = || {
            let tx = conn.transaction()?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run().map_err(|f: Fail| f.at(&self.path))
    }
}

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
// Column conversions

/// A trial state stored as its lowercase name.
struct State(TrialState);

impl FromSql for State {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        TrialState::parse(text).map(State).ok_or_else(|| FromSqlError::Other(format!("unknown trial state {text:?}").into()))
    }
}

impl ToSql for State {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.as_str()))
    }
}

/// Parameters stored as a JSON object.
struct ParamsJson(Params);

impl FromSql for ParamsJson {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        serde_json::from_str(value.as_str()?).map(ParamsJson).map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// A REAL column that may hold NULL for NaN (SQLite cannot store NaN).
fn real(row: &Row<'_>, column: &str) -> rusqlite::Result<f64> {
    Ok(row.get::<_, Option<f64>>(column)?.unwrap_or(f64::NAN))
}

/// An optional value whose presence is decided by a companion column (`step` for a value).
fn real_if(row: &Row<'_>, column: &str, present: bool) -> rusqlite::Result<Option<f64>> {
    Ok(if present { Some(real(row, column)?) } else { None })
}

fn study_from_row(row: &Row<'_>) -> rusqlite::Result<StudyRecord> {
    Ok(StudyRecord {
        id: row.get("id")?,
        name: row.get("name")?,
        spec_json: row.get("spec_json")?,
        identity_json: row.get("identity_json")?,
        created_at: row.get("created_at")?,
        next_sample_index: row.get("next_sample_index")?,
    })
}

fn trial_from_row(row: &Row<'_>) -> rusqlite::Result<TrialRecord> {
    let best_step: Option<u64> = row.get("best_step")?;
    let final_step: Option<u64> = row.get("final_step")?;
    let lease = match row.get::<_, Option<String>>("lease_worker")? {
        Some(worker) => Some(Lease {
            worker,
            host: row.get("lease_host")?,
            pid: row.get("lease_pid")?,
            heartbeat_at: row.get("heartbeat_at")?,
        }),
        None => None,
    };
    Ok(TrialRecord {
        id: row.get("id")?,
        number: row.get("number")?,
        sample_index: row.get("sample_index")?,
        params: row.get::<_, ParamsJson>("params_json")?.0,
        max_train_steps: row.get("max_train_steps")?,
        state: row.get::<_, State>("state")?.0,
        attempt: row.get("attempt")?,
        failures: row.get("failures")?,
        best_step,
        best_value: real_if(row, "best_value", best_step.is_some())?,
        final_step,
        final_value: real_if(row, "final_value", final_step.is_some())?,
        message: row.get("message")?,
        created_at: row.get("created_at")?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        lease,
        rung: row.get("rung")?,
    })
}

fn rung_from_row(row: &Row<'_>) -> rusqlite::Result<RungRecord> {
    let rung: u32 = row.get("rung")?;
    let best_step: Option<u64> = row.get("best_step")?;
    let final_step: Option<u64> = row.get("final_step")?;
    let entry = match row.get::<_, String>("entry")?.as_str() {
        "resumed" => RungEntry::Resumed { from: rung.saturating_sub(1), step: row.get("resumed_step")? },
        "restarted" => RungEntry::Restarted { from: rung.saturating_sub(1) },
        _ => RungEntry::Started,
    };
    Ok(RungRecord {
        trial: row.get("trial_id")?,
        number: row.get("number")?,
        rung,
        budget: row.get("budget")?,
        state: row.get::<_, State>("state")?.0,
        entry,
        best_step,
        best_value: real_if(row, "best_value", best_step.is_some())?,
        final_step,
        final_value: real_if(row, "final_value", final_step.is_some())?,
        budget_independent_until: row.get("budget_independent_until")?,
        steps_run: row.get("steps_run")?,
        message: row.get("message")?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        params: row.get::<_, ParamsJson>("rung_params")?.0,
    })
}

fn attempt_from_row(row: &Row<'_>) -> rusqlite::Result<AttemptRecord> {
    Ok(AttemptRecord {
        trial: row.get("trial_id")?,
        attempt: row.get("attempt")?,
        worker: row.get("worker")?,
        host: row.get("host")?,
        pid: row.get("pid")?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        outcome: row.get::<_, Option<State>>("outcome")?.map(|s| s.0),
        message: row.get("message")?,
        exit_code: row.get("exit_code")?,
        rung: row.get("rung")?,
    })
}

fn metrics_at(tx: &Transaction<'_>, trial: TrialId, rung: u32) -> rusqlite::Result<Vec<MetricPoint>> {
    let mut stmt =
        tx.prepare_cached("SELECT step, name, value FROM metrics WHERE trial_id = ?1 AND rung = ?2 ORDER BY step, name")?;
    let rows = stmt.query_map(params![trial, rung], |r| {
        Ok(MetricPoint { step: r.get("step")?, name: r.get("name")?, value: real(r, "value")? })
    })?;
    rows.collect()
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// Queries shared by several methods

fn ensure_study(tx: &Transaction<'_>, study: StudyId) -> Result<(), Fail> {
    let found = tx.query_row("SELECT 1 FROM studies WHERE id = ?1", [study], |_| Ok(())).optional()?;
    found.ok_or(Fail::Store(StoreError::NoStudy(study)))
}

fn ensure_trial(tx: &Transaction<'_>, trial: TrialId) -> Result<(), Fail> {
    let found = tx.query_row("SELECT 1 FROM trials WHERE id = ?1", [trial], |_| Ok(())).optional()?;
    found.ok_or(Fail::Store(StoreError::NoTrial(trial)))
}

fn load_trial(tx: &Transaction<'_>, trial: TrialId) -> Result<TrialRecord, Fail> {
    let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE id = ?1");
    let found = tx.prepare_cached(&sql)?.query_row([trial], trial_from_row).optional()?;
    found.ok_or(Fail::Store(StoreError::NoTrial(trial)))
}

/// The write guard, as a write: renew the lease of `trial` if `attempt` is the current attempt
/// of a running trial (one conditioned update of its row, which a concurrent writer's must wait
/// for), and return its rung; otherwise say why not.
fn ensure_writable(tx: &Transaction<'_>, trial: TrialId, attempt: u32) -> Result<u32, Fail> {
    let rung: Option<u32> = tx
        .prepare_cached(&format!(
            "UPDATE trials SET heartbeat_at = {DB_NOW} WHERE id = ?1 AND state = 'running' AND attempt = ?2 RETURNING rung"
        ))?
        .query_row(params![trial, attempt], |r| r.get(0))
        .optional()?;
    if let Some(rung) = rung {
        return Ok(rung);
    }
    let current = tx
        .prepare_cached("SELECT state, attempt FROM trials WHERE id = ?1")?
        .query_row([trial], |r| Ok((r.get::<_, State>(0)?.0, r.get::<_, u32>(1)?)))
        .optional()?;
    match current {
        None => Err(StoreError::NoTrial(trial).into()),
        Some((state, current)) => Err(StoreError::NotWritable { trial, attempt, state, current }.into()),
    }
}

/// The database's clock in Unix seconds, as SQL (works on every SQLite version).
const DB_NOW: &str = "((julianday('now') - 2440587.5) * 86400.0)";

fn db_now(tx: &Transaction<'_>) -> rusqlite::Result<f64> {
    tx.prepare_cached(&format!("SELECT {DB_NOW}"))?.query_row([], |r| r.get(0))
}

// ---------------------------------------------------------------------------------------------
// Claiming

fn claim(tx: &Transaction<'_>, study: StudyId, request: &ClaimRequest<'_>) -> Result<Claim, Fail> {
    let view = claim_view(tx, study, request.policy.needs_history())?;
    // The claim's time is the database's: leases are timed by one clock.
    let lease = &Lease { heartbeat_at: db_now(tx)?, ..request.lease.clone() };
    let trial = match request.policy.decide(&view) {
        ClaimDecision::Wait => return Ok(Claim::Wait),
        ClaimDecision::Done => return Ok(Claim::Done),
        ClaimDecision::Retry { trial } => {
            restart(tx, trial, lease)?;
            trial
        }
        ClaimDecision::Launch { budget } => create_trial(tx, study, request, lease, budget, 0, None)?,
        ClaimDecision::LaunchAt { rung, budget, params } => create_trial(tx, study, request, lease, budget, rung, Some(params))?,
        ClaimDecision::Promote { trial, rung, budget, resume_step, params } => {
            promote(tx, trial, rung, budget, resume_step, lease)?;
            if let Some(p) = params {
                // The earlier rungs keep the parameters they ran with.
                tx.prepare_cached(
                    "UPDATE rungs SET params_json = COALESCE(params_json, (SELECT params_json FROM trials WHERE id = ?1))
                     WHERE trial_id = ?1 AND rung < ?2",
                )?
                .execute(params![trial, rung])?;
                tx.prepare_cached("UPDATE trials SET params_json = ?2 WHERE id = ?1")?
                    .execute(params![trial, p.to_json_string()])?;
            }
            trial
        }
    };
    open_attempt(tx, trial)?;
    sync_rung(tx, trial)?;
    let trial = load_trial(tx, trial)?;
    let rung = load_rung(tx, trial.id, trial.rung)?;
    let resume_from: Option<String> = tx
        .prepare_cached("SELECT resume_path FROM rungs WHERE trial_id = ?1 AND rung = ?2")?
        .query_row(params![trial.id, trial.rung], |r| r.get(0))?;
    Ok(Claim::Run(Box::new(ClaimedTrial { trial, rung, resume_from })))
}

/// What the policy sees: the oldest waiting trial and the sample count always; every trial,
/// rung and live checkpoint when it asks for the history.
fn claim_view(tx: &Transaction<'_>, study: StudyId, history: bool) -> Result<ClaimView, Fail> {
    let sampled: Option<u64> =
        tx.prepare_cached("SELECT next_sample_index FROM studies WHERE id = ?1")?.query_row([study], |r| r.get(0)).optional()?;
    let sampled = sampled.ok_or(Fail::Store(StoreError::NoStudy(study)))?;
    let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ?1 AND state = 'waiting' ORDER BY number LIMIT 1");
    let oldest_waiting = tx.prepare_cached(&sql)?.query_row([study], trial_from_row).optional()?;
    let mut view = ClaimView { oldest_waiting, sampled, ..ClaimView::default() };
    if history {
        view.trials = study_trials(tx, study)?;
        view.rungs = study_rungs(tx, study)?;
        // Only what a promotion can resume from: live checkpoints of complete trials, written
        // at their current rung (whatever else a trainer announced costs the claim nothing).
        let mut stmt = tx.prepare_cached(
            "SELECT c.trial_id, c.step FROM checkpoints c JOIN trials t ON t.id = c.trial_id
             WHERE t.study_id = ?1 AND c.deleted = 0 AND t.state = 'complete' AND c.rung = t.rung
             ORDER BY t.number, c.step",
        )?;
        view.checkpoints = stmt.query_map([study], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    }
    Ok(view)
}

fn study_trials(tx: &Transaction<'_>, study: StudyId) -> rusqlite::Result<Vec<TrialRecord>> {
    let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ?1 ORDER BY number");
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map([study], trial_from_row)?;
    rows.collect()
}

fn study_rungs(tx: &Transaction<'_>, study: StudyId) -> rusqlite::Result<Vec<RungRecord>> {
    let sql = format!(
        "SELECT {RUNG_COLUMNS} FROM rungs r JOIN trials t ON t.id = r.trial_id WHERE t.study_id = ?1 ORDER BY t.number, r.rung"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map([study], rung_from_row)?;
    rows.collect()
}

fn load_rung(tx: &Transaction<'_>, trial: TrialId, rung: u32) -> Result<RungRecord, Fail> {
    let sql =
        format!("SELECT {RUNG_COLUMNS} FROM rungs r JOIN trials t ON t.id = r.trial_id WHERE r.trial_id = ?1 AND r.rung = ?2");
    let found = tx.prepare_cached(&sql)?.query_row(params![trial, rung], rung_from_row).optional()?;
    found.ok_or_else(|| Fail::Store(StoreError::Corrupt(format!("trial {trial} has no record of its rung {rung}"))))
}

/// Mirror the trial's current-rung fields (state, selection, message, times) to its rung record.
fn sync_rung(tx: &Transaction<'_>, trial: TrialId) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE rungs SET (state, best_step, best_value, final_step, final_value, message, started_at, finished_at) =
            (SELECT state, best_step, best_value, final_step, final_value, message, started_at, finished_at
             FROM trials WHERE id = ?1)
         WHERE trial_id = ?1 AND rung = (SELECT rung FROM trials WHERE id = ?1)",
    )?
    .execute([trial])?;
    Ok(())
}

/// Start a fresh attempt of a waiting trial at its current rung: what earlier attempts recorded
/// at this rung after its start step, and the selection, go.
fn restart(tx: &Transaction<'_>, trial: TrialId, lease: &Lease) -> Result<(), Fail> {
    let changed = tx
        .prepare_cached(
            "UPDATE trials SET state = 'running', attempt = attempt + 1, started_at = ?2, finished_at = NULL,
                best_step = NULL, best_value = NULL, final_step = NULL, final_value = NULL,
                lease_worker = ?3, lease_host = ?4, lease_pid = ?5, heartbeat_at = ?2
             WHERE id = ?1 AND state = 'waiting'",
        )?
        .execute(params![trial, lease.heartbeat_at, lease.worker, lease.host, lease.pid])?;
    if changed == 0 {
        return Err(StoreError::Policy(format!("trial {trial} is not waiting: it cannot be run again")).into());
    }
    // Resumed rungs keep the copied prefix (steps up to the resumed checkpoint, inclusive: the
    // next attempt reports that evaluation again); a rung from scratch starts empty.
    tx.prepare_cached(
        "DELETE FROM metrics WHERE trial_id = ?1
            AND rung = (SELECT rung FROM trials WHERE id = ?1)
            AND step > COALESCE((SELECT r.resumed_step FROM rungs r JOIN trials t ON t.id = r.trial_id AND t.rung = r.rung
                                 WHERE r.trial_id = ?1), -1)",
    )?
    .execute([trial])?;
    Ok(())
}

/// Move a trial complete at `rung - 1` to `rung`: a new rung record, the budget, a fresh
/// attempt, and (resuming) the earlier rung's metrics up to the checkpoint's step.
fn promote(
    tx: &Transaction<'_>,
    trial: TrialId,
    rung: u32,
    budget: u64,
    resume_step: Option<u64>,
    lease: &Lease,
) -> Result<(), Fail> {
    let from = rung.checked_sub(1).ok_or_else(|| StoreError::Policy(format!("trial {trial}: rung 0 is not a promotion")))?;
    let resume_path: Option<String> = match resume_step {
        None => None,
        Some(step) => {
            let path = tx
                .prepare_cached("SELECT path FROM checkpoints WHERE trial_id = ?1 AND step = ?2 AND deleted = 0")?
                .query_row(params![trial, step], |r| r.get(0))
                .optional()?;
            Some(path.ok_or_else(|| {
                StoreError::Policy(format!("trial {trial} has no live checkpoint at step {step} to resume from"))
            })?)
        }
    };
    let changed = tx
        .prepare_cached(
            "UPDATE trials SET rung = ?2, max_train_steps = ?3, state = 'running', attempt = attempt + 1, failures = 0,
                message = NULL, started_at = ?4, finished_at = NULL,
                best_step = NULL, best_value = NULL, final_step = NULL, final_value = NULL,
                lease_worker = ?5, lease_host = ?6, lease_pid = ?7, heartbeat_at = ?4
             WHERE id = ?1 AND rung = ?8 AND state = 'complete'",
        )?
        .execute(params![trial, rung, budget, lease.heartbeat_at, lease.worker, lease.host, lease.pid, from])?;
    if changed == 0 {
        return Err(StoreError::Policy(format!(
            "trial {trial} is not complete at rung {from}: it cannot be promoted to rung {rung}"
        ))
        .into());
    }
    let entry = if resume_step.is_some() { "resumed" } else { "restarted" };
    // The primary key (trial, rung) refuses a second promotion to the same rung.
    tx.prepare_cached(
        "INSERT INTO rungs (trial_id, rung, budget, state, entry, resumed_step, resume_path, started_at)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7)",
    )?
    .execute(params![trial, rung, budget, entry, resume_step, resume_path, lease.heartbeat_at])?;
    if let Some(step) = resume_step {
        tx.prepare_cached(
            "INSERT INTO metrics (trial_id, rung, step, name, value)
             SELECT trial_id, ?2, step, name, value FROM metrics WHERE trial_id = ?1 AND rung = ?3 AND step <= ?4",
        )?
        .execute(params![trial, rung, from, step])?;
    }
    Ok(())
}

/// Create the study's next trial from the next sample index, at `rung` with `budget`: with the
/// sampler's point at that index, or with `given` parameters (a later round's new trials, drawn
/// by the policy from the round's own space; the index then only keeps numbers unique).
fn create_trial(
    tx: &Transaction<'_>,
    study: StudyId,
    request: &ClaimRequest<'_>,
    lease: &Lease,
    budget: u64,
    rung: u32,
    given: Option<Params>,
) -> Result<TrialId, Fail> {
    // Imported trials have no sample index: the sampler's quota counts allocated indices, not
    // trials, so an import neither shrinks nor breaks the sequence.
    let index: u64 = tx
        .prepare_cached(
            "UPDATE studies SET next_sample_index = next_sample_index + 1 WHERE id = ?1 RETURNING next_sample_index - 1",
        )?
        .query_row(params![study], |r| r.get(0))?;
    // An error drops the transaction, which rolls the index back.
    let params = match given {
        Some(p) => p,
        None => (request.sample)(index).map_err(StoreError::Sample)?,
    };
    let row = TrialRow {
        number: next_numbers(tx, study, 1)?,
        sample_index: Some(index),
        params: &params,
        max_train_steps: budget,
        state: TrialState::Running,
        failures: 0,
        selection: None,
        message: None,
        created_at: lease.heartbeat_at,
        started_at: Some(lease.heartbeat_at),
        finished_at: None,
        lease: Some(lease),
    };
    let id = insert_trial(tx, study, &row)?;
    if rung > 0 {
        // Started at a later round: its only rung record is that round's.
        tx.prepare_cached("UPDATE trials SET rung = ?2 WHERE id = ?1")?.execute(params![id, rung])?;
        tx.prepare_cached("UPDATE rungs SET rung = ?2 WHERE trial_id = ?1")?.execute(params![id, rung])?;
    }
    Ok(id)
}

/// Allocate `count` consecutive trial numbers of `study` in one update of its row; returns the
/// first. The counter never falls behind the numbers stored (an older horizon still running on
/// a database this one upgraded numbers trials by `MAX(number) + 1` without advancing it).
fn next_numbers(tx: &Transaction<'_>, study: StudyId, count: u64) -> rusqlite::Result<u64> {
    tx.prepare_cached(
        "UPDATE studies SET next_trial_number =
            MAX(next_trial_number, (SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = ?1)) + ?2
         WHERE id = ?1 RETURNING next_trial_number - ?2",
    )?
    .query_row(params![study, count], |r| r.get(0))
}

/// A trial as first written, claimed (running, with a lease) or imported (finished).
struct TrialRow<'a> {
    number: u64,
    sample_index: Option<u64>,
    params: &'a Params,
    max_train_steps: u64,
    state: TrialState,
    failures: u32,
    selection: Option<&'a Selection>,
    message: Option<&'a str>,
    created_at: f64,
    started_at: Option<f64>,
    finished_at: Option<f64>,
    lease: Option<&'a Lease>,
}

/// Insert a trial at attempt 1.
fn insert_trial(tx: &Transaction<'_>, study: StudyId, row: &TrialRow<'_>) -> rusqlite::Result<TrialId> {
    let (s, lease) = (row.selection, row.lease);
    tx.prepare_cached(
        "INSERT INTO trials (study_id, number, sample_index, params_json, max_train_steps, state, attempt, failures,
            best_step, best_value, final_step, final_value, message, created_at, started_at, finished_at,
            lease_worker, lease_host, lease_pid, heartbeat_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?
    .execute(params![
        study,
        row.number,
        row.sample_index,
        row.params.to_json_string(),
        row.max_train_steps,
        State(row.state),
        row.failures,
        s.map(|s| s.best_step),
        s.map(|s| s.best_value),
        s.map(|s| s.final_step),
        s.map(|s| s.final_value),
        row.message,
        row.created_at,
        row.started_at,
        row.finished_at,
        lease.map(|l| &l.worker),
        lease.map(|l| &l.host),
        lease.map(|l| l.pid),
        lease.map(|l| l.heartbeat_at),
    ])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached(
        "INSERT INTO rungs (trial_id, rung, budget, state, entry, best_step, best_value, final_step, final_value,
            steps_run, message, started_at, finished_at)
         SELECT id, 0, max_train_steps, state, 'started', best_step, best_value, final_step, final_value,
            0, message, started_at, finished_at FROM trials WHERE id = ?1",
    )?
    .execute([id])?;
    Ok(id)
}

/// Record the launch the trial's lease and attempt now describe.
fn open_attempt(tx: &Transaction<'_>, trial: TrialId) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO attempts (trial_id, attempt, worker, host, pid, started_at, rung)
         SELECT id, attempt, lease_worker, lease_host, lease_pid, started_at, rung FROM trials WHERE id = ?1",
    )?
    .execute([trial])?;
    Ok(())
}

fn close_attempt(
    tx: &Transaction<'_>,
    trial: TrialId,
    attempt: u32,
    at: f64,
    outcome: TrialState,
    message: Option<&str>,
    exit_code: Option<i32>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE attempts SET finished_at = ?3, outcome = ?4, message = ?5, exit_code = ?6
         WHERE trial_id = ?1 AND attempt = ?2",
    )?
    .execute(params![trial, attempt, at, State(outcome), message, exit_code])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writes by the running attempt

fn insert_metrics(tx: &Transaction<'_>, trial: TrialId, rung: u32, points: &[MetricPoint]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO metrics (trial_id, rung, step, name, value) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (trial_id, rung, step, name) DO UPDATE SET value = excluded.value",
    )?;
    for p in points {
        // SQLite binds NaN as NULL; `real` reads it back as NaN.
        let value = (!p.value.is_nan()).then_some(p.value);
        insert.execute(params![trial, rung, p.step, p.name, value])?;
    }
    Ok(())
}

fn end_attempt(tx: &Transaction<'_>, trial: TrialId, attempt: u32, finish: &Finish) -> rusqlite::Result<()> {
    let s: Option<&Selection> = finish.selection.as_ref();
    let finished_at = finish.state.is_finished().then_some(finish.at);
    let keep_lease = finish.state == TrialState::Running;
    tx.prepare_cached(
        "UPDATE trials SET state = ?2, message = ?3,
            best_step = ?4, best_value = ?5, final_step = ?6, final_value = ?7,
            failures = failures + ?8, finished_at = ?9,
            lease_worker = CASE WHEN ?10 THEN lease_worker END,
            lease_host   = CASE WHEN ?10 THEN lease_host END,
            lease_pid    = CASE WHEN ?10 THEN lease_pid END,
            heartbeat_at = CASE WHEN ?10 THEN heartbeat_at END
         WHERE id = ?1",
    )?
    .execute(params![
        trial,
        State(finish.state),
        finish.message,
        s.map(|s| s.best_step),
        s.map(|s| s.best_value),
        s.map(|s| s.final_step),
        s.map(|s| s.final_value),
        u32::from(finish.counts_as_failure),
        finished_at,
        keep_lease,
    ])?;
    sync_rung(tx, trial)?;
    tx.prepare_cached(
        "UPDATE rungs SET steps_run = steps_run + ?2,
            budget_independent_until = COALESCE(?3, budget_independent_until)
         WHERE trial_id = ?1 AND rung = (SELECT rung FROM trials WHERE id = ?1)",
    )?
    .execute(params![trial, finish.steps_run, finish.budget_independent_until])?;
    close_attempt(tx, trial, attempt, finish.at, finish.state, finish.message.as_deref(), finish.exit_code)
}

fn requeue(
    tx: &Transaction<'_>,
    trial: TrialId,
    attempt: u32,
    worker: &str,
    heartbeat: Option<f64>,
    reason: &str,
    at: f64,
) -> rusqlite::Result<bool> {
    // The whole judgement is in the write: the attempt, the worker, and (given) the heartbeat
    // the caller saw, so a lease renewed since is kept.
    let changed = tx
        .prepare_cached(
            "UPDATE trials SET state = 'waiting', message = ?4,
                lease_worker = NULL, lease_host = NULL, lease_pid = NULL, heartbeat_at = NULL
             WHERE id = ?1 AND state = 'running' AND attempt = ?2 AND lease_worker = ?3
               AND (?5 IS NULL OR heartbeat_at = ?5)",
        )?
        .execute(params![trial, attempt, worker, reason, heartbeat])?;
    if changed == 0 {
        return Ok(false);
    }
    sync_rung(tx, trial)?;
    close_attempt(tx, trial, attempt, at, TrialState::Waiting, Some(reason), None)?;
    Ok(true)
}

/// Put the chosen trials back to waiting (see the contract of [`Storage::requeue_trials`]).
fn requeue_chosen(tx: &Transaction<'_>, study: StudyId, requeue: &Requeue<'_>) -> Result<Vec<TrialRecord>, Fail> {
    ensure_study(tx, study)?;
    let mut chosen: Vec<(TrialRecord, bool)> = Vec::new();
    let sql = format!(
        "SELECT {TRIAL_COLUMNS}, EXISTS (SELECT 1 FROM imports i WHERE i.trial_id = trials.id) AS imported
         FROM trials WHERE study_id = ?1 ORDER BY number"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map([study], |r| Ok((trial_from_row(r)?, r.get::<_, bool>("imported")?)))?;
    for row in rows {
        let (trial, imported) = row?;
        if requeue.numbers.contains(&trial.number) {
            let why = match (trial.state, imported) {
                (_, true) => Some("it was imported (`horizon import`): horizon has no command that ran it".to_string()),
                (TrialState::Running, _) => Some(match &trial.lease {
                    Some(l) => format!(
                        "it is running (attempt {} by worker {} on {}, pid {}); stop that run first (Ctrl-C), or let it finish",
                        trial.attempt, l.worker, l.host, l.pid
                    ),
                    None => format!("it is running (attempt {})", trial.attempt),
                }),
                _ => None,
            };
            if let Some(why) = why {
                return Err(StoreError::NotRequeueable { number: trial.number, state: trial.state, why }.into());
            }
            chosen.push((trial, imported));
        } else if requeue.states.contains(&trial.state) && !imported && trial.state != TrialState::Running {
            chosen.push((trial, imported));
        }
    }
    drop(stmt);
    if let Some(&missing) = requeue.numbers.iter().find(|n| !chosen.iter().any(|(t, _)| t.number == **n)) {
        return Err(StoreError::NoTrialNumber { study, number: missing }.into());
    }
    let mut update =
        tx.prepare_cached("UPDATE trials SET state = 'waiting', failures = 0, finished_at = NULL, message = ?2 WHERE id = ?1")?;
    for (trial, _) in &chosen {
        update.execute(params![trial.id, requeue.message])?;
        sync_rung(tx, trial.id)?;
    }
    drop(update);
    chosen.into_iter().map(|(t, _)| load_trial(tx, t.id)).collect()
}

// ---------------------------------------------------------------------------------------------
// Imports

/// Store finished runs made elsewhere: the next numbers, no sample index, their metrics, and
/// their key and origin (the key unique per study). The caller's transaction makes it all or
/// nothing.
fn import(tx: &Transaction<'_>, study: StudyId, trials: &[ImportedTrial]) -> Result<Vec<TrialRecord>, Fail> {
    ensure_study(tx, study)?;
    let first = next_numbers(tx, study, trials.len() as u64)?;
    let mut ids = Vec::with_capacity(trials.len());
    for (number, t) in (first..).zip(trials) {
        if !t.state.is_finished() {
            return Err(StoreError::NotImportable { origin: t.origin.clone(), state: t.state }.into());
        }
        if let Some((number, earlier)) = imported_as(tx, study, &t.run_key)? {
            let origin = t.origin.clone();
            return Err(if number >= first {
                StoreError::DuplicateRun { origin, earlier }
            } else {
                StoreError::AlreadyImported { origin, earlier, study, number }
            }
            .into());
        }
        let row = TrialRow {
            number,
            sample_index: None,
            params: &t.params,
            max_train_steps: t.max_train_steps,
            state: t.state,
            failures: u32::from(t.state == TrialState::Failed),
            selection: t.selection.as_ref(),
            message: t.message.as_deref(),
            created_at: t.at,
            started_at: None,
            finished_at: Some(t.at),
            lease: None,
        };
        let id = insert_trial(tx, study, &row)?;
        tx.prepare_cached("INSERT INTO imports (trial_id, study_id, run_key, origin, source) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![id, study, t.run_key, t.origin, t.source])?;
        insert_metrics(tx, id, 0, &t.metrics)?;
        let steps = t.metrics.iter().map(|m| m.step).max().unwrap_or(0);
        tx.prepare_cached("UPDATE rungs SET steps_run = ?2 WHERE trial_id = ?1 AND rung = 0")?.execute(params![id, steps])?;
        ids.push(id);
    }
    ids.into_iter().map(|id| load_trial(tx, id)).collect()
}

/// The number and origin of the trial of `study` imported with `run_key`, if any.
fn imported_as(tx: &Transaction<'_>, study: StudyId, run_key: &str) -> rusqlite::Result<Option<(u64, String)>> {
    tx.prepare_cached(
        "SELECT t.number, i.origin FROM imports i JOIN trials t ON t.id = i.trial_id WHERE i.study_id = ?1 AND i.run_key = ?2",
    )?
    .query_row(params![study, run_key], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
}

// ---------------------------------------------------------------------------------------------
// The trait

impl Storage for SqliteStorage {
    fn open_or_create_study(&self, new: &NewStudy) -> Result<StudyRecord> {
        self.write(|tx| {
            let sql = format!(
                "INSERT INTO studies (name, spec_json, identity_json, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET spec_json = excluded.spec_json
                 RETURNING {STUDY_COLUMNS}"
            );
            let params = params![new.name, new.spec_json, new.identity_json, now()];
            Ok(tx.query_row(&sql, params, study_from_row)?)
        })
    }

    fn study(&self, name: &str) -> Result<Option<StudyRecord>> {
        self.read(|tx| {
            let sql = format!("SELECT {STUDY_COLUMNS} FROM studies WHERE name = ?1");
            Ok(tx.query_row(&sql, [name], study_from_row).optional()?)
        })
    }

    fn studies(&self) -> Result<Vec<StudyRecord>> {
        self.read(|tx| {
            let sql = format!("SELECT {STUDY_COLUMNS} FROM studies ORDER BY id");
            let mut stmt = tx.prepare(&sql)?;
            let rows = stmt.query_map([], study_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn claim_trial(&self, study: StudyId, request: &ClaimRequest<'_>) -> Result<Claim> {
        self.write(|tx| claim(tx, study, request))
    }

    fn heartbeat(&self, trial: TrialId, attempt: u32) -> Result<()> {
        self.write(|tx| {
            ensure_writable(tx, trial, attempt)?;
            Ok(())
        })
    }

    fn now(&self) -> Result<f64> {
        self.read(|tx| Ok(db_now(tx)?))
    }

    fn append_metrics(&self, trial: TrialId, attempt: u32, points: &[MetricPoint]) -> Result<()> {
        self.write(|tx| {
            let rung = ensure_writable(tx, trial, attempt)?;
            Ok(insert_metrics(tx, trial, rung, points)?)
        })
    }

    fn append_warnings(&self, trial: TrialId, attempt: u32, messages: &[String]) -> Result<()> {
        self.write(|tx| {
            ensure_writable(tx, trial, attempt)?;
            let mut insert = tx.prepare_cached("INSERT INTO warnings (trial_id, attempt, message) VALUES (?1, ?2, ?3)")?;
            for message in messages {
                insert.execute(params![trial, attempt, message])?;
            }
            Ok(())
        })
    }

    fn record_checkpoint(&self, trial: TrialId, attempt: u32, step: u64, path: &str) -> Result<()> {
        self.write(|tx| {
            let rung = ensure_writable(tx, trial, attempt)?;
            tx.prepare_cached(
                "INSERT INTO checkpoints (trial_id, attempt, step, path, deleted, rung) VALUES (?1, ?2, ?3, ?4, 0, ?5)
                 ON CONFLICT (trial_id, step) DO UPDATE
                 SET attempt = excluded.attempt, path = excluded.path, deleted = 0, rung = excluded.rung",
            )?
            .execute(params![trial, attempt, step, path, rung])?;
            Ok(())
        })
    }

    fn mark_checkpoint_deleted(&self, trial: TrialId, step: u64) -> Result<()> {
        self.write(|tx| {
            ensure_trial(tx, trial)?;
            tx.prepare_cached("UPDATE checkpoints SET deleted = 1 WHERE trial_id = ?1 AND step = ?2")?
                .execute(params![trial, step])?;
            Ok(())
        })
    }

    fn finish_attempt(&self, trial: TrialId, attempt: u32, finish: &Finish) -> Result<()> {
        self.write(|tx| {
            ensure_writable(tx, trial, attempt)?;
            Ok(end_attempt(tx, trial, attempt, finish)?)
        })
    }

    fn requeue_abandoned(
        &self,
        trial: TrialId,
        attempt: u32,
        worker: &str,
        heartbeat: Option<f64>,
        reason: &str,
        at: f64,
    ) -> Result<bool> {
        self.write(|tx| {
            ensure_trial(tx, trial)?;
            Ok(requeue(tx, trial, attempt, worker, heartbeat, reason, at)?)
        })
    }

    fn requeue_trials(&self, study: StudyId, requeue: &Requeue<'_>) -> Result<Vec<TrialRecord>> {
        self.write(|tx| requeue_chosen(tx, study, requeue))
    }

    fn import_trials(&self, study: StudyId, trials: &[ImportedTrial]) -> Result<Vec<TrialRecord>> {
        self.write(|tx| import(tx, study, trials))
    }

    fn create_study_with_imports(&self, new: &NewStudy, trials: &[ImportedTrial]) -> Result<(StudyRecord, Vec<TrialRecord>)> {
        self.write(|tx| {
            let sql = format!(
                "INSERT INTO studies (name, spec_json, identity_json, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING RETURNING {STUDY_COLUMNS}"
            );
            let params = params![new.name, new.spec_json, new.identity_json, now()];
            let Some(study) = tx.query_row(&sql, params, study_from_row).optional()? else {
                return Err(StoreError::StudyExists { name: new.name.clone() }.into());
            };
            let stored = import(tx, study.id, trials)?;
            Ok((study, stored))
        })
    }

    fn imports(&self, study: StudyId) -> Result<Vec<ImportRecord>> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT i.trial_id, i.origin, i.source FROM imports i JOIN trials t ON t.id = i.trial_id
                 WHERE i.study_id = ?1 ORDER BY t.number",
            )?;
            let rows =
                stmt.query_map([study], |r| Ok(ImportRecord { trial: r.get(0)?, origin: r.get(1)?, source: r.get(2)? }))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn trials(&self, study: StudyId) -> Result<Vec<TrialRecord>> {
        self.read(|tx| {
            ensure_study(tx, study)?;
            Ok(study_trials(tx, study)?)
        })
    }

    fn rungs(&self, study: StudyId) -> Result<Vec<RungRecord>> {
        self.read(|tx| {
            ensure_study(tx, study)?;
            Ok(study_rungs(tx, study)?)
        })
    }

    fn snapshot(&self, study: StudyId) -> Result<(StudyRecord, Vec<TrialRecord>, Vec<RungRecord>)> {
        self.read(|tx| {
            let record = tx
                .prepare_cached("SELECT * FROM studies WHERE id = ?1")?
                .query_row([study], study_from_row)
                .optional()?
                .ok_or(Fail::Store(StoreError::NoStudy(study)))?;
            Ok((record, study_trials(tx, study)?, study_rungs(tx, study)?))
        })
    }

    fn rung_metrics(&self, trial: TrialId, rung: u32) -> Result<Vec<MetricPoint>> {
        self.read(|tx| {
            ensure_trial(tx, trial)?;
            Ok(metrics_at(tx, trial, rung)?)
        })
    }

    fn trials_in_state(&self, study: StudyId, state: TrialState) -> Result<Vec<TrialRecord>> {
        self.read(|tx| {
            ensure_study(tx, study)?;
            let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ?1 AND state = ?2 ORDER BY number");
            let mut stmt = tx.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![study, state.as_str()], trial_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn trial(&self, trial: TrialId) -> Result<TrialRecord> {
        self.read(|tx| load_trial(tx, trial))
    }

    fn metrics(&self, trial: TrialId) -> Result<Vec<MetricPoint>> {
        self.read(|tx| {
            let rung = load_trial(tx, trial)?.rung;
            Ok(metrics_at(tx, trial, rung)?)
        })
    }

    fn study_metric(&self, study: StudyId, name: &str) -> Result<Vec<(TrialId, u64, f64)>> {
        self.read(|tx| {
            ensure_study(tx, study)?;
            let mut stmt = tx.prepare_cached(
                "SELECT m.trial_id, m.step, m.value FROM trials t JOIN metrics m ON m.trial_id = t.id AND m.rung = t.rung
                 WHERE t.study_id = ?1 AND m.name = ?2 ORDER BY t.number, m.step",
            )?;
            let rows = stmt.query_map(params![study, name], |r| Ok((r.get(0)?, r.get(1)?, real(r, "value")?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn checkpoints(&self, trial: TrialId) -> Result<Vec<CheckpointRecord>> {
        self.read(|tx| {
            ensure_trial(tx, trial)?;
            let mut stmt = tx.prepare_cached(
                "SELECT trial_id, attempt, step, path, deleted FROM checkpoints WHERE trial_id = ?1 ORDER BY step",
            )?;
            let rows = stmt.query_map([trial], |r| {
                Ok(CheckpointRecord {
                    trial: r.get("trial_id")?,
                    attempt: r.get("attempt")?,
                    step: r.get("step")?,
                    path: r.get("path")?,
                    deleted: r.get("deleted")?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn warnings(&self, trial: TrialId) -> Result<Vec<WarningRecord>> {
        self.read(|tx| {
            ensure_trial(tx, trial)?;
            let mut stmt =
                tx.prepare_cached("SELECT trial_id, attempt, message FROM warnings WHERE trial_id = ?1 ORDER BY id")?;
            let rows = stmt.query_map([trial], |r| {
                Ok(WarningRecord { trial: r.get("trial_id")?, attempt: r.get("attempt")?, message: r.get("message")? })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn attempts(&self, trial: TrialId) -> Result<Vec<AttemptRecord>> {
        self.read(|tx| {
            ensure_trial(tx, trial)?;
            let mut stmt = tx.prepare_cached(
                "SELECT trial_id, attempt, worker, host, pid, started_at, finished_at, outcome, message, exit_code, rung
                 FROM attempts WHERE trial_id = ?1 ORDER BY attempt",
            )?;
            let rows = stmt.query_map([trial], attempt_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
