//! The real AlexNet/ImageNet random search of OPDA (512 trials, per-epoch curves; CC BY-SA 4.0,
//! (c) 2025 Nicholas Lourie), converted by `examples/opda_to_jsonl.py`, imported and analyzed.
//! The data lives in the repository, gzip-compressed and otherwise unchanged:
//! `tests/data/opda-alexnet/` (its `ATTRIBUTION.md` gives the source and license).
//!
//! The assertions are facts checked against the raw data (read here independently of the
//! converter) and the conclusions the method draws from them, not numbers copied from the
//! analysis' own output.

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

use horizon_analysis::boundary::Edge;
use horizon_analysis::curves::ComputeKind;
use horizon_analysis::{AnalysisConfig, InfeasibleReason, Verdict, analyze, render_text};
use horizon_core::params::ParamValue;
use horizon_core::space::{ParamDef, ParamKind, Scale, SearchSpace};
use horizon_core::{Direction, TrialState};
use horizon_import::{parse_jsonl, study_from_runs};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/opda-alexnet/alexnet_tuning.results.jsonl.gz")
}

/// The sampling distribution of the data's README.
fn space() -> SearchSpace {
    let float =
        |name: &str, low: f64, high: f64, scale| ParamDef { name: name.into(), kind: ParamKind::Float { low, high, scale } };
    SearchSpace {
        params: vec![
            float("lr", 5e-3, 5e1, Scale::Log),
            ParamDef { name: "epochs".into(), kind: ParamKind::Int { low: 20, high: 100, scale: Scale::Linear } },
            ParamDef {
                name: "batch_size".into(),
                kind: ParamKind::Discrete { values: [128, 256, 512, 1024].map(ParamValue::Int).to_vec() },
            },
            float("momentum", 0.7, 1.0, Scale::Linear),
            float("weight_decay", 1e-6, 1e-3, Scale::Log),
            float("label_smoothing", 0.0, 0.5, Scale::Linear),
        ],
    }
}

/// One raw row, read straight from the original file.
struct Raw {
    diverged: bool,
    epochs: u64,
    /// (1-based epoch, 1 - top_1)
    errors: Vec<(u64, f64)>,
    lr: f64,
    train_loss: Vec<f64>,
}

impl Raw {
    /// Best (lowest) error and its epoch, ties to the earliest.
    fn best(&self) -> Option<(u64, f64)> {
        self.errors.iter().copied().fold(None, |b, (e, v)| match b {
            Some((_, bv)) if bv <= v => b,
            _ => Some((e, v)),
        })
    }
}

fn raw_rows() -> Vec<Raw> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(data()).unwrap()).read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Raw {
                diverged: v["nan_train_loss"].as_bool().unwrap(),
                epochs: v["epochs"].as_u64().unwrap(),
                errors: v["learning_curve"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p["epoch"].as_u64().unwrap() + 1, 1.0 - p["top_1"].as_f64().unwrap()))
                    .collect(),
                lr: v["lr"].as_f64().unwrap(),
                train_loss: v["learning_curve"].as_array().unwrap().iter().map(|p| p["train_loss"].as_f64().unwrap()).collect(),
            }
        })
        .collect()
}

#[test]
fn opda_alexnet_import_and_analysis() {
    assert!(data().is_file(), "{} is missing: it is part of the repository (is this a partial checkout?)", data().display());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alexnet.jsonl");
    let status = Command::new("python3")
        .arg(repo().join("examples/opda_to_jsonl.py"))
        .arg(data())
        .arg(&out)
        .status()
        .expect("python3 runs the converter");
    assert!(status.success());

    let raw = raw_rows();
    let runs = parse_jsonl(&out).unwrap();
    assert_eq!(runs.len(), raw.len());

    let mut study = study_from_runs("valid/error", Direction::Minimize, &runs);
    study.space = Some(space());
    let a = analyze(&study, &AnalysisConfig::default());
    println!("{}", render_text(&a));
    assert!(a.schema.starts_with("horizon.analysis/"));
    assert_eq!(a.trials.len(), raw.len());
    assert!(a.counts.mixed_budgets, "epochs (the budget) vary from 20 to 100");

    // 1. Diverged: exactly the runs whose training loss became NaN.
    let nan_runs = raw.iter().filter(|r| r.diverged).count();
    assert!(nan_runs > 0);
    assert_eq!(a.counts.diverged, nan_runs);
    for (r, t) in raw.iter().zip(&a.trials) {
        assert_eq!(r.diverged, t.infeasible == Some(InfeasibleReason::Diverged), "trial {}", t.number);
        assert_eq!(r.diverged, t.state == TrialState::Diverged);
        // Each trial is judged against its own budget.
        assert_eq!(t.max_train_steps, r.epochs);
    }

    // 2. Uncharacteristically high loss: chance level for 1000 classes is 0.999 top-1 error. A
    //    run that never got below 99% error learned nothing; one at or below 80% clearly learned.
    let mut never_learned = 0;
    for (r, t) in raw.iter().zip(&a.trials).filter(|(r, _)| !r.diverged) {
        let (_, best) = r.best().expect("complete runs have curves");
        if best >= 0.99 {
            never_learned += 1;
            assert_eq!(t.infeasible, Some(InfeasibleReason::HighLoss), "trial {} (best error {best})", t.number);
        }
        if best <= 0.8 {
            assert!(t.feasible, "trial {} (best error {best}) learned and is feasible", t.number);
        }
    }
    assert!(never_learned > 100, "a large share of the runs never left chance level ({never_learned})");
    assert_eq!(a.counts.feasible + a.counts.high_loss + a.counts.diverged, raw.len());
    assert_eq!(a.counts.failed + a.counts.no_objective + a.counts.unfinished, 0);

    // 3. The best trial is the raw data's lowest error, reached at its last epoch.
    let (best_i, best_raw) = raw
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.diverged)
        .map(|(i, r)| (i, r.best().unwrap()))
        .min_by(|a, b| a.1.1.total_cmp(&b.1.1))
        .unwrap();
    assert_eq!(a.ranking[0], best_i as u64);
    let top1 = &a.trials[best_i];
    assert_eq!(top1.best_value, Some(best_raw.1));
    assert_eq!(top1.best_step, Some(raw[best_i].epochs), "the best run peaks at its final epoch");
    assert_eq!(top1.best_fraction, Some(1.0));

    // 4. Budget: in the raw data, the feasible runs' best epochs sit in the last quarter of their
    //    own budgets (still improving when they stop), so both verdicts are "too low".
    let late = |i: usize| {
        let (e, _) = raw[i].best().unwrap();
        e as f64 >= 0.75 * raw[i].epochs as f64
    };
    let feasible: Vec<usize> = a.ranking.iter().map(|&n| n as usize).collect();
    let late_share = feasible.iter().filter(|&&i| late(i)).count() as f64 / feasible.len() as f64;
    assert!(late_share >= 0.75, "raw late share {late_share}");
    let top: Vec<usize> = a.top_trials.iter().map(|&n| n as usize).collect();
    assert_eq!(top.len(), feasible.len().div_ceil(4));
    assert!(top.iter().all(|&i| late(i)), "every top run peaks in its last quarter");
    for v in [&a.budget.feasible, &a.budget.top] {
        assert_eq!(v.verdict, Verdict::TooLow, "{} group", v.group);
        assert!(v.suggested_max_train_steps.unwrap() > v.reference_max_train_steps.unwrap());
        assert_eq!(v.confidence, horizon_analysis::Confidence::High);
    }

    // 5. Curves: the top runs still improve at their last epoch (compute-bound), and their
    //    training loss ends at its minimum (nothing rising).
    for &i in &top {
        let tl = &raw[i].train_loss;
        let min = tl.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(*tl.last().unwrap() <= min + 0.01 * (tl[0] - min), "run {i}: training loss ends near its minimum");
    }
    assert_eq!(a.curves.counts.train_loss_rising, 0);
    assert_eq!(a.curves.counts.overfitting, 0);
    assert_eq!(a.curves.counts.saturated_early, 0);
    assert_eq!(a.curves.classification.kind, ComputeKind::ComputeBound);

    // 6. Boundaries: the best runs are the longest ones (epochs at the high edge, consistent with
    //    a budget that is too low); the best learning rates lie well inside the range.
    let param = |name: &str| a.space.parameters.iter().find(|p| p.name == name).unwrap();
    assert_eq!(param("epochs").widen, vec![Edge::High]);
    // The budget is a tuned parameter here (a step is an epoch): the verdict is about epochs,
    // in epochs, consistent with both readings.
    let bp = a.budget.parameter.as_ref().expect("epochs is the budget in this data");
    assert_eq!((bp.name.as_str(), bp.relation.as_str()), ("epochs", "equals max_train_steps in every trial"));
    assert_eq!(bp.verdict, Verdict::TooLow);
    assert!(bp.at_upper_edge);
    assert_eq!(bp.suggested, Some(200.0), "2 x the upper edge of 20..100 epochs");
    assert!(bp.line.starts_with("train longer: widen epochs upward to 200"), "{}", bp.line);
    let lr = param("lr");
    assert!(lr.widen.is_empty(), "{lr:?}");
    let best_lr_decades_above_low = (raw[best_i].lr / 5e-3).log10();
    assert!(best_lr_decades_above_low > 0.4 && best_lr_decades_above_low < 3.6, "raw best lr well inside [5e-3, 5e1]");
    for name in ["batch_size", "momentum", "weight_decay", "label_smoothing"] {
        assert!(param(name).widen.is_empty(), "{name}: {:?}", param(name));
    }

    // 7. Infeasible trials cluster at high learning rates: in the raw data the diverged runs'
    //    median lr is far above the learned runs'.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let lr_div = median(raw.iter().filter(|r| r.diverged).map(|r| r.lr).collect());
    let lr_ok = median(feasible.iter().map(|&i| raw[i].lr).collect());
    assert!(lr_div > 10.0 * lr_ok, "diverged median lr {lr_div} vs feasible {lr_ok}");
    let cluster = a.space.infeasible.cluster.as_ref().expect("infeasible trials cluster");
    assert_eq!((cluster.parameter.as_str(), cluster.side), ("lr", Edge::High));
    assert_eq!(a.space.infeasible.infeasible, a.counts.infeasible);
}
