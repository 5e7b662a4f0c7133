//! Retrospective best-checkpoint selection (method.md, section 2).
//!
//! Every trial trains for the same fixed budget and is evaluated at regular step intervals;
//! afterwards the best evaluation is selected. Ties go to the earliest step: the same quality
//! reached sooner is the better checkpoint, and it is the conservative reading of "how many
//! steps were needed". Non-finite values are never selected.

use crate::spec::Direction;

/// The selected evaluation of one trial's objective, and its last one.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Selection {
    pub best_step: u64,
    pub best_value: f64,
    pub final_step: u64,
    pub final_value: f64,
    /// Number of evaluations of the objective.
    pub evaluations: usize,
}

/// Select over `(step, value)` evaluations in any order. `None` when no value is finite.
pub fn select(evaluations: &[(u64, f64)], direction: Direction) -> Option<Selection> {
    let mut best: Option<(u64, f64)> = None;
    let mut last: Option<(u64, f64)> = None;
    for &(step, value) in evaluations {
        if last.is_none_or(|(s, _)| step >= s) {
            last = Some((step, value));
        }
        if !value.is_finite() {
            continue;
        }
        best = match best {
            None => Some((step, value)),
            Some((bs, bv)) if direction.better(value, bv) || (value == bv && step < bs) => Some((step, value)),
            keep => keep,
        };
    }
    let (best_step, best_value) = best?;
    let (final_step, final_value) = last?;
    Some(Selection { best_step, best_value, final_step, final_value, evaluations: evaluations.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_best_not_the_last() {
        let curve = [(100, 0.9), (200, 0.5), (300, 0.4), (400, 0.45), (500, 0.6)];
        let s = select(&curve, Direction::Minimize).unwrap();
        assert_eq!((s.best_step, s.best_value), (300, 0.4));
        assert_eq!((s.final_step, s.final_value), (500, 0.6));
        let s = select(&curve, Direction::Maximize).unwrap();
        assert_eq!(s.best_step, 100);
    }

    #[test]
    fn ties_go_to_the_earliest_step_whatever_the_order() {
        let curve = [(300, 0.4), (100, 0.4), (200, 0.5)];
        let s = select(&curve, Direction::Minimize).unwrap();
        assert_eq!(s.best_step, 100);
        assert_eq!(s.final_step, 300);
    }

    #[test]
    fn non_finite_values_are_never_selected() {
        let curve = [(100, 0.7), (200, f64::NAN), (300, f64::NEG_INFINITY)];
        let s = select(&curve, Direction::Minimize).unwrap();
        assert_eq!(s.best_step, 100);
        assert!(s.final_value.is_infinite());
        assert!(select(&[(1, f64::NAN)], Direction::Minimize).is_none());
        assert!(select(&[], Direction::Minimize).is_none());
    }
}
