//! The storage contract in SQL, once for every SQL backend.
//!
//! Each backend (SQLite, PostgreSQL) supplies a [`Tx`]: a transaction that runs one statement
//! with [`Value`] parameters and returns [`Row`]s, and the [`Dialect`] bits where the two SQLs
//! differ (the clock, `MAX` of two values, row locks). Everything the contract decides (claims,
//! promotions, guards, requeues, imports) is written here once, and [`impl_storage!`] makes a
//! backend's [`Storage`](crate::Storage) out of its `read` and `write` transactions, so the
//! backends cannot drift apart.
//!
//! Statements use `?N` placeholders (SQLite's); the PostgreSQL backend rewrites them to `$N`.
//! Integers are stored as 64-bit, reals as doubles, booleans as integers 0/1, states as their
//! lowercase names and parameters as JSON text.

use std::collections::HashMap;
use std::sync::Arc;

use horizon_core::claim::{ClaimDecision, ClaimView};
use horizon_core::selection::Selection;
use horizon_core::trial::{Lease, RungEntry, RungRecord, TrialRecord, TrialState};
use horizon_core::{MetricPoint, Params};

use crate::{
    AttemptRecord, CheckpointRecord, Claim, ClaimRequest, ClaimedTrial, Finish, ImportRecord, ImportedTrial, NewStudy, Requeue,
    Result, StoreError, StudyId, StudyRecord, TrialId, WarningRecord,
};

// ---------------------------------------------------------------------------------------------
// Values, rows and transactions

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                // Steps, budgets and counts stay far below 2^63.
                Value::Int(v as i64)
            }
        }
    )*};
}
from_int!(i64, u64, u32, i32);

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<TrialState> for Value {
    fn from(v: TrialState) -> Value {
        Value::Text(v.as_str().to_string())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Statement parameters: `p![a, b]` is `&[Value::from(a), Value::from(b)]`.
macro_rules! p {
    ($($v:expr),* $(,)?) => { &[$($crate::sql::Value::from($v)),*][..] };
}

/// A column value read back as a Rust value.
pub(crate) trait FromValue: Sized {
    fn from_value(v: &Value) -> std::result::Result<Self, String>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Int(i) => Ok(*i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

macro_rules! from_value_int {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> std::result::Result<Self, String> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| format!("{i} is out of range for {}", stringify!($t)))
            }
        }
    )*};
}
from_value_int!(u64, u32, i32);

impl FromValue for f64 {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Real(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl FromValue for TrialState {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        let text = String::from_value(v)?;
        TrialState::parse(&text).ok_or_else(|| format!("unknown trial state {text:?}"))
    }
}

impl FromValue for Params {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        serde_json::from_str(&String::from_value(v)?).map_err(|e| e.to_string())
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One result row, its columns by name.
#[derive(Clone)]
pub(crate) struct Row {
    pub(crate) columns: Arc<[String]>,
    pub(crate) values: Vec<Value>,
}

impl Row {
    pub(crate) fn get<T: FromValue>(&self, name: &str) -> Result<T> {
        let i = self
            .columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| StoreError::Corrupt(format!("a query returned no column {name}")))?;
        T::from_value(&self.values[i]).map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
    }

    pub(crate) fn at<T: FromValue>(&self, i: usize) -> Result<T> {
        let v = self.values.get(i).ok_or_else(|| StoreError::Corrupt(format!("a query returned no column {i}")))?;
        T::from_value(v).map_err(|e| StoreError::Corrupt(format!("column {}: {e}", self.columns[i])))
    }
}

/// Where the SQL of the backends differs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    /// The database's clock in Unix seconds, as an expression.
    pub now: &'static str,
    /// The larger of two values (`MAX(a, b)` in SQLite, `GREATEST(a, b)` in PostgreSQL).
    pub greatest: &'static str,
    /// Whether writes take row locks on the study they change (a server with many writers); a
    /// database with one writer at a time (SQLite) needs none.
    pub row_locks: bool,
}

/// One transaction of a backend.
pub(crate) trait Tx {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Rows changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    /// Statements separated by `;`, without parameters (migrations).
    fn batch(&mut self, sql: &str) -> Result<()>;
    fn dialect(&self) -> Dialect;
}

fn query_opt(tx: &mut dyn Tx, sql: &str, params: &[Value]) -> Result<Option<Row>> {
    Ok(tx.query(sql, params)?.into_iter().next())
}

fn query_one(tx: &mut dyn Tx, sql: &str, params: &[Value]) -> Result<Row> {
    query_opt(tx, sql, params)?.ok_or_else(|| StoreError::Corrupt(format!("expected a row from {sql}")))
}

fn query_all<T>(tx: &mut dyn Tx, sql: &str, params: &[Value], f: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    tx.query(sql, params)?.iter().map(f).collect()
}

// ---------------------------------------------------------------------------------------------
// Columns

const TRIAL_COLUMNS: &str = "id, number, sample_index, params_json, max_train_steps, state, attempt, failures, \
    best_step, best_value, final_step, final_value, message, created_at, started_at, finished_at, \
    lease_worker, lease_host, lease_pid, heartbeat_at, lease_timeout, rung";

const RUNG_COLUMNS: &str = "r.trial_id, t.number, r.rung, r.budget, r.state, r.entry, r.resumed_step, r.best_step, r.best_value, \
    r.final_step, r.final_value, r.budget_independent_until, r.steps_run, r.message, r.started_at, r.finished_at, \
    COALESCE(r.params_json, t.params_json) AS rung_params";

const STUDY_COLUMNS: &str = "id, name, spec_json, identity_json, created_at, next_sample_index";

/// A REAL column that may hold NULL for NaN (SQLite cannot store NaN).
fn real(row: &Row, column: &str) -> Result<f64> {
    Ok(row.get::<Option<f64>>(column)?.unwrap_or(f64::NAN))
}

/// An optional value whose presence is decided by a companion column (`step` for a value).
fn real_if(row: &Row, column: &str, present: bool) -> Result<Option<f64>> {
    Ok(if present { Some(real(row, column)?) } else { None })
}

fn study_from_row(row: &Row) -> Result<StudyRecord> {
    Ok(StudyRecord {
        id: row.get("id")?,
        name: row.get("name")?,
        spec_json: row.get("spec_json")?,
        identity_json: row.get("identity_json")?,
        created_at: row.get("created_at")?,
        next_sample_index: row.get("next_sample_index")?,
    })
}

fn trial_from_row(row: &Row) -> Result<TrialRecord> {
    let best_step: Option<u64> = row.get("best_step")?;
    let final_step: Option<u64> = row.get("final_step")?;
    let lease = match row.get::<Option<String>>("lease_worker")? {
        Some(worker) => Some(Lease {
            worker,
            host: row.get("lease_host")?,
            pid: row.get("lease_pid")?,
            heartbeat_at: row.get("heartbeat_at")?,
            timeout: row.get("lease_timeout")?,
        }),
        None => None,
    };
    Ok(TrialRecord {
        id: row.get("id")?,
        number: row.get("number")?,
        sample_index: row.get("sample_index")?,
        params: row.get("params_json")?,
        max_train_steps: row.get("max_train_steps")?,
        state: row.get("state")?,
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

fn rung_from_row(row: &Row) -> Result<RungRecord> {
    let rung: u32 = row.get("rung")?;
    let best_step: Option<u64> = row.get("best_step")?;
    let final_step: Option<u64> = row.get("final_step")?;
    let entry = match row.get::<String>("entry")?.as_str() {
        "resumed" => RungEntry::Resumed { from: rung.saturating_sub(1), step: row.get("resumed_step")? },
        "restarted" => RungEntry::Restarted { from: rung.saturating_sub(1) },
        _ => RungEntry::Started,
    };
    Ok(RungRecord {
        trial: row.get("trial_id")?,
        number: row.get("number")?,
        rung,
        budget: row.get("budget")?,
        state: row.get("state")?,
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
        params: row.get("rung_params")?,
    })
}

fn attempt_from_row(row: &Row) -> Result<AttemptRecord> {
    Ok(AttemptRecord {
        trial: row.get("trial_id")?,
        attempt: row.get("attempt")?,
        worker: row.get("worker")?,
        host: row.get("host")?,
        pid: row.get("pid")?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        outcome: row.get("outcome")?,
        message: row.get("message")?,
        exit_code: row.get("exit_code")?,
        rung: row.get("rung")?,
    })
}

fn metric_from_row(r: &Row) -> Result<MetricPoint> {
    Ok(MetricPoint { step: r.get("step")?, name: r.get("name")?, value: real(r, "value")? })
}

fn metrics_at(tx: &mut dyn Tx, trial: TrialId, rung: u32) -> Result<Vec<MetricPoint>> {
    let sql = "SELECT step, name, value FROM metrics WHERE trial_id = ?1 AND rung = ?2 ORDER BY step, name";
    query_all(tx, sql, p![trial, rung], metric_from_row)
}

/// This process's clock, for records that are not leases (creation times).
pub(crate) fn local_now() -> f64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// Guards and locks

fn ensure_study(tx: &mut dyn Tx, study: StudyId) -> Result<()> {
    query_opt(tx, "SELECT 1 FROM studies WHERE id = ?1", p![study])?.map(|_| ()).ok_or(StoreError::NoStudy(study))
}

fn ensure_trial(tx: &mut dyn Tx, trial: TrialId) -> Result<()> {
    query_opt(tx, "SELECT 1 FROM trials WHERE id = ?1", p![trial])?.map(|_| ()).ok_or(StoreError::NoTrial(trial))
}

/// Take the study's row lock (on a server with many writers): every write that changes what a
/// claim decides on (claims, finishes, checkpoints, requeues, imports) serializes on it, so a
/// claim's policy sees one consistent study. Without row locks, only that it exists.
fn lock_study(tx: &mut dyn Tx, study: StudyId) -> Result<()> {
    if !tx.dialect().row_locks {
        return ensure_study(tx, study);
    }
    query_opt(tx, "SELECT id FROM studies WHERE id = ?1 FOR UPDATE", p![study])?.map(|_| ()).ok_or(StoreError::NoStudy(study))
}

/// [`lock_study`] for the study of `trial`. Exclusive, as a claim's: PostgreSQL lets shared
/// lockers pass a waiting exclusive one, so a stream of finishes could starve claims.
fn lock_study_of(tx: &mut dyn Tx, trial: TrialId) -> Result<()> {
    if !tx.dialect().row_locks {
        return ensure_trial(tx, trial);
    }
    let sql = "SELECT s.id FROM studies s JOIN trials t ON t.study_id = s.id WHERE t.id = ?1 FOR UPDATE OF s";
    query_opt(tx, sql, p![trial])?.map(|_| ()).ok_or(StoreError::NoTrial(trial))
}

fn load_trial(tx: &mut dyn Tx, trial: TrialId) -> Result<TrialRecord> {
    let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE id = ?1");
    query_opt(tx, &sql, p![trial])?.map(|r| trial_from_row(&r)).unwrap_or(Err(StoreError::NoTrial(trial)))
}

/// The write guard, as a write: renew the lease of `trial` if `attempt` is the current attempt
/// of a running trial (one conditioned update of its row, which a concurrent writer's must wait
/// for), and return its rung; otherwise say why not.
fn ensure_writable(tx: &mut dyn Tx, trial: TrialId, attempt: u32) -> Result<u32> {
    let sql = format!(
        "UPDATE trials SET heartbeat_at = {} WHERE id = ?1 AND state = 'running' AND attempt = ?2 RETURNING rung",
        tx.dialect().now
    );
    if let Some(row) = query_opt(tx, &sql, p![trial, attempt])? {
        return row.at(0);
    }
    match query_opt(tx, "SELECT state, attempt FROM trials WHERE id = ?1", p![trial])? {
        None => Err(StoreError::NoTrial(trial)),
        Some(row) => Err(StoreError::NotWritable { trial, attempt, state: row.at(0)?, current: row.at(1)? }),
    }
}

fn db_now(tx: &mut dyn Tx) -> Result<f64> {
    let sql = format!("SELECT {}", tx.dialect().now);
    query_one(tx, &sql, &[])?.at(0)
}

// ---------------------------------------------------------------------------------------------
// Studies

pub(crate) fn database_id(tx: &mut dyn Tx) -> Result<String> {
    query_opt(tx, "SELECT value FROM horizon_meta WHERE key = 'database_id'", &[])?
        .ok_or_else(|| StoreError::Corrupt("the database has no identity (horizon_meta)".into()))?
        .at(0)
}

pub(crate) fn open_or_create_study(tx: &mut dyn Tx, new: &NewStudy) -> Result<StudyRecord> {
    let sql = format!(
        "INSERT INTO studies (name, spec_json, identity_json, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET spec_json = excluded.spec_json
         RETURNING {STUDY_COLUMNS}"
    );
    study_from_row(&query_one(tx, &sql, p![&new.name, &new.spec_json, &new.identity_json, local_now()])?)
}

pub(crate) fn study_named(tx: &mut dyn Tx, name: &str) -> Result<Option<StudyRecord>> {
    let sql = format!("SELECT {STUDY_COLUMNS} FROM studies WHERE name = ?1");
    query_opt(tx, &sql, p![name])?.map(|r| study_from_row(&r)).transpose()
}

pub(crate) fn studies(tx: &mut dyn Tx) -> Result<Vec<StudyRecord>> {
    query_all(tx, &format!("SELECT {STUDY_COLUMNS} FROM studies ORDER BY id"), &[], study_from_row)
}

fn study_by_id(tx: &mut dyn Tx, study: StudyId) -> Result<StudyRecord> {
    let sql = format!("SELECT {STUDY_COLUMNS} FROM studies WHERE id = ?1");
    query_opt(tx, &sql, p![study])?.map(|r| study_from_row(&r)).unwrap_or(Err(StoreError::NoStudy(study)))
}

pub(crate) fn create_study_with_imports(
    tx: &mut dyn Tx,
    new: &NewStudy,
    trials: &[ImportedTrial],
) -> Result<(StudyRecord, Vec<TrialRecord>)> {
    let sql = format!(
        "INSERT INTO studies (name, spec_json, identity_json, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO NOTHING RETURNING {STUDY_COLUMNS}"
    );
    let Some(row) = query_opt(tx, &sql, p![&new.name, &new.spec_json, &new.identity_json, local_now()])? else {
        return Err(StoreError::StudyExists { name: new.name.clone() });
    };
    let study = study_from_row(&row)?;
    let stored = import(tx, study.id, trials)?;
    Ok((study, stored))
}

// ---------------------------------------------------------------------------------------------
// Claiming

pub(crate) fn claim(tx: &mut dyn Tx, study: StudyId, request: &ClaimRequest<'_>) -> Result<Claim> {
    lock_study(tx, study)?;
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
                tx.execute(
                    "UPDATE rungs SET params_json = COALESCE(params_json, (SELECT params_json FROM trials WHERE id = ?1))
                     WHERE trial_id = ?1 AND rung < ?2",
                    p![trial, rung],
                )?;
                tx.execute("UPDATE trials SET params_json = ?2 WHERE id = ?1", p![trial, p.to_json_string()])?;
            }
            trial
        }
    };
    open_attempt(tx, trial)?;
    sync_rung(tx, trial)?;
    let trial = load_trial(tx, trial)?;
    let rung = load_rung(tx, trial.id, trial.rung)?;
    let resume_from: Option<String> =
        query_one(tx, "SELECT resume_path FROM rungs WHERE trial_id = ?1 AND rung = ?2", p![trial.id, trial.rung])?.at(0)?;
    Ok(Claim::Run(Box::new(ClaimedTrial { trial, rung, resume_from })))
}

/// What the policy sees: the oldest waiting trial and the sample count always; every trial,
/// rung and live checkpoint when it asks for the history.
fn claim_view(tx: &mut dyn Tx, study: StudyId, history: bool) -> Result<ClaimView> {
    let sampled: u64 = query_opt(tx, "SELECT next_sample_index FROM studies WHERE id = ?1", p![study])?
        .ok_or(StoreError::NoStudy(study))?
        .at(0)?;
    let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ?1 AND state = 'waiting' ORDER BY number LIMIT 1");
    let oldest_waiting = query_opt(tx, &sql, p![study])?.map(|r| trial_from_row(&r)).transpose()?;
    let mut view = ClaimView { oldest_waiting, sampled, ..ClaimView::default() };
    if history {
        view.trials = study_trials(tx, study)?;
        view.rungs = study_rungs(tx, study)?;
        // Only what a promotion can resume from: live checkpoints of complete trials, written
        // at their current rung (whatever else a trainer announced costs the claim nothing).
        view.checkpoints = query_all(
            tx,
            "SELECT c.trial_id, c.step FROM checkpoints c JOIN trials t ON t.id = c.trial_id
             WHERE t.study_id = ?1 AND c.deleted = 0 AND t.state = 'complete' AND c.rung = t.rung
             ORDER BY t.number, c.step",
            p![study],
            |r| Ok((r.at(0)?, r.at(1)?)),
        )?;
    }
    Ok(view)
}

fn study_trials(tx: &mut dyn Tx, study: StudyId) -> Result<Vec<TrialRecord>> {
    let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ?1 ORDER BY number");
    query_all(tx, &sql, p![study], trial_from_row)
}

fn study_rungs(tx: &mut dyn Tx, study: StudyId) -> Result<Vec<RungRecord>> {
    let sql = format!(
        "SELECT {RUNG_COLUMNS} FROM rungs r JOIN trials t ON t.id = r.trial_id WHERE t.study_id = ?1 ORDER BY t.number, r.rung"
    );
    query_all(tx, &sql, p![study], rung_from_row)
}

fn load_rung(tx: &mut dyn Tx, trial: TrialId, rung: u32) -> Result<RungRecord> {
    let sql =
        format!("SELECT {RUNG_COLUMNS} FROM rungs r JOIN trials t ON t.id = r.trial_id WHERE r.trial_id = ?1 AND r.rung = ?2");
    match query_opt(tx, &sql, p![trial, rung])? {
        Some(row) => rung_from_row(&row),
        None => Err(StoreError::Corrupt(format!("trial {trial} has no record of its rung {rung}"))),
    }
}

/// Mirror the trial's current-rung fields (state, selection, message, times) to its rung record.
fn sync_rung(tx: &mut dyn Tx, trial: TrialId) -> Result<()> {
    tx.execute(
        "UPDATE rungs SET (state, best_step, best_value, final_step, final_value, message, started_at, finished_at) =
            (SELECT state, best_step, best_value, final_step, final_value, message, started_at, finished_at
             FROM trials WHERE id = ?1)
         WHERE trial_id = ?1 AND rung = (SELECT rung FROM trials WHERE id = ?1)",
        p![trial],
    )?;
    Ok(())
}

/// Start a fresh attempt of a waiting trial at its current rung: what earlier attempts recorded
/// at this rung after its start step, and the selection, go.
fn restart(tx: &mut dyn Tx, trial: TrialId, lease: &Lease) -> Result<()> {
    let changed = tx.execute(
        "UPDATE trials SET state = 'running', attempt = attempt + 1, started_at = ?2, finished_at = NULL,
            best_step = NULL, best_value = NULL, final_step = NULL, final_value = NULL,
            lease_worker = ?3, lease_host = ?4, lease_pid = ?5, heartbeat_at = ?2, lease_timeout = ?6
         WHERE id = ?1 AND state = 'waiting'",
        p![trial, lease.heartbeat_at, &lease.worker, &lease.host, lease.pid, lease.timeout],
    )?;
    if changed == 0 {
        return Err(StoreError::Policy(format!("trial {trial} is not waiting: it cannot be run again")));
    }
    // Resumed rungs keep the copied prefix (steps up to the resumed checkpoint, inclusive: the
    // next attempt reports that evaluation again); a rung from scratch starts empty.
    tx.execute(
        "DELETE FROM metrics WHERE trial_id = ?1
            AND rung = (SELECT rung FROM trials WHERE id = ?1)
            AND step > COALESCE((SELECT r.resumed_step FROM rungs r JOIN trials t ON t.id = r.trial_id AND t.rung = r.rung
                                 WHERE r.trial_id = ?1), -1)",
        p![trial],
    )?;
    Ok(())
}

/// Move a trial complete at `rung - 1` to `rung`: a new rung record, the budget, a fresh
/// attempt, and (resuming) the earlier rung's metrics up to the checkpoint's step.
fn promote(tx: &mut dyn Tx, trial: TrialId, rung: u32, budget: u64, resume_step: Option<u64>, lease: &Lease) -> Result<()> {
    let from = rung.checked_sub(1).ok_or_else(|| StoreError::Policy(format!("trial {trial}: rung 0 is not a promotion")))?;
    let resume_path: Option<String> = match resume_step {
        None => None,
        Some(step) => {
            let sql = "SELECT path FROM checkpoints WHERE trial_id = ?1 AND step = ?2 AND deleted = 0";
            let path = query_opt(tx, sql, p![trial, step])?.map(|r| r.at::<String>(0)).transpose()?;
            Some(path.ok_or_else(|| {
                StoreError::Policy(format!("trial {trial} has no live checkpoint at step {step} to resume from"))
            })?)
        }
    };
    let changed = tx.execute(
        "UPDATE trials SET rung = ?2, max_train_steps = ?3, state = 'running', attempt = attempt + 1, failures = 0,
            message = NULL, started_at = ?4, finished_at = NULL,
            best_step = NULL, best_value = NULL, final_step = NULL, final_value = NULL,
            lease_worker = ?5, lease_host = ?6, lease_pid = ?7, heartbeat_at = ?4, lease_timeout = ?9
         WHERE id = ?1 AND rung = ?8 AND state = 'complete'",
        p![trial, rung, budget, lease.heartbeat_at, &lease.worker, &lease.host, lease.pid, from, lease.timeout],
    )?;
    if changed == 0 {
        return Err(StoreError::Policy(format!(
            "trial {trial} is not complete at rung {from}: it cannot be promoted to rung {rung}"
        )));
    }
    let entry = if resume_step.is_some() { "resumed" } else { "restarted" };
    // The primary key (trial, rung) refuses a second promotion to the same rung.
    tx.execute(
        "INSERT INTO rungs (trial_id, rung, budget, state, entry, resumed_step, resume_path, started_at)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7)",
        p![trial, rung, budget, entry, resume_step, resume_path, lease.heartbeat_at],
    )?;
    if let Some(step) = resume_step {
        tx.execute(
            "INSERT INTO metrics (trial_id, rung, step, name, value)
             SELECT trial_id, ?2, step, name, value FROM metrics WHERE trial_id = ?1 AND rung = ?3 AND step <= ?4",
            p![trial, rung, from, step],
        )?;
    }
    Ok(())
}

/// Create the study's next trial from the next sample index, at `rung` with `budget`: with the
/// sampler's point at that index, or with `given` parameters (a later round's new trials, drawn
/// by the policy from the round's own space; the index then only keeps numbers unique).
fn create_trial(
    tx: &mut dyn Tx,
    study: StudyId,
    request: &ClaimRequest<'_>,
    lease: &Lease,
    budget: u64,
    rung: u32,
    given: Option<Params>,
) -> Result<TrialId> {
    // Imported trials have no sample index: the sampler's quota counts allocated indices, not
    // trials, so an import neither shrinks nor breaks the sequence.
    let index: u64 = query_one(
        tx,
        "UPDATE studies SET next_sample_index = next_sample_index + 1 WHERE id = ?1 RETURNING next_sample_index - 1",
        p![study],
    )?
    .at(0)?;
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
        tx.execute("UPDATE trials SET rung = ?2 WHERE id = ?1", p![id, rung])?;
        tx.execute("UPDATE rungs SET rung = ?2 WHERE trial_id = ?1", p![id, rung])?;
    }
    Ok(id)
}

/// Allocate `count` consecutive trial numbers of `study` in one update of its row; returns the
/// first. The counter never falls behind the numbers stored (an older horizon still running on
/// a database this one upgraded numbers trials by `MAX(number) + 1` without advancing it).
fn next_numbers(tx: &mut dyn Tx, study: StudyId, count: u64) -> Result<u64> {
    let sql = format!(
        "UPDATE studies SET next_trial_number =
            {}(next_trial_number, (SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = ?1)) + ?2
         WHERE id = ?1 RETURNING next_trial_number - ?2",
        tx.dialect().greatest
    );
    query_one(tx, &sql, p![study, count])?.at(0)
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
fn insert_trial(tx: &mut dyn Tx, study: StudyId, row: &TrialRow<'_>) -> Result<TrialId> {
    let (s, lease) = (row.selection, row.lease);
    let id: TrialId = query_one(
        tx,
        "INSERT INTO trials (study_id, number, sample_index, params_json, max_train_steps, state, attempt, failures,
            best_step, best_value, final_step, final_value, message, created_at, started_at, finished_at,
            lease_worker, lease_host, lease_pid, heartbeat_at, lease_timeout)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
         RETURNING id",
        p![
            study,
            row.number,
            row.sample_index,
            row.params.to_json_string(),
            row.max_train_steps,
            row.state,
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
            lease.and_then(|l| l.timeout),
        ],
    )?
    .at(0)?;
    tx.execute(
        "INSERT INTO rungs (trial_id, rung, budget, state, entry, best_step, best_value, final_step, final_value,
            steps_run, message, started_at, finished_at)
         SELECT id, 0, max_train_steps, state, 'started', best_step, best_value, final_step, final_value,
            0, message, started_at, finished_at FROM trials WHERE id = ?1",
        p![id],
    )?;
    Ok(id)
}

/// Record the launch the trial's lease and attempt now describe.
fn open_attempt(tx: &mut dyn Tx, trial: TrialId) -> Result<()> {
    tx.execute(
        "INSERT INTO attempts (trial_id, attempt, worker, host, pid, started_at, rung)
         SELECT id, attempt, lease_worker, lease_host, lease_pid, started_at, rung FROM trials WHERE id = ?1",
        p![trial],
    )?;
    Ok(())
}

fn close_attempt(
    tx: &mut dyn Tx,
    trial: TrialId,
    attempt: u32,
    at: f64,
    outcome: TrialState,
    message: Option<&str>,
    exit_code: Option<i32>,
) -> Result<()> {
    tx.execute(
        "UPDATE attempts SET finished_at = ?3, outcome = ?4, message = ?5, exit_code = ?6
         WHERE trial_id = ?1 AND attempt = ?2",
        p![trial, attempt, at, outcome, message, exit_code],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writes by the running attempt

/// Rows per multi-row insert (5 parameters each: well under every backend's limit).
const INSERT_ROWS: usize = 100;

/// Store metrics (one multi-row statement per chunk). A point given twice keeps its last value,
/// as two reports one after the other would.
fn insert_metrics(tx: &mut dyn Tx, trial: TrialId, rung: u32, points: &[MetricPoint]) -> Result<()> {
    let mut last: HashMap<(u64, &str), usize> = HashMap::with_capacity(points.len());
    for (i, pt) in points.iter().enumerate() {
        last.insert((pt.step, pt.name.as_str()), i);
    }
    let unique: Vec<&MetricPoint> =
        points.iter().enumerate().filter(|(i, pt)| last[&(pt.step, pt.name.as_str())] == *i).map(|(_, pt)| pt).collect();
    for chunk in unique.chunks(INSERT_ROWS) {
        let mut sql = String::from("INSERT INTO metrics (trial_id, rung, step, name, value) VALUES ");
        let mut params = Vec::with_capacity(2 + 3 * chunk.len());
        params.extend([Value::from(trial), Value::from(rung)]);
        for (i, pt) in chunk.iter().enumerate() {
            let n = 3 + 3 * i;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(?1, ?2, ?{}, ?{}, ?{})", n, n + 1, n + 2));
            params.extend([Value::from(pt.step), Value::from(&pt.name), Value::from(pt.value)]);
        }
        sql.push_str(" ON CONFLICT (trial_id, rung, step, name) DO UPDATE SET value = excluded.value");
        tx.execute(&sql, &params)?;
    }
    Ok(())
}

pub(crate) fn heartbeat(tx: &mut dyn Tx, trial: TrialId, attempt: u32) -> Result<()> {
    ensure_writable(tx, trial, attempt).map(|_| ())
}

pub(crate) fn now(tx: &mut dyn Tx) -> Result<f64> {
    db_now(tx)
}

pub(crate) fn append_metrics(tx: &mut dyn Tx, trial: TrialId, attempt: u32, points: &[MetricPoint]) -> Result<()> {
    let rung = ensure_writable(tx, trial, attempt)?;
    insert_metrics(tx, trial, rung, points)
}

pub(crate) fn append_warnings(tx: &mut dyn Tx, trial: TrialId, attempt: u32, messages: &[String]) -> Result<()> {
    ensure_writable(tx, trial, attempt)?;
    for message in messages {
        tx.execute("INSERT INTO warnings (trial_id, attempt, message) VALUES (?1, ?2, ?3)", p![trial, attempt, message])?;
    }
    Ok(())
}

pub(crate) fn record_checkpoint(tx: &mut dyn Tx, trial: TrialId, attempt: u32, step: u64, path: &str) -> Result<()> {
    lock_study_of(tx, trial)?;
    let rung = ensure_writable(tx, trial, attempt)?;
    tx.execute(
        "INSERT INTO checkpoints (trial_id, attempt, step, path, deleted, rung) VALUES (?1, ?2, ?3, ?4, 0, ?5)
         ON CONFLICT (trial_id, step) DO UPDATE
         SET attempt = excluded.attempt, path = excluded.path, deleted = 0, rung = excluded.rung",
        p![trial, attempt, step, path, rung],
    )?;
    Ok(())
}

pub(crate) fn mark_checkpoint_deleted(tx: &mut dyn Tx, trial: TrialId, step: u64) -> Result<()> {
    lock_study_of(tx, trial)?;
    tx.execute("UPDATE checkpoints SET deleted = 1 WHERE trial_id = ?1 AND step = ?2", p![trial, step])?;
    Ok(())
}

pub(crate) fn finish_attempt(tx: &mut dyn Tx, trial: TrialId, attempt: u32, finish: &Finish) -> Result<()> {
    lock_study_of(tx, trial)?;
    ensure_writable(tx, trial, attempt)?;
    let s: Option<&Selection> = finish.selection.as_ref();
    let finished_at = finish.state.is_finished().then_some(finish.at);
    let keep_lease = finish.state == TrialState::Running;
    tx.execute(
        "UPDATE trials SET state = ?2, message = ?3,
            best_step = ?4, best_value = ?5, final_step = ?6, final_value = ?7,
            failures = failures + ?8, finished_at = ?9,
            lease_worker = CASE WHEN ?10 = 1 THEN lease_worker END,
            lease_host   = CASE WHEN ?10 = 1 THEN lease_host END,
            lease_pid    = CASE WHEN ?10 = 1 THEN lease_pid END,
            heartbeat_at = CASE WHEN ?10 = 1 THEN heartbeat_at END,
            lease_timeout = CASE WHEN ?10 = 1 THEN lease_timeout END
         WHERE id = ?1",
        p![
            trial,
            finish.state,
            finish.message.as_deref(),
            s.map(|s| s.best_step),
            s.map(|s| s.best_value),
            s.map(|s| s.final_step),
            s.map(|s| s.final_value),
            u32::from(finish.counts_as_failure),
            finished_at,
            keep_lease,
        ],
    )?;
    sync_rung(tx, trial)?;
    tx.execute(
        "UPDATE rungs SET steps_run = steps_run + ?2,
            budget_independent_until = COALESCE(?3, budget_independent_until)
         WHERE trial_id = ?1 AND rung = (SELECT rung FROM trials WHERE id = ?1)",
        p![trial, finish.steps_run, finish.budget_independent_until],
    )?;
    close_attempt(tx, trial, attempt, finish.at, finish.state, finish.message.as_deref(), finish.exit_code)
}

pub(crate) fn requeue_abandoned(
    tx: &mut dyn Tx,
    trial: TrialId,
    attempt: u32,
    worker: &str,
    heartbeat: Option<f64>,
    reason: &str,
    at: f64,
) -> Result<bool> {
    lock_study_of(tx, trial)?;
    // The whole judgement is in the write: the attempt, the worker, and (given) the heartbeat
    // the caller saw, so a lease renewed since is kept.
    let changed = tx.execute(
        "UPDATE trials SET state = 'waiting', message = ?4,
            lease_worker = NULL, lease_host = NULL, lease_pid = NULL, heartbeat_at = NULL, lease_timeout = NULL
         WHERE id = ?1 AND state = 'running' AND attempt = ?2 AND lease_worker = ?3
           AND (CAST(?5 AS DOUBLE PRECISION) IS NULL OR heartbeat_at = CAST(?5 AS DOUBLE PRECISION))",
        p![trial, attempt, worker, reason, heartbeat],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    sync_rung(tx, trial)?;
    close_attempt(tx, trial, attempt, at, TrialState::Waiting, Some(reason), None)?;
    Ok(true)
}

/// Put the chosen trials back to waiting (see the contract of [`crate::Storage::requeue_trials`]).
pub(crate) fn requeue_trials(tx: &mut dyn Tx, study: StudyId, requeue: &Requeue<'_>) -> Result<Vec<TrialRecord>> {
    lock_study(tx, study)?;
    let mut chosen: Vec<TrialRecord> = Vec::new();
    let sql = format!(
        "SELECT {TRIAL_COLUMNS}, CASE WHEN EXISTS (SELECT 1 FROM imports i WHERE i.trial_id = trials.id) THEN 1 ELSE 0 END AS imported
         FROM trials WHERE study_id = ?1 ORDER BY number"
    );
    for row in tx.query(&sql, p![study])? {
        let (trial, imported) = (trial_from_row(&row)?, row.get::<bool>("imported")?);
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
                return Err(StoreError::NotRequeueable { number: trial.number, state: trial.state, why });
            }
            chosen.push(trial);
        } else if requeue.states.contains(&trial.state) && !imported && trial.state != TrialState::Running {
            chosen.push(trial);
        }
    }
    if let Some(&missing) = requeue.numbers.iter().find(|n| !chosen.iter().any(|t| t.number == **n)) {
        return Err(StoreError::NoTrialNumber { study, number: missing });
    }
    for trial in &chosen {
        tx.execute(
            "UPDATE trials SET state = 'waiting', failures = 0, finished_at = NULL, message = ?2 WHERE id = ?1",
            p![trial.id, requeue.message],
        )?;
        sync_rung(tx, trial.id)?;
    }
    chosen.iter().map(|t| load_trial(tx, t.id)).collect()
}

// ---------------------------------------------------------------------------------------------
// Imports

/// Store finished runs made elsewhere: the next numbers, no sample index, their metrics, and
/// their key and origin (the key unique per study). The caller's transaction makes it all or
/// nothing.
pub(crate) fn import(tx: &mut dyn Tx, study: StudyId, trials: &[ImportedTrial]) -> Result<Vec<TrialRecord>> {
    lock_study(tx, study)?;
    let first = next_numbers(tx, study, trials.len() as u64)?;
    let mut ids = Vec::with_capacity(trials.len());
    for (number, t) in (first..).zip(trials) {
        if !t.state.is_finished() {
            return Err(StoreError::NotImportable { origin: t.origin.clone(), state: t.state });
        }
        if let Some((number, earlier)) = imported_as(tx, study, &t.run_key)? {
            let origin = t.origin.clone();
            return Err(if number >= first {
                StoreError::DuplicateRun { origin, earlier }
            } else {
                StoreError::AlreadyImported { origin, earlier, study, number }
            });
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
        tx.execute(
            "INSERT INTO imports (trial_id, study_id, run_key, origin, source) VALUES (?1, ?2, ?3, ?4, ?5)",
            p![id, study, &t.run_key, &t.origin, t.source.as_deref()],
        )?;
        insert_metrics(tx, id, 0, &t.metrics)?;
        let steps = t.metrics.iter().map(|m| m.step).max().unwrap_or(0);
        tx.execute("UPDATE rungs SET steps_run = ?2 WHERE trial_id = ?1 AND rung = 0", p![id, steps])?;
        ids.push(id);
    }
    ids.into_iter().map(|id| load_trial(tx, id)).collect()
}

/// The number and origin of the trial of `study` imported with `run_key`, if any.
fn imported_as(tx: &mut dyn Tx, study: StudyId, run_key: &str) -> Result<Option<(u64, String)>> {
    let sql =
        "SELECT t.number, i.origin FROM imports i JOIN trials t ON t.id = i.trial_id WHERE i.study_id = ?1 AND i.run_key = ?2";
    query_opt(tx, sql, p![study, run_key])?.map(|r| Ok((r.at(0)?, r.at(1)?))).transpose()
}

pub(crate) fn imports(tx: &mut dyn Tx, study: StudyId) -> Result<Vec<ImportRecord>> {
    query_all(
        tx,
        "SELECT i.trial_id, i.origin, i.source FROM imports i JOIN trials t ON t.id = i.trial_id
         WHERE i.study_id = ?1 ORDER BY t.number",
        p![study],
        |r| Ok(ImportRecord { trial: r.at(0)?, origin: r.at(1)?, source: r.at(2)? }),
    )
}

// ---------------------------------------------------------------------------------------------
// Moving a study between databases

/// The tables that hold a study's trials, each with how its rows are found: by `trial_id`, or
/// (imports) by `study_id` too. Every column is copied as stored, the trial id mapped.
const TRIAL_TABLES: &[&str] = &["rungs", "metrics", "checkpoints", "warnings", "attempts", "imports"];

/// The ordering of each table's rows in a dump (the same on every backend).
fn order_of(table: &str) -> &'static str {
    match table {
        "rungs" => "trial_id, rung",
        "metrics" => "trial_id, rung, step, name",
        "checkpoints" => "trial_id, step",
        "warnings" => "trial_id, id",
        "attempts" => "trial_id, attempt",
        _ => "trial_id",
    }
}

pub(crate) fn dump_study(tx: &mut dyn Tx, study: StudyId) -> Result<crate::StudyDump> {
    let record = study_by_id(tx, study)?;
    let next_trial_number: u64 = query_one(tx, "SELECT next_trial_number FROM studies WHERE id = ?1", p![study])?.at(0)?;
    let trials = tx.query("SELECT * FROM trials WHERE study_id = ?1 ORDER BY number", p![study])?;
    if let Some(running) = trials.iter().find(|r| r.get::<String>("state").is_ok_and(|s| s == "running")) {
        return Err(StoreError::Policy(format!(
            "trial {} of study {:?} is running: a study is moved between databases while no worker runs it\n  \
             fix: stop its workers (Ctrl-C), or let them finish, then copy it",
            running.get::<u64>("number")?,
            record.name
        )));
    }
    let mut tables = Vec::new();
    for table in TRIAL_TABLES {
        let sql = format!(
            "SELECT x.* FROM {table} x JOIN trials t ON t.id = x.trial_id WHERE t.study_id = ?1 ORDER BY {}",
            order_of(table).split(", ").map(|c| format!("x.{c}")).collect::<Vec<_>>().join(", ")
        );
        tables.push((table.to_string(), tx.query(&sql, p![study])?));
    }
    Ok(crate::StudyDump { record, next_trial_number, trials, tables })
}

/// The columns a dump may carry, per table (the schema's): a column name read from a source
/// database goes into SQL text, so only these are accepted.
fn known_columns(table: &str) -> &'static [&'static str] {
    match table {
        "trials" => &[
            "id",
            "study_id",
            "number",
            "sample_index",
            "params_json",
            "max_train_steps",
            "state",
            "attempt",
            "failures",
            "best_step",
            "best_value",
            "final_step",
            "final_value",
            "message",
            "created_at",
            "started_at",
            "finished_at",
            "lease_worker",
            "lease_host",
            "lease_pid",
            "heartbeat_at",
            "lease_timeout",
            "rung",
        ],
        "rungs" => &[
            "trial_id",
            "rung",
            "budget",
            "state",
            "entry",
            "resumed_step",
            "resume_path",
            "best_step",
            "best_value",
            "final_step",
            "final_value",
            "budget_independent_until",
            "steps_run",
            "message",
            "started_at",
            "finished_at",
            "params_json",
        ],
        "metrics" => &["trial_id", "rung", "step", "name", "value"],
        "checkpoints" => &["trial_id", "attempt", "step", "path", "deleted", "rung"],
        "warnings" => &["id", "trial_id", "attempt", "message"],
        "attempts" => &[
            "trial_id",
            "attempt",
            "worker",
            "host",
            "pid",
            "started_at",
            "finished_at",
            "outcome",
            "message",
            "exit_code",
            "rung",
        ],
        "imports" => &["trial_id", "study_id", "run_key", "origin", "source"],
        _ => &[],
    }
}

/// Insert `row` into `table` without the columns in `skip`, with `set` columns given.
fn insert_row(
    tx: &mut dyn Tx,
    table: &str,
    row: &Row,
    skip: &[&str],
    set: &[(&str, Value)],
    returning: bool,
) -> Result<Option<Row>> {
    let mut columns = Vec::new();
    let mut values = Vec::new();
    for (c, v) in row.columns.iter().zip(&row.values) {
        if !known_columns(table).contains(&c.as_str()) {
            return Err(StoreError::Corrupt(format!(
                "the source database's table {table} has a column {c:?} that horizon does not know; nothing was copied"
            )));
        }
        if skip.contains(&c.as_str()) || set.iter().any(|(s, _)| s == c) {
            continue;
        }
        columns.push(c.clone());
        values.push(v.clone());
    }
    for (c, v) in set {
        columns.push(c.to_string());
        values.push(v.clone());
    }
    let placeholders: Vec<String> = (1..=values.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({}){}",
        columns.join(", "),
        placeholders.join(", "),
        if returning { " RETURNING id" } else { "" }
    );
    if returning { query_opt(tx, &sql, &values) } else { tx.execute(&sql, &values).map(|_| None) }
}

pub(crate) fn restore_study(tx: &mut dyn Tx, dump: &crate::StudyDump, replace: bool) -> Result<StudyRecord> {
    let r = &dump.record;
    if replace && let Some(existing) = study_named(tx, &r.name)? {
        lock_study(tx, existing.id)?;
        let running = query_opt(tx, "SELECT number FROM trials WHERE study_id = ?1 AND state = 'running'", p![existing.id])?;
        if let Some(row) = running {
            return Err(StoreError::Policy(format!(
                "trial {} of the study {:?} being replaced is running\n  fix: stop its workers first",
                row.at::<u64>(0)?,
                r.name
            )));
        }
        // Every row of the study goes with it (foreign keys cascade).
        tx.execute("DELETE FROM studies WHERE id = ?1", p![existing.id])?;
    }
    let sql = format!(
        "INSERT INTO studies (name, spec_json, identity_json, created_at, next_sample_index, next_trial_number)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO NOTHING RETURNING {STUDY_COLUMNS}"
    );
    let params = p![&r.name, &r.spec_json, &r.identity_json, r.created_at, r.next_sample_index, dump.next_trial_number];
    let Some(row) = query_opt(tx, &sql, params)? else {
        return Err(StoreError::StudyExists { name: r.name.clone() });
    };
    let study = study_from_row(&row)?;
    let mut ids: HashMap<i64, i64> = HashMap::with_capacity(dump.trials.len());
    for trial in &dump.trials {
        let old: i64 = trial.get("id")?;
        let new = insert_row(tx, "trials", trial, &["id"], &[("study_id", Value::Int(study.id))], true)?
            .ok_or_else(|| StoreError::Corrupt("an inserted trial returned no id".into()))?
            .at(0)?;
        ids.insert(old, new);
    }
    for (table, rows) in &dump.tables {
        for row in rows {
            let old: i64 = row.get("trial_id")?;
            let new = *ids.get(&old).ok_or_else(|| StoreError::Corrupt(format!("{table}: a row of no trial of the study")))?;
            let mut set = vec![("trial_id", Value::Int(new))];
            if table == "imports" {
                set.push(("study_id", Value::Int(study.id)));
            }
            // Warnings are numbered by the database they are in.
            let skip: &[&str] = if table == "warnings" { &["id"] } else { &[] };
            insert_row(tx, table, row, skip, &set, false)?;
        }
    }
    Ok(study)
}

// ---------------------------------------------------------------------------------------------
// Reads

pub(crate) fn trials(tx: &mut dyn Tx, study: StudyId) -> Result<Vec<TrialRecord>> {
    ensure_study(tx, study)?;
    study_trials(tx, study)
}

pub(crate) fn rungs(tx: &mut dyn Tx, study: StudyId) -> Result<Vec<RungRecord>> {
    ensure_study(tx, study)?;
    study_rungs(tx, study)
}

pub(crate) fn snapshot(tx: &mut dyn Tx, study: StudyId) -> Result<(StudyRecord, Vec<TrialRecord>, Vec<RungRecord>)> {
    let record = study_by_id(tx, study)?;
    Ok((record, study_trials(tx, study)?, study_rungs(tx, study)?))
}

pub(crate) fn rung_metrics(tx: &mut dyn Tx, trial: TrialId, rung: u32) -> Result<Vec<MetricPoint>> {
    ensure_trial(tx, trial)?;
    metrics_at(tx, trial, rung)
}

pub(crate) fn trials_in_state(tx: &mut dyn Tx, study: StudyId, state: TrialState) -> Result<Vec<TrialRecord>> {
    ensure_study(tx, study)?;
    let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ?1 AND state = ?2 ORDER BY number");
    query_all(tx, &sql, p![study, state], trial_from_row)
}

pub(crate) fn trial(tx: &mut dyn Tx, trial: TrialId) -> Result<TrialRecord> {
    load_trial(tx, trial)
}

pub(crate) fn metrics(tx: &mut dyn Tx, trial: TrialId) -> Result<Vec<MetricPoint>> {
    let rung = load_trial(tx, trial)?.rung;
    metrics_at(tx, trial, rung)
}

pub(crate) fn study_metric(tx: &mut dyn Tx, study: StudyId, name: &str) -> Result<Vec<(TrialId, u64, f64)>> {
    ensure_study(tx, study)?;
    query_all(
        tx,
        "SELECT m.trial_id, m.step, m.value FROM trials t JOIN metrics m ON m.trial_id = t.id AND m.rung = t.rung
         WHERE t.study_id = ?1 AND m.name = ?2 ORDER BY t.number, m.step",
        p![study, name],
        |r| Ok((r.at(0)?, r.at(1)?, real(r, "value")?)),
    )
}

pub(crate) fn checkpoints(tx: &mut dyn Tx, trial: TrialId) -> Result<Vec<CheckpointRecord>> {
    ensure_trial(tx, trial)?;
    query_all(
        tx,
        "SELECT trial_id, attempt, step, path, deleted FROM checkpoints WHERE trial_id = ?1 ORDER BY step",
        p![trial],
        |r| {
            Ok(CheckpointRecord {
                trial: r.get("trial_id")?,
                attempt: r.get("attempt")?,
                step: r.get("step")?,
                path: r.get("path")?,
                deleted: r.get("deleted")?,
            })
        },
    )
}

pub(crate) fn warnings(tx: &mut dyn Tx, trial: TrialId) -> Result<Vec<WarningRecord>> {
    ensure_trial(tx, trial)?;
    query_all(tx, "SELECT trial_id, attempt, message FROM warnings WHERE trial_id = ?1 ORDER BY id", p![trial], |r| {
        Ok(WarningRecord { trial: r.get("trial_id")?, attempt: r.get("attempt")?, message: r.get("message")? })
    })
}

pub(crate) fn attempts(tx: &mut dyn Tx, trial: TrialId) -> Result<Vec<AttemptRecord>> {
    ensure_trial(tx, trial)?;
    query_all(
        tx,
        "SELECT trial_id, attempt, worker, host, pid, started_at, finished_at, outcome, message, exit_code, rung
         FROM attempts WHERE trial_id = ?1 ORDER BY attempt",
        p![trial],
        attempt_from_row,
    )
}

// ---------------------------------------------------------------------------------------------
// The trait, for a backend with `read` and `write` transactions

/// `impl Storage for $backend` from its `fn write<T>(&self, f: impl FnOnce(&mut dyn Tx) ->
/// Result<T>) -> Result<T>` (one writing transaction) and `read` (one consistent read).
macro_rules! impl_storage {
    ($backend:ty) => {
        impl $crate::Storage for $backend {
            fn open_or_create_study(&self, new: &$crate::NewStudy) -> $crate::Result<$crate::StudyRecord> {
                self.write(|tx| $crate::sql::open_or_create_study(tx, new))
            }
            fn study(&self, name: &str) -> $crate::Result<Option<$crate::StudyRecord>> {
                self.read(|tx| $crate::sql::study_named(tx, name))
            }
            fn studies(&self) -> $crate::Result<Vec<$crate::StudyRecord>> {
                self.read($crate::sql::studies)
            }
            fn claim_trial(&self, study: $crate::StudyId, request: &$crate::ClaimRequest<'_>) -> $crate::Result<$crate::Claim> {
                self.write(|tx| $crate::sql::claim(tx, study, request))
            }
            fn heartbeat(&self, trial: $crate::TrialId, attempt: u32) -> $crate::Result<()> {
                self.write(|tx| $crate::sql::heartbeat(tx, trial, attempt))
            }
            fn now(&self) -> $crate::Result<f64> {
                self.read($crate::sql::now)
            }
            fn append_metrics(
                &self,
                trial: $crate::TrialId,
                attempt: u32,
                points: &[horizon_core::MetricPoint],
            ) -> $crate::Result<()> {
                self.write(|tx| $crate::sql::append_metrics(tx, trial, attempt, points))
            }
            fn append_warnings(&self, trial: $crate::TrialId, attempt: u32, messages: &[String]) -> $crate::Result<()> {
                self.write(|tx| $crate::sql::append_warnings(tx, trial, attempt, messages))
            }
            fn record_checkpoint(&self, trial: $crate::TrialId, attempt: u32, step: u64, path: &str) -> $crate::Result<()> {
                self.write(|tx| $crate::sql::record_checkpoint(tx, trial, attempt, step, path))
            }
            fn mark_checkpoint_deleted(&self, trial: $crate::TrialId, step: u64) -> $crate::Result<()> {
                self.write(|tx| $crate::sql::mark_checkpoint_deleted(tx, trial, step))
            }
            fn finish_attempt(&self, trial: $crate::TrialId, attempt: u32, finish: &$crate::Finish) -> $crate::Result<()> {
                self.write(|tx| $crate::sql::finish_attempt(tx, trial, attempt, finish))
            }
            fn requeue_abandoned(
                &self,
                trial: $crate::TrialId,
                attempt: u32,
                worker: &str,
                heartbeat: Option<f64>,
                reason: &str,
                at: f64,
            ) -> $crate::Result<bool> {
                self.write(|tx| $crate::sql::requeue_abandoned(tx, trial, attempt, worker, heartbeat, reason, at))
            }
            fn requeue_trials(
                &self,
                study: $crate::StudyId,
                requeue: &$crate::Requeue<'_>,
            ) -> $crate::Result<Vec<horizon_core::trial::TrialRecord>> {
                self.write(|tx| $crate::sql::requeue_trials(tx, study, requeue))
            }
            fn import_trials(
                &self,
                study: $crate::StudyId,
                trials: &[$crate::ImportedTrial],
            ) -> $crate::Result<Vec<horizon_core::trial::TrialRecord>> {
                self.write(|tx| $crate::sql::import(tx, study, trials))
            }
            fn create_study_with_imports(
                &self,
                new: &$crate::NewStudy,
                trials: &[$crate::ImportedTrial],
            ) -> $crate::Result<($crate::StudyRecord, Vec<horizon_core::trial::TrialRecord>)> {
                self.write(|tx| $crate::sql::create_study_with_imports(tx, new, trials))
            }
            fn imports(&self, study: $crate::StudyId) -> $crate::Result<Vec<$crate::ImportRecord>> {
                self.read(|tx| $crate::sql::imports(tx, study))
            }
            fn trials(&self, study: $crate::StudyId) -> $crate::Result<Vec<horizon_core::trial::TrialRecord>> {
                self.read(|tx| $crate::sql::trials(tx, study))
            }
            fn trials_in_state(
                &self,
                study: $crate::StudyId,
                state: horizon_core::trial::TrialState,
            ) -> $crate::Result<Vec<horizon_core::trial::TrialRecord>> {
                self.read(|tx| $crate::sql::trials_in_state(tx, study, state))
            }
            fn trial(&self, trial: $crate::TrialId) -> $crate::Result<horizon_core::trial::TrialRecord> {
                self.read(|tx| $crate::sql::trial(tx, trial))
            }
            fn metrics(&self, trial: $crate::TrialId) -> $crate::Result<Vec<horizon_core::MetricPoint>> {
                self.read(|tx| $crate::sql::metrics(tx, trial))
            }
            fn rung_metrics(&self, trial: $crate::TrialId, rung: u32) -> $crate::Result<Vec<horizon_core::MetricPoint>> {
                self.read(|tx| $crate::sql::rung_metrics(tx, trial, rung))
            }
            fn rungs(&self, study: $crate::StudyId) -> $crate::Result<Vec<horizon_core::trial::RungRecord>> {
                self.read(|tx| $crate::sql::rungs(tx, study))
            }
            fn snapshot(
                &self,
                study: $crate::StudyId,
            ) -> $crate::Result<(
                $crate::StudyRecord,
                Vec<horizon_core::trial::TrialRecord>,
                Vec<horizon_core::trial::RungRecord>,
            )> {
                self.read(|tx| $crate::sql::snapshot(tx, study))
            }
            fn study_metric(&self, study: $crate::StudyId, name: &str) -> $crate::Result<Vec<($crate::TrialId, u64, f64)>> {
                self.read(|tx| $crate::sql::study_metric(tx, study, name))
            }
            fn checkpoints(&self, trial: $crate::TrialId) -> $crate::Result<Vec<$crate::CheckpointRecord>> {
                self.read(|tx| $crate::sql::checkpoints(tx, trial))
            }
            fn warnings(&self, trial: $crate::TrialId) -> $crate::Result<Vec<$crate::WarningRecord>> {
                self.read(|tx| $crate::sql::warnings(tx, trial))
            }
            fn attempts(&self, trial: $crate::TrialId) -> $crate::Result<Vec<$crate::AttemptRecord>> {
                self.read(|tx| $crate::sql::attempts(tx, trial))
            }
            fn dump_study(&self, study: $crate::StudyId) -> $crate::Result<$crate::StudyDump> {
                self.read(|tx| $crate::sql::dump_study(tx, study))
            }
            fn restore_study(&self, dump: &$crate::StudyDump, replace: bool) -> $crate::Result<$crate::StudyRecord> {
                self.write(|tx| $crate::sql::restore_study(tx, dump, replace))
            }
            fn database_id(&self) -> $crate::Result<String> {
                self.read($crate::sql::database_id)
            }
            fn limit_call_time(&self, limit: std::time::Duration) {
                self.set_call_limit(limit)
            }
        }
    };
}
pub(crate) use impl_storage;
