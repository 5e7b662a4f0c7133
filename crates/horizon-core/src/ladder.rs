//! The ladder: asynchronous successive halving over budgets that grow geometrically, as a pure
//! policy (docs/method.md section 3: many short runs, few long ones).
//!
//! A ladder has rungs with budgets `min_steps, min_steps * eta, ...` up to the study's
//! `max_train_steps` (or an explicit list). Every configuration starts at rung 0; whenever a
//! worker asks for work, [`next`] looks at what every trial did at every rung and answers, as
//! data, in the order ASHA (Li et al., 2020) does:
//!
//! 1. **Promote** from the highest rung down: a trial that finished rung `k`, is among the best
//!    `floor(n_k / eta)` of the `n_k` trials finished there so far, and has not been promoted
//!    from `k` yet, goes on to rung `k + 1`. Results that arrive out of order are handled because
//!    the rule only ever reads what is finished: a promotion made early is never undone.
//! 2. **Launch** a new configuration at rung 0 while fewer than `planned` have started.
//! 3. **Wait** while some trial is running or queued: its result may promote someone.
//! 4. **Done** otherwise.
//!
//! The policy holds no state: storage applies a decision inside the transaction that read the
//! history, so two workers asking at once get two different decisions and no trial is
//! promoted twice.

use crate::spec::Direction;

/// The rungs of a ladder: budgets in steps, increasing, the last the study's budget.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ladder {
    pub rungs: Vec<u64>,
    /// The promotion ratio: the best `1 / eta` of each rung go on.
    pub eta: u64,
}

/// Why a ladder's definition does not work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LadderError(pub String);

impl Ladder {
    /// Rungs `min_steps * eta^k`, with the last one `max_train_steps` (a geometric rung within a
    /// factor `sqrt(eta)` of it is replaced by it rather than kept as a sliver below it).
    pub fn geometric(min_steps: u64, eta: u64, max_train_steps: u64) -> Result<Ladder, LadderError> {
        if eta < 2 {
            return Err(LadderError(format!("eta must be at least 2, got {eta}")));
        }
        if min_steps == 0 || min_steps >= max_train_steps {
            return Err(LadderError(format!(
                "min_steps must be in 1..{max_train_steps} (below max_train_steps, the top rung), got {min_steps}"
            )));
        }
        let mut rungs = Vec::new();
        let mut b = min_steps;
        while b < max_train_steps {
            rungs.push(b);
            b = b.saturating_mul(eta);
        }
        if let Some(&last) = rungs.last()
            && rungs.len() > 1
            && (max_train_steps as f64 / last as f64) < (eta as f64).sqrt()
        {
            rungs.pop();
        }
        rungs.push(max_train_steps);
        Ladder::explicit(rungs, eta)
    }

    /// Rungs as listed: increasing budgets, at least two.
    pub fn explicit(rungs: Vec<u64>, eta: u64) -> Result<Ladder, LadderError> {
        if eta < 2 {
            return Err(LadderError(format!("eta must be at least 2, got {eta}")));
        }
        if rungs.len() < 2 {
            return Err(LadderError(format!("a ladder needs at least two rungs, got {rungs:?}")));
        }
        if rungs[0] == 0 || rungs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(LadderError(format!("rung budgets must increase from at least 1, got {rungs:?}")));
        }
        Ok(Ladder { rungs, eta })
    }

    pub fn top(&self) -> usize {
        self.rungs.len() - 1
    }
}

/// What one trial did at one rung.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RungOutcome {
    /// Running or queued at this rung.
    Pending,
    /// Finished with this retrospectively selected value of the objective.
    Finished(f64),
    /// Finished without a value it can be ranked by (failed, diverged, incomplete): it counts
    /// toward the rung's size but is never promoted.
    Infeasible,
}

/// One trial's ladder history: its outcome at each rung it reached, in rung order.
#[derive(Debug, Clone, PartialEq)]
pub struct LadderTrial {
    pub number: u64,
    pub rungs: Vec<RungOutcome>,
}

/// What a worker should do next.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LadderDecision {
    /// Start a new configuration at rung 0.
    Launch { budget: u64 },
    /// Run trial `trial` on at rung `rung` (its budget `budget`), from rung `rung - 1`.
    Promote { trial: u64, rung: usize, budget: u64 },
    /// Nothing to do now; ask again when a running trial finishes.
    Wait,
    /// The ladder is complete.
    Done,
}

/// The next decision for a ladder whose trials did `history`, with `planned` configurations
/// in all (rung 0's size).
pub fn next(ladder: &Ladder, history: &[LadderTrial], planned: u64, direction: Direction) -> LadderDecision {
    for k in (0..ladder.top()).rev() {
        if let Some(trial) = promotable(ladder, history, k, direction) {
            return LadderDecision::Promote { trial, rung: k + 1, budget: ladder.rungs[k + 1] };
        }
    }
    if (history.len() as u64) < planned {
        return LadderDecision::Launch { budget: ladder.rungs[0] };
    }
    if history.iter().any(|t| t.rungs.last() == Some(&RungOutcome::Pending)) {
        return LadderDecision::Wait;
    }
    LadderDecision::Done
}

/// The best trial finished at rung `k`, within the top `floor(n_k / eta)` there, and not yet
/// promoted from it. Ties go to the lower trial number.
fn promotable(ladder: &Ladder, history: &[LadderTrial], k: usize, direction: Direction) -> Option<u64> {
    let finished: Vec<&LadderTrial> =
        history.iter().filter(|t| matches!(t.rungs.get(k), Some(RungOutcome::Finished(_) | RungOutcome::Infeasible))).collect();
    let quota = finished.len() / ladder.eta as usize;
    if quota == 0 {
        return None;
    }
    let mut ranked: Vec<(f64, u64, bool)> = finished
        .iter()
        .filter_map(|t| match t.rungs[k] {
            RungOutcome::Finished(v) if v.is_finite() => Some((v, t.number, t.rungs.len() > k + 1)),
            _ => None,
        })
        .collect();
    ranked.sort_by(|a, b| {
        let by_value = match direction {
            Direction::Minimize => a.0.total_cmp(&b.0),
            Direction::Maximize => b.0.total_cmp(&a.0),
        };
        by_value.then(a.1.cmp(&b.1))
    });
    ranked.into_iter().take(quota).find(|(_, _, promoted)| !promoted).map(|(_, n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RungOutcome::{Finished as F, Infeasible as X, Pending as P};

    fn t(number: u64, rungs: &[RungOutcome]) -> LadderTrial {
        LadderTrial { number, rungs: rungs.to_vec() }
    }

    fn ladder() -> Ladder {
        Ladder::geometric(100, 3, 900).unwrap()
    }

    #[test]
    fn geometric_rungs_end_at_the_budget() {
        assert_eq!(ladder().rungs, [100, 300, 900]);
        assert_eq!(Ladder::geometric(300, 3, 8100).unwrap().rungs, [300, 900, 2700, 8100]);
        // 100, 300, 900, 2700 then 3000: a sliver rung is dropped in favour of the budget.
        assert_eq!(Ladder::geometric(100, 3, 3000).unwrap().rungs, [100, 300, 900, 3000]);
        assert_eq!(Ladder::geometric(100, 3, 2000).unwrap().rungs, [100, 300, 900, 2000]);
        assert_eq!(Ladder::geometric(100, 3, 1000).unwrap().rungs, [100, 300, 1000]);
        assert!(Ladder::geometric(100, 1, 900).is_err());
        assert!(Ladder::geometric(900, 3, 900).is_err());
        assert!(Ladder::explicit(vec![100, 100, 900], 3).is_err());
        assert!(Ladder::explicit(vec![100], 3).is_err());
    }

    #[test]
    fn launches_until_a_rung_can_promote_then_promotes_the_best() {
        let l = ladder();
        assert_eq!(next(&l, &[], 9, Direction::Minimize), LadderDecision::Launch { budget: 100 });
        // Two finished at rung 0: floor(2 / 3) = 0, nothing to promote yet.
        let h = [t(0, &[F(0.5)]), t(1, &[F(0.4)])];
        assert_eq!(next(&l, &h, 9, Direction::Minimize), LadderDecision::Launch { budget: 100 });
        // Three: the best (trial 1) goes on.
        let h = [t(0, &[F(0.5)]), t(1, &[F(0.4)]), t(2, &[F(0.6)])];
        assert_eq!(next(&l, &h, 9, Direction::Minimize), LadderDecision::Promote { trial: 1, rung: 1, budget: 300 });
        assert_eq!(next(&l, &h, 9, Direction::Maximize), LadderDecision::Promote { trial: 2, rung: 1, budget: 300 });
    }

    #[test]
    fn no_trial_is_promoted_twice_and_out_of_order_results_count_when_they_arrive() {
        let l = ladder();
        // Trial 1 already promoted (running at rung 1); trial 3 finishes later and better.
        let h = [t(0, &[F(0.5)]), t(1, &[F(0.4), P]), t(2, &[F(0.6)]), t(3, &[F(0.1)]), t(4, &[P])];
        // n = 4, quota 1: the top one is trial 3, not yet promoted.
        assert_eq!(next(&l, &h, 5, Direction::Minimize), LadderDecision::Promote { trial: 3, rung: 1, budget: 300 });
        // After it is promoted, the quota is used up (trial 1's early promotion stands).
        let h = [t(0, &[F(0.5)]), t(1, &[F(0.4), P]), t(2, &[F(0.6)]), t(3, &[F(0.1), P]), t(4, &[P])];
        assert_eq!(next(&l, &h, 5, Direction::Minimize), LadderDecision::Wait);
    }

    #[test]
    fn ties_go_to_the_lower_number_and_infeasible_trials_count_but_never_go_on() {
        let l = ladder();
        let h = [t(0, &[X]), t(1, &[F(0.4)]), t(2, &[F(0.4)])];
        assert_eq!(next(&l, &h, 3, Direction::Minimize), LadderDecision::Promote { trial: 1, rung: 1, budget: 300 });
        // All infeasible: the rung is full but nobody can go on.
        let h = [t(0, &[X]), t(1, &[X]), t(2, &[X])];
        assert_eq!(next(&l, &h, 3, Direction::Minimize), LadderDecision::Done);
        // A NaN value is not a ranking.
        let h = [t(0, &[F(f64::NAN)]), t(1, &[X]), t(2, &[X])];
        assert_eq!(next(&l, &h, 3, Direction::Minimize), LadderDecision::Done);
    }

    #[test]
    fn higher_rungs_promote_first_and_the_top_rung_never_promotes() {
        let l = ladder();
        let mut h: Vec<LadderTrial> = (0..9).map(|i| t(i, &[F(1.0 + i as f64)])).collect();
        // Trials 0, 1, 2 went on to rung 1 and finished it; trial 2 was best there.
        h[0].rungs.push(F(0.9));
        h[1].rungs.push(F(0.8));
        h[2].rungs.push(F(0.3));
        assert_eq!(next(&l, &h, 9, Direction::Minimize), LadderDecision::Promote { trial: 2, rung: 2, budget: 900 });
        h[2].rungs.push(F(0.2));
        // Rung 2 is the top: trial 2 is done; nothing else to promote or launch.
        assert_eq!(next(&l, &h, 9, Direction::Minimize), LadderDecision::Done);
    }

    #[test]
    fn a_worker_waits_while_results_can_still_grow_the_ladder() {
        let l = ladder();
        let h = [t(0, &[F(0.5)]), t(1, &[P]), t(2, &[P])];
        assert_eq!(next(&l, &h, 3, Direction::Minimize), LadderDecision::Wait);
        // A crash mid-rung leaves the trial queued (pending) at its rung: still waiting, and the
        // decision is the same when read back from the database alone.
        let h = [t(0, &[F(0.5)]), t(1, &[F(0.6)]), t(2, &[F(0.4), P])];
        assert_eq!(next(&l, &h, 3, Direction::Minimize), LadderDecision::Wait);
    }

    #[test]
    fn applying_each_decision_in_turn_runs_a_whole_ladder_once() {
        // Simulate workers: apply every decision at once (as storage does in the claim
        // transaction) and finish pending rungs in an arbitrary order.
        let l = Ladder::geometric(1, 3, 27).unwrap();
        let value = |n: u64, rung: usize| ((n * 7919) % 97) as f64 / 97.0 + 0.01 * rung as f64;
        let mut h: Vec<LadderTrial> = Vec::new();
        let mut promotions = std::collections::BTreeSet::new();
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 10_000);
            match next(&l, &h, 27, Direction::Minimize) {
                LadderDecision::Launch { .. } => {
                    let n = h.len() as u64;
                    h.push(t(n, &[P]));
                }
                LadderDecision::Promote { trial, rung, .. } => {
                    assert!(promotions.insert((trial, rung)), "trial {trial} promoted to rung {rung} twice");
                    h[trial as usize].rungs.push(P);
                }
                LadderDecision::Wait => {
                    // Finish the pending rung of the highest-numbered pending trial (out of order).
                    let i = h.iter().rposition(|t| t.rungs.last() == Some(&P)).unwrap();
                    let rung = h[i].rungs.len() - 1;
                    let v = value(h[i].number, rung);
                    *h[i].rungs.last_mut().unwrap() = F(v);
                }
                LadderDecision::Done => break,
            }
            // Keep at most two pending at once (two workers).
            while h.iter().filter(|t| t.rungs.last() == Some(&P)).count() > 2 {
                let i = h.iter().position(|t| t.rungs.last() == Some(&P)).unwrap();
                let rung = h[i].rungs.len() - 1;
                *h[i].rungs.last_mut().unwrap() = F(value(h[i].number, rung));
            }
        }
        let reached = |k: usize| h.iter().filter(|t| t.rungs.len() > k).count();
        assert_eq!((reached(0), reached(1), reached(2), reached(3)), (27, 9, 3, 1), "27 -> 9 -> 3 -> 1");
        assert!(h.iter().all(|t| t.rungs.iter().all(|r| *r != P)));
    }
}
