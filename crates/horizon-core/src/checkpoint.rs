//! Which checkpoints to keep: the best `k` by the objective at their step, and the latest.
//!
//! A policy in the style of burn's checkpointing strategies: it returns a decision (the steps
//! to delete) and the runner carries it out.

use crate::spec::{CheckpointSpec, Direction};

/// A live (not yet deleted) checkpoint and the objective's value at its step, if evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckpointInfo {
    pub step: u64,
    pub value: Option<f64>,
}

/// Steps of the checkpoints to delete. Checkpoints without a finite objective value at their
/// step can only be kept as the latest.
pub fn to_delete(live: &[CheckpointInfo], policy: &CheckpointSpec, direction: Direction) -> Vec<u64> {
    let latest = live.iter().map(|c| c.step).max();
    let mut ranked: Vec<&CheckpointInfo> = live.iter().filter(|c| c.value.is_some_and(f64::is_finite)).collect();
    ranked.sort_by(|a, b| {
        let (x, y) = (a.value.unwrap(), b.value.unwrap());
        let order = match direction {
            Direction::Minimize => x.total_cmp(&y),
            Direction::Maximize => y.total_cmp(&x),
        };
        order.then(a.step.cmp(&b.step))
    });
    let keep_best: Vec<u64> = ranked.iter().take(policy.keep_best).map(|c| c.step).collect();
    let mut delete: Vec<u64> = live
        .iter()
        .map(|c| c.step)
        .filter(|s| {
            let kept_as_latest = policy.keep_latest && Some(*s) == latest;
            !keep_best.contains(s) && !kept_as_latest
        })
        .collect();
    delete.sort_unstable();
    delete
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(step: u64, value: Option<f64>) -> CheckpointInfo {
        CheckpointInfo { step, value }
    }

    #[test]
    fn keeps_best_and_latest() {
        let live = [c(100, Some(0.5)), c(200, Some(0.3)), c(300, Some(0.4)), c(400, Some(0.6))];
        let policy = CheckpointSpec { keep_best: 1, keep_latest: true, every: None };
        assert_eq!(to_delete(&live, &policy, Direction::Minimize), vec![100, 300]);
        assert_eq!(to_delete(&live, &policy, Direction::Maximize), vec![100, 200, 300]);
    }

    #[test]
    fn unevaluated_checkpoints_survive_only_as_latest() {
        let live = [c(100, Some(0.5)), c(150, None), c(250, None)];
        let policy = CheckpointSpec { keep_best: 2, keep_latest: true, every: None };
        assert_eq!(to_delete(&live, &policy, Direction::Minimize), vec![150]);
        let policy = CheckpointSpec { keep_best: 0, keep_latest: false, every: None };
        assert_eq!(to_delete(&live, &policy, Direction::Minimize), vec![100, 150, 250]);
    }

    #[test]
    fn ties_keep_the_earlier_checkpoint() {
        let live = [c(100, Some(0.3)), c(200, Some(0.3)), c(300, Some(0.9))];
        let policy = CheckpointSpec { keep_best: 1, keep_latest: false, every: None };
        assert_eq!(to_delete(&live, &policy, Direction::Minimize), vec![200, 300]);
    }
}
