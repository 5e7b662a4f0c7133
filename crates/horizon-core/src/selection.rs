//! Retrospective best-checkpoint selection (docs/method.md, section 2).
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

/// Retrospective selection kept up to date one evaluation at a time, in O(log n) per
/// evaluation, with [`select`]'s semantics (a step reported again replaces its value; ties go to
/// the earliest step; non-finite values are never best). Recording a long run this way is linear
/// in its length, where calling [`select`] after each evaluation is quadratic.
#[derive(Debug, Clone)]
pub struct SelectionTracker {
    direction: Direction,
    /// The value at each step.
    curve: std::collections::BTreeMap<u64, f64>,
    /// Finite values ordered best first: (order key, step).
    ranked: std::collections::BTreeSet<(i64, u64)>,
}

impl SelectionTracker {
    pub fn new(direction: Direction) -> SelectionTracker {
        SelectionTracker { direction, curve: Default::default(), ranked: Default::default() }
    }

    /// A key whose integer order is "better first" for this direction.
    fn key(&self, value: f64) -> i64 {
        // -0.0 and 0.0 are the same value to `select`.
        let v = if value == 0.0 { 0.0 } else { value };
        let v = match self.direction {
            Direction::Minimize => v,
            Direction::Maximize => -v,
        };
        // IEEE 754 total order as a signed integer.
        let bits = v.to_bits() as i64;
        bits ^ (((bits >> 63) as u64) >> 1) as i64
    }

    /// Record the value at `step`, replacing an earlier value at the same step.
    pub fn record(&mut self, step: u64, value: f64) {
        if let Some(old) = self.curve.insert(step, value)
            && old.is_finite()
        {
            let key = self.key(old);
            self.ranked.remove(&(key, step));
        }
        if value.is_finite() {
            let key = self.key(value);
            self.ranked.insert((key, step));
        }
    }

    /// The value recorded at `step`.
    pub fn value_at(&self, step: u64) -> Option<f64> {
        self.curve.get(&step).copied()
    }

    /// Number of distinct steps recorded.
    pub fn len(&self) -> usize {
        self.curve.len()
    }

    pub fn is_empty(&self) -> bool {
        self.curve.is_empty()
    }

    /// The selection so far; `None` while no value is finite.
    pub fn selection(&self) -> Option<Selection> {
        let &(_, best_step) = self.ranked.first()?;
        let (&final_step, &final_value) = self.curve.last_key_value()?;
        Some(Selection { best_step, best_value: self.curve[&best_step], final_step, final_value, evaluations: self.curve.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_agrees_with_select_on_replaced_and_unordered_steps() {
        // Deterministic pseudo-random sequences with repeated steps, ties, zeros of both signs
        // and non-finite values, checked after every evaluation.
        let mut rng = crate::rng::SplitMix64::new(7);
        for direction in [Direction::Minimize, Direction::Maximize] {
            for _ in 0..50 {
                let mut tracker = SelectionTracker::new(direction);
                let mut dedup: Vec<(u64, f64)> = Vec::new();
                for _ in 0..60 {
                    let step = rng.next_u64() % 20;
                    let value = match rng.next_u64() % 8 {
                        0 => f64::NAN,
                        1 => f64::INFINITY,
                        2 => -0.0,
                        3 => 0.0,
                        _ => (rng.next_u64() % 5) as f64 / 4.0,
                    };
                    tracker.record(step, value);
                    match dedup.iter_mut().find(|(s, _)| *s == step) {
                        Some(p) => p.1 = value,
                        None => dedup.push((step, value)),
                    }
                    let (a, b) = (tracker.selection(), select(&dedup, direction));
                    match (a, b) {
                        (None, None) => {}
                        (Some(a), Some(b)) => {
                            assert_eq!((a.best_step, a.final_step, a.evaluations), (b.best_step, b.final_step, b.evaluations));
                            assert!(a.best_value == b.best_value);
                            assert!(
                                a.final_value.to_bits() == b.final_value.to_bits()
                                    || a.final_value.is_nan() && b.final_value.is_nan()
                            );
                        }
                        (a, b) => panic!("tracker {a:?} vs select {b:?}"),
                    }
                }
            }
        }
    }

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
