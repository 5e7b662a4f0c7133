//! The report's extracted data on a study with the shapes real logs have: budgets that differ
//! (a run stopped short, a longer one), a parameter at 0, a pretrained starting point (a low
//! first loss), a diverged run, a log-scaled parameter and curves long enough to downsample.
//! The numbers are pinned as a snapshot (`tests/snapshots/`), and the rules behind them asserted.

use horizon_analysis::{AnalysisConfig, StudyData, TrialData, analyze};
use horizon_core::space::{ParamDef, ParamKind, Scale, SearchSpace};
use horizon_core::{Direction, MetricPoint, ParamValue, Params, TrialRecord, TrialState};
use horizon_report::data::{MAX_CURVE_POINTS, downsample};
use horizon_report::{ReportInput, StudyCard, extract, render};

/// A run of `budget` steps evaluated every 10, whose validation loss falls from `start`
/// towards `floor` with its minimum at `best` and rises after it.
fn run(number: u64, lr: f64, wd: f64, budget: u64, start: f64, floor: f64, best: u64) -> TrialData {
    let mut metrics = Vec::new();
    for step in (10..=budget).step_by(10) {
        let t = step as f64 / best as f64;
        let valid = if step <= best { floor + (start - floor) * (1.0 - t).powi(2) } else { floor + 0.02 * (t - 1.0) };
        metrics.push(MetricPoint { step, name: "valid/loss".into(), value: valid });
        metrics.push(MetricPoint { step, name: "train/loss".into(), value: valid * 0.8 });
    }
    let params = Params(vec![("lr".into(), ParamValue::Float(lr)), ("weight_decay".into(), ParamValue::Float(wd))]);
    let record = TrialRecord { final_step: Some(budget), ..TrialRecord::new(number, params, budget, TrialState::Complete) };
    TrialData { record, metrics }
}

fn study() -> StudyData {
    let mut trials = vec![
        run(0, 0.1, 0.0, 1000, 2.3, 0.40, 900),
        run(1, 0.3, 1e-4, 1000, 2.3, 0.35, 1000),
        run(2, 0.03, 1e-3, 1000, 2.3, 0.50, 700),
        // Pretrained: starts low.
        run(3, 0.01, 0.0, 1000, 0.60, 0.38, 950),
        // A longer budget.
        run(4, 0.2, 1e-5, 2000, 2.3, 0.33, 1900),
        // Stopped short of its budget by the trainer (incomplete).
        run(5, 0.05, 0.0, 1000, 2.3, 0.45, 400),
        run(6, 0.5, 1e-4, 1000, 2.3, 0.42, 980),
        run(7, 0.002, 1e-3, 1000, 2.3, 1.20, 1000),
    ];
    trials[5].metrics.retain(|m| m.step <= 400);
    trials[5].record.state = TrialState::Incomplete;
    // Diverged at step 30.
    let mut diverged = run(8, 1.0, 0.0, 1000, 2.3, 0.4, 900);
    diverged.metrics.retain(|m| m.step <= 30);
    diverged.metrics.push(MetricPoint { step: 40, name: "valid/loss".into(), value: f64::NAN });
    diverged.record.state = TrialState::Diverged;
    trials.push(diverged);
    StudyData {
        objective: "valid/loss".into(),
        direction: Direction::Minimize,
        space: Some(SearchSpace {
            params: vec![
                ParamDef { name: "lr".into(), kind: ParamKind::Float { low: 1e-3, high: 1.0, scale: Scale::Log } },
                ParamDef { name: "weight_decay".into(), kind: ParamKind::Float { low: 0.0, high: 1e-3, scale: Scale::Linear } },
            ],
        }),
        trials,
    }
}

fn card() -> StudyCard {
    StudyCard {
        name: "shapes".into(),
        objective: "valid/loss".into(),
        direction: "minimize".into(),
        study_file: None,
        states: vec![("complete".into(), 7), ("incomplete".into(), 1), ("diverged".into(), 1)],
        best: Some((4, 0.33, 1900, 2000)),
        reproduce: None,
        imported_from: Some("runs.jsonl".into()),
    }
}

#[test]
fn the_extracted_report_of_real_shapes_is_pinned_and_follows_its_rules() {
    let data = study();
    let analysis = analyze(&data, &AnalysisConfig::default());
    let input =
        ReportInput { card: card(), data: &data, analysis: &analysis, stages: None, rounds: &[], schedules: vec![], sweep: None };
    let report = extract(&input);

    // The histogram holds each feasible trial once, in the bin of its own budget's fraction.
    let budget = report.budget.as_ref().expect("a budget section");
    assert_eq!(budget.feasible.bins.iter().sum::<usize>(), analysis.budget.feasible.trials);
    // Trial 4 ran 2000 steps: best at 1900 is 95% of its own budget (bin 19), not of 1000.
    assert!(budget.feasible.bins[19] >= 1);
    // Curves: the best five, each at most MAX_CURVE_POINTS, the selected checkpoint kept.
    assert_eq!(report.curves.len(), 5);
    for c in &report.curves {
        assert!(c.objective.len() <= MAX_CURVE_POINTS);
        let (step, _) = c.best.unwrap();
        assert!(c.objective.iter().any(|p| p.0 == step), "trial {}: its selected step is drawn", c.number);
    }
    // Axis plots: lr on a log axis, weight_decay (with trials at 0) on a linear one; the
    // diverged trial is a cross, not a point.
    let lr = report.axes.iter().find(|a| a.param == "lr").unwrap();
    assert!(lr.log);
    assert!(lr.infeasible.iter().any(|(_, n)| *n == 8));
    assert!(!lr.points.iter().any(|p| p.number == 8));
    let wd = report.axes.iter().find(|a| a.param == "weight_decay").unwrap();
    assert!(!wd.log && wd.points.iter().any(|p| p.x == 0.0));
    // Sections without data are not there.
    assert!(report.sweep.is_none() && report.stages.is_none());
    let html = render(&report);
    assert!(!html.contains("id=\"sweep\"") && !html.contains("id=\"stages\""));
    assert!(html.contains("imported from") && html.contains("runs.jsonl"));

    insta::assert_snapshot!("extracted_report", reviewable(&report));
}

/// The report as lines a reviewer can read: one per section, element or plot, curves shown by
/// their length, first, selected and last point rather than every point.
fn reviewable(report: &horizon_report::Report) -> String {
    let mut doc = serde_json::to_value(report).unwrap();
    for c in doc["curves"].as_array_mut().unwrap() {
        for key in ["objective", "train"] {
            let points = c[key].as_array().unwrap().clone();
            c[key] = serde_json::json!({"points": points.len(), "first": points.first(), "last": points.last()});
        }
    }
    let mut out = String::new();
    for (key, value) in doc.as_object().unwrap() {
        match value {
            serde_json::Value::Array(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&format!("{key}[{i}]: {item}\n"));
                }
            }
            serde_json::Value::Object(fields) => {
                for (k, v) in fields {
                    out.push_str(&format!("{key}.{k}: {v}\n"));
                }
            }
            other => out.push_str(&format!("{key}: {other}\n")),
        }
    }
    out
}

#[test]
fn downsampling_keeps_extremes_and_the_selected_step() {
    let curve: Vec<(u64, f64)> = (1..=10_000u64).map(|s| (s, ((s as f64) / 500.0).sin())).collect();
    let kept = downsample(&curve, Some(7_777));
    assert!(kept.len() <= MAX_CURVE_POINTS + MAX_CURVE_POINTS / 2);
    assert!(kept.iter().any(|p| p.0 == 7_777));
    assert!(kept.windows(2).all(|w| w[0].0 < w[1].0), "in step order");
    let max = curve.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let min = curve.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    assert!(kept.iter().any(|p| p.1 == max) && kept.iter().any(|p| p.1 == min), "the extremes survive");
    let short: Vec<(u64, f64)> = curve[..100].to_vec();
    assert_eq!(downsample(&short, None), short, "a short curve is drawn whole");
}
