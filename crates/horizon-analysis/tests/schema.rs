//! The JSON schema `horizon.analysis/1`: every object's keys, exactly as `docs/analysis.md`
//! documents them. A change here is a schema change: bump `SCHEMA` and the docs.

mod common;

use common::*;
use horizon_analysis::{AnalysisConfig, SCHEMA, analyze};
use horizon_core::TrialState;
use horizon_core::params::ParamValue;
use horizon_core::space::{ParamDef, ParamKind, Scale, SearchSpace};
use serde_json::Value;

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect();
    k.sort();
    k
}

fn expect(v: &Value, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(keys(v), want);
}

#[test]
fn json_schema_v1() {
    let space = SearchSpace {
        params: vec![ParamDef { name: "lr".into(), kind: ParamKind::Float { low: 1e-4, high: 1.0, scale: Scale::Log } }],
    };
    let mut trials: Vec<_> = (0..12)
        .map(|i| {
            let lr = 10f64.powf(-4.0 + 4.0 * i as f64 / 11.0);
            let t = trial(i, 100, &curve(100, 10, |s| 2.0 - (1.5 - 0.01 * i as f64) * s / 100.0));
            with_train(with_params(t, &[("lr", ParamValue::Float(lr))]), &curve(100, 10, |s| 2.0 - s / 100.0))
        })
        .collect();
    trials.push(with_state(
        with_params(trial(12, 100, &[(10, f64::NAN)]), &[("lr", ParamValue::Float(1.0))]),
        TrialState::Diverged,
    ));
    let a = analyze(&study_in(space, trials), &AnalysisConfig::default());
    let v = serde_json::to_value(&a).unwrap();

    assert_eq!(v["schema"], SCHEMA);
    assert_eq!(SCHEMA, "horizon.analysis/1");
    expect(
        &v,
        &[
            "schema",
            "objective",
            "direction",
            "config",
            "counts",
            "high_loss",
            "trials",
            "ranking",
            "top_trials",
            "budget",
            "curves",
            "space",
            "notes",
        ],
    );
    assert_eq!(v["direction"], "minimize");
    expect(
        &v["counts"],
        &[
            "trials",
            "finished",
            "unfinished",
            "feasible",
            "infeasible",
            "failed",
            "diverged",
            "high_loss",
            "no_objective",
            "incomplete",
            "mixed_budgets",
        ],
    );
    expect(
        &v["high_loss"],
        &["rule", "start_level", "start_level_source", "study_best", "progress_limit", "fence", "limit", "notes"],
    );
    expect(
        &v["trials"][0],
        &[
            "number",
            "state",
            "params",
            "max_train_steps",
            "evaluations",
            "first_step",
            "first_value",
            "best_step",
            "best_value",
            "best_fraction",
            "final_step",
            "final_value",
            "finished",
            "feasible",
            "infeasible",
            "detail",
            "rank",
        ],
    );
    assert_eq!(v["trials"][12]["infeasible"], "diverged");
    assert_eq!(v["trials"][12]["state"], "diverged");
    assert!(v["trials"][12]["final_value"].is_null(), "non-finite values serialize as null");
    assert!(v["trials"][0]["params"]["lr"].is_number());

    expect(&v["budget"], &["feasible", "top", "parameter"]);
    for g in ["feasible", "top"] {
        expect(
            &v["budget"][g],
            &[
                "group",
                "trial_numbers",
                "trials",
                "verdict",
                "early",
                "early_share",
                "late",
                "late_share",
                "best_fraction",
                "best_step",
                "max_train_steps",
                "reference_max_train_steps",
                "rule",
                "suggested_max_train_steps",
                "suggestion_rule",
                "confidence",
                "confidence_reason",
                "evidence",
                "excluded",
            ],
        );
        expect(&v["budget"][g]["best_fraction"], &["min", "q1", "median", "q3", "max"]);
    }
    assert_eq!(v["budget"]["feasible"]["verdict"], "too_low");
    assert_eq!(v["budget"]["feasible"]["confidence"], "high");

    expect(&v["curves"], &["metric", "train_metric", "trials", "counts", "classification"]);
    expect(
        &v["curves"]["trials"][0],
        &[
            "number",
            "rank",
            "max_train_steps",
            "evaluations",
            "train_evaluations",
            "total_improvement",
            "still_improving",
            "saturated_early",
            "overfitting",
            "train_loss_rising",
            "late_noise",
        ],
    );
    expect(&v["curves"]["trials"][0]["still_improving"], &["flagged", "measure", "threshold", "evidence"]);
    expect(
        &v["curves"]["counts"],
        &[
            "diagnosed",
            "still_improving",
            "saturated_early",
            "overfitting",
            "train_loss_rising",
            "late_noise",
            "train_metric_missing",
        ],
    );
    expect(&v["curves"]["classification"], &["kind", "line", "evidence"]);
    assert_eq!(v["curves"]["classification"]["kind"], "compute_bound");

    expect(&v["space"], &["range_source", "top_trials", "parameters", "skipped", "infeasible"]);
    assert_eq!(v["space"]["range_source"], "space");
    expect(
        &v["space"]["parameters"][0],
        &[
            "name",
            "scale",
            "range_source",
            "low",
            "high",
            "note",
            "best_value",
            "best_position",
            "top_positions",
            "low_edge",
            "high_edge",
            "widen",
            "advice",
        ],
    );
    expect(
        &v["space"]["parameters"][0]["low_edge"],
        &[
            "edge",
            "band_limit",
            "top_count",
            "top_in_band",
            "best_in_band",
            "top3_in_band",
            "feasible_share",
            "sampling_share",
            "base_share",
            "p_value",
            "flagged",
            "rules",
        ],
    );
    expect(
        &v["space"]["infeasible"],
        &[
            "finished",
            "infeasible",
            "failed",
            "diverged",
            "high_loss",
            "no_objective",
            "incomplete",
            "parameters",
            "cluster",
            "summary",
        ],
    );
    expect(
        &v["space"]["infeasible"]["parameters"][0],
        &["name", "infeasible_median_position", "feasible_median_position", "shift", "low_half", "high_half"],
    );
    expect(&v["space"]["infeasible"]["parameters"][0]["low_half"], &["trials", "infeasible", "rate"]);

    // The configuration round-trips, so a caller can pass it back in.
    let config: AnalysisConfig = serde_json::from_value(v["config"].clone()).unwrap();
    assert_eq!(config, AnalysisConfig::default());
    let partial: AnalysisConfig = serde_json::from_str(r#"{"early_fraction": 0.05}"#).unwrap();
    assert_eq!(partial.early_fraction, 0.05);
    assert!(serde_json::from_str::<AnalysisConfig>(r#"{"early_fracton": 0.05}"#).is_err());
}
