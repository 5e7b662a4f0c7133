#![allow(dead_code)]
//! Builders for constructed studies.

use horizon_analysis::{StudyData, TrialData};
use horizon_core::params::ParamValue;
use horizon_core::space::SearchSpace;
use horizon_core::{Direction, MetricPoint, Params, TrialRecord, TrialState};

pub const OBJ: &str = "valid/loss";
pub const TRAIN: &str = "train/loss";

pub fn record(number: u64, budget: u64, state: TrialState, params: Params) -> TrialRecord {
    TrialRecord::new(number, params, budget, state)
}

pub fn points(name: &str, curve: &[(u64, f64)]) -> Vec<MetricPoint> {
    curve.iter().map(|&(step, value)| MetricPoint { step, name: name.into(), value }).collect()
}

/// A complete trial with an objective curve.
pub fn trial(number: u64, budget: u64, curve: &[(u64, f64)]) -> TrialData {
    TrialData { record: record(number, budget, TrialState::Complete, Params::default()), metrics: points(OBJ, curve) }
}

pub fn with_params(mut t: TrialData, params: &[(&str, ParamValue)]) -> TrialData {
    for (k, v) in params {
        t.record.params.set(k, v.clone());
    }
    t
}

pub fn with_train(mut t: TrialData, curve: &[(u64, f64)]) -> TrialData {
    t.metrics.extend(points(TRAIN, curve));
    t
}

pub fn with_state(mut t: TrialData, state: TrialState) -> TrialData {
    t.record.state = state;
    t
}

pub fn study(trials: Vec<TrialData>) -> StudyData {
    StudyData { objective: OBJ.into(), direction: Direction::Minimize, space: None, trials }
}

pub fn study_in(space: SearchSpace, trials: Vec<TrialData>) -> StudyData {
    StudyData { objective: OBJ.into(), direction: Direction::Minimize, space: Some(space), trials }
}

/// Evaluations every `every` steps from `every` to `budget` of `f(step)`.
pub fn curve(budget: u64, every: u64, f: impl Fn(f64) -> f64) -> Vec<(u64, f64)> {
    (1..=budget / every).map(|i| i * every).map(|s| (s, f(s as f64))).collect()
}

/// A curve whose best is at `best_at` (a step): falling linearly from 2.0 at step 0 to `floor`
/// there, then rising slowly (by 0.2 over a whole budget).
pub fn v_curve(budget: u64, every: u64, best_at: u64, floor: f64) -> Vec<(u64, f64)> {
    let b = best_at as f64;
    curve(budget, every, |s| if s <= b { floor + (2.0 - floor) * (1.0 - s / b) } else { floor + 0.2 * (s - b) / budget as f64 })
}

pub type TrialDataAlias = TrialData;
