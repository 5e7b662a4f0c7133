//! The human-readable outputs pinned as snapshots (`tests/snapshots/`): the analysis summary,
//! the ladder report and a round's checks, on constructed studies with varied budgets, a
//! parameter at 0 and infeasible runs. A change to any wording or number shows in review.

mod common;

use common::*;
use horizon_analysis::ladder::ladder_report;
use horizon_analysis::rounds::{RoundData, round_findings};
use horizon_analysis::{AnalysisConfig, analyze, render_text};
use horizon_core::params::ParamValue;
use horizon_core::space::{ParamDef, ParamKind, Scale, SearchSpace};
use horizon_core::trial::{RungEntry, RungRecord};
use horizon_core::{Direction, TrialState};

fn space() -> SearchSpace {
    SearchSpace {
        params: vec![
            ParamDef { name: "lr".into(), kind: ParamKind::Float { low: 1e-3, high: 1.0, scale: Scale::Log } },
            ParamDef { name: "dropout".into(), kind: ParamKind::Float { low: 0.0, high: 0.5, scale: Scale::Linear } },
        ],
    }
}

fn trials() -> Vec<horizon_analysis::TrialData> {
    let lr = |x: f64| ParamValue::Float(x);
    let mut out: Vec<_> = [
        (0.3, 0.0, 1000, 950, 0.30),
        (0.1, 0.1, 1000, 900, 0.32),
        (0.5, 0.0, 2000, 1900, 0.29),
        (0.03, 0.2, 1000, 980, 0.40),
        (0.01, 0.4, 1000, 600, 0.55),
        (0.2, 0.05, 1000, 1000, 0.31),
    ]
    .into_iter()
    .enumerate()
    .map(|(n, (x, d, budget, best, floor))| {
        with_train(
            with_params(trial(n as u64, budget, &v_curve(budget, 50, best, floor)), &[("lr", lr(x)), ("dropout", lr(d))]),
            &v_curve(budget, 50, budget, floor * 0.5),
        )
    })
    .collect();
    let failed = with_params(with_state(trial(6, 1000, &[]), TrialState::Failed), &[("lr", lr(0.9)), ("dropout", lr(0.0))]);
    out.push(failed);
    out
}

#[test]
fn the_analysis_summary() {
    let a = analyze(&study_in(space(), trials()), &AnalysisConfig::default());
    insta::assert_snapshot!("analysis_summary", render_text(&a));
}

fn rung(n: u64, rung: u32, budget: u64, value: Option<f64>, entry: RungEntry) -> RungRecord {
    RungRecord {
        trial: n as i64,
        number: n,
        rung,
        budget,
        state: if value.is_some() { TrialState::Complete } else { TrialState::Diverged },
        entry,
        best_step: value.map(|_| budget),
        best_value: value,
        final_step: value.map(|_| budget),
        final_value: value,
        budget_independent_until: None,
        steps_run: budget - entry.start_step(),
        message: None,
        started_at: None,
        finished_at: None,
        params: Default::default(),
    }
}

#[test]
fn the_ladder_report() {
    let mut rungs = Vec::new();
    for (n, v) in [0.5, 0.4, 0.45, 0.3, 0.35, 0.6, 0.55, 0.38, 0.42].into_iter().enumerate() {
        rungs.push(rung(n as u64, 0, 100, Some(v), RungEntry::Started));
    }
    rungs.push(rung(9, 0, 100, None, RungEntry::Started));
    for (n, v) in [(3, 0.2), (4, 0.25), (7, 0.22)] {
        rungs.push(rung(n, 1, 300, Some(v), RungEntry::Resumed { from: 0, step: 80 }));
    }
    rungs.push(rung(3, 2, 900, Some(0.1), RungEntry::Restarted { from: 1 }));
    rungs.sort_by_key(|r| (r.number, r.rung));
    insta::assert_snapshot!("ladder_report", ladder_report(&rungs, &[100, 300, 900], Direction::Minimize).render());
}

#[test]
fn a_rounds_checks() {
    let mut narrowed = space();
    narrowed.params[0].kind = ParamKind::Float { low: 0.1, high: 0.5, scale: Scale::Log };
    let round = RoundData {
        round: 1,
        budget: 1000,
        space: narrowed,
        original: space(),
        narrowed: vec!["lr".into()],
        trials: trials().into_iter().filter(|t| t.record.max_train_steps == 1000).take(4).collect(),
        carried: vec![0, 1],
    };
    let f = round_findings(&round, Some((1, 0.5)), None, OBJ, Direction::Minimize, &AnalysisConfig::default());
    insta::assert_snapshot!("round_checks", f.render());
}
