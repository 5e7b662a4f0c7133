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
//! Two rules guard against what halving gets wrong (measured on real curves in BENCHMARKS.md,
//! "Ladder replay"):
//!
//! - **A rung decides only if its ranking predicts the next rung's** ([`Ladder::calibration`],
//!   [`Ladder::min_rank_correlation`]). The first `calibration` trials (by number) to finish a
//!   rung go on to the next rung whatever their rank, which measures, on a sample that halving
//!   did not select, the rank correlation (Spearman) between the two rungs' values (a member
//!   that fails or diverges at the next rung is replaced by the next finisher: divergence is
//!   stopped at once and costs little, the ranking is about values). A rung whose correlation
//!   is below `min_rank_correlation` stops deciding alone: it promotes every trial with a
//!   value, and the next rung, measured the same way, decides instead. Rungs are measured from
//!   the bottom; the first one that predicts decides, and the rungs above it are trusted as
//!   ASHA trusts every rung (rankings settle as budgets grow), so the expensive rungs are not
//!   promoted blindly unless every rung below them failed the test. Until a rung is measured it
//!   keeps its quota (plus the members), and the trials it held back go on if it then passes
//!   all. The rule needs room: it applies when `planned >= eta^2 * calibration`, so a small
//!   ladder is plain ASHA.
//! - **Growing** ([`Ladder::grow`], off by default): once every planned configuration has
//!   started and no promotion is due, promote the best trial not yet promoted from the highest
//!   rung that has one instead of waiting or finishing, until every trial with a value has
//!   reached the top rung. The ladder then keeps turning compute into results for as long as it
//!   is given it (in the end it has run every configuration to the top, as a plain study
//!   would); without it the ladder is done after at most about `(number of rungs) * planned *
//!   min_steps` steps.
//!
//! A trial whose loss becomes non-finite is stopped by the runner at once (the trainer's
//! `stop_on_divergence`, on by default) and is infeasible at that rung: it counts toward the
//! rung's size and is never promoted.
//!
//! The policy holds no state: storage applies a decision inside the transaction that read the
//! history, so two workers asking at once get two different decisions and no trial is
//! promoted twice.

use crate::spec::Direction;

/// The rungs of a ladder: budgets in steps, increasing, the last the study's budget.
///
/// The fields after `eta` are the policy's options; [`Ladder::geometric`] and
/// [`Ladder::explicit`] set their defaults, and they are serialized only when they differ from
/// them (so a study's stored identity does not change with them left alone).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ladder {
    pub rungs: Vec<u64>,
    /// The promotion ratio: the best `1 / eta` of each rung go on.
    pub eta: u64,
    /// The least rank correlation (Spearman, -1..1) between a rung's values and the next rung's
    /// at which the rung decides promotions on its own ([`DEFAULT_MIN_RANK_CORRELATION`]).
    #[serde(default = "default_min_rank_correlation", skip_serializing_if = "is_default_min_rank_correlation")]
    pub min_rank_correlation: f64,
    /// Trials per rung promoted whatever their rank to measure the rung's rank correlation:
    /// `None` is `2 * eta^2` (18 for `eta = 3`), `Some(0)` turns the measurement off (plain ASHA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<u64>,
    /// Promote beyond the quotas instead of waiting or finishing once every planned
    /// configuration has started (module docs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grow: bool,
}

/// [`Ladder::min_rank_correlation`]'s default, set from the one measurement so far, the AlexNet
/// replay (BENCHMARKS.md, "Ladder replay"): measured on 18 pairs, one epoch against three gives
/// 0.61 in the median seed (0.37 to 0.81 from the 10th to the 90th percentile of seeds), three
/// against nine 0.84 (0.70 to 0.93); the results hardly move for thresholds from 0.6 to 0.85.
pub const DEFAULT_MIN_RANK_CORRELATION: f64 = 0.7;

fn default_min_rank_correlation() -> f64 {
    DEFAULT_MIN_RANK_CORRELATION
}

fn is_default_min_rank_correlation(v: &f64) -> bool {
    *v == DEFAULT_MIN_RANK_CORRELATION
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
        Ok(Ladder { rungs, eta, min_rank_correlation: DEFAULT_MIN_RANK_CORRELATION, calibration: None, grow: false })
    }

    pub fn top(&self) -> usize {
        self.rungs.len() - 1
    }

    /// Trials per rung promoted to measure its rank correlation ([`Ladder::calibration`]; 0:
    /// none).
    pub fn calibration_trials(&self) -> u64 {
        self.calibration.unwrap_or(2 * self.eta.saturating_mul(self.eta))
    }

    /// How each rung below the top promotes given `history` (module docs): rungs are measured
    /// from rung 0 up until one predicts the next rung (it decides and the rest keep the quota)
    /// or is still being measured (the rest keep the quota meanwhile).
    pub fn rules(&self, history: &[LadderTrial], planned: u64, direction: Direction) -> Vec<RungRule> {
        let mut rules = vec![RungRule::Quota; self.top()];
        let m = self.calibration_trials() as usize;
        // Fewer than 3 pairs have no rank correlation to speak of; a ladder with fewer than
        // eta^2 * m configurations has no room to measure one.
        if m < 3 || planned < self.eta.saturating_mul(self.eta).saturating_mul(m as u64) {
            return rules;
        }
        let mut numbered: Vec<&LadderTrial> = history.iter().collect();
        numbered.sort_by_key(|t| t.number);
        for (k, rule) in rules.iter_mut().enumerate() {
            // The members: the first trials (by number) with a value at rung k, until m of them
            // have not failed at rung k + 1 (one that failed or diverged there, stopped at once,
            // is replaced by the next: the correlation is between values).
            let failed_next = |t: &LadderTrial| {
                matches!(t.rungs.get(k + 1), Some(RungOutcome::Finished(_) | RungOutcome::Infeasible))
                    && value(t, k + 1).is_none()
            };
            let mut members = Vec::new();
            let mut pairs = Vec::new();
            let mut counted = 0;
            for t in numbered.iter().filter(|t| value(t, k).is_some()) {
                if counted == m {
                    break;
                }
                members.push(t.number);
                if !failed_next(t) {
                    counted += 1;
                    if let (Some(a), Some(b)) = (value(t, k), value(t, k + 1)) {
                        pairs.push((oriented(a, direction), oriented(b, direction)));
                    }
                }
            }
            if pairs.len() < m {
                *rule = RungRule::Measure { trials: members };
                return rules;
            }
            let rank_correlation = rank_correlation(&pairs);
            if rank_correlation >= self.min_rank_correlation {
                *rule = RungRule::Decides { rank_correlation };
                return rules;
            }
            *rule = RungRule::PassesAll { rank_correlation };
        }
        rules
    }
}

/// How a rung below the top promotes ([`Ladder::rules`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum RungRule {
    /// ASHA: the best `floor(n / eta)` of the `n` finished go on. The rung is not measured: the
    /// ladder is too small or measures nothing, or a lower rung decides or is being measured.
    Quota,
    /// Being measured: as `Quota`, and these trials (the first to finish the rung with a value,
    /// by number) go on whatever their rank.
    Measure { trials: Vec<u64> },
    /// Measured, and its ranking predicts the next rung's: it decides, as `Quota`.
    Decides { rank_correlation: f64 },
    /// Measured, and its ranking does not predict the next rung's: every trial with a value goes
    /// on, and the next rung decides.
    PassesAll { rank_correlation: f64 },
}

/// A trial's finite value at rung `k`, if it finished it with one.
fn value(t: &LadderTrial, k: usize) -> Option<f64> {
    match t.rungs.get(k) {
        Some(RungOutcome::Finished(v)) if v.is_finite() => Some(*v),
        _ => None,
    }
}

/// The value turned so that lower is better.
fn oriented(v: f64, direction: Direction) -> f64 {
    match direction {
        Direction::Minimize => v,
        Direction::Maximize => -v,
    }
}

/// Ranks from 1 (the lowest value first), ties sharing their average rank.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut r = vec![0.0; values.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && values[idx[j + 1]] == values[idx[i]] {
            j += 1;
        }
        for &n in &idx[i..=j] {
            r[n] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of pairs of values (Pearson's of their ranks, ties at their
/// average rank), in -1..1; `None` below two pairs or where either side has no spread (a
/// ranking that says nothing). The one implementation: the ladder's guard and the ladder report
/// (`horizon_analysis::ladder`) both use it.
pub fn spearman(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 2 {
        return None;
    }
    let a = ranks(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let b = ranks(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    if va <= 0.0 || vb <= 0.0 { None } else { Some((cov / (va * vb).sqrt()).clamp(-1.0, 1.0)) }
}

/// [`spearman`], with 0 for a ranking that says nothing (what the guard acts on).
pub fn rank_correlation(pairs: &[(f64, f64)]) -> f64 {
    spearman(pairs).unwrap_or(0.0)
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
    let rules = ladder.rules(history, planned, direction);
    for k in (0..ladder.top()).rev() {
        if let Some(trial) = promotable(ladder, history, k, direction, &rules[k]) {
            return LadderDecision::Promote { trial, rung: k + 1, budget: ladder.rungs[k + 1] };
        }
    }
    if (history.len() as u64) < planned {
        return LadderDecision::Launch { budget: ladder.rungs[0] };
    }
    if ladder.grow {
        for k in (0..ladder.top()).rev() {
            if let Some((_, trial, _)) = ranked(history, k, direction).into_iter().find(|&(_, _, promoted)| !promoted) {
                return LadderDecision::Promote { trial, rung: k + 1, budget: ladder.rungs[k + 1] };
            }
        }
    }
    if history.iter().any(|t| t.rungs.last() == Some(&RungOutcome::Pending)) {
        return LadderDecision::Wait;
    }
    LadderDecision::Done
}

/// The trials with a value at rung `k`, best first, ties to the lower number: `(value, number,
/// promoted from k)`.
fn ranked(history: &[LadderTrial], k: usize, direction: Direction) -> Vec<(f64, u64, bool)> {
    let mut r: Vec<(f64, u64, bool)> =
        history.iter().filter_map(|t| Some((oriented(value(t, k)?, direction), t.number, t.rungs.len() > k + 1))).collect();
    r.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    r
}

/// Whether trial `number` went on from rung `k` (it has a later rung).
fn promoted(history: &[LadderTrial], number: u64, k: usize) -> bool {
    history.iter().any(|t| t.number == number && t.rungs.len() > k + 1)
}

/// The next trial to promote from rung `k` under its rule, not yet promoted from it: a trial
/// being measured first (lowest number), then the best within the top `floor(n_k / eta)` (or
/// any with a value, where the rung passes all). Ties go to the lower trial number.
fn promotable(ladder: &Ladder, history: &[LadderTrial], k: usize, direction: Direction, rule: &RungRule) -> Option<u64> {
    if let RungRule::Measure { trials } = rule
        && let Some(&n) = trials.iter().find(|&&n| !promoted(history, n, k))
    {
        return Some(n);
    }
    let ranked = ranked(history, k, direction);
    let quota = match rule {
        RungRule::PassesAll { .. } => ranked.len(),
        _ => {
            let finished = history
                .iter()
                .filter(|t| matches!(t.rungs.get(k), Some(RungOutcome::Finished(_) | RungOutcome::Infeasible)))
                .count();
            finished / ladder.eta as usize
        }
    };
    ranked.into_iter().take(quota).find(|&(_, _, promoted)| !promoted).map(|(_, n, _)| n)
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

    /// A ladder with room to measure: 1, 3, 9, 27 steps, 2 pairs per rung measured (tests only;
    /// the default is 2 * eta^2), so planned >= 9 * 3 = 27.
    fn measured() -> Ladder {
        Ladder { calibration: Some(3), ..Ladder::geometric(1, 3, 27).unwrap() }
    }

    #[test]
    fn rank_correlation_is_spearmans_with_average_ranks_for_ties() {
        let up = [(1.0, 10.0), (2.0, 20.0), (3.0, 30.0), (4.0, 40.0)];
        assert!((rank_correlation(&up) - 1.0).abs() < 1e-12);
        let down: Vec<(f64, f64)> = up.iter().map(|&(a, b)| (a, -b)).collect();
        assert!((rank_correlation(&down) + 1.0).abs() < 1e-12);
        // Ranks 1, 2.5, 2.5, 4 against 1, 2, 3, 4: 4.5 / sqrt(4.5 * 5).
        let tied = [(1.0, 1.0), (2.0, 2.0), (2.0, 3.0), (3.0, 4.0)];
        assert!((rank_correlation(&tied) - 4.5 / (4.5f64 * 5.0).sqrt()).abs() < 1e-12);
        // Every value equal on one side (one epoch at chance level for all): no information.
        assert_eq!(rank_correlation(&[(0.999, 0.5), (0.999, 0.4), (0.999, 0.6)]), 0.0);
    }

    #[test]
    fn the_defaults_measure_only_a_ladder_with_room_and_stay_out_of_its_identity() {
        let l = ladder();
        assert_eq!((l.min_rank_correlation, l.calibration, l.grow), (DEFAULT_MIN_RANK_CORRELATION, None, false));
        assert_eq!(l.calibration_trials(), 18);
        // 18 pairs need eta^2 * 18 = 162 configurations: below that, plain ASHA.
        let h: Vec<LadderTrial> = (0..3).map(|i| t(i, &[F(i as f64)])).collect();
        assert_eq!(l.rules(&h, 161, Direction::Minimize), vec![RungRule::Quota; 2]);
        assert_eq!(l.rules(&h, 162, Direction::Minimize)[0], RungRule::Measure { trials: vec![0, 1, 2] });
        let off = Ladder { calibration: Some(0), ..ladder() };
        assert_eq!(off.rules(&h, 1000, Direction::Minimize), vec![RungRule::Quota; 2]);
        // Options left at their defaults are not serialized (a stored identity stays as it was),
        // and a ladder serialized without them reads back with the defaults.
        assert_eq!(serde_json::to_value(&l).unwrap(), serde_json::json!({"rungs": [100, 300, 900], "eta": 3}));
        let back: Ladder = serde_json::from_value(serde_json::json!({"rungs": [100, 300, 900], "eta": 3})).unwrap();
        assert_eq!(back, l);
        let set = Ladder { min_rank_correlation: 0.5, calibration: Some(4), grow: true, ..ladder() };
        let v = serde_json::to_value(&set).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"rungs": [100, 300, 900], "eta": 3, "min_rank_correlation": 0.5, "calibration": 4, "grow": true})
        );
        assert_eq!(serde_json::from_value::<Ladder>(v).unwrap(), set);
    }

    #[test]
    fn the_first_finishers_of_a_rung_go_on_whatever_their_rank_to_measure_it() {
        let l = measured();
        // Trials 0..3 finished rung 0, worst first; the quota (floor(3 / 3) = 1) would promote
        // trial 2 alone. Being measured, trial 0 goes on first (lowest number), then 1, then 2.
        let mut h = vec![t(0, &[F(0.9)]), t(1, &[F(0.8)]), t(2, &[F(0.7)])];
        assert_eq!(l.rules(&h, 27, Direction::Minimize)[0], RungRule::Measure { trials: vec![0, 1, 2] });
        for want in 0..3 {
            assert_eq!(next(&l, &h, 27, Direction::Minimize), LadderDecision::Promote { trial: want, rung: 1, budget: 3 });
            h[want as usize].rungs.push(P);
        }
        // All three running at rung 1: nothing else to promote; launch more.
        assert_eq!(next(&l, &h, 27, Direction::Minimize), LadderDecision::Launch { budget: 1 });
        // A member that diverges at rung 1 is replaced by the next finisher (by number), which
        // goes on too; the correlation is between values.
        h[0].rungs[1] = X;
        h.push(t(3, &[F(0.95)]));
        assert_eq!(l.rules(&h, 27, Direction::Minimize)[0], RungRule::Measure { trials: vec![0, 1, 2, 3] });
        assert_eq!(next(&l, &h, 27, Direction::Minimize), LadderDecision::Promote { trial: 3, rung: 1, budget: 3 });
    }

    #[test]
    fn a_rung_whose_ranking_does_not_predict_the_next_passes_everyone_on() {
        let l = measured();
        // Rung 0's order is the reverse of rung 1's for the three measured trials.
        let mut h = vec![t(0, &[F(0.1), F(0.9)]), t(1, &[F(0.2), F(0.8)]), t(2, &[F(0.3), F(0.7)])];
        h.extend((3..9).map(|i| t(i, &[F(0.5 + i as f64 / 100.0)])));
        let rules = l.rules(&h, 27, Direction::Minimize);
        assert_eq!(rules[0], RungRule::PassesAll { rank_correlation: -1.0 });
        // Rung 1 is measured next: its three measured trials are the ones at rung 1.
        assert_eq!(rules[1], RungRule::Measure { trials: vec![0, 1, 2] });
        assert_eq!(rules[2], RungRule::Quota);
        // Rung 1's members go on first (highest rung first), then every rung-0 trial, best first
        // (floor(9 / 3) = 3 were promoted already: ASHA would launch), then launches.
        let mut order = Vec::new();
        loop {
            match next(&l, &h, 27, Direction::Minimize) {
                LadderDecision::Promote { trial, rung, .. } => {
                    order.push((trial, rung));
                    h[trial as usize].rungs.push(P);
                }
                LadderDecision::Launch { .. } => break,
                d => panic!("unexpected {d:?}"),
            }
        }
        assert_eq!(order, [(0, 2), (1, 2), (2, 2), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1), (8, 1)]);
    }

    #[test]
    fn a_rung_that_predicts_the_next_decides_and_the_rungs_above_are_trusted() {
        let l = measured();
        let mut h = vec![t(0, &[F(0.1), F(0.7)]), t(1, &[F(0.2), F(0.8)]), t(2, &[F(0.3), F(0.9)])];
        h.extend((3..9).map(|i| t(i, &[F(0.5 + i as f64 / 100.0)])));
        let rules = l.rules(&h, 27, Direction::Minimize);
        assert_eq!(rules, vec![RungRule::Decides { rank_correlation: 1.0 }, RungRule::Quota, RungRule::Quota]);
        // The direction turns both rungs' rankings round: the same agreement.
        assert_eq!(l.rules(&h, 27, Direction::Maximize)[0], RungRule::Decides { rank_correlation: 1.0 });
        // Deciding is ASHA's quota: 9 finished at rung 0 and 3 promoted, none more; rung 1 (3
        // finished, quota 1) promotes its best, then trials are launched.
        assert_eq!(next(&l, &h, 27, Direction::Minimize), LadderDecision::Promote { trial: 0, rung: 2, budget: 9 });
        h[0].rungs.push(P);
        assert_eq!(next(&l, &h, 27, Direction::Minimize), LadderDecision::Launch { budget: 1 });
    }

    #[test]
    fn growing_promotes_past_the_quota_from_the_highest_rung_once_all_have_started() {
        let l = Ladder { grow: true, ..ladder() };
        // Six at rung 0 (two promoted, one of them finished rung 1), one infeasible.
        let mut h =
            vec![t(0, &[F(0.5)]), t(1, &[F(0.1), F(0.3)]), t(2, &[F(0.2), P]), t(3, &[X]), t(4, &[F(0.6)]), t(5, &[F(0.4)])];
        // Trial 1 is the top one of rung 1's finished (quota floor(1 / 3) = 0): ASHA waits; the
        // growing ladder launches first while there is anything to launch.
        assert_eq!(next(&ladder(), &h, 6, Direction::Minimize), LadderDecision::Wait);
        assert_eq!(next(&l, &h, 7, Direction::Minimize), LadderDecision::Launch { budget: 100 });
        assert_eq!(next(&l, &h, 6, Direction::Minimize), LadderDecision::Promote { trial: 1, rung: 2, budget: 900 });
        h[1].rungs.push(P);
        // Then rung 0's best not yet promoted: 5 (0.4), 0 (0.5), 4 (0.6); never the infeasible 3.
        for want in [5, 0, 4] {
            assert_eq!(next(&l, &h, 6, Direction::Minimize), LadderDecision::Promote { trial: want, rung: 1, budget: 300 });
            h[want as usize].rungs.push(P);
        }
        assert_eq!(next(&l, &h, 6, Direction::Minimize), LadderDecision::Wait);
    }

    /// Runs a ladder to the end with `workers` simulated workers that finish pending rungs in a
    /// scrambled order, checking that no trial is promoted twice; returns how many trials
    /// reached each rung.
    fn run_to_the_end(l: &Ladder, planned: u64, workers: usize, value: impl Fn(u64, usize) -> RungOutcome) -> Vec<usize> {
        let mut h: Vec<LadderTrial> = Vec::new();
        let mut promotions = std::collections::BTreeSet::new();
        let mut pick = 0u64;
        let mut finish_one = |h: &mut Vec<LadderTrial>| {
            let pending: Vec<usize> = (0..h.len()).filter(|&i| h[i].rungs.last() == Some(&P)).collect();
            pick = pick.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let i = pending[(pick >> 33) as usize % pending.len()];
            let rung = h[i].rungs.len() - 1;
            *h[i].rungs.last_mut().unwrap() = value(h[i].number, rung);
        };
        for round in 0.. {
            assert!(round < 100_000);
            match next(l, &h, planned, Direction::Minimize) {
                LadderDecision::Launch { budget } => {
                    assert_eq!(budget, l.rungs[0]);
                    let n = h.len() as u64;
                    h.push(t(n, &[P]));
                }
                LadderDecision::Promote { trial, rung, budget } => {
                    assert_eq!(budget, l.rungs[rung]);
                    assert!(promotions.insert((trial, rung)), "trial {trial} promoted to rung {rung} twice");
                    let tr = &mut h[trial as usize];
                    assert_eq!(tr.rungs.len(), rung, "trial {trial} promoted out of turn");
                    assert!(value(trial, rung - 1) == tr.rungs[rung - 1] && matches!(tr.rungs[rung - 1], F(_)));
                    tr.rungs.push(P);
                }
                LadderDecision::Wait => finish_one(&mut h),
                LadderDecision::Done => break,
            }
            while h.iter().filter(|t| t.rungs.last() == Some(&P)).count() > workers {
                finish_one(&mut h);
            }
        }
        assert!(h.iter().all(|t| t.rungs.iter().all(|r| *r != P)));
        assert_eq!(h.len() as u64, planned);
        (0..l.rungs.len()).map(|k| h.iter().filter(|t| t.rungs.len() > k).count()).collect()
    }

    #[test]
    fn measured_ladders_run_to_the_end_once_under_asynchrony() {
        let l = Ladder::geometric(1, 3, 27).unwrap();
        let noise = |n: u64, salt: u64| ((n.wrapping_mul(7919) ^ salt).wrapping_mul(2654435761) % 1000) as f64 / 1000.0;
        // Rankings that hold from rung to rung: rung 0 is measured (18 pairs) and decides; the
        // ladder is ASHA's plus the measured trials: 162 -> 54 + a few -> ...
        let steady = |n: u64, k: usize| F(noise(n, 1) + 0.001 * k as f64);
        let sizes = run_to_the_end(&l, 162, 4, steady);
        assert!(sizes[1] >= 54 && sizes[1] <= 54 + 18, "{sizes:?}");
        assert!(sizes[2] >= 18 && sizes[3] >= 6, "{sizes:?}");
        // Rung 0 says nothing about rung 1 (independent noise), the rest hold: every trial
        // reaches rung 1, and rung 1 decides.
        let first_rung_noise = |n: u64, k: usize| if k == 0 { F(noise(n, 2)) } else { F(noise(n, 3) + 0.001 * k as f64) };
        let sizes = run_to_the_end(&l, 162, 4, first_rung_noise);
        assert_eq!(sizes[1], 162, "{sizes:?}");
        assert!(sizes[2] < 162, "{sizes:?}");
        // Some diverge at every rung: never promoted, the rest as before.
        let diverging = |n: u64, k: usize| if n % 7 == k as u64 { X } else { steady(n, k) };
        let sizes = run_to_the_end(&l, 162, 3, diverging);
        assert!(sizes[1] >= 54 && sizes[3] >= 1, "{sizes:?}");
        // Growing: every trial with values reaches the top.
        let grow = Ladder { grow: true, ..l.clone() };
        let sizes = run_to_the_end(&grow, 162, 4, first_rung_noise);
        assert_eq!(sizes, vec![162; 4]);
        let sizes = run_to_the_end(&grow, 162, 2, diverging);
        // Those diverging at rung 0, 1, 2 (n % 7) stop there; those diverging at the top count.
        let feasible = (0..162u64).filter(|n| n % 7 >= 3).count();
        assert_eq!(sizes[3], feasible, "{sizes:?}");
    }
}
