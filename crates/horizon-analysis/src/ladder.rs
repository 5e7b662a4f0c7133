//! What a ladder did (asynchronous successive halving over growing budgets, docs/method.md
//! section 3): per rung, how many trials reached it, how they ended, how many went on, and what
//! the rung cost in training steps with and without resuming from the rung below; and whether
//! each rung's ranking held up at the longer budgets above it.
//!
//! [`ladder_report`] is a pure function of the stored [`RungRecord`]s and the ladder's budgets;
//! [`LadderReport`] is `Serialize` (the CLI prints [`LadderReport::render`] and puts the report
//! in its JSON).
//!
//! # Does a short rung predict a long one?
//!
//! The method warns that conclusions drawn from short runs may not hold at long ones. A ladder
//! promotes on the order of rung `k`, so the report compares that order with the order of the
//! same trials at rung `k + 1` (and at the top rung reached, when that is higher still):
//!
//! - **Which trials**: those *finished* at both rungs (complete, with a finite best value), the
//!   values the ladder itself ranks by. A pending run's value is partial and an infeasible one is
//!   never ranked, so neither is compared.
//! - **Statistic**: Spearman's rho, the Pearson correlation of the ranks, with average ranks for
//!   ties. Both rungs are ranked by "better" under the study's direction (rank 1 the best), so a
//!   positive rho means the rungs agree whether the objective is minimized or maximized.
//! - **Uncertainty**: a two-sided [`INTERVAL_LEVEL`] (90%) interval from the Fisher
//!   z-transform, `tanh(atanh(rho) ± z * sqrt(1.06 / (n - 3)))`, with the variance 1.06 / (n - 3)
//!   of Fieller, Hartley and Pearson (1957) for Spearman's rho. Deterministic, and defined from
//!   [`MIN_TRIALS_FOR_INTERVAL`] (4) trials. At rho = ±1 the transform is infinite and the
//!   interval collapses onto the point: read it with `n`.
//! - **No estimate** below [`MIN_TRIALS_FOR_RHO`] (3) trials, or when every compared trial has
//!   the same value at one of the rungs ([`RankAgreement::reason`] says which).
//!
//! The trials compared are the ones rung `k` promoted, the best `1 / eta` of it: a restricted
//! range, over which even a good predictor correlates less than over all of rung `k`. That is
//! the question that matters (does the order *among the promoted* hold?), but it is why the
//! thresholds below are modest.
//!
//! # When a rung is flagged
//!
//! Rung `k`'s ranking is flagged as not holding up at rung `m` when there is an interval
//! (n >= 4) and either
//!
//! - its upper bound is below [`FLAG_UPPER_BELOW`] (0.5): the data rule out even moderate
//!   agreement; or
//! - rho itself is below [`FLAG_RHO_BELOW`] (0.3) over at least [`FLAG_RHO_MIN_TRIALS`] (5)
//!   trials: the best estimate is weak agreement, with enough trials that it is not one swap.
//!
//! With 3 trials (the top rung of a 27/9/3 ladder) rho is reported but never judged: any order
//! of 3 trials has a chance of at least 1 in 6 under no agreement at all.
//!
//! ```
//! use horizon_analysis::ladder::ladder_report;
//! use horizon_core::Direction;
//! use horizon_core::trial::{RungEntry, RungRecord, TrialState};
//!
//! let run = |number: u64, rung: u32, value: f64| RungRecord {
//!     trial: number as i64, number, rung, budget: [100, 300][rung as usize],
//!     state: TrialState::Complete,
//!     entry: if rung == 0 { RungEntry::Started } else { RungEntry::Resumed { from: 0, step: 100 } },
//!     best_step: None, best_value: Some(value), final_step: None, final_value: None,
//!     budget_independent_until: None, steps_run: if rung == 0 { 100 } else { 200 },
//!     message: None, started_at: None, finished_at: None, params: Default::default(),
//! };
//! let mut rungs: Vec<RungRecord> = (0..9).map(|n| run(n, 0, 1.0 + n as f64)).collect();
//! rungs.extend((0..3).map(|n| run(n, 1, 0.5 + n as f64)));
//! let report = ladder_report(&rungs, &[100, 300], Direction::Minimize);
//! assert_eq!(report.rungs[0].promoted, 3);
//! assert_eq!(report.totals.steps_saved, 300);
//! assert_eq!(report.consecutive[0].rho, Some(1.0));
//! assert!(report.render().contains("rung 0 -> 1: rho 1 over 3 trials"));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use horizon_core::Direction;
use horizon_core::trial::{RungEntry, RungRecord, TrialState};
use serde::Serialize;

use crate::text::{pct, plural};

/// The coverage of [`RankAgreement::interval`].
pub const INTERVAL_LEVEL: f64 = 0.90;
/// The standard normal quantile for a two-sided [`INTERVAL_LEVEL`] interval (its 95th percentile).
pub const INTERVAL_Z: f64 = 1.644_853_626_951_472_2;
/// The variance of `atanh(rho)` for Spearman's rho is this over `n - 3` (Fieller, Hartley and
/// Pearson 1957).
pub const FIELLER_VARIANCE: f64 = 1.06;
/// Fewest trials finished at both rungs for a rho.
pub const MIN_TRIALS_FOR_RHO: usize = 3;
/// Fewest trials for an interval (the Fisher transform's `n - 3` must be positive).
pub const MIN_TRIALS_FOR_INTERVAL: usize = 4;
/// A ranking is flagged when its interval's upper bound is below this.
pub const FLAG_UPPER_BELOW: f64 = 0.5;
/// ... or when rho is below this over at least [`FLAG_RHO_MIN_TRIALS`] trials.
pub const FLAG_RHO_BELOW: f64 = 0.3;
pub const FLAG_RHO_MIN_TRIALS: usize = 5;

/// How [`RankAgreement`] is computed, as the report states it.
pub const METHOD: &str = "Spearman rho (average ranks for ties) over trials finished at both rungs; 90% interval from the Fisher z-transform with variance 1.06/(n-3) (Fieller, Hartley and Pearson 1957)";

/// The report of [`ladder_report`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LadderReport {
    pub direction: Direction,
    /// Every rung of the ladder, reached or not, in order.
    pub rungs: Vec<RungSummary>,
    pub totals: LadderTotals,
    /// Rung `k` against rung `k + 1`, for every `k` below the top rung reached.
    pub consecutive: Vec<RankAgreement>,
    /// Rung `k` against the top rung reached, for every `k` more than one rung below it.
    pub to_top: Vec<RankAgreement>,
    /// [`METHOD`].
    pub method: String,
    /// The flag sentence of every flagged [`RankAgreement`], consecutive ones first.
    pub flags: Vec<String>,
    /// Records that do not fit the ladder as given (another budget, a rung beyond its top).
    pub notes: Vec<String>,
}

/// One rung: who reached it, how they ended, and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RungSummary {
    pub rung: u32,
    /// The ladder's budget for the rung (for a rung beyond the ladder given, its records').
    pub budget: u64,
    /// Trials with a run at this rung: `finished + infeasible + pending`.
    pub reached: usize,
    /// Complete with a finite best value: the runs the ladder ranks.
    pub finished: usize,
    /// Diverged, failed, incomplete, or complete without a finite best value: never promoted.
    pub infeasible: usize,
    /// Waiting or running.
    pub pending: usize,
    /// Trials of this rung that reached the next one (0 at the top rung).
    pub promoted: usize,
    /// Entries that resumed from a checkpoint of the rung below, and ones that restarted from
    /// scratch (rung 0's runs are neither).
    pub resumed: usize,
    pub restarted: usize,
    /// Training steps the rung's attempts ran.
    pub steps_run: u64,
    /// Steps not run thanks to resuming: the sum of the resumed checkpoints' steps.
    pub steps_saved: u64,
    /// What the rung would have cost with every run from scratch: `steps_run + steps_saved`.
    pub from_scratch_steps: u64,
}

/// The ladder's cost over all rungs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LadderTotals {
    pub steps_run: u64,
    pub steps_saved: u64,
    pub from_scratch_steps: u64,
    /// `steps_saved / from_scratch_steps`; `None` when nothing ran.
    pub saved_fraction: Option<f64>,
}

/// How well the order of rung `from` predicted the order of the same trials at rung `to`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankAgreement {
    pub from: u32,
    pub from_budget: u64,
    pub to: u32,
    pub to_budget: u64,
    /// Trials finished (complete, finite best value) at both rungs.
    pub n: usize,
    /// Spearman's rho, positive when the rungs agree on which trials are better.
    pub rho: Option<f64>,
    pub interval: Option<Interval>,
    /// Why `rho` (fewer than 3 trials, all values equal at a rung) or `interval` (3 trials) is
    /// absent; `None` when both are there.
    pub reason: Option<String>,
    /// The flag's sentence when the ranking did not hold up (see the module's rule).
    pub flag: Option<String>,
}

/// A confidence interval for a correlation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The coverage, [`INTERVAL_LEVEL`].
    pub level: f64,
    pub low: f64,
    pub high: f64,
}

/// The report of a ladder whose runs are `rungs` (any order), with rung budgets `budgets` in
/// rung order, for an objective optimized in `direction`.
pub fn ladder_report(rungs: &[RungRecord], budgets: &[u64], direction: Direction) -> LadderReport {
    let reached_top = rungs.iter().map(|r| r.rung as usize + 1).max().unwrap_or(0);
    let count = budgets.len().max(reached_top);
    let mut at: Vec<Vec<&RungRecord>> = vec![Vec::new(); count];
    for r in rungs {
        at[r.rung as usize].push(r);
    }
    let mut notes = Vec::new();
    let budget_of = |k: usize| budgets.get(k).copied().unwrap_or_else(|| at[k].iter().map(|r| r.budget).max().unwrap_or(0));
    if reached_top > budgets.len() {
        let beyond: usize = at[budgets.len()..].iter().map(Vec::len).sum();
        notes.push(format!(
            "{} at rungs beyond the ladder's {}: their own budgets are shown",
            plural(beyond, "run"),
            plural(budgets.len(), "rung")
        ));
    }
    for (k, runs) in at.iter().enumerate().take(budgets.len()) {
        let other: BTreeSet<u64> = runs.iter().map(|r| r.budget).filter(|&b| b != budgets[k]).collect();
        if !other.is_empty() {
            let n = runs.iter().filter(|r| r.budget != budgets[k]).count();
            let shown: Vec<String> = other.iter().map(u64::to_string).collect();
            notes.push(format!(
                "rung {k}: {} ran with a budget other than the ladder's {} ({})",
                plural(n, "run"),
                budgets[k],
                shown.join(", ")
            ));
        }
    }

    // Per rung: the ranked values by trial, and the trials present.
    let ranked: Vec<BTreeMap<i64, f64>> =
        at.iter().map(|runs| runs.iter().filter_map(|r| ranked_value(r).map(|v| (r.trial, v))).collect()).collect();
    let present: Vec<BTreeSet<i64>> = at.iter().map(|runs| runs.iter().map(|r| r.trial).collect()).collect();

    let summaries: Vec<RungSummary> = (0..count)
        .map(|k| {
            let runs = &at[k];
            let finished = ranked[k].len();
            let pending = runs.iter().filter(|r| matches!(r.state, TrialState::Waiting | TrialState::Running)).count();
            let steps_run = runs.iter().map(|r| r.steps_run).sum();
            let steps_saved = runs.iter().map(|r| r.entry.start_step()).sum();
            RungSummary {
                rung: k as u32,
                budget: budget_of(k),
                reached: runs.len(),
                finished,
                infeasible: runs.len() - finished - pending,
                pending,
                promoted: present.get(k + 1).map_or(0, |next| runs.iter().filter(|r| next.contains(&r.trial)).count()),
                resumed: runs.iter().filter(|r| matches!(r.entry, RungEntry::Resumed { .. })).count(),
                restarted: runs.iter().filter(|r| matches!(r.entry, RungEntry::Restarted { .. })).count(),
                steps_run,
                steps_saved,
                from_scratch_steps: steps_run + steps_saved,
            }
        })
        .collect();
    let steps_run: u64 = summaries.iter().map(|s| s.steps_run).sum();
    let steps_saved: u64 = summaries.iter().map(|s| s.steps_saved).sum();
    let from_scratch_steps = steps_run + steps_saved;
    let totals = LadderTotals {
        steps_run,
        steps_saved,
        from_scratch_steps,
        saved_fraction: (from_scratch_steps > 0).then(|| steps_saved as f64 / from_scratch_steps as f64),
    };

    let compare = |from: usize, to: usize| agreement(from, budget_of(from), to, budget_of(to), &ranked, direction);
    let top = reached_top.saturating_sub(1);
    let consecutive: Vec<RankAgreement> = (0..top).map(|k| compare(k, k + 1)).collect();
    let to_top: Vec<RankAgreement> = (0..top.saturating_sub(1)).map(|k| compare(k, top)).collect();
    let flags = consecutive.iter().chain(&to_top).filter_map(|a| a.flag.clone()).collect();

    LadderReport { direction, rungs: summaries, totals, consecutive, to_top, method: METHOD.to_string(), flags, notes }
}

/// The value the ladder ranks a run by: a complete run's finite best value.
fn ranked_value(r: &RungRecord) -> Option<f64> {
    match (r.state, r.best_value) {
        (TrialState::Complete, Some(v)) if v.is_finite() => Some(v),
        _ => None,
    }
}

fn agreement(
    from: usize,
    from_budget: u64,
    to: usize,
    to_budget: u64,
    ranked: &[BTreeMap<i64, f64>],
    direction: Direction,
) -> RankAgreement {
    let pairs: Vec<(f64, f64)> = ranked[from].iter().filter_map(|(t, &a)| ranked[to].get(t).map(|&b| (a, b))).collect();
    let n = pairs.len();
    let mut a = RankAgreement {
        from: from as u32,
        from_budget,
        to: to as u32,
        to_budget,
        n,
        rho: None,
        interval: None,
        reason: None,
        flag: None,
    };
    if n < MIN_TRIALS_FOR_RHO {
        a.reason = Some(format!("{} finished at both rungs; a rank correlation needs {MIN_TRIALS_FOR_RHO}", plural(n, "trial")));
        return a;
    }
    let Some(rho) = spearman(&pairs, direction) else {
        let constant = |side: &dyn Fn(&(f64, f64)) -> f64| pairs.iter().all(|p| side(p) == side(&pairs[0]));
        let rung = if constant(&|p| p.0) { from } else { to };
        a.reason = Some(format!("every trial compared has the same value at rung {rung}: no order to compare"));
        return a;
    };
    a.rho = Some(rho);
    a.interval = fisher_interval(rho, n);
    let Some(iv) = a.interval else {
        a.reason = Some(format!(
            "{} only: an interval needs {MIN_TRIALS_FOR_INTERVAL}, so the ranking is not judged",
            plural(n, "trial")
        ));
        return a;
    };
    if iv.high < FLAG_UPPER_BELOW || (rho < FLAG_RHO_BELOW && n >= FLAG_RHO_MIN_TRIALS) {
        a.flag = Some(format!(
            "rung {from} ({}) predicted rung {to} ({}) poorly: Spearman rho {} over {} ({:.0}% interval {}..{}); promotions from rung {from} rest on a ranking that did not hold",
            plural(from_budget as usize, "step"),
            plural(to_budget as usize, "step"),
            r2(rho),
            plural(n, "trial"),
            100.0 * iv.level,
            r2(iv.low),
            r2(iv.high)
        ));
    }
    a
}

/// Ranks from 1 for the best under `direction`, ties sharing their average rank.
pub fn ranks(values: &[f64], direction: Direction) -> Vec<f64> {
    horizon_core::ladder::ranks(&values.iter().map(|&v| oriented(v, direction)).collect::<Vec<_>>())
}

/// Spearman's rho of finite `(a, b)` pairs, both ranked by "better" under `direction`
/// (`horizon_core::ladder::spearman`, the one the ladder's guard uses). `None` below two pairs or
/// when every `a` (or every `b`) is the same.
pub fn spearman(pairs: &[(f64, f64)], direction: Direction) -> Option<f64> {
    let oriented: Vec<(f64, f64)> = pairs.iter().map(|&(a, b)| (oriented(a, direction), oriented(b, direction))).collect();
    horizon_core::ladder::spearman(&oriented)
}

fn oriented(v: f64, direction: Direction) -> f64 {
    match direction {
        Direction::Minimize => v,
        Direction::Maximize => -v,
    }
}

/// The [`INTERVAL_LEVEL`] interval of a Spearman `rho` over `n` pairs by the Fisher z-transform
/// with variance [`FIELLER_VARIANCE`]` / (n - 3)`; `None` below [`MIN_TRIALS_FOR_INTERVAL`] pairs
/// or for a NaN rho. At rho = ±1 it is the point itself.
pub fn fisher_interval(rho: f64, n: usize) -> Option<Interval> {
    if n < MIN_TRIALS_FOR_INTERVAL || rho.is_nan() {
        return None;
    }
    let z = rho.clamp(-1.0, 1.0).atanh();
    let half = INTERVAL_Z * (FIELLER_VARIANCE / (n - 3) as f64).sqrt();
    Some(Interval { level: INTERVAL_LEVEL, low: (z - half).tanh(), high: (z + half).tanh() })
}

/// A correlation in at most two decimals: 0.5, -0.12, 1.
fn r2(x: f64) -> String {
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

impl RankAgreement {
    /// The agreement in one line: `rung 0 -> 1: rho 0.8 over 9 trials (90% interval 0.4..0.95)`.
    pub fn line(&self) -> String {
        self.line_as(&format!("rung {} -> {}:", self.from, self.to))
    }

    /// [`RankAgreement::line`] under another heading (`ranking (round 1 -> 2):`).
    pub fn line_as(&self, head: &str) -> String {
        match (self.rho, self.interval) {
            (Some(rho), Some(iv)) => format!(
                "{head} rho {} over {} ({:.0}% interval {}..{})",
                r2(rho),
                plural(self.n, "trial"),
                100.0 * iv.level,
                r2(iv.low),
                r2(iv.high)
            ),
            (Some(rho), None) => format!(
                "{head} rho {} over {} ({})",
                r2(rho),
                plural(self.n, "trial"),
                self.reason.as_deref().unwrap_or("no interval")
            ),
            _ => format!("{head} no estimate ({})", self.reason.as_deref().unwrap_or("no pairs")),
        }
    }
}

impl LadderReport {
    /// The terminal summary: a row per rung, the cost, and how well each rung's order held.
    pub fn render(&self) -> String {
        self.render_as(&format!("Ladder of {}", plural(self.rungs.len(), "rung")))
    }

    /// [`LadderReport::render`] under another heading: a study in rounds has the same records,
    /// one rung per round ("2 rounds").
    pub fn render_as(&self, heading: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{heading} ({}):", self.direction.as_str());
        let _ = writeln!(
            s,
            "  {:>4} {:>8} {:>7} {:>8} {:>10} {:>7} {:>8} {:>7} {:>10} {:>10}",
            "rung", "budget", "reached", "finished", "infeasible", "pending", "promoted", "resumed", "steps run", "saved"
        );
        let top = self.rungs.len().saturating_sub(1);
        for r in &self.rungs {
            let _ = writeln!(
                s,
                "  {:>4} {:>8} {:>7} {:>8} {:>10} {:>7} {:>8} {:>7} {:>10} {:>10}",
                r.rung,
                r.budget,
                r.reached,
                r.finished,
                r.infeasible,
                r.pending,
                if r.rung as usize == top { "-".to_string() } else { r.promoted.to_string() },
                r.resumed,
                r.steps_run,
                r.steps_saved
            );
        }
        let t = &self.totals;
        match t.saved_fraction {
            Some(f) if t.steps_saved > 0 => {
                let _ = writeln!(
                    s,
                    "  steps run {} of {} from scratch: resuming from checkpoints saved {} ({})",
                    t.steps_run,
                    t.from_scratch_steps,
                    t.steps_saved,
                    pct(f)
                );
            }
            _ => {
                let _ = writeln!(s, "  steps run {}; nothing resumed from a checkpoint", t.steps_run);
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        if !self.consecutive.is_empty() {
            let _ = writeln!(s, "\nRank agreement between rungs (Spearman rho, trials finished at both; Fisher z interval):");
            for a in self.consecutive.iter().chain(&self.to_top) {
                let _ = writeln!(s, "  {}", a.line());
            }
            for f in &self.flags {
                let _ = writeln!(s, "  ! {f}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        number: u64,
        rung: u32,
        budget: u64,
        state: TrialState,
        entry: RungEntry,
        value: Option<f64>,
        steps_run: u64,
    ) -> RungRecord {
        RungRecord {
            trial: 1000 + number as i64,
            number,
            rung,
            budget,
            state,
            entry,
            best_step: value.map(|_| budget),
            best_value: value,
            final_step: value.map(|_| budget),
            final_value: value,
            budget_independent_until: None,
            steps_run,
            message: None,
            started_at: None,
            finished_at: None,
            params: horizon_core::Params::default(),
        }
    }

    fn done(number: u64, rung: u32, budget: u64, value: f64) -> RungRecord {
        let entry = if rung == 0 { RungEntry::Started } else { RungEntry::Restarted { from: rung - 1 } };
        run(number, rung, budget, TrialState::Complete, entry, Some(value), budget)
    }

    /// Two rungs (100, 300) of trials `0..n` with these values at each.
    fn two_rungs(lower: &[f64], upper: &[f64], direction: Direction) -> LadderReport {
        let mut rs: Vec<RungRecord> = lower.iter().enumerate().map(|(n, &v)| done(n as u64, 0, 100, v)).collect();
        rs.extend(upper.iter().enumerate().map(|(n, &v)| done(n as u64, 1, 300, v)));
        ladder_report(&rs, &[100, 300], direction)
    }

    /// A 27/9/3 ladder (eta 3, budgets 100, 300, 900), minimized: trial 26 failed at rung 0;
    /// rung 1's values keep rung 0's order; trials 0-5 resumed into rung 1 from step 100 and
    /// 6-8 restarted; at rung 2 trials 0 and 1 finished (resumed from 300) and trial 2 is running.
    fn ladder_27_9_3() -> Vec<RungRecord> {
        let mut rs = Vec::new();
        for n in 0..27 {
            if n == 26 {
                rs.push(run(n, 0, 100, TrialState::Failed, RungEntry::Started, None, 40));
            } else {
                rs.push(done(n, 0, 100, 1.0 + n as f64 / 100.0));
            }
        }
        for n in 0..9 {
            let v = Some(0.5 + n as f64 / 100.0);
            if n < 6 {
                rs.push(run(n, 1, 300, TrialState::Complete, RungEntry::Resumed { from: 0, step: 100 }, v, 200));
            } else {
                rs.push(run(n, 1, 300, TrialState::Complete, RungEntry::Restarted { from: 0 }, v, 300));
            }
        }
        let resumed = RungEntry::Resumed { from: 1, step: 300 };
        rs.push(run(0, 2, 900, TrialState::Complete, resumed, Some(0.3), 600));
        rs.push(run(1, 2, 900, TrialState::Complete, resumed, Some(0.31), 600));
        rs.push(run(2, 2, 900, TrialState::Running, resumed, Some(0.2), 250));
        rs
    }

    #[test]
    fn a_27_9_3_ladder_is_counted_and_costed() {
        let mut rs = ladder_27_9_3();
        rs.reverse(); // any order
        let r = ladder_report(&rs, &[100, 300, 900], Direction::Minimize);
        let row = |k: usize| {
            let s = &r.rungs[k];
            (s.budget, s.reached, s.finished, s.infeasible, s.pending, s.promoted, s.resumed, s.restarted)
        };
        assert_eq!(row(0), (100, 27, 26, 1, 0, 9, 0, 0));
        assert_eq!(row(1), (300, 9, 9, 0, 0, 3, 6, 3));
        assert_eq!(row(2), (900, 3, 2, 0, 1, 0, 3, 0));
        // Rung 0: 26 * 100 + 40. Rung 1: 6 * 200 + 3 * 300, saved 6 * 100. Rung 2: 600 + 600 + 250,
        // saved 3 * 300 (the running one resumed too).
        let cost = |k: usize| (r.rungs[k].steps_run, r.rungs[k].steps_saved, r.rungs[k].from_scratch_steps);
        assert_eq!(cost(0), (2640, 0, 2640));
        assert_eq!(cost(1), (2100, 600, 2700));
        assert_eq!(cost(2), (1450, 900, 2350));
        assert_eq!((r.totals.steps_run, r.totals.steps_saved, r.totals.from_scratch_steps), (6190, 1500, 7690));
        assert!((r.totals.saved_fraction.unwrap() - 1500.0 / 7690.0).abs() < 1e-12);

        // Rung 0 -> 1: the same order over the 9 promoted.
        let c = &r.consecutive;
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].from, c[0].to, c[0].n, c[0].rho), (0, 1, 9, Some(1.0)));
        assert_eq!(c[0].interval.map(|i| (i.low, i.high)), Some((1.0, 1.0)));
        assert_eq!(c[0].flag, None);
        // Rung 1 -> 2: the running trial's partial value is not compared, leaving 2.
        assert_eq!((c[1].n, c[1].rho, c[1].interval), (2, None, None));
        assert_eq!(c[1].reason.as_deref(), Some("2 trials finished at both rungs; a rank correlation needs 3"));
        // Rung 0 -> top (2).
        assert_eq!(r.to_top.len(), 1);
        assert_eq!((r.to_top[0].from, r.to_top[0].to, r.to_top[0].n), (0, 2, 2));
        assert!(r.flags.is_empty() && r.notes.is_empty(), "{:?} {:?}", r.flags, r.notes);

        let text = r.render();
        assert!(text.starts_with("Ladder of 3 rungs (minimize):\n"), "{text}");
        assert!(
            text.contains("\n     0      100      27       26          1       0        9       0       2640          0\n"),
            "{text}"
        );
        assert!(
            text.contains("\n     2      900       3        2          0       1        -       3       1450        900\n"),
            "{text}"
        );
        assert!(text.contains("steps run 6190 of 7690 from scratch: resuming from checkpoints saved 1500 (19.5%)\n"));
        assert!(text.contains("  rung 0 -> 1: rho 1 over 9 trials (90% interval 1..1)\n"), "{text}");
        assert!(text.contains("  rung 1 -> 2: no estimate (2 trials finished at both rungs; a rank correlation needs 3)\n"));
        assert!(text.contains("  rung 0 -> 2: no estimate"));
        assert!(!text.contains(" ! "));
    }

    #[test]
    fn a_reversed_ranking_is_flagged_with_its_numbers() {
        let lower: Vec<f64> = (0..9).map(|n| n as f64).collect();
        let upper: Vec<f64> = (0..9).map(|n| 10.0 - n as f64).collect();
        for direction in [Direction::Minimize, Direction::Maximize] {
            let r = two_rungs(&lower, &upper, direction);
            let a = &r.consecutive[0];
            assert_eq!(a.rho, Some(-1.0));
            assert_eq!(a.interval.map(|i| (i.low, i.high)), Some((-1.0, -1.0)));
            let flag = "rung 0 (100 steps) predicted rung 1 (300 steps) poorly: Spearman rho -1 over 9 trials (90% interval -1..-1); promotions from rung 0 rest on a ranking that did not hold";
            assert_eq!(a.flag.as_deref(), Some(flag));
            assert_eq!(r.flags, [flag]);
            assert!(r.render().contains(&format!("\n  ! {flag}\n")));
        }
    }

    #[test]
    fn agreement_is_positive_in_both_directions() {
        // Larger is better under Maximize: ranks put the largest first.
        assert_eq!(ranks(&[0.1, 0.9, 0.5], Direction::Maximize), [3.0, 1.0, 2.0]);
        assert_eq!(ranks(&[0.1, 0.9, 0.5], Direction::Minimize), [1.0, 3.0, 2.0]);
        let lower = [0.1, 0.2, 0.3, 0.4, 0.5];
        let upper = [0.6, 0.7, 0.8, 0.9, 0.95];
        for direction in [Direction::Minimize, Direction::Maximize] {
            let r = two_rungs(&lower, &upper, direction);
            assert_eq!(r.consecutive[0].rho, Some(1.0), "{direction:?}");
            assert_eq!(r.consecutive[0].flag, None);
        }
    }

    #[test]
    fn ties_share_average_ranks() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0, 3.0], Direction::Minimize), [4.0, 1.0, 4.0, 2.0, 4.0]);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0, 3.0], Direction::Maximize), [2.0, 5.0, 2.0, 4.0, 2.0]);
        // x ranks 1, 2.5, 2.5, 4 and y ranks 1, 3, 2, 4: sxy 4.5, sxx 4.5, syy 5, rho sqrt(0.9).
        let pairs = [(1.0, 1.0), (2.0, 3.0), (2.0, 2.0), (3.0, 4.0)];
        let rho = spearman(&pairs, Direction::Minimize).unwrap();
        assert!((rho - 0.9f64.sqrt()).abs() < 1e-12, "{rho}");
        assert_eq!(spearman(&pairs, Direction::Maximize), Some(rho));
        // Every value tied at a rung: no order, no estimate.
        let r = two_rungs(&[0.5, 0.5, 0.5, 0.5], &[0.1, 0.2, 0.3, 0.4], Direction::Minimize);
        assert_eq!(r.consecutive[0].rho, None);
        assert_eq!(
            r.consecutive[0].reason.as_deref(),
            Some("every trial compared has the same value at rung 0: no order to compare")
        );
    }

    #[test]
    fn nan_and_failed_runs_are_infeasible_and_left_out_of_the_ranking() {
        let mut rs: Vec<RungRecord> = (0..6).map(|n| done(n, 0, 100, n as f64)).collect();
        rs.extend((0..6).map(|n| done(n, 1, 300, n as f64)));
        rs[7].best_value = Some(f64::NAN); // trial 1 at rung 1: complete, but NaN
        rs[8] = run(2, 1, 300, TrialState::Failed, RungEntry::Restarted { from: 0 }, Some(0.1), 30);
        rs[9].best_value = None; // trial 3 at rung 1: no value
        let r = ladder_report(&rs, &[100, 300], Direction::Minimize);
        let s = &r.rungs[1];
        assert_eq!((s.reached, s.finished, s.infeasible, s.pending), (6, 3, 3, 0));
        assert_eq!(s.steps_run, 3 * 300 + 300 + 30 + 300);
        assert_eq!((r.rungs[0].promoted, r.rungs[1].promoted), (6, 0));
        // Trials 0, 4, 5 remain, in order.
        let a = &r.consecutive[0];
        assert_eq!((a.n, a.rho, a.interval), (3, Some(1.0), None));
        assert_eq!(a.reason.as_deref(), Some("3 trials only: an interval needs 4, so the ranking is not judged"));
        assert!(
            r.render().contains(
                "  rung 0 -> 1: rho 1 over 3 trials (3 trials only: an interval needs 4, so the ranking is not judged)\n"
            )
        );
    }

    #[test]
    fn three_trials_are_reported_never_judged_and_fewer_not_estimated() {
        let r = two_rungs(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0], Direction::Minimize);
        let a = &r.consecutive[0];
        assert_eq!((a.n, a.rho, a.interval, a.flag.as_deref()), (3, Some(-1.0), None, None));
        let r = two_rungs(&[1.0, 2.0], &[2.0, 1.0], Direction::Minimize);
        let a = &r.consecutive[0];
        assert_eq!((a.n, a.rho, a.interval, a.flag.as_deref()), (2, None, None, None));
        assert_eq!(a.reason.as_deref(), Some("2 trials finished at both rungs; a rank correlation needs 3"));
        // A trial at only one of the rungs is not a pair.
        let r = two_rungs(&[1.0, 2.0, 3.0, 4.0], &[1.0], Direction::Minimize);
        assert_eq!((r.consecutive[0].n, r.rungs[0].promoted), (1, 1));
    }

    #[test]
    fn the_fisher_interval_by_hand() {
        // rho 0.5, n 10: atanh 0.549306, half width 1.644854 * sqrt(1.06 / 7) = 0.640075, so
        // tanh(-0.090769) .. tanh(1.189382).
        let iv = fisher_interval(0.5, 10).unwrap();
        assert!((iv.low - -0.090_521).abs() < 1e-6 && (iv.high - 0.830_387).abs() < 1e-6, "{iv:?}");
        assert_eq!(iv.level, 0.9);
        // Symmetric in the sign of rho, narrower with more trials, none below 4.
        let neg = fisher_interval(-0.5, 10).unwrap();
        assert!((neg.low + iv.high).abs() < 1e-12 && (neg.high + iv.low).abs() < 1e-12);
        let more = fisher_interval(0.5, 40).unwrap();
        assert!(more.high - more.low < iv.high - iv.low);
        assert!(fisher_interval(0.5, 4).is_some() && fisher_interval(0.5, 3).is_none());
    }

    #[test]
    fn the_flag_rule() {
        // rho 0.1 over 9 trials: the interval reaches past 0.5, but rho < 0.3 with n >= 5.
        // Lower ranks 1..9; upper ranks a permutation with sum d^2 = 108: rho = 1 - 6*108/720 = 0.1.
        let lower: Vec<f64> = (1..=9).map(f64::from).collect();
        let upper = [2.0, 8.0, 7.0, 1.0, 5.0, 6.0, 4.0, 9.0, 3.0];
        let d2: f64 = lower.iter().zip(&upper).map(|(a, b)| (a - b).powi(2)).sum();
        let expected = 1.0 - 6.0 * d2 / (9.0 * 80.0);
        let r = two_rungs(&lower, &upper, Direction::Minimize);
        let a = &r.consecutive[0];
        assert!((a.rho.unwrap() - expected).abs() < 1e-12, "{a:?}");
        assert!(expected < FLAG_RHO_BELOW && a.interval.unwrap().high > FLAG_UPPER_BELOW, "{a:?}");
        let flag = a.flag.as_deref().unwrap();
        assert!(
            flag.starts_with(&format!(
                "rung 0 (100 steps) predicted rung 1 (300 steps) poorly: Spearman rho {} over 9 trials (90% interval ",
                r2(expected)
            )),
            "{flag}"
        );

        // The same weak agreement over 4 trials is too few for the rho rule, and its interval
        // reaches past 0.5: not flagged.
        let r = two_rungs(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 1.0, 3.0], Direction::Minimize);
        let a = &r.consecutive[0];
        assert_eq!(a.rho, Some(0.0));
        assert!(a.interval.unwrap().high > FLAG_UPPER_BELOW && a.flag.is_none(), "{a:?}");

        // Good agreement over 9 trials (one adjacent swap): rho 1 - 6*2/720, not flagged.
        let mut swapped = lower.clone();
        swapped.swap(3, 4);
        let r = two_rungs(&lower, &swapped, Direction::Minimize);
        assert!((r.consecutive[0].rho.unwrap() - (1.0 - 12.0 / 720.0)).abs() < 1e-12);
        assert!(r.flags.is_empty());

        // Clearly negative over 12 trials: flagged by the interval (upper bound below 0.5).
        let lower: Vec<f64> = (0..12).map(f64::from).collect();
        let mut upper: Vec<f64> = lower.iter().rev().copied().collect();
        upper.swap(0, 5);
        upper.swap(6, 11);
        let r = two_rungs(&lower, &upper, Direction::Minimize);
        let a = &r.consecutive[0];
        assert!(a.interval.unwrap().high < FLAG_UPPER_BELOW && a.flag.is_some(), "{a:?}");
    }

    #[test]
    fn unreached_rungs_and_records_beyond_the_ladder() {
        // Only rung 0 reached so far: the later rungs are shown empty, nothing is compared.
        let rs: Vec<RungRecord> = (0..4).map(|n| done(n, 0, 100, n as f64)).collect();
        let r = ladder_report(&rs, &[100, 300, 900], Direction::Minimize);
        assert_eq!(r.rungs.iter().map(|s| (s.budget, s.reached)).collect::<Vec<_>>(), [(100, 4), (300, 0), (900, 0)]);
        assert!(r.consecutive.is_empty() && r.to_top.is_empty());
        assert!(!r.render().contains("Rank agreement"));
        assert!(r.render().contains("steps run 400; nothing resumed from a checkpoint"));
        // A pending rung 1: reached, pending, nothing finished to compare.
        let mut rs = rs;
        rs.push(run(0, 1, 300, TrialState::Waiting, RungEntry::Resumed { from: 0, step: 100 }, None, 0));
        let r = ladder_report(&rs, &[100, 300, 900], Direction::Minimize);
        let s = &r.rungs[1];
        assert_eq!((s.reached, s.pending, s.finished, s.resumed, s.steps_saved), (1, 1, 0, 1, 100));
        assert_eq!((r.rungs[0].promoted, r.consecutive[0].n), (1, 0));
        // A budget the ladder does not have, and a rung above its top.
        rs.push(run(1, 1, 250, TrialState::Complete, RungEntry::Restarted { from: 0 }, Some(0.5), 250));
        rs.push(run(0, 3, 2700, TrialState::Running, RungEntry::Restarted { from: 2 }, None, 10));
        let r = ladder_report(&rs, &[100, 300, 900], Direction::Minimize);
        assert_eq!(r.rungs.len(), 4);
        assert_eq!(r.rungs[3].budget, 2700);
        assert_eq!(
            r.notes,
            [
                "1 run at rungs beyond the ladder's 3 rungs: their own budgets are shown",
                "rung 1: 1 run ran with a budget other than the ladder's 300 (250)"
            ]
        );
    }

    #[test]
    fn numbers_in_two_decimals() {
        assert_eq!(r2(0.1234), "0.12");
        assert_eq!(r2(-0.5), "-0.5");
        assert_eq!(r2(1.0), "1");
        assert_eq!(r2(-0.001), "0");
        assert_eq!(r2(0.656), "0.66");
    }

    #[test]
    fn the_report_serializes() {
        let r = ladder_report(&ladder_27_9_3(), &[100, 300, 900], Direction::Maximize);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["direction"], "maximize");
        assert_eq!(json["rungs"][1]["steps_saved"], 600);
        assert_eq!(json["consecutive"][0]["interval"]["level"], 0.9);
        assert!(json["consecutive"][1]["rho"].is_null());
    }
}
