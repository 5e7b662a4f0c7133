//! Decisions a study's policy makes about its running trials, as data.
//!
//! The runner (`horizon_runner::scheduler`) hands a policy a [`StudyView`], what storage holds
//! of the study now (every trial and the curves of the metrics the policy asked for), and acts
//! on the [`Decision`]s it returns. The policy itself is a pure function of the view (e.g.
//! `lr_sweep::stops`): it never sees a process, a file or a clock, so it is tested with plain
//! data, and a study resumed from its database alone gets the same decisions.
//!
//! A decision to stop ends the trial as **complete**, with the reason as its message, like
//! `trainer.stop_when`: the trial trained honestly up to where it was stopped, and its curve
//! is kept. It is not a failure (nothing to retry) and not `incomplete` (that state is for
//! trainers that end short on their own). See docs/design.md, "Policy hooks".

use std::collections::BTreeMap;

use serde::Serialize;

use crate::trial::TrialRecord;

/// What a policy sees of one study.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudyView {
    /// Every trial of the study, as stored (running ones included).
    pub trials: Vec<TrialRecord>,
    /// For each metric the policy asked for, each trial's evaluations by trial number, in step
    /// order.
    pub curves: BTreeMap<String, BTreeMap<u64, Vec<(u64, f64)>>>,
}

impl StudyView {
    /// One trial's evaluations of one metric, in step order (empty when it has none).
    pub fn curve(&self, metric: &str, trial: u64) -> &[(u64, f64)] {
        self.curves.get(metric).and_then(|c| c.get(&trial)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A view built from stored rows `(trial number, step, value)` of one metric each.
    pub fn from_rows(trials: Vec<TrialRecord>, rows: BTreeMap<String, Vec<(u64, u64, f64)>>) -> StudyView {
        let mut curves: BTreeMap<String, BTreeMap<u64, Vec<(u64, f64)>>> = BTreeMap::new();
        for (metric, points) in rows {
            let by_trial = curves.entry(metric).or_default();
            for (trial, step, value) in points {
                by_trial.entry(trial).or_default().push((step, value));
            }
            for curve in by_trial.values_mut() {
                curve.sort_by_key(|(step, _)| *step);
            }
        }
        StudyView { trials, curves }
    }
}

/// What a policy asks the runner to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    /// End the running attempt of trial `trial` (its number) now, as complete, with `reason`
    /// in its message (`stopped at step S of N: REASON`). A trial that is not running in the
    /// worker that reads the decision is left alone.
    Stop { trial: u64, reason: String },
}
