//! What the JSON Lines and CSV readers share about a run's curve and state.

use horizon_core::{MetricPoint, TrialState};

use crate::{At, ImportError};

/// Evaluations as read: (step, index in the file, [(metric, value)]).
pub(crate) type Rows = Vec<(u64, usize, Vec<(String, f64)>)>;

pub(crate) const STATES: &str = "\"complete\", \"incomplete\", \"diverged\" or \"failed\"";

pub(crate) fn parse_state(text: &str, at: &At, field: &str) -> Result<TrialState, ImportError> {
    match text {
        "complete" => Ok(TrialState::Complete),
        "incomplete" => Ok(TrialState::Incomplete),
        "diverged" => Ok(TrialState::Diverged),
        "failed" => Ok(TrialState::Failed),
        other => Err(at.err(field.to_string(), format!("unknown state {other:?}"), format!("use {STATES}, or leave it out"))),
    }
}

/// Non-finite metric values written as text (JSON has no NaN).
pub(crate) fn non_finite_word(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" | "-nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// A run's state when its source does not say: diverged when any value is non-finite.
pub(crate) fn default_state(curve: &[MetricPoint]) -> TrialState {
    if curve.iter().any(|m| !m.value.is_finite()) { TrialState::Diverged } else { TrialState::Complete }
}

/// Sort evaluations by step, refusing duplicate steps; `dup(index, other_index)` builds the error.
pub(crate) fn assemble(mut rows: Rows, dup: impl Fn(usize, usize) -> ImportError) -> Result<Vec<MetricPoint>, ImportError> {
    rows.sort_by_key(|r| (r.0, r.1));
    for w in rows.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(dup(w[1].1, w[0].1));
        }
    }
    Ok(rows
        .into_iter()
        .flat_map(|(step, _, values)| values.into_iter().map(move |(name, value)| MetricPoint { step, name, value }))
        .collect())
}
