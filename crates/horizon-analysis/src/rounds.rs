//! The checks at the end of a round (docs/method.md section 3: "each round re-checks that
//! earlier choices still hold"), as a pure function of the round's stored runs.
//!
//! [`round_findings`] reads one round against the one before it:
//! - **ranking**: did the order of the configurations carried on hold at the longer budget?
//!   Spearman's rho between their values in the two rounds, with its 90% interval (the ladder's
//!   [`RankAgreement`], over the trials finished in both); with the few trials a second round
//!   carries there is often no interval, and the finding says so rather than judge;
//! - **winner**: is the previous round's winner still the best, and where did it finish here?
//! - **budget**: the budget verdict of the round's own trials at its budget (as `horizon analyze`
//!   gives it: are the best steps early, late, or spread);
//! - **edges**: for each parameter narrowed into this round, does the round's best sit at an
//!   edge of the narrowed range (the narrowing may have cut off the optimum), and is that edge
//!   also the original range's?
//!
//! Each finding comes with its numbers and, where it calls for action, a sentence in `flags`.

use serde::Serialize;

use horizon_core::Direction;
use horizon_core::space::SearchSpace;

use crate::budget::Verdict;
use crate::config::AnalysisConfig;
use crate::ladder::RankAgreement;
use crate::text::{num, plural};
use crate::{BudgetReport, StudyData, TrialData, analyze};

/// One round's runs, as stored, for [`round_findings`].
#[derive(Debug, Clone, PartialEq)]
pub struct RoundData {
    /// 0-based.
    pub round: usize,
    pub budget: u64,
    /// The space this round's new trials were drawn from (the previous round's narrowing of
    /// the study's space; the study's own in the first round).
    pub space: SearchSpace,
    /// The study's space, before any narrowing.
    pub original: SearchSpace,
    /// Parameters narrowed into this round (`transfer = "narrow"` whose range changed).
    pub narrowed: Vec<String>,
    /// Every run of this round: the record as it ran here (its parameters, budget, state and
    /// selection at this round) and its curves at this round.
    pub trials: Vec<TrialData>,
    /// The trials carried on from the previous round (numbers).
    pub carried: Vec<u64>,
}

/// A round's winner, against the previous round's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Winner {
    /// This round's best (number, value); `None` when no run finished with a value.
    pub number: Option<u64>,
    pub value: Option<f64>,
    /// The previous round's best (number, value), if there was a previous round with one.
    pub previous: Option<u64>,
    pub previous_value: Option<f64>,
    /// Where the previous winner finished in this round (1 = best), when it ran here.
    pub previous_rank_here: Option<usize>,
    pub changed: bool,
}

/// A narrowed parameter whose best value in the round sits at an edge of its narrowed range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeEdge {
    pub param: String,
    /// "low" or "high".
    pub edge: String,
    /// The narrowed range, and the study's.
    pub low: f64,
    pub high: f64,
    pub original_low: f64,
    pub original_high: f64,
    /// The narrowed edge is also the study's: widen the study's space, not the narrowing.
    pub at_original_edge: bool,
    /// The boundary test flags the edge (the top trials crowd it beyond chance), not only the
    /// best trial being in its band.
    pub flagged: bool,
}

/// What [`round_findings`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundFindings {
    /// 0-based.
    pub round: usize,
    pub budget: u64,
    pub trials: usize,
    /// Judged feasible by the analysis (complete with a value, not a high loss).
    pub feasible: usize,
    pub carried: usize,
    /// The carried configurations' order, previous round against this one (`None` in the first).
    pub ranking: Option<RankAgreement>,
    pub winner: Winner,
    /// The budget verdicts of the round's trials at its budget.
    pub verdict: BudgetReport,
    pub edges: Vec<RangeEdge>,
    /// A sentence for every finding that calls for action.
    pub flags: Vec<String>,
}

/// The end-of-round checks of `round` given the previous round's winner (number, value) and the
/// ranking agreement between the two rounds (the ladder report's, over the same records).
pub fn round_findings(
    round: &RoundData,
    previous: Option<(u64, f64)>,
    ranking: Option<RankAgreement>,
    objective: &str,
    direction: Direction,
    config: &AnalysisConfig,
) -> RoundFindings {
    let data =
        StudyData { objective: objective.to_string(), direction, space: Some(round.space.clone()), trials: round.trials.clone() };
    let analysis = analyze(&data, config);
    let value_of = |n: u64| analysis.trials.iter().find(|t| t.number == n).and_then(|t| t.best_value);
    let number = analysis.ranking.first().copied();
    let winner = Winner {
        number,
        value: number.and_then(value_of),
        previous: previous.map(|p| p.0),
        previous_value: previous.map(|p| p.1),
        previous_rank_here: previous.and_then(|(n, _)| analysis.ranking.iter().position(|&m| m == n).map(|i| i + 1)),
        changed: matches!((previous, number), (Some((p, _)), Some(n)) if p != n),
    };

    let mut flags = Vec::new();
    let r = round.round + 1;
    if let Some(a) = &ranking
        && let Some(flag) = &a.flag
    {
        flags.push(format!("round {} -> {r}: {flag}", r - 1));
    }
    if winner.changed {
        let (Some(p), Some(n)) = (winner.previous, winner.number) else { unreachable!("a change has both winners") };
        let was = match winner.previous_rank_here {
            Some(k) => format!("trial {p} (round {}'s best) finished {} here", r - 1, ordinal(k)),
            None => format!("trial {p} (round {}'s best) did not finish here with a value", r - 1),
        };
        flags.push(format!(
            "round {r}: the winner changed: trial {n} is best at {} steps; {was}: choices read from round {} may not hold at this budget",
            round.budget,
            r - 1
        ));
    }
    let verdict = &analysis.budget.top;
    if matches!(verdict.verdict, Verdict::TooLow | Verdict::TooHigh) {
        let suggestion =
            verdict.suggested_max_train_steps.map(|s| format!(" (suggested max_train_steps: {s})")).unwrap_or_default();
        flags.push(format!(
            "round {r}: the budget of {} steps is {} for this round's top trials{suggestion}",
            round.budget,
            verdict.verdict.label()
        ));
    }

    let mut edges = Vec::new();
    for p in analysis.space.parameters.iter().filter(|p| round.narrowed.contains(&p.name)) {
        let Some(original) = round.original.params.iter().find(|d| d.name == p.name) else { continue };
        let Some((original_low, original_high)) = range_of(&original.kind) else { continue };
        for test in [&p.low_edge, &p.high_edge] {
            if !(test.best_in_band || test.flagged) {
                continue;
            }
            let edge = test.edge.as_str().to_string();
            let at_original_edge = match test.edge {
                crate::boundary::Edge::Low => p.low <= original_low,
                crate::boundary::Edge::High => p.high >= original_high,
            };
            let e = RangeEdge {
                param: p.name.clone(),
                edge,
                low: p.low,
                high: p.high,
                original_low,
                original_high,
                at_original_edge,
                flagged: test.flagged,
            };
            let fix = if at_original_edge {
                "the study's own range ends there too: widen [params] in the study file".to_string()
            } else {
                format!(
                    "the narrowing may have cut off the optimum: search it again ([round.transfer] {} = \"search\") or widen the study's range",
                    p.name
                )
            };
            flags.push(format!(
                "round {r}: {} is at the {} edge of its narrowed range {}..{} (the best trial's {} = {}){}; {fix}",
                p.name,
                e.edge,
                num(e.low),
                num(e.high),
                p.name,
                p.best_value.as_ref().map_or_else(|| "?".into(), |v| v.to_string()),
                if e.flagged { ", and the top trials crowd it" } else { "" },
            ));
            edges.push(e);
        }
    }

    RoundFindings {
        round: round.round,
        budget: round.budget,
        trials: round.trials.len(),
        feasible: analysis.counts.feasible,
        carried: round.carried.len(),
        ranking,
        winner,
        verdict: analysis.budget,
        edges,
        flags,
    }
}

fn range_of(kind: &horizon_core::space::ParamKind) -> Option<(f64, f64)> {
    use horizon_core::space::ParamKind;
    match kind {
        ParamKind::Float { low, high, .. } => Some((*low, *high)),
        ParamKind::Int { low, high, .. } => Some((*low as f64, *high as f64)),
        ParamKind::Discrete { values } => Some((0.0, values.len().saturating_sub(1) as f64)),
        _ => None,
    }
}

fn ordinal(k: usize) -> String {
    let suffix = match (k % 10, k % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{k}{suffix}")
}

impl RoundFindings {
    /// The findings as text: one line per check, then the flags.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let r = self.round + 1;
        let mut line = |t: String| {
            s.push_str(&t);
            s.push('\n');
        };
        line(format!(
            "round {r} at {} steps: {}, {} feasible{}",
            self.budget,
            plural(self.trials, "run"),
            self.feasible,
            if self.carried > 0 { format!(" ({} carried on)", self.carried) } else { String::new() }
        ));
        if let Some(a) = &self.ranking {
            line(a.line_as(&format!("  ranking (round {} -> {r}):", r - 1)));
        }
        let w = &self.winner;
        match (w.number, w.value) {
            (Some(n), Some(v)) => {
                let against = match (w.previous, w.previous_value) {
                    (Some(p), Some(pv)) if p == n => format!("; round {}'s winner ({}) held", r - 1, num(pv)),
                    (Some(p), Some(pv)) => format!(
                        "; round {}'s winner was trial {p} ({}){}",
                        r - 1,
                        num(pv),
                        w.previous_rank_here.map(|k| format!(", {} here", ordinal(k))).unwrap_or_default()
                    ),
                    _ => String::new(),
                };
                line(format!("  winner: trial {n} ({}){against}", num(v)));
            }
            _ => line("  winner: none (no run finished with a value)".into()),
        }
        let v = &self.verdict.top;
        let suggestion = v.suggested_max_train_steps.map(|s| format!(", suggested max_train_steps {s}")).unwrap_or_default();
        line(format!(
            "  budget: {} for the top {} ({} confidence{suggestion})",
            v.verdict.label(),
            plural(v.trials, "trial"),
            v.confidence.label()
        ));
        if self.edges.is_empty() && !self.flags.iter().any(|f| f.contains("narrowed range")) {
            line("  narrowed ranges: no best value at an edge".into());
        }
        for f in &self.flags {
            line(format!("  ! {f}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use horizon_core::space::{ParamDef, ParamKind, Scale};
    use horizon_core::{MetricPoint, ParamValue, Params, TrialRecord, TrialState};

    /// A run of `budget` steps with `lr`, whose objective is `value` at its best step `best`
    /// (and worse elsewhere).
    fn run(number: u64, lr: f64, budget: u64, best: u64, value: f64) -> TrialData {
        let metrics = (1..=10)
            .map(|i| {
                let step = i * budget / 10;
                MetricPoint { step, name: "loss".into(), value: value + (step as f64 - best as f64).abs() / budget as f64 }
            })
            .collect();
        let mut record =
            TrialRecord::new(number, Params(vec![("lr".into(), ParamValue::Float(lr))]), budget, TrialState::Complete);
        record.best_step = Some(best);
        record.best_value = Some(value);
        TrialData { record, metrics }
    }

    fn space(low: f64, high: f64) -> SearchSpace {
        SearchSpace { params: vec![ParamDef { name: "lr".into(), kind: ParamKind::Float { low, high, scale: Scale::Log } }] }
    }

    #[test]
    fn a_changed_winner_a_late_best_and_a_narrowed_edge_are_each_flagged_with_their_numbers() {
        // Round 2 at 2000 steps: trials 3 and 5 carried on, 16 and 17 new; trial 17, at the top
        // of the narrowed range (0.1..0.3, inside the study's 0.001..1), beats round 1's winner
        // (3), and every best step is in the last quarter.
        let round = RoundData {
            round: 1,
            budget: 2000,
            space: space(0.1, 0.3),
            original: space(0.001, 1.0),
            narrowed: vec!["lr".into()],
            trials: vec![
                run(3, 0.15, 2000, 1800, 0.30),
                run(5, 0.12, 2000, 2000, 0.35),
                run(16, 0.2, 2000, 1800, 0.32),
                run(17, 0.3, 2000, 2000, 0.25),
            ],
            carried: vec![3, 5],
        };
        let f = round_findings(&round, Some((3, 0.4)), None, "loss", Direction::Minimize, &AnalysisConfig::default());
        assert_eq!(f.winner.number, Some(17));
        assert_eq!(f.winner.previous_rank_here, Some(2));
        assert!(f.winner.changed);
        assert_eq!(f.verdict.top.verdict, Verdict::TooLow, "{:?}", f.verdict.top);
        assert_eq!(f.edges.len(), 1, "{:?}", f.edges);
        assert_eq!((f.edges[0].edge.as_str(), f.edges[0].at_original_edge), ("high", false));
        let text = f.render();
        assert!(text.contains("winner: trial 17 (0.25); round 1's winner was trial 3 (0.4), 2nd here"), "{text}");
        assert!(text.contains("the winner changed: trial 17 is best at 2000 steps"), "{text}");
        assert!(text.contains("the budget of 2000 steps is too low"), "{text}");
        assert!(text.contains("lr is at the high edge of its narrowed range 0.1..0.3"), "{text}");
        assert!(text.contains("[round.transfer] lr = \"search\""), "{text}");

        // The same round where the winner held, the best sits inside the range and mid-run:
        // nothing to flag.
        let calm = RoundData {
            trials: vec![
                run(3, 0.2, 2000, 1000, 0.20),
                run(5, 0.15, 2000, 800, 0.35),
                run(16, 0.25, 2000, 1200, 0.32),
                run(17, 0.12, 2000, 800, 0.30),
            ],
            ..round.clone()
        };
        let f = round_findings(&calm, Some((3, 0.4)), None, "loss", Direction::Minimize, &AnalysisConfig::default());
        assert!(!f.winner.changed);
        assert!(f.flags.is_empty(), "{:?}", f.flags);
        assert!(f.render().contains("round 1's winner (0.4) held"), "{}", f.render());
    }

    #[test]
    fn an_edge_shared_with_the_study_s_range_says_to_widen_the_study() {
        let round = RoundData {
            round: 1,
            budget: 400,
            space: space(0.3, 1.0),
            original: space(0.001, 1.0),
            narrowed: vec!["lr".into()],
            trials: vec![run(0, 1.0, 400, 200, 0.1), run(1, 0.5, 400, 200, 0.2), run(2, 0.35, 400, 200, 0.3)],
            carried: vec![],
        };
        let f = round_findings(&round, None, None, "loss", Direction::Minimize, &AnalysisConfig::default());
        assert_eq!(f.edges.len(), 1);
        assert!(f.edges[0].at_original_edge);
        assert!(f.flags.iter().any(|s| s.contains("widen [params] in the study file")), "{:?}", f.flags);
        // A parameter that was not narrowed is not this check's business.
        let searched = RoundData { narrowed: vec![], ..round };
        let f = round_findings(&searched, None, None, "loss", Direction::Minimize, &AnalysisConfig::default());
        assert!(f.edges.is_empty());
    }
}
