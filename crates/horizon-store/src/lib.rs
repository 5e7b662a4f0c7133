//! Storage for horizon studies.
//!
//! [`Storage`] is the one interface the runner, the CLI and the analyses use, opened by URL with
//! [`open`]. Two backends implement it from the same SQL (the `sql` module: the contract written
//! once over a small transaction interface and a dialect): [`SqliteStorage`], an embedded SQLite
//! database (bundled, WAL, versioned migrations), and [`PostgresStorage`], a PostgreSQL server
//! shared by workers on many machines (tokio-postgres, every call bounded in time, row locks on
//! the study). Every method is a single transaction, claims are atomic, and nothing depends on a
//! process-local cache, so any number of workers can share one database.
//!
//! # Contract (every backend, checked by `tests/conformance.rs` against both)
//! - **Atomic claim.** [`Storage::claim_trial`] reads the study into a
//!   [`ClaimView`](horizon_core::claim::ClaimView), asks the request's
//!   [`ClaimPolicy`](horizon_core::claim::ClaimPolicy) and applies its decision, all in one
//!   transaction: retry the waiting trial it names, launch the next sample (allocating the next
//!   sample index) at a budget, promote a trial complete at rung `k` to rung `k + 1` (resuming
//!   from its checkpoint at the named step, or from scratch), wait, or done. Two workers never
//!   get the same trial, no trial is promoted to a rung twice, and sample indices are allocated
//!   `0, 1, 2, ...` without gaps or reuse, whatever the interleaving. Trial numbers are
//!   `0, 1, 2, ...` in creation order, sampled or imported.
//! - **Rungs.** Every trial has a rung 0 (a [`RungRecord`]); a promotion adds the next. The
//!   trial's own budget, state and selection are those of its current rung, and every write of
//!   them is mirrored to that rung's record. Metrics are kept per rung: a promotion that resumes
//!   from step `s` copies the earlier rung's metrics up to `s` into the new rung (they are the
//!   same run up to there), and nothing recorded at an earlier rung is ever deleted.
//! - **Leases.** A claim moves the trial to `Running`, increments its `attempt` and records the
//!   worker's [`Lease`]. Only that attempt may write to the trial: metrics, warnings, checkpoints,
//!   heartbeats and the finish all name `(trial, attempt)` and fail with
//!   [`StoreError::NotWritable`] otherwise. A finished trial is never written again. The guard
//!   is part of the write (an update of the trial's row conditioned on its state and attempt,
//!   which also renews the lease), not a check before it. Lease times (the claim, each
//!   heartbeat) are the database's clock ([`Storage::now`]), never a worker's.
//! - **Fresh attempts.** Claiming a `Waiting` trial deletes the metrics its earlier attempts
//!   recorded at its current rung after the rung's start step: each attempt starts from the
//!   rung's start (the resumed checkpoint, or scratch).
//! - **Unique metrics.** A metric is unique per `(trial, step, name)`; reporting it again
//!   replaces the value.
//! - **Abandoned trials.** [`Storage::requeue_abandoned`] moves a `Running` trial back to
//!   `Waiting` only if its attempt and worker are still the ones the caller saw (compare and
//!   set), so two workers cannot both requeue and re-run it. Deciding that a worker is dead is
//!   policy ([`horizon_core::trial::is_abandoned`]), not storage.
//! - **Imports.** [`Storage::import_trials`] stores finished runs made without horizon in one
//!   transaction: all of them or none ([`Storage::create_study_with_imports`] creates the study
//!   in the same transaction). They get the next trial numbers, no sample index (so they
//!   neither consume nor count against the sampler's `max_trials`), attempt 1, and are never
//!   writable by an attempt. Each carries its `run_key` (what makes the run this run: its
//!   parameters, budget and curve), unique within a study, so the same run is not imported
//!   twice however its file was edited or renamed ([`StoreError::AlreadyImported`]), and its
//!   origin (`file:line`) and source for the record ([`Storage::imports`]).
//! - **Requeue by the user.** [`Storage::requeue_trials`] puts chosen trials (by number, and every
//!   trial in the given states) back to `Waiting` in one transaction, all or none. A `Running`
//!   trial is refused ([`StoreError::NotRequeueable`]: its attempt may still write), and so is an
//!   imported trial named by number (horizon has no command for it); imported trials that only
//!   match a state are left alone. A requeued trial keeps its number, parameters, sample index,
//!   `attempt` (the next claim makes it `attempt + 1`), its attempt records, warnings and
//!   checkpoints, and its metrics until that claim starts the next attempt fresh; its `failures`
//!   go back to 0 so that the study's retries apply again, `finished_at` is cleared and the
//!   message says why it was requeued.
//! - Values that are NaN are stored and returned as NaN (SQLite stores them as NULL).
//!
//! ```
//! use horizon_store::{NewStudy, SqliteStorage, Storage};
//! let store = SqliteStorage::open_in_memory().unwrap();
//! let study = store.open_or_create_study(&NewStudy {
//!     name: "demo".into(), spec_json: "{}".into(), identity_json: "{}".into(),
//! }).unwrap();
//! assert_eq!(study.name, "demo");
//! assert!(store.trials(study.id).unwrap().is_empty());
//! ```

mod postgres;
mod sql;
mod sqlite;
mod url;

use horizon_core::claim::ClaimPolicy;
use horizon_core::selection::Selection;
use horizon_core::trial::{Lease, RungRecord, TrialRecord, TrialState};
use horizon_core::{MetricPoint, Params};

#[doc(hidden)]
pub use postgres::testing;
pub use postgres::{CONNECT_TIMEOUT, PostgresStorage, STATEMENT_TIMEOUT};
pub use sqlite::SqliteStorage;
pub use url::{Access, StorageUrl, open};

pub type StudyId = i64;
pub type TrialId = i64;

/// What kind of failure a backend reported, for callers that act on it (the message says the
/// rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// The database could not be opened or written for lack of permission (a read-only file or
    /// directory, a role without the right).
    Permission,
    /// The database does not exist or cannot be reached.
    CannotOpen,
    /// Another writer holds it longer than the wait allows.
    Busy,
    /// A write was refused as read-only (a database opened for reading).
    ReadOnly,
    /// The server did not answer in time, or the connection to it was lost (a network cut, a
    /// restart): worth trying again.
    Unavailable,
    Other,
}

/// Errors of every backend. None carries a backend's own error type, so callers and the
/// conformance suite treat every backend alike.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {target}: {message}")]
    Backend {
        /// "sqlite" or "postgres".
        backend: &'static str,
        /// The database: a path, or a URL without its password.
        target: String,
        kind: BackendErrorKind,
        message: String,
    },
    #[error("database {path} has schema version {found}, newer than this horizon knows ({known}); upgrade horizon")]
    SchemaTooNew { path: String, found: i64, known: i64 },
    #[error(
        "trial {trial}: attempt {attempt} may not write to it (state {state}, attempt {current}); a finished trial is never written again"
    )]
    NotWritable { trial: TrialId, attempt: u32, state: TrialState, current: u32 },
    #[error("no trial with id {0}")]
    NoTrial(TrialId),
    #[error("no study with id {0}")]
    NoStudy(StudyId),
    #[error("the sampler could not propose trial parameters: {0}")]
    Sample(String),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    #[error("{origin}: a run in state {state} cannot be imported; only finished runs (complete, diverged or failed) can")]
    NotImportable { origin: String, state: TrialState },
    #[error(
        "{origin} is the same run (parameters, budget and curve) as {earlier}, already trial {number} of study {study}; importing it again would count the run twice"
    )]
    AlreadyImported { origin: String, earlier: String, study: StudyId, number: u64 },
    #[error(
        "{origin} is the same run (parameters, budget and curve) as {earlier}, earlier in the same import; importing both would count the run twice"
    )]
    DuplicateRun { origin: String, earlier: String },
    #[error("a study named {name:?} already exists")]
    StudyExists { name: String },
    #[error(
        "database {path} has schema version {found}, older than this horizon's ({known}), and it was opened read-only, so it cannot be upgraded\n  \
         fix: run any horizon command that writes (`horizon run`, or `horizon status` by a user who may write {path}) once to upgrade it in place"
    )]
    SchemaTooOld { path: String, found: i64, known: i64 },
    #[error("study {study} has no trial {number}")]
    NoTrialNumber { study: StudyId, number: u64 },
    #[error("the claim policy's decision does not fit the stored study: {0}")]
    Policy(String),
    #[error("trial {number} cannot be requeued: {why}")]
    NotRequeueable { number: u64, state: TrialState, why: String },
}

impl StoreError {
    /// Whether the database could not be opened or written for lack of permission (a read-only
    /// file or directory).
    pub fn is_permission_problem(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                kind: BackendErrorKind::Permission | BackendErrorKind::ReadOnly | BackendErrorKind::CannotOpen,
                ..
            }
        )
    }

    /// Whether trying again later may succeed: the database was unreachable, busy, or lost the
    /// connection (a network cut, a server restart), as opposed to a refusal of the contract.
    pub fn is_transient(&self) -> bool {
        matches!(self.backend_kind(), Some(BackendErrorKind::Unavailable | BackendErrorKind::Busy | BackendErrorKind::CannotOpen))
    }

    /// The kind of a backend failure, `None` for the errors of the contract.
    pub fn backend_kind(&self) -> Option<BackendErrorKind> {
        match self {
            StoreError::Backend { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A study as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyRecord {
    pub id: StudyId,
    pub name: String,
    /// The full study spec (JSON) it was last run with.
    pub spec_json: String,
    /// The identity fields of the spec it was created with ([`horizon_core::StudySpec::identity`]).
    pub identity_json: String,
    pub created_at: f64,
    /// The next sample index the study will hand out.
    pub next_sample_index: u64,
}

/// What [`Storage::open_or_create_study`] needs to create a study.
#[derive(Debug, Clone)]
pub struct NewStudy {
    pub name: String,
    pub spec_json: String,
    pub identity_json: String,
}

/// A worker's request for work.
pub struct ClaimRequest<'a> {
    /// The claiming worker (its `heartbeat_at` is ignored: the claim's time is the database's).
    pub lease: &'a Lease,
    /// The study's claim policy, consulted inside the claim's transaction.
    pub policy: &'a dyn ClaimPolicy,
    /// The parameters of the trial with a given sample index (called inside the transaction).
    pub sample: &'a dyn Fn(u64) -> std::result::Result<Params, String>,
}

/// What a claim gives the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Run this trial (now `Running` under the worker's lease).
    Run(Box<ClaimedTrial>),
    /// Nothing to run now; results still to come may make work (ask again later).
    Wait,
    /// The study has nothing more to run.
    Done,
}

/// A claimed trial: the trial at its current rung, and where its attempt starts.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTrial {
    pub trial: TrialRecord,
    pub rung: RungRecord,
    /// The checkpoint to resume from (`HORIZON_RESUME_FROM`), as the earlier rung announced it
    /// (relative to the trial directory, or absolute).
    pub resume_from: Option<String>,
}

/// How an attempt ended, as the runner writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// `Waiting` to run the trial again, or a finished state.
    pub state: TrialState,
    /// Why it failed, diverged or was interrupted.
    pub message: Option<String>,
    /// Retrospective selection over the objective, if any value was finite.
    pub selection: Option<Selection>,
    /// Whether this attempt counts against the trial's retries.
    pub counts_as_failure: bool,
    /// The program's exit code, if it exited normally.
    pub exit_code: Option<i32>,
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// Training steps this attempt ran (from its start step to the last step it reported).
    pub steps_run: u64,
    /// The step the trainer declared its schedule budget-independent up to, if it did.
    pub budget_independent_until: Option<u64>,
}

/// A finished run made without horizon, as [`Storage::import_trials`] stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedTrial {
    pub params: Params,
    /// The run's own step budget.
    pub max_train_steps: u64,
    /// `Complete`, `Diverged` or `Failed`; any other state is refused.
    pub state: TrialState,
    /// Why it failed or diverged.
    pub message: Option<String>,
    /// Retrospective selection over the objective, if any value was finite.
    pub selection: Option<Selection>,
    /// Every evaluation of the run.
    pub metrics: Vec<MetricPoint>,
    /// What makes the run this run (a fingerprint of its parameters, budget and curve): unique
    /// within a study, so that the same run is never imported twice.
    pub run_key: String,
    /// Where the run was read from (`file:line`, the file's absolute path), for the record.
    pub origin: String,
    /// Provenance and attribution of the data, as given.
    pub source: Option<String>,
    /// When it was imported (seconds since the Unix epoch): the trial's creation and finish time.
    pub at: f64,
}

/// Where an imported trial came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRecord {
    pub trial: TrialId,
    pub origin: String,
    /// Provenance and attribution of the data, as given.
    pub source: Option<String>,
}

/// Which trials [`Storage::requeue_trials`] puts back in the queue, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Requeue<'a> {
    /// These trials, by number (each must exist, and be neither running nor imported).
    pub numbers: &'a [u64],
    /// And every trial in one of these states (read in the same transaction), except imported ones.
    pub states: &'a [TrialState],
    /// Stored as each requeued trial's message.
    pub message: &'a str,
}

/// A checkpoint a trial announced.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRecord {
    pub trial: TrialId,
    pub attempt: u32,
    pub step: u64,
    pub path: String,
    /// Deleted by the retention policy.
    pub deleted: bool,
}

/// A protocol line horizon could not understand, kept for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct WarningRecord {
    pub trial: TrialId,
    pub attempt: u32,
    pub message: String,
}

/// One launch of a trial, for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub trial: TrialId,
    pub attempt: u32,
    pub worker: String,
    pub host: String,
    pub pid: u32,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    /// The state the trial moved to after this attempt (none while running).
    pub outcome: Option<TrialState>,
    pub message: Option<String>,
    pub exit_code: Option<i32>,
    /// The ladder rung the attempt ran (0 without a ladder).
    pub rung: u32,
}

/// A study as [`Storage::dump_study`] read it: every row of it, to store in another database.
#[derive(Clone)]
pub struct StudyDump {
    record: StudyRecord,
    next_trial_number: u64,
    trials: Vec<sql::Row>,
    /// Per table (rungs, metrics, ...), its rows of the study's trials.
    tables: Vec<(String, Vec<sql::Row>)>,
}

impl StudyDump {
    /// The study as stored where it was read.
    pub fn study(&self) -> &StudyRecord {
        &self.record
    }

    /// Its trials.
    pub fn trials(&self) -> usize {
        self.trials.len()
    }

    /// Rows of one of its tables (`metrics`, `rungs`, `attempts`, `checkpoints`, `warnings`,
    /// `imports`).
    pub fn rows(&self, table: &str) -> usize {
        self.tables.iter().find(|(t, _)| t == table).map_or(0, |(_, rows)| rows.len())
    }
}

/// The storage interface. Every method is one transaction; see the crate docs for the contract.
pub trait Storage: Send + Sync {
    /// The study with this name, created if it does not exist. An existing study is returned as
    /// is (the caller compares `identity_json`), with `spec_json` updated to the new spec.
    fn open_or_create_study(&self, new: &NewStudy) -> Result<StudyRecord>;
    /// The study with this name, if any.
    fn study(&self, name: &str) -> Result<Option<StudyRecord>>;
    /// Every study, oldest first.
    fn studies(&self) -> Result<Vec<StudyRecord>>;

    /// Atomically decide and claim the next work (see the contract): the policy's decision over
    /// the study as stored, applied in the same transaction.
    fn claim_trial(&self, study: StudyId, request: &ClaimRequest<'_>) -> Result<Claim>;
    /// Renew the lease of a running attempt, at the database's time (every write of the attempt
    /// renews it too).
    fn heartbeat(&self, trial: TrialId, attempt: u32) -> Result<()>;
    /// The database's clock, in Unix seconds: what leases are timed by (a heartbeat's time is
    /// the database's, never a worker's, so workers with skewed clocks agree on which lease
    /// expired).
    fn now(&self) -> Result<f64>;
    /// Store evaluations of a running attempt (replacing earlier values at the same step and name).
    fn append_metrics(&self, trial: TrialId, attempt: u32, points: &[MetricPoint]) -> Result<()>;
    /// Store protocol warnings of a running attempt.
    fn append_warnings(&self, trial: TrialId, attempt: u32, messages: &[String]) -> Result<()>;
    /// Record a checkpoint announced by a running attempt.
    fn record_checkpoint(&self, trial: TrialId, attempt: u32, step: u64, path: &str) -> Result<()>;
    /// Mark a checkpoint as deleted by the retention policy (allowed while running or finished).
    fn mark_checkpoint_deleted(&self, trial: TrialId, step: u64) -> Result<()>;
    /// End a running attempt: the trial moves to `finish.state`.
    fn finish_attempt(&self, trial: TrialId, attempt: u32, finish: &Finish) -> Result<()>;
    /// Move a running trial whose worker is gone back to `Waiting`, if its attempt and worker
    /// are still `attempt` and `worker` and (when given) its lease was last renewed at
    /// `heartbeat`, the time the caller judged it by: a heartbeat since then keeps the lease.
    /// Returns whether it did.
    fn requeue_abandoned(
        &self,
        trial: TrialId,
        attempt: u32,
        worker: &str,
        heartbeat: Option<f64>,
        reason: &str,
        at: f64,
    ) -> Result<bool>;

    /// Put trials back in the queue (see the contract: all or none; running and imported trials
    /// named by number are refused). Returns the requeued trials, by number.
    fn requeue_trials(&self, study: StudyId, requeue: &Requeue<'_>) -> Result<Vec<TrialRecord>>;

    /// Store finished runs made without horizon as trials of `study`, all or none (see the
    /// contract), in the given order; returns them as stored. Their `attempt` is 1 and they have
    /// no sample index and no attempt record.
    fn import_trials(&self, study: StudyId, trials: &[ImportedTrial]) -> Result<Vec<TrialRecord>>;
    /// Create a study and import runs into it, in one transaction: a new study is never left
    /// empty by a failed import. [`StoreError::StudyExists`] when the name is taken (then
    /// [`Storage::import_trials`] into the existing study, after checking it fits).
    fn create_study_with_imports(&self, new: &NewStudy, trials: &[ImportedTrial]) -> Result<(StudyRecord, Vec<TrialRecord>)>;
    /// The origin and source of every imported trial of a study, by trial number.
    fn imports(&self, study: StudyId) -> Result<Vec<ImportRecord>>;

    /// Every trial of a study, by number.
    fn trials(&self, study: StudyId) -> Result<Vec<TrialRecord>>;
    /// The trials of a study in one state, by number.
    fn trials_in_state(&self, study: StudyId, state: TrialState) -> Result<Vec<TrialRecord>>;
    /// One trial.
    fn trial(&self, trial: TrialId) -> Result<TrialRecord>;
    /// A trial's evaluations at its current rung, by step then name.
    fn metrics(&self, trial: TrialId) -> Result<Vec<MetricPoint>>;
    /// A trial's evaluations at one rung, by step then name.
    fn rung_metrics(&self, trial: TrialId, rung: u32) -> Result<Vec<MetricPoint>>;
    /// Every rung of every trial of a study, by trial number then rung.
    fn rungs(&self, study: StudyId) -> Result<Vec<RungRecord>>;
    /// The study, its trials and their rungs, read in one transaction (a consistent view for a
    /// policy asked outside a claim, such as which round a study is in).
    fn snapshot(&self, study: StudyId) -> Result<(StudyRecord, Vec<TrialRecord>, Vec<RungRecord>)>;
    /// One metric of every trial of a study at its current rung, as `(trial, step, value)` by
    /// trial then step.
    fn study_metric(&self, study: StudyId, name: &str) -> Result<Vec<(TrialId, u64, f64)>>;
    fn checkpoints(&self, trial: TrialId) -> Result<Vec<CheckpointRecord>>;
    fn warnings(&self, trial: TrialId) -> Result<Vec<WarningRecord>>;
    fn attempts(&self, trial: TrialId) -> Result<Vec<AttemptRecord>>;

    /// Everything stored of a study, read in one transaction, to move it to another database
    /// ([`Storage::restore_study`]). Refused while a trial runs ([`StoreError::Policy`]): its
    /// worker would go on writing to this database.
    fn dump_study(&self, study: StudyId) -> Result<StudyDump>;
    /// Store a study dumped from another database (any backend), in one transaction: its
    /// trials keep their numbers, sample indices, attempts, rungs, metrics, checkpoints,
    /// warnings and imports, and the study its counters. A study of that name here is
    /// [`StoreError::StudyExists`], or with `replace` deleted first in the same transaction
    /// (never while one of its trials runs).
    fn restore_study(&self, dump: &StudyDump, replace: bool) -> Result<StudyRecord>;

    /// The database's identity, made when its schema was created: the same whatever name or
    /// route reaches it (a study directory records it).
    fn database_id(&self) -> Result<String>;

    /// Bound how long one call may wait on the database (a server behind a cut network link):
    /// past it the call fails with a transient error ([`StoreError::is_transient`]). Workers set
    /// it below their lease timeout, so that a cut-off worker notices in time to stop its trials.
    /// Backends whose calls cannot hang on a network (SQLite) ignore it.
    fn limit_call_time(&self, _limit: std::time::Duration) {}
}
