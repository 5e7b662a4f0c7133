//! The policy hook: how a [`Worker`](crate::worker::Worker) lets a study's policy stop running
//! trials.
//!
//! While trials run, the worker reads what storage holds of the study (every trial, and the
//! curves of the metrics the scheduler names) soon after an attempt stored new metrics and at
//! least every [`CONSULT_EVERY`], hands it to the [`Scheduler`] as a [`StudyView`], and carries
//! out the [`Decision`]s it returns:
//! `Decision::Stop { trial, reason }` ends that trial's running attempt the way
//! `trainer.stop_when` does (SIGTERM, grace, SIGKILL for a subprocess; `should_stop()` for a
//! closure), and the trial is recorded as **complete**, with the message
//! `stopped at step S of N: REASON`, never as failed or incomplete.
//!
//! The policy itself belongs in `horizon-core`, as a pure function of the view (the
//! learning-rate sweep's is `horizon_core::lr_sweep::stops`); [`from_fn`] wraps one. A worker
//! acts only on its own attempts, so several workers sharing a study each consult their own
//! scheduler. Because the view is read from storage, a study resumed from its database gets the
//! same decisions. See docs/design.md, "Policy hooks".

use std::collections::BTreeMap;
use std::time::Duration;

use horizon_core::decision::{Decision, StudyView};
use horizon_store::{Storage, StoreError, StudyId};

/// How often a worker consults its scheduler while trials run (the attempts' metrics tick).
pub const CONSULT_EVERY: Duration = crate::attempt::TICK;
/// The least time between two consultations prompted by new metrics (many attempts storing
/// metrics at once do not make the worker read the study for each).
pub const CONSULT_AFTER_PROGRESS: Duration = Duration::from_millis(10);

/// A policy that watches a study's running trials.
pub trait Scheduler: Send {
    /// The metrics whose curves [`Scheduler::decide`] reads.
    fn metrics(&self) -> Vec<String>;
    /// What to do about the running trials, given what storage holds now.
    fn decide(&mut self, view: &StudyView) -> Vec<Decision>;
}

/// A [`Scheduler`] made of a metric list and a function (see [`from_fn`]).
pub struct FnScheduler<F> {
    metrics: Vec<String>,
    decide: F,
}

impl<F: FnMut(&StudyView) -> Vec<Decision> + Send> Scheduler for FnScheduler<F> {
    fn metrics(&self) -> Vec<String> {
        self.metrics.clone()
    }

    fn decide(&mut self, view: &StudyView) -> Vec<Decision> {
        (self.decide)(view)
    }
}

/// A scheduler that reads the curves of `metrics` and decides with `decide`.
pub fn from_fn<F: FnMut(&StudyView) -> Vec<Decision> + Send>(metrics: Vec<String>, decide: F) -> FnScheduler<F> {
    FnScheduler { metrics, decide }
}

/// What storage holds of a study now, for a scheduler.
pub fn read_view(storage: &dyn Storage, study: StudyId, metrics: &[String]) -> Result<StudyView, StoreError> {
    let trials = storage.trials(study)?;
    let number: BTreeMap<i64, u64> = trials.iter().map(|t| (t.id, t.number)).collect();
    let mut rows = BTreeMap::new();
    for metric in metrics {
        let points = storage.study_metric(study, metric)?;
        rows.insert(
            metric.clone(),
            points.into_iter().filter_map(|(id, step, value)| number.get(&id).map(|n| (*n, step, value))).collect(),
        );
    }
    Ok(StudyView::from_rows(trials, rows))
}
