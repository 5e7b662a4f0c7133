//! Turns what an attempt reports into stored metrics, warnings and checkpoints, and watches for
//! divergence. Shared by the subprocess and in-process paths, so both record identically.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use horizon_core::checkpoint::{CheckpointInfo, to_delete};
use horizon_core::criterion::Criterion;
use horizon_core::protocol::{Report, is_loss_like, parse_line};
use horizon_core::selection::{Selection, select};
use horizon_core::spec::{CheckpointSpec, Direction};
use horizon_core::MetricPoint;
use horizon_store::{Storage, StoreError, TrialId};

/// Warnings stored per attempt; further malformed lines are counted, not stored.
pub const MAX_STORED_WARNINGS: usize = 100;
/// How often a running attempt renews its lease.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Records one attempt.
pub struct AttemptRecorder {
    storage: Arc<dyn Storage>,
    trial: TrialId,
    attempt: u32,
    objective: String,
    direction: Direction,
    policy: CheckpointSpec,
    trial_dir: PathBuf,
    pending_metrics: Vec<MetricPoint>,
    pending_warnings: Vec<String>,
    warnings_seen: usize,
    lines: u64,
    objective_points: Vec<(u64, f64)>,
    live_checkpoints: Vec<(u64, String)>,
    divergence: Option<String>,
    stop_when: Option<Criterion>,
    reached: Option<String>,
    last_step: Option<u64>,
    last_heartbeat: Instant,
    last_flush: Instant,
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
    ) -> AttemptRecorder {
        AttemptRecorder {
            storage,
            trial,
            attempt,
            objective: objective.to_string(),
            direction,
            policy,
            trial_dir: trial_dir.to_path_buf(),
            pending_metrics: Vec::new(),
            pending_warnings: Vec::new(),
            warnings_seen: 0,
            lines: 0,
            objective_points: Vec::new(),
            live_checkpoints: Vec::new(),
            divergence: None,
            stop_when: None,
            reached: None,
            last_step: None,
            last_heartbeat: Instant::now(),
            last_flush: Instant::now(),
        }
    }

    /// Watch for a criterion that ends the attempt early as complete (`trainer.stop_when`).
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
            Ok(report) => self.report(report),
            Err(e) => {
                let shown: String = text.chars().take(200).collect();
                self.warn(format!("metrics line {}: {e}: {shown}", self.lines));
            }
        }
    }

    /// A warning to store with the attempt.
    pub fn warn(&mut self, message: String) {
        self.warnings_seen += 1;
        if self.warnings_seen <= MAX_STORED_WARNINGS {
            self.pending_warnings.push(message);
        }
    }

    /// A parsed report.
    pub fn report(&mut self, report: Report) {
        match report {
            Report::Metrics { step, values } => {
                self.last_step = Some(self.last_step.map_or(step, |s| s.max(step)));
                for (name, value) in values {
                    if !value.is_finite() && self.divergence.is_none() && is_loss_like(&name, &self.objective) {
                        self.divergence = Some(format!("{name} was {value} at step {step}"));
                    }
                    if self.reached.is_none()
                        && let Some(c) = &self.stop_when
                        && c.metric == name
                        && c.holds(value)
                    {
                        self.reached = Some(format!("{c} held at step {step}"));
                    }
                    if name == self.objective {
                        match self.objective_points.iter_mut().find(|(s, _)| *s == step) {
                            Some(point) => point.1 = value,
                            None => self.objective_points.push((step, value)),
                        }
                    }
                    self.pending_metrics.push(MetricPoint { step, name, value });
                }
            }
            Report::Checkpoint { step, path } => {
                self.live_checkpoints.retain(|(s, _)| *s != step);
                self.live_checkpoints.push((step, path));
                if let Err(e) = self.storage.record_checkpoint(self.trial, self.attempt, step, &self.live_checkpoints.last().unwrap().1) {
                    self.warn(format!("checkpoint at step {step} not recorded: {e}"));
                }
                self.apply_retention();
            }
        }
    }

    /// Delete the checkpoints the retention policy no longer keeps.
    pub fn apply_retention(&mut self) {
        let infos: Vec<CheckpointInfo> = self
            .live_checkpoints
            .iter()
            .map(|(step, _)| CheckpointInfo {
                step: *step,
                value: self.objective_points.iter().find(|(s, _)| s == step).map(|(_, v)| *v),
            })
            .collect();
        for step in to_delete(&infos, &self.policy, self.direction) {
            let Some(pos) = self.live_checkpoints.iter().position(|(s, _)| *s == step) else { continue };
            let (_, path) = self.live_checkpoints.remove(pos);
            let full = self.trial_dir.join(&path);
            let inside = std::path::absolute(&full).is_ok_and(|p| p.starts_with(&self.trial_dir));
            if !inside {
                self.warn(format!("checkpoint {path} is outside the trial directory; not deleting it"));
                continue;
            }
            let removed = if full.is_dir() { std::fs::remove_dir_all(&full) } else { std::fs::remove_file(&full) };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => self.warn(format!("could not delete checkpoint {}: {e}", full.display())),
            }
            if let Err(e) = self.storage.mark_checkpoint_deleted(self.trial, step) {
                tracing::warn!("trial {}: marking checkpoint {step} deleted: {e}", self.trial);
            }
        }
    }

    /// Write what is pending, and renew the lease when due. A [`StoreError::NotWritable`] means
    /// this worker lost the trial (another worker requeued it): the attempt must stop.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.last_flush = Instant::now();
        if !self.pending_metrics.is_empty() {
            self.storage.append_metrics(self.trial, self.attempt, &self.pending_metrics)?;
            self.pending_metrics.clear();
        }
        if !self.pending_warnings.is_empty() {
            self.storage.append_warnings(self.trial, self.attempt, &self.pending_warnings)?;
            self.pending_warnings.clear();
        }
        if self.last_heartbeat.elapsed() >= HEARTBEAT_EVERY {
            self.storage.heartbeat(self.trial, self.attempt, crate::now())?;
            self.last_heartbeat = Instant::now();
        }
        Ok(())
    }

    /// Flush when the last flush is older than `interval` (batches the writes of a trainer that
    /// reports faster than storage needs to hear about it).
    pub fn flush_if_due(&mut self, interval: Duration) -> Result<(), StoreError> {
        if self.last_flush.elapsed() >= interval {
            self.flush()?;
        }
        Ok(())
    }

    /// Flush, noting malformed lines beyond the stored ones.
    pub fn finish(&mut self) -> Result<(), StoreError> {
        if self.warnings_seen > MAX_STORED_WARNINGS {
            self.pending_warnings.push(format!(
                "{} more warnings were not stored",
                self.warnings_seen - MAX_STORED_WARNINGS
            ));
        }
        self.apply_retention();
        self.flush()
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
        select(&self.objective_points, self.direction)
    }

    /// The latest step reported.
    pub fn last_step(&self) -> Option<u64> {
        self.last_step
    }

    pub fn warnings_seen(&self) -> usize {
        self.warnings_seen
    }
}
