//! Each rule of the analysis pinned on constructed curves, with the edge cases: one trial, all
//! trials diverged, a flat curve, ties, zero feasible trials, different budgets, maximize.

mod common;

use common::*;
use horizon_analysis::boundary::{Edge, RangeSource};
use horizon_analysis::curves::ComputeKind;
use horizon_analysis::{AnalysisConfig, Confidence, InfeasibleReason, Verdict, analyze, render_text};
use horizon_core::params::ParamValue;
use horizon_core::space::{ParamDef, ParamKind, Scale, SearchSpace};
use horizon_core::{Direction, MetricPoint, TrialState};

fn cfg() -> AnalysisConfig {
    AnalysisConfig::default()
}

// ---------------------------------------------------------------------------------------------
// Budget verdicts

#[test]
fn best_steps_always_early_means_too_high() {
    // 10 trials, budget 1000, evaluated every 10 steps, best at steps 30..=60.
    let trials = (0..10).map(|n| trial(n, 1000, &v_curve(1000, 10, 30 + 10 * (n % 4), 0.5 + 0.01 * n as f64))).collect();
    let a = analyze(&study(trials), &cfg());
    assert_eq!(a.counts.feasible, 10);
    let v = &a.budget.feasible;
    assert_eq!(v.verdict, Verdict::TooHigh);
    assert_eq!((v.early, v.late), (10, 0));
    // 90th percentile (nearest rank) of the best steps {30,40,50,60,...} is 60: 2 x 60 = 120.
    assert_eq!(v.suggested_max_train_steps, Some(120));
    assert!(v.suggestion_rule.contains("90th percentile"), "{}", v.suggestion_rule);
    assert_eq!(v.confidence, Confidence::High);
    assert_eq!(a.budget.top.verdict, Verdict::TooHigh);
    assert_eq!(a.budget.top.trials, 5, "best quarter of 10 is 3, raised to the minimum of 5");
}

#[test]
fn too_high_needs_ninety_percent() {
    // 9 of 10 early is exactly 90%: too high. 8 of 10: adequate.
    let make = |early: u64| {
        let trials = (0..10)
            .map(|n| {
                let best_at = if n < early { 50 } else { 500 };
                trial(n, 1000, &v_curve(1000, 10, best_at, 0.5 + 0.01 * n as f64))
            })
            .collect();
        analyze(&study(trials), &cfg())
    };
    assert_eq!(make(9).budget.feasible.verdict, Verdict::TooHigh);
    let a = make(8);
    assert_eq!(a.budget.feasible.verdict, Verdict::Adequate);
    assert_eq!(a.budget.feasible.confidence, Confidence::Low, "80% is within 15 points of the 90% threshold");
    assert_eq!(a.budget.feasible.suggested_max_train_steps, Some(1000));
}

#[test]
fn best_steps_consistently_late_means_too_low() {
    // Still falling at the end: the best is the last evaluation.
    let trials = (0..8).map(|n| trial(n, 1000, &curve(1000, 50, |s| 1.0 + n as f64 * 0.01 - s / 2000.0))).collect();
    let a = analyze(&study(trials), &cfg());
    let v = &a.budget.feasible;
    assert_eq!(v.verdict, Verdict::TooLow);
    assert_eq!(v.late, 8);
    assert_eq!(v.suggested_max_train_steps, Some(2000));
    assert!(v.suggestion_rule.contains("decay"));
    assert_eq!(v.confidence, Confidence::Medium, "8 trials: medium for the size");
}

#[test]
fn three_quarters_late_is_consistent_two_thirds_is_not() {
    let make = |late: u64, n: u64| {
        let trials = (0..n)
            .map(|i| {
                let best_at = if i < late { 900 } else { 500 };
                trial(i, 1000, &v_curve(1000, 10, best_at, 0.5 + 0.01 * i as f64))
            })
            .collect();
        analyze(&study(trials), &cfg()).budget.feasible.verdict
    };
    assert_eq!(make(6, 8), Verdict::TooLow);
    assert_eq!(make(6, 9), Verdict::Adequate);
}

#[test]
fn too_few_trials_is_insufficient_evidence() {
    let trials = (0..2).map(|n| trial(n, 1000, &v_curve(1000, 10, 50, 0.5 + n as f64 * 0.1))).collect();
    let a = analyze(&study(trials), &cfg());
    assert_eq!(a.budget.feasible.verdict, Verdict::InsufficientEvidence);
    assert_eq!(a.budget.feasible.suggested_max_train_steps, None);
    assert_eq!(a.budget.feasible.confidence, Confidence::Low);
}

#[test]
fn different_budgets_are_each_judged_against_their_own() {
    // Each best at 90% of its own budget; in absolute steps they span 90..9000.
    let trials = vec![
        trial(0, 100, &v_curve(100, 1, 90, 0.50)),
        trial(1, 1000, &v_curve(1000, 10, 900, 0.51)),
        trial(2, 10000, &v_curve(10000, 100, 9000, 0.52)),
    ];
    let a = analyze(&study(trials), &cfg());
    for t in &a.trials {
        assert!((t.best_fraction.unwrap() - 0.9).abs() < 1e-12, "trial {}: {:?}", t.number, t.best_fraction);
    }
    assert!(a.counts.mixed_budgets);
    let v = &a.budget.feasible;
    assert_eq!(v.verdict, Verdict::TooLow);
    assert_eq!(v.reference_max_train_steps, Some(1000), "the median budget");
    assert_eq!(v.suggested_max_train_steps, Some(2000));
    assert!(v.evidence.iter().any(|e| e.contains("budgets differ")));
}

#[test]
fn coarse_evaluations_lower_confidence_in_adequate() {
    // Evaluated every 200 steps of 1000: the first 10% is invisible.
    let trials = (0..10).map(|n| trial(n, 1000, &v_curve(1000, 200, 400, 0.5 + 0.01 * n as f64))).collect();
    let a = analyze(&study(trials), &cfg());
    assert_eq!(a.budget.feasible.verdict, Verdict::Adequate);
    assert_eq!(a.budget.feasible.confidence, Confidence::Low);
    assert!(a.budget.feasible.evidence.iter().any(|e| e.contains("evaluate more often")));
}

// ---------------------------------------------------------------------------------------------
// Feasibility

#[test]
fn no_progress_from_the_start_level_is_high_loss() {
    // Nine trials learn from 2.0 to about 0.5; one stays at 1.9 (5% of the way).
    let mut trials: Vec<_> =
        (0..9).map(|n| trial(n, 100, &curve(100, 10, |s| 2.0 - 1.5 * s / 100.0 + 0.01 * n as f64))).collect();
    trials.push(trial(9, 100, &curve(100, 10, |s| 2.0 - 0.1 * s / 100.0)));
    let a = analyze(&study(trials), &cfg());
    let stuck = &a.trials[9];
    assert_eq!(stuck.infeasible, Some(InfeasibleReason::HighLoss));
    assert!(!stuck.feasible);
    assert!(stuck.detail.as_ref().unwrap().contains("of the progress"), "{:?}", stuck.detail);
    assert_eq!(a.high_loss.start_level_source.as_deref(), Some("median_first_evaluation"));
    assert_eq!(a.counts.high_loss, 1);
    assert_eq!(a.counts.feasible, 9);
}

#[test]
fn far_above_the_typical_best_is_high_loss() {
    // Ten trials reach 0.30..0.39; one reaches 1.5: 40% of the progress from 2.3, but far
    // beyond Q3 + 3 IQR of the best values.
    let mut trials: Vec<_> =
        (0..10).map(|n| trial(n, 100, &curve(100, 10, |s| 2.3 - (2.0 - 0.01 * n as f64) * s / 100.0))).collect();
    trials.push(trial(10, 100, &curve(100, 10, |s| 2.3 - 0.8 * s / 100.0)));
    let a = analyze(&study(trials), &cfg());
    assert_eq!(a.trials[10].infeasible, Some(InfeasibleReason::HighLoss));
    assert!(a.trials[10].detail.as_ref().unwrap().contains("fence"));
    let fence = a.high_loss.fence.unwrap();
    assert!(fence > 0.39 && fence < 1.5, "{fence}");
    assert_eq!(a.counts.feasible, 10);
}

#[test]
fn chance_level_overrides_the_start_level() {
    // Evaluated only at the end: no start level, so the progress rule is off unless chance is given.
    let mut trials: Vec<_> = (0..5).map(|n| trial(n, 100, &[(100, 0.5 + 0.01 * n as f64)])).collect();
    trials.push(trial(5, 100, &[(100, 2.2)]));
    let a = analyze(&study(trials.clone()), &cfg());
    assert!(a.high_loss.notes.iter().any(|n| n.contains("progress rule not applied")));
    assert_eq!(a.counts.high_loss, 0, "5 candidates: too few for the fence as well");
    let config = AnalysisConfig { chance_level: Some(2.3), ..cfg() };
    let a = analyze(&study(trials), &config);
    assert_eq!(a.high_loss.start_level_source.as_deref(), Some("chance_level"));
    assert_eq!(a.trials[5].infeasible, Some(InfeasibleReason::HighLoss));
    assert_eq!(a.counts.high_loss, 1);
}

#[test]
fn nan_in_a_completed_trial_is_divergence() {
    let mut t = trial(0, 100, &curve(100, 10, |s| 1.0 - s / 200.0));
    t.metrics.push(MetricPoint { step: 50, name: TRAIN.into(), value: f64::INFINITY });
    let good = trial(1, 100, &curve(100, 10, |s| 1.0 - s / 200.0));
    let a = analyze(&study(vec![t, good]), &cfg());
    assert_eq!(a.trials[0].infeasible, Some(InfeasibleReason::Diverged));
    assert!(a.trials[0].detail.as_ref().unwrap().contains("train/loss"));
    assert!(a.trials[1].feasible);
}

#[test]
fn unfinished_trials_are_shown_not_judged() {
    let t = with_state(trial(0, 100, &curve(50, 10, |s| 1.0 - s / 200.0)), TrialState::Running);
    let a = analyze(&study(vec![t]), &cfg());
    let t = &a.trials[0];
    assert!(!t.finished && !t.feasible && t.infeasible.is_none());
    assert_eq!(t.best_step, Some(50));
    assert_eq!(a.counts.unfinished, 1);
    assert_eq!(a.budget.feasible.trials, 0);
    assert!(a.notes.iter().any(|n| n.contains("running")));
}

// ---------------------------------------------------------------------------------------------
// Edge cases

#[test]
fn one_trial() {
    let a = analyze(&study(vec![trial(0, 100, &curve(100, 10, |s| 1.0 - s / 200.0))]), &cfg());
    assert_eq!(a.counts.feasible, 1);
    assert_eq!(a.ranking, vec![0]);
    assert_eq!(a.top_trials, vec![0]);
    assert_eq!(a.budget.feasible.verdict, Verdict::InsufficientEvidence);
    assert_eq!(a.budget.top.verdict, Verdict::InsufficientEvidence);
    // One curve is still diagnosed: still improving at the end.
    assert!(a.curves.trials[0].still_improving.flagged);
    assert_eq!(a.curves.classification.kind, ComputeKind::ComputeBound);
    assert!(render_text(&a).contains("INSUFFICIENT EVIDENCE"));
}

#[test]
fn all_trials_diverged() {
    let trials = (0..4)
        .map(|n| {
            let mut t = trial(n, 100, &[(10, 1.0), (20, f64::NAN)]);
            t.record.params.set("lr", ParamValue::Float(0.1 * (n + 1) as f64));
            if n % 2 == 0 {
                t.record.state = TrialState::Diverged;
                t.record.message = Some("loss is nan".into());
            }
            t
        })
        .collect();
    let a = analyze(&study(trials), &cfg());
    assert_eq!(a.counts.diverged, 4);
    assert_eq!(a.counts.feasible, 0);
    assert!(a.ranking.is_empty() && a.top_trials.is_empty());
    assert_eq!(a.budget.feasible.verdict, Verdict::InsufficientEvidence);
    assert_eq!(a.curves.classification.kind, ComputeKind::InsufficientEvidence);
    assert!(a.notes.iter().any(|n| n.contains("no feasible trial")));
    assert!(a.space.infeasible.cluster.is_none(), "nothing feasible to compare with");
    assert!(a.space.infeasible.summary.contains("4 of 4"));
    let text = render_text(&a);
    assert!(text.contains("diverged 4"), "{text}");
}

#[test]
fn zero_feasible_trials_when_all_failed() {
    let trials = (0..3)
        .map(|n| {
            let mut t = with_state(trial(n, 100, &[]), TrialState::Failed);
            t.record.message = Some("exit status 1".into());
            t
        })
        .collect();
    let a = analyze(&study(trials), &cfg());
    assert_eq!((a.counts.failed, a.counts.feasible), (3, 0));
    assert_eq!(a.trials[0].detail.as_deref(), Some("exit status 1"));
    assert_eq!(a.budget.top.verdict, Verdict::InsufficientEvidence);
    render_text(&a);
}

#[test]
fn flat_curve() {
    // Alone: nothing to compare with, so feasible; saturated from the first evaluation.
    let flat = curve(100, 10, |_| 0.7);
    let a = analyze(&study(vec![trial(0, 100, &flat)]), &cfg());
    assert!(a.trials[0].feasible);
    assert_eq!(a.trials[0].best_step, Some(10), "ties go to the earliest step");
    let d = &a.curves.trials[0];
    assert!(d.saturated_early.flagged && !d.still_improving.flagged && !d.overfitting.flagged && !d.late_noise.flagged);
    assert_eq!(d.total_improvement, Some(0.0));
    // Among learning trials, a curve flat at the start level made no progress.
    let mut trials: Vec<_> =
        (0..5).map(|n| trial(n, 100, &curve(100, 10, |s| 0.7 - 0.4 * s / 100.0 + 0.01 * n as f64))).collect();
    trials.push(trial(5, 100, &curve(100, 10, |_| 0.67)));
    let a = analyze(&study(trials), &cfg());
    assert_eq!(a.trials[5].infeasible, Some(InfeasibleReason::HighLoss));
}

#[test]
fn ties_rank_by_earlier_best_step_then_number() {
    let trials = vec![
        trial(0, 100, &[(10, 0.9), (50, 0.5), (100, 0.6)]),
        trial(1, 100, &[(10, 0.9), (30, 0.5), (100, 0.5)]),
        trial(2, 100, &[(10, 0.9), (30, 0.5), (100, 0.7)]),
    ];
    let a = analyze(&study(trials), &cfg());
    assert_eq!(a.trials[1].best_step, Some(30), "a tie inside a curve goes to the earliest step");
    assert_eq!(a.ranking, vec![1, 2, 0]);
    assert_eq!(a.trials[1].rank, Some(1));
}

#[test]
fn maximize_direction() {
    // Accuracy rising to the end for 6 trials; one stuck at chance (0.1).
    let mut trials: Vec<_> =
        (0..6).map(|n| trial(n, 1000, &curve(1000, 100, |s| 0.1 + 0.8 * s / 1000.0 - 0.01 * n as f64))).collect();
    trials.push(trial(6, 1000, &curve(1000, 100, |s| 0.1 + 0.01 * s / 1000.0)));
    let mut s = study(trials);
    s.direction = Direction::Maximize;
    let a = analyze(&s, &cfg());
    assert_eq!(a.trials[6].infeasible, Some(InfeasibleReason::HighLoss));
    assert_eq!(a.ranking[0], 0);
    assert!((a.trials[0].best_value.unwrap() - 0.9).abs() < 1e-12);
    assert_eq!(a.trials[0].best_step, Some(1000));
    assert_eq!(a.budget.feasible.verdict, Verdict::TooLow);
    assert!(a.curves.trials.iter().all(|d| d.still_improving.flagged && !d.overfitting.flagged));
    assert!(a.high_loss.limit.unwrap() > 0.1, "for maximize the limit is a lower bound");
    // A maximized objective that falls after its peak is overfitting.
    let mut s = study(vec![trial(0, 100, &curve(100, 10, |x| 0.9 - ((x - 40.0) / 100.0).powi(2)))]);
    s.direction = Direction::Maximize;
    let a = analyze(&s, &cfg());
    assert_eq!(a.trials[0].best_step, Some(40));
    assert!(a.curves.trials[0].overfitting.flagged, "{:?}", a.curves.trials[0].overfitting);
}

// ---------------------------------------------------------------------------------------------
// Curve diagnostics

fn diagnose(t: common::TrialDataAlias) -> horizon_analysis::curves::CurveDiagnostics {
    analyze(&study(vec![t]), &cfg()).curves.trials.remove(0)
}

#[test]
fn still_improving_and_saturated_are_exclusive_readings() {
    let d = diagnose(trial(0, 100, &curve(100, 1, |s| 1.0 - s / 100.0)));
    assert!(d.still_improving.flagged && !d.saturated_early.flagged);
    assert!((d.still_improving.measure.unwrap() - 0.1 / 0.99).abs() < 1e-9);
    let d = diagnose(trial(0, 100, &curve(100, 1, |s| (1.0 - s / 20.0).max(0.5))));
    assert!(d.saturated_early.flagged && !d.still_improving.flagged);
    assert_eq!(d.saturated_early.measure, Some(0.10));
}

#[test]
fn objective_rising_after_its_best_is_overfitting() {
    let d = diagnose(trial(0, 100, &curve(100, 5, |s| 0.5 + ((s - 50.0) / 100.0).powi(2))));
    assert!(d.overfitting.flagged, "{:?}", d.overfitting);
    let d = diagnose(trial(0, 100, &curve(100, 5, |s| 1.0 - s / 200.0)));
    assert!(!d.overfitting.flagged);
}

#[test]
fn training_loss_rising_is_flagged() {
    let t = with_train(
        trial(0, 100, &curve(100, 5, |s| 1.0 - s / 200.0)),
        &curve(100, 5, |s| if s <= 50.0 { 2.0 - s / 50.0 } else { 1.0 + (s - 50.0) / 50.0 }),
    );
    let d = diagnose(t);
    assert!(d.train_loss_rising.flagged, "{:?}", d.train_loss_rising);
    let t = with_train(trial(0, 100, &curve(100, 5, |s| 1.0 - s / 200.0)), &curve(100, 5, |s| 2.0 - s / 100.0));
    assert!(!diagnose(t).train_loss_rising.flagged);
    let d = diagnose(trial(0, 100, &curve(100, 5, |s| 1.0 - s / 200.0)));
    assert_eq!(d.train_loss_rising.measure, None, "no train/loss curve: not computed");
}

#[test]
fn late_step_to_step_noise_is_flagged() {
    let noisy = curve(100, 1, |s| 1.0 - s / 100.0 + if (s as u64).is_multiple_of(2) { 0.05 } else { -0.05 });
    let d = diagnose(trial(0, 100, &noisy));
    assert!(d.late_noise.flagged, "{:?}", d.late_noise);
    let d = diagnose(trial(0, 100, &curve(100, 1, |s| 1.0 - s / 100.0)));
    assert!(!d.late_noise.flagged);
    assert!(d.late_noise.measure.unwrap() < 1e-9);
}

#[test]
fn saturated_top_trials_are_not_compute_bound() {
    let trials = (0..8).map(|n| trial(n, 100, &curve(100, 5, |s| (1.0 - s / 20.0).max(0.3 + 0.01 * n as f64)))).collect();
    let a = analyze(&study(trials), &cfg());
    assert_eq!(a.curves.classification.kind, ComputeKind::NotComputeBound);
    assert!(a.curves.classification.line.starts_with("not compute-bound"));
    assert_eq!(a.curves.counts.saturated_early, a.curves.counts.diagnosed);
}

// ---------------------------------------------------------------------------------------------
// Search-space boundaries

fn lr_space() -> SearchSpace {
    SearchSpace {
        params: vec![ParamDef { name: "lr".into(), kind: ParamKind::Float { low: 1e-4, high: 1.0, scale: Scale::Log } }],
    }
}

/// 20 trials spread evenly over lr's log range; `score(position)` is the final loss.
fn lr_trials(score: impl Fn(f64) -> f64) -> Vec<common::TrialDataAlias> {
    (0..20)
        .map(|i| {
            let u = i as f64 / 19.0;
            let lr = 10f64.powf(-4.0 + 4.0 * u);
            let floor = score(u);
            with_params(trial(i, 100, &curve(100, 10, |s| 2.0 - (2.0 - floor) * s / 100.0)), &[("lr", ParamValue::Float(lr))])
        })
        .collect()
}

#[test]
fn best_trials_at_the_low_edge_widen_downward() {
    let a = analyze(&study_in(lr_space(), lr_trials(|u| 0.3 + u)), &cfg());
    let p = &a.space.parameters[0];
    assert_eq!(p.scale, "log");
    assert_eq!(p.range_source, RangeSource::Space);
    assert_eq!(p.widen, vec![Edge::Low]);
    assert!(p.low_edge.rules.contains(&"best_and_top3".to_string()));
    assert_eq!(p.low_edge.top3_in_band, 2);
    assert!((p.low_edge.sampling_share.unwrap() - 0.1).abs() < 1e-3);
    assert!(p.advice.contains("lower `low` below"), "{}", p.advice);
    assert!((p.low_edge.band_limit.unwrap() - 10f64.powf(-3.6)).abs() < 1e-9);
}

#[test]
fn best_trials_in_the_middle_are_fine() {
    let a = analyze(&study_in(lr_space(), lr_trials(|u| 0.3 + (u - 0.5).abs())), &cfg());
    let p = &a.space.parameters[0];
    assert!(p.widen.is_empty(), "{p:?}");
    assert!(p.advice.starts_with("ok"));
}

#[test]
fn enrichment_flags_a_crowded_edge_without_the_best() {
    // 40 trials; top 4 (10%): three of them at the high edge, the best in the middle.
    let trials = (0..40)
        .map(|i| {
            let (u, floor) = match i {
                0 => (0.5, 0.10),
                1..=3 => (0.95 + 0.01 * i as f64, 0.10 + 0.01 * i as f64),
                _ => ((i - 4) as f64 / 40.0, 0.5 + 0.001 * i as f64),
            };
            let lr = 10f64.powf(-4.0 + 4.0 * u);
            with_params(trial(i, 100, &curve(100, 10, |s| 2.0 - (2.0 - floor) * s / 100.0)), &[("lr", ParamValue::Float(lr))])
        })
        .collect();
    let a = analyze(&study_in(lr_space(), trials), &cfg());
    let p = &a.space.parameters[0];
    assert_eq!(p.high_edge.top_count, 4);
    assert_eq!(p.high_edge.top_in_band, 3);
    assert!(!p.high_edge.best_in_band);
    assert_eq!(p.high_edge.rules, vec!["enrichment".to_string()]);
    assert_eq!(p.widen, vec![Edge::High]);
}

#[test]
fn discrete_parameters_read_by_index() {
    let space = SearchSpace {
        params: vec![
            ParamDef {
                name: "batch".into(),
                kind: ParamKind::Discrete { values: [32, 64, 128, 256].map(ParamValue::Int).to_vec() },
            },
            ParamDef { name: "opt".into(), kind: ParamKind::Categorical { choices: vec![ParamValue::Str("sgd".into())] } },
        ],
    };
    let trials = (0..12)
        .map(|i| {
            let b = [256, 128, 64, 32][(i % 4) as usize];
            let floor = 0.3 + 0.1 * (i % 4) as f64 + 0.001 * i as f64;
            with_params(
                trial(i, 100, &curve(100, 10, |s| 2.0 - (2.0 - floor) * s / 100.0)),
                &[("batch", ParamValue::Int(b)), ("opt", ParamValue::Str("sgd".into()))],
            )
        })
        .collect();
    let a = analyze(&study_in(space, trials), &cfg());
    let p = &a.space.parameters[0];
    assert_eq!(p.scale, "index");
    assert_eq!(p.best_value, Some(ParamValue::Int(256)));
    assert_eq!(p.widen, vec![Edge::High]);
    assert!(p.advice.contains("add values above 256"), "{}", p.advice);
    assert_eq!(a.space.skipped[0].name, "opt");
}

#[test]
fn ranges_are_inferred_without_a_space() {
    let trials = (0..20)
        .map(|i| {
            let u = i as f64 / 19.0;
            with_params(
                trial(i, 100, &curve(100, 10, |s| 2.0 - (1.5 - 0.01 * i as f64) * s / 100.0)),
                &[
                    ("lr", ParamValue::Float(10f64.powf(-5.0 + 3.0 * u))),
                    ("dropout", ParamValue::Float(0.1 + 0.4 * u)),
                    ("act", ParamValue::Str("relu".into())),
                ],
            )
        })
        .collect();
    let a = analyze(&study(trials), &cfg());
    let lr = a.space.parameters.iter().find(|p| p.name == "lr").unwrap();
    assert_eq!((lr.scale.as_str(), lr.range_source), ("log", RangeSource::Observed));
    assert!(lr.note.as_ref().unwrap().contains("3.0 decades"));
    // Trial 0 (smallest lr) is the best, then 1 (also in the lowest 10% of the observed range).
    assert_eq!(lr.widen, vec![Edge::Low]);
    assert!(lr.advice.contains("below the smallest tried"));
    let dropout = a.space.parameters.iter().find(|p| p.name == "dropout").unwrap();
    assert_eq!(dropout.scale, "linear");
    assert!(a.space.skipped.iter().any(|s| s.name == "act"));
    assert!(a.notes.iter().any(|n| n.contains("inferred")));
}

#[test]
fn infeasible_trials_cluster_where_they_diverge() {
    let trials = lr_trials(|u| 0.3 + (u - 0.3).abs())
        .into_iter()
        .map(|mut t| {
            let u = t.record.number as f64 / 19.0;
            if u > 0.7 {
                t.record.state = TrialState::Diverged;
            }
            t
        })
        .collect();
    let a = analyze(&study_in(lr_space(), trials), &cfg());
    let c = a.space.infeasible.cluster.as_ref().unwrap();
    assert_eq!((c.parameter.as_str(), c.side), ("lr", Edge::High));
    assert!(c.shift > 0.25);
    let p = &a.space.infeasible.parameters[0];
    assert_eq!(p.low_half.infeasible, 0);
    assert_eq!(p.high_half.rate, Some(0.6));
    assert!(render_text(&a).contains("cluster at high lr"));
}

/// `n` values of a quasi-random (golden-ratio) sequence on [0, 1): evenly spread, as a sampler's.
fn spread(n: usize) -> Vec<f64> {
    (0..n).map(|i| (0.5 + i as f64 * 0.618_033_988_749_895) % 1.0).collect()
}

/// Trials with one parameter `name` at `values`, the best the one at position `best`.
fn one_param_trials(name: &str, values: &[f64], score: impl Fn(usize, f64) -> f64) -> Vec<common::TrialDataAlias> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let floor = score(i, v);
            with_params(
                trial(i as u64, 100, &curve(100, 10, |s| 2.0 - (2.0 - floor) * s / 100.0)),
                &[(name, ParamValue::Float(v))],
            )
        })
        .collect()
}

#[test]
fn a_linear_parameter_with_a_few_small_values_is_not_inferred_log() {
    // Dropout sampled uniformly on [0, 0.3] (as a study would), 60 trials, none exactly 0: the
    // smallest values stretch the span past 1.5 decades.
    let mut values: Vec<f64> = spread(60).iter().map(|u| 0.3 * u).collect();
    values[7] = 0.0009;
    values[19] = 0.002;
    let decades = (values.iter().cloned().fold(0.0, f64::max) / 0.0009f64).log10();
    assert!(decades > 1.5, "the shape the old rule got wrong: {decades}");
    // The best trials sit at 0.87 of the linear range (0.26), not at an edge.
    let a = analyze(&study(one_param_trials("dropout", &values, |i, v| 0.3 + (v - 0.26).abs() + 0.0001 * i as f64)), &cfg());
    let p = &a.space.parameters[0];
    assert_eq!((p.scale.as_str(), p.range_source), ("linear", RangeSource::Observed), "{:?}", p.note);
    assert!(p.note.as_ref().unwrap().contains("more evenly on a linear axis"), "{:?}", p.note);
    assert!(p.widen.is_empty(), "no edge at 0.87 of a linear range: {}", p.advice);
    assert!(
        render_text(&a).contains("dropout [0 .. 0.3, linear, inferred]") || render_text(&a).contains(", linear, inferred]"),
        "{}",
        render_text(&a)
    );

    // A value of exactly 0 rules log out whatever the span.
    values[7] = 0.0;
    let a = analyze(&study(one_param_trials("dropout", &values, |i, v| 0.3 + v + 0.0001 * i as f64)), &cfg());
    let p = &a.space.parameters[0];
    assert_eq!(p.scale, "linear");
    assert!(p.note.as_ref().unwrap().contains("not all positive"), "{:?}", p.note);
}

#[test]
fn a_log_sampled_parameter_is_inferred_log() {
    // A learning rate sampled log-uniformly on [1e-5, 1e-1].
    let values: Vec<f64> = spread(40).iter().map(|u| 10f64.powf(-5.0 + 4.0 * u)).collect();
    let a = analyze(&study(one_param_trials("lr", &values, |i, v| 0.3 + (v.log10() + 3.0).abs() + 0.0001 * i as f64)), &cfg());
    let p = &a.space.parameters[0];
    assert_eq!(p.scale, "log", "{:?}", p.note);
    assert!(p.note.as_ref().unwrap().contains("more evenly on a log axis"), "{:?}", p.note);
    // The best at lr = 1e-3 sits in the middle of the log range.
    assert!(p.widen.is_empty(), "{}", p.advice);
    // A grid in log steps (repeated values) reads the same way.
    let grid: Vec<f64> = (0..40).map(|i| [1e-4, 1e-3, 1e-2, 1e-1][i % 4]).collect();
    let a = analyze(&study(one_param_trials("lr", &grid, |i, v| 0.3 + (v.log10() + 2.5).abs() + 0.0001 * i as f64)), &cfg());
    assert_eq!(a.space.parameters[0].scale, "log", "{:?}", a.space.parameters[0].note);
}

#[test]
fn an_edge_is_never_flagged_without_enrichment() {
    // 100 trials spread over lr's log range; the best and the third best at the low edge, but
    // only 2 of the top 10 in the band: P(X >= 2 | 10, 0.1) = 0.26, not enriched.
    let positions = spread(100);
    let mut order: Vec<usize> = (0..100).collect();
    order.sort_by(|&a, &b| positions[a].total_cmp(&positions[b]));
    let low = [order[0], order[1]]; // the two lowest positions, both in the band
    let mid: Vec<usize> = order.iter().copied().filter(|i| (0.4..0.6).contains(&positions[*i])).collect();
    let trials = (0..100)
        .map(|i| {
            let u = positions[i];
            let floor = if i == low[0] {
                0.100
            } else if i == mid[0] {
                0.101
            } else if i == low[1] {
                0.102
            } else if mid[1..8].contains(&i) {
                0.103 + 0.001 * i as f64 / 100.0
            } else {
                0.5 + 0.001 * i as f64
            };
            let lr = 10f64.powf(-4.0 + 4.0 * u);
            with_params(
                trial(i as u64, 100, &curve(100, 10, |s| 2.0 - (2.0 - floor) * s / 100.0)),
                &[("lr", ParamValue::Float(lr))],
            )
        })
        .collect();
    let a = analyze(&study_in(lr_space(), trials), &cfg());
    let p = &a.space.parameters[0];
    let e = &p.low_edge;
    assert_eq!((e.top_count, e.top_in_band, e.top3_in_band, e.best_in_band), (10, 2, 2, true), "{e:?}");
    assert!(e.p_value > 0.2, "{}", e.p_value);
    assert!(!e.flagged && e.rules.is_empty(), "{e:?}");
    assert!(p.widen.is_empty());
    assert!(p.advice.starts_with("weak sign"), "{}", p.advice);
}

// ---------------------------------------------------------------------------------------------
// When the budget is itself tuned

/// Trials tuning `epochs` on [10, 100] (the space declares it), `steps_per_epoch` steps each: the
/// best value and the best checkpoint's place in the run come from `shape(epochs)`.
fn epoch_trials(steps_per_epoch: u64, shape: impl Fn(u64) -> (f64, f64)) -> (SearchSpace, Vec<common::TrialDataAlias>) {
    let space = SearchSpace {
        params: vec![ParamDef { name: "epochs".into(), kind: ParamKind::Int { low: 10, high: 100, scale: Scale::Linear } }],
    };
    let trials = spread(40)
        .into_iter()
        .enumerate()
        .map(|(i, u)| {
            let epochs = 10 + (90.0 * u).round() as u64;
            let budget = epochs * steps_per_epoch;
            let (floor, best_fraction) = shape(epochs);
            let best_at = ((best_fraction * budget as f64) as u64).max(steps_per_epoch);
            let c = v_curve(budget, steps_per_epoch, best_at - best_at % steps_per_epoch, floor + 0.0001 * i as f64);
            let mut t = with_params(trial(i as u64, budget, &c), &[("epochs", ParamValue::Int(epochs as i64))]);
            t.record.max_train_steps = budget;
            t
        })
        .collect();
    (space, trials)
}

#[test]
fn a_tuned_epoch_count_at_its_upper_edge_with_late_checkpoints_says_train_longer_in_epochs() {
    // Longer runs are better and every run peaks at its end: epochs is the budget.
    let (space, trials) = epoch_trials(1, |e| (1.0 - e as f64 / 200.0, 1.0));
    let a = analyze(&study_in(space, trials), &cfg());
    let p = a.budget.parameter.as_ref().expect("epochs is recognised as the budget");
    assert_eq!(p.name, "epochs");
    assert_eq!(p.relation, "equals max_train_steps in every trial");
    assert!(p.at_upper_edge, "{:?}", p.evidence);
    assert_eq!(p.checkpoints, Verdict::TooLow);
    assert_eq!(p.verdict, Verdict::TooLow);
    assert_eq!(p.suggested, Some(200.0), "2 x the upper edge 100, in epochs");
    assert!(p.line.starts_with("train longer: widen epochs upward to 200"), "{}", p.line);
    let text = render_text(&a);
    assert!(text.contains("budget parameter epochs (equals max_train_steps in every trial): TOO LOW"), "{text}");
}

#[test]
fn adequate_checkpoints_do_not_hide_a_budget_parameter_at_its_upper_edge() {
    // Every run peaks at 60% of its length (adequate per trial), but the longest runs win.
    let (space, trials) = epoch_trials(1, |e| (1.0 - e as f64 / 200.0, 0.6));
    let a = analyze(&study_in(space, trials), &cfg());
    assert_eq!(a.budget.top.verdict, Verdict::Adequate);
    let p = a.budget.parameter.as_ref().unwrap();
    assert!(p.at_upper_edge);
    assert_eq!(p.verdict, Verdict::TooLow);
    assert!(
        p.line.contains("widen epochs upward to 200") && p.line.contains("although the per-trial verdict is adequate"),
        "{}",
        p.line
    );
}

#[test]
fn a_budget_proportional_to_epochs_is_judged_in_epochs() {
    // 390 steps per epoch; the best runs use about 40 epochs and peak in the middle.
    let (space, trials) = epoch_trials(390, |e| (0.3 + (e as f64 - 40.0).abs() / 100.0, 0.5));
    let a = analyze(&study_in(space, trials), &cfg());
    let p = a.budget.parameter.as_ref().unwrap();
    assert_eq!(p.relation, "max_train_steps = 390 x epochs in every trial");
    assert!(!p.at_upper_edge);
    assert_eq!(p.verdict, Verdict::Adequate);
    let m = p.suggested.unwrap();
    assert!((30.0..=50.0).contains(&m), "kept around the top trials' epochs, not in steps: {m}");
    assert!(p.line.starts_with("keep epochs around"), "{}", p.line);
}

#[test]
fn a_fixed_budget_has_no_budget_parameter() {
    let a = analyze(&study(lr_trials(|u| 0.3 + u)), &cfg());
    assert!(a.budget.parameter.is_none());
    // A parameter that varies but is not the budget is not taken for it.
    let (_, mut trials) = epoch_trials(1, |_| (0.5, 0.5));
    for t in &mut trials {
        t.record.max_train_steps = 100;
    }
    let a = analyze(&study(trials.clone()), &cfg());
    assert!(a.budget.parameter.is_none(), "{:?}", a.budget.parameter);
    // ... unless the user says it is.
    let declared = AnalysisConfig { budget_param: Some("epochs".into()), ..cfg() };
    let a = analyze(&study(trials), &declared);
    assert_eq!(a.budget.parameter.as_ref().map(|p| p.relation.as_str()), Some("declared (analysis.budget_param)"));
}
