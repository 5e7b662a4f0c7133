//! Turns what an attempt reports into stored metrics, warnings and checkpoints, and watches for
//! divergence. Shared by the subprocess and in-process paths, so both record identically.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use horizon_core::MetricPoint;
use horizon_core::checkpoint::{CheckpointInfo, to_delete};
use horizon_core::criterion::Criterion;
use horizon_core::protocol::limits::{
    MAX_CHECKPOINTS, MAX_LINE_BYTES, MAX_METRIC_NAME_BYTES, MAX_METRIC_NAMES, MAX_METRIC_VALUES,
};
use horizon_core::protocol::{Report, is_loss_like, parse_line};
use horizon_core::selection::{Selection, SelectionTracker};
use horizon_core::spec::{CheckpointSpec, Direction};
use horizon_store::{Storage, StoreError, TrialId};

/// Warnings stored per attempt; further malformed lines are counted, not stored.
pub const MAX_STORED_WARNINGS: usize = 100;
/// How often a running attempt renews its lease.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// After a write failed because the database was unreachable, how long until the next try.
pub const RETRY_AFTER_OUTAGE: Duration = Duration::from_secs(1);

/// A checkpoint write waiting for the database.
enum CheckpointWrite {
    Announced { step: u64, path: String },
    Deleted { step: u64 },
}

/// When an attempt's lease was last renewed, for a watchdog on another thread.
#[derive(Clone)]
pub struct LeaseWatch {
    clock: Arc<AtomicU64>,
    base: Instant,
    half: Duration,
}

impl LeaseWatch {
    /// How long since the lease was last renewed.
    pub fn silent(&self) -> Duration {
        self.base.elapsed().saturating_sub(Duration::from_millis(self.clock.load(Ordering::SeqCst)))
    }

    /// How long until the lease must be given up (zero: now).
    pub fn remaining(&self) -> Duration {
        self.half.saturating_sub(self.silent())
    }
}

/// Records one attempt. Every report costs O(log n) (the objective's selection is kept up to
/// date incrementally), and memory is bounded by the limits in `horizon_core::protocol::limits`
/// whatever the trainer writes.
pub struct AttemptRecorder {
    storage: Arc<dyn Storage>,
    trial: TrialId,
    attempt: u32,
    objective_metric: String,
    direction: Direction,
    policy: CheckpointSpec,
    trial_dir: PathBuf,
    max_train_steps: u64,
    pending_metrics: Vec<MetricPoint>,
    pending_warnings: Vec<String>,
    /// Checkpoints announced and deleted, in order, not yet written (written with the metrics,
    /// so a database that is briefly unreachable loses none of them).
    pending_checkpoints: Vec<CheckpointWrite>,
    warnings_seen: usize,
    lines: u64,
    objective: SelectionTracker,
    live_checkpoints: Vec<(u64, String)>,
    names: HashSet<String>,
    values_stored: u64,
    values_dropped: u64,
    checkpoints_seen: u64,
    divergence: Option<String>,
    stop_when: Option<Criterion>,
    reached: Option<String>,
    last_step: Option<u64>,
    budget_independent: Option<u64>,
    kept: Vec<u64>,
    last_heartbeat: Instant,
    last_flush: Instant,
    /// When a write last succeeded (each renews the lease), by this machine's monotonic clock:
    /// milliseconds since `clock_base`, shared with a watchdog that stops the trainer on time
    /// whatever a storage call is doing.
    lease_clock: Arc<AtomicU64>,
    clock_base: Instant,
    /// Past this without a renewal, the lease may have expired: another worker may run the trial.
    lease_timeout: Duration,
    /// The database is unreachable: since when, and when to try again.
    outage: Option<(Instant, Instant)>,
    finished: bool,
}

impl AttemptRecorder {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        storage: Arc<dyn Storage>,
        trial: TrialId,
        attempt: u32,
        objective: &str,
        direction: Direction,
        policy: CheckpointSpec,
        trial_dir: &Path,
        max_train_steps: u64,
    ) -> AttemptRecorder {
        AttemptRecorder {
            storage,
            trial,
            attempt,
            objective_metric: objective.to_string(),
            direction,
            policy,
            trial_dir: trial_dir.to_path_buf(),
            max_train_steps,
            pending_metrics: Vec::new(),
            pending_warnings: Vec::new(),
            pending_checkpoints: Vec::new(),
            warnings_seen: 0,
            lines: 0,
            objective: SelectionTracker::new(direction),
            live_checkpoints: Vec::new(),
            names: HashSet::new(),
            values_stored: 0,
            values_dropped: 0,
            checkpoints_seen: 0,
            divergence: None,
            stop_when: None,
            reached: None,
            last_step: None,
            budget_independent: None,
            kept: Vec::new(),
            last_heartbeat: Instant::now(),
            last_flush: Instant::now(),
            lease_clock: Arc::new(AtomicU64::new(0)),
            clock_base: Instant::now(),
            lease_timeout: Duration::from_secs(60),
            outage: None,
            finished: false,
        }
    }

    /// The lease timeout of the study's workers: a trial whose writes have all failed for half
    /// that long (the database unreachable) is given up before another worker may take it.
    pub fn with_lease_timeout(mut self, timeout: Duration) -> AttemptRecorder {
        self.lease_timeout = timeout;
        self
    }

    /// The lease was last renewed at `at` (the claim: taken before it was asked for).
    pub fn renewed_at(mut self, at: Instant) -> AttemptRecorder {
        self.clock_base = at;
        self.lease_clock.store(0, Ordering::SeqCst);
        self
    }

    /// A watchdog of the lease: `Some(why)` once no write has renewed it for half the lease
    /// timeout, read from another thread (a storage call may block this one).
    pub fn lease_watch(&self) -> LeaseWatch {
        LeaseWatch { clock: self.lease_clock.clone(), base: self.clock_base, half: self.lease_timeout / 2 }
    }

    /// Watch for a criterion that ends the attempt early as complete (`trainer.stop_when`).
    /// Start the objective's selection from what the rung already holds: a rung resumed from a
    /// checkpoint begins with the earlier rung's evaluations up to the resume step, and its
    /// retrospectively selected best is over its whole curve, those included.
    pub fn with_earlier(mut self, points: &[horizon_core::MetricPoint]) -> AttemptRecorder {
        for p in points.iter().filter(|p| p.name == self.objective_metric) {
            self.objective.record(p.step, p.value);
        }
        self
    }

    /// Never delete the checkpoints at these steps (a ladder resumes the next rung from one).
    pub fn keeping(mut self, steps: &[u64]) -> AttemptRecorder {
        self.kept = steps.to_vec();
        self
    }

    pub fn with_stop_when(mut self, criterion: Option<Criterion>) -> AttemptRecorder {
        self.stop_when = criterion;
        self
    }

    /// One line of the metrics channel. Malformed lines become warnings.
    pub fn line(&mut self, text: &str) {
        self.lines += 1;
        if text.trim().is_empty() {
            return;
        }
        match parse_line(text) {
            Ok(report) => {
                if let Err(why) = self.admit(&report) {
                    let shown: String = text.chars().take(200).collect();
                    self.warn(format!("metrics line {}: {why}; line ignored: {shown}", self.lines));
                } else {
                    self.record(report);
                }
            }
            Err(e) => {
                let shown: String = text.chars().take(200).collect();
                self.warn(format!("metrics line {}: {e}: {shown}", self.lines));
            }
        }
    }

    /// A line longer than [`MAX_LINE_BYTES`] was skipped without being read.
    pub fn overlong_line(&mut self, bytes: u64) {
        self.lines += 1;
        self.warn(format!("metrics line {}: {bytes} bytes, longer than the limit of {MAX_LINE_BYTES}; line skipped", self.lines));
    }

    /// Whether a parsed report may be recorded: its step is within the budget (the protocol's
    /// one rule for steps, shared with `horizon import`) and its names are of sensible length.
    fn admit(&self, report: &Report) -> Result<(), String> {
        let step = match report {
            Report::Metrics { step, values } => {
                if let Some((name, _)) = values.iter().find(|(n, _)| n.len() > MAX_METRIC_NAME_BYTES) {
                    return Err(format!(
                        "metric name of {} bytes ({}...) is longer than {MAX_METRIC_NAME_BYTES}",
                        name.len(),
                        name.chars().take(40).collect::<String>()
                    ));
                }
                *step
            }
            Report::Checkpoint { step, .. } => *step,
            // Past the budget it says the whole run is budget-independent: kept, as the budget.
            Report::BudgetIndependent { .. } => return Ok(()),
        };
        if step > self.max_train_steps {
            return Err(format!("step {step} is beyond max_train_steps {}", self.max_train_steps));
        }
        Ok(())
    }

    /// A warning to store with the attempt.
    pub fn warn(&mut self, message: String) {
        self.warnings_seen += 1;
        if self.warnings_seen <= MAX_STORED_WARNINGS {
            self.pending_warnings.push(message);
        }
    }

    /// A parsed report (the in-process path calls this directly; lines come through [`Self::line`]).
    pub fn report(&mut self, report: Report) {
        match self.admit(&report) {
            Ok(()) => self.record(report),
            Err(why) => self.warn(format!("report ignored: {why}")),
        }
    }

    /// Record a report that [`Self::admit`] accepted.
    fn record(&mut self, report: Report) {
        match report {
            Report::Metrics { step, values } => {
                self.last_step = Some(self.last_step.map_or(step, |s| s.max(step)));
                for (name, value) in values {
                    if !self.names.contains(&name) {
                        if self.names.len() >= MAX_METRIC_NAMES {
                            self.drop_value(format!(
                                "more than {MAX_METRIC_NAMES} distinct metric names ({name} is one too many)"
                            ));
                            continue;
                        }
                        self.names.insert(name.clone());
                    }
                    if self.values_stored >= MAX_METRIC_VALUES {
                        self.drop_value(format!("more than {MAX_METRIC_VALUES} metric values in one attempt"));
                        continue;
                    }
                    self.values_stored += 1;
                    if !value.is_finite() && self.divergence.is_none() && is_loss_like(&name, &self.objective_metric) {
                        self.divergence = Some(format!("{name} was {value} at step {step}"));
                    }
                    if self.reached.is_none()
                        && let Some(c) = &self.stop_when
                        && c.metric == name
                        && c.holds(value)
                    {
                        self.reached = Some(format!("{c} held at step {step}"));
                    }
                    if name == self.objective_metric {
                        self.objective.record(step, value);
                    }
                    self.pending_metrics.push(MetricPoint { step, name, value });
                }
            }
            Report::Checkpoint { step, path } => {
                self.checkpoints_seen += 1;
                if self.checkpoints_seen > MAX_CHECKPOINTS {
                    if self.checkpoints_seen == MAX_CHECKPOINTS + 1 {
                        self.warn(format!(
                            "more than {MAX_CHECKPOINTS} checkpoint announcements: further ones are ignored and their files kept"
                        ));
                    }
                    return;
                }
                self.live_checkpoints.retain(|(s, _)| *s != step);
                self.live_checkpoints.push((step, path.clone()));
                self.pending_checkpoints.push(CheckpointWrite::Announced { step, path });
                self.apply_retention();
            }
            Report::BudgetIndependent { step } => self.budget_independent = Some(step.min(self.max_train_steps)),
        }
    }

    /// The last step the trainer declared its schedule budget-independent up to.
    pub fn budget_independent_until(&self) -> Option<u64> {
        self.budget_independent
    }

    /// Delete the checkpoints the retention policy no longer keeps.
    pub fn apply_retention(&mut self) {
        let infos: Vec<CheckpointInfo> = self
            .live_checkpoints
            .iter()
            .map(|(step, _)| CheckpointInfo { step: *step, value: self.objective.value_at(*step) })
            .collect();
        let mut doomed = to_delete(&infos, &self.policy, self.direction);
        doomed.retain(|s| !self.kept.contains(s));
        for step in doomed {
            let Some(pos) = self.live_checkpoints.iter().position(|(s, _)| *s == step) else { continue };
            let (_, path) = self.live_checkpoints.remove(pos);
            if let Err(kept) = crate::files::remove_announced(&self.trial_dir, Path::new(&path)) {
                self.warn(format!(
                    "checkpoint {path:?} (step {step}) not deleted: {kept}; announce checkpoints at paths inside the trial directory, named by step (docs/protocol.md section 6)"
                ));
                continue;
            }
            self.pending_checkpoints.push(CheckpointWrite::Deleted { step });
        }
    }

    fn drop_value(&mut self, why: String) {
        self.values_dropped += 1;
        if self.values_dropped == 1 {
            self.warn(format!("{why}: further values are not stored"));
        }
    }

    /// Write what is pending, and renew the lease when due. A [`StoreError::NotWritable`] means
    /// this worker lost the trial (another worker requeued it): the attempt must stop.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.last_flush = Instant::now();
        if !self.pending_metrics.is_empty() {
            self.storage.append_metrics(self.trial, self.attempt, &self.pending_metrics)?;
            self.pending_metrics.clear();
            self.renewed();
        }
        if !self.pending_warnings.is_empty() {
            self.storage.append_warnings(self.trial, self.attempt, &self.pending_warnings)?;
            self.pending_warnings.clear();
            self.renewed();
        }
        // In order: a checkpoint is recorded before it is marked deleted.
        while let Some(write) = self.pending_checkpoints.first() {
            match write {
                CheckpointWrite::Announced { step, path } => {
                    self.storage.record_checkpoint(self.trial, self.attempt, *step, path)?;
                    self.renewed();
                }
                CheckpointWrite::Deleted { step } => self.storage.mark_checkpoint_deleted(self.trial, *step)?,
            }
            self.pending_checkpoints.remove(0);
        }
        // A short lease timeout needs more frequent renewals than the default.
        if self.last_heartbeat.elapsed() >= HEARTBEAT_EVERY.min(self.lease_timeout / 4) {
            self.storage.heartbeat(self.trial, self.attempt)?;
            self.renewed();
        }
        Ok(())
    }

    fn renewed(&mut self) {
        self.lease_clock.store(self.clock_base.elapsed().as_millis() as u64, Ordering::SeqCst);
        self.last_heartbeat = Instant::now();
        if let Some((since, _)) = self.outage.take() {
            tracing::warn!(
                "trial {}: the database answers again after {:.0}s; nothing recorded was lost",
                self.trial,
                since.elapsed().as_secs_f64()
            );
        }
    }

    /// [`Self::flush`], riding out a database that is briefly unreachable: what is pending stays
    /// pending and is tried again ([`RETRY_AFTER_OUTAGE`]). `Ok(Some(why))` when the attempt
    /// must stop because it lost its lease: another worker requeued it, or no write has
    /// succeeded for half the lease timeout (stopped before another worker may take it over).
    /// Other errors are returned.
    pub fn sync(&mut self) -> Result<Option<String>, StoreError> {
        if self.outage.is_some_and(|(_, retry)| Instant::now() < retry) {
            return Ok(self.lease_gone());
        }
        match self.flush() {
            Ok(()) => Ok(None),
            Err(StoreError::NotWritable { .. }) => Ok(Some("another worker took the trial over".into())),
            Err(e) if e.is_transient() => {
                if self.outage.is_none() {
                    tracing::warn!(
                        "trial {}: cannot write to the database ({e}); the trial runs on and horizon keeps trying \
                         (it gives the trial up after {:.0}s without a write, half the lease timeout)",
                        self.trial,
                        self.lease_timeout.as_secs_f64() / 2.0
                    );
                }
                let since = self.outage.map_or_else(Instant::now, |(since, _)| since);
                self.outage = Some((since, Instant::now() + RETRY_AFTER_OUTAGE));
                Ok(self.lease_gone())
            }
            Err(e) => Err(e),
        }
    }

    /// Why the lease must be given up, if no write renewed it for half the lease timeout: the
    /// trial stops before any other worker may judge the lease expired and take it over (half
    /// leaves room for the call that noticed, bounded by `Storage::limit_call_time`).
    fn lease_gone(&self) -> Option<String> {
        let watch = self.lease_watch();
        let silent = watch.silent();
        watch.remaining().is_zero().then(|| {
            format!(
                "the database could not be reached for {:.0}s, half the lease timeout ({:.0}s): stopped before another \
                 worker may take the trial over",
                silent.as_secs_f64(),
                self.lease_timeout.as_secs_f64()
            )
        })
    }

    /// [`Self::sync`] when the last flush is older than `interval` (batches the writes of a
    /// trainer that reports faster than storage needs to hear about it).
    pub fn sync_if_due(&mut self, interval: Duration) -> Result<Option<String>, StoreError> {
        if self.last_flush.elapsed() >= interval {
            return self.sync();
        }
        Ok(None)
    }

    /// Note what was not stored (once), and write everything pending.
    pub fn finish(&mut self) -> Result<(), StoreError> {
        if !self.finished {
            self.finished = true;
            if self.values_dropped > 0 {
                // Stored even past the warning limit: it says what is missing.
                self.pending_warnings.push(format!(
                    "{} metric values were not stored (limits in docs/protocol.md section 9)",
                    self.values_dropped
                ));
            }
            if self.warnings_seen > MAX_STORED_WARNINGS {
                self.pending_warnings.push(format!("{} more warnings were not stored", self.warnings_seen - MAX_STORED_WARNINGS));
            }
            self.apply_retention();
        }
        self.flush()
    }

    /// Whether the lease may still be ours: a write succeeded within the lease timeout.
    pub fn lease_may_hold(&self) -> bool {
        self.lease_gone().is_none()
    }

    /// Why the attempt diverged: the first non-finite loss.
    pub fn divergence(&self) -> Option<&str> {
        self.divergence.as_deref()
    }

    /// Which `stop_when` criterion held, and where.
    pub fn reached(&self) -> Option<&str> {
        self.reached.as_deref()
    }

    /// Whether the trial may stop for its `stop_when`: the criterion held and the objective has
    /// been reported, so that the stopped trial completes with a selection. (A trainer that
    /// reports `train/*` before `valid/*` is not stopped between the two.)
    pub fn stop_when_done(&self) -> bool {
        self.reached.is_some() && self.selection().is_some()
    }

    /// Retrospective selection over the objective so far.
    pub fn selection(&self) -> Option<Selection> {
        self.objective.selection()
    }

    /// The latest step reported.
    pub fn last_step(&self) -> Option<u64> {
        self.last_step
    }

    pub fn warnings_seen(&self) -> usize {
        self.warnings_seen
    }
}
