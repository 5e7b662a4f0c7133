//! The import parsers: good files, and errors that name the file, line, field and fix, with
//! nothing returned half-way.

use std::fs;

use horizon_analysis::{AnalysisConfig, Verdict, analyze};
use horizon_core::{Direction, ParamValue, TrialState};
use horizon_import::{ImportError, parse_csv_dir, parse_jsonl, study_from_runs};

fn jsonl(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.jsonl");
    fs::write(&path, text).unwrap();
    (dir, path)
}

fn jsonl_err(text: &str) -> ImportError {
    let (_d, path) = jsonl(text);
    parse_jsonl(&path).unwrap_err()
}

const GOOD: &str = r#"{"name": "a", "params": {"lr": 0.1, "bs": 128, "opt": "sgd", "nesterov": true}, "max_train_steps": 300, "curve": [{"step": 200, "valid/loss": 0.5, "train/loss": 0.4}, {"step": 100, "valid/loss": 0.8}, {"step": 300, "valid/loss": 0.45, "train/loss": null}]}

{"params": {"lr": 1.0}, "max_train_steps": 300, "curve": [{"step": 100, "valid/loss": 0.9}, {"step": 200, "valid/loss": "nan"}]}
{"name": "c", "params": {"lr": 0.01}, "max_train_steps": 600, "curve": [], "state": "failed", "message": "OOM", "source": "lab notebook"}
"#;

#[test]
fn jsonl_reads_runs() {
    let (_d, path) = jsonl(GOOD);
    let runs = parse_jsonl(&path).unwrap();
    assert_eq!(runs.len(), 3);
    let a = &runs[0];
    assert_eq!(a.name.as_deref(), Some("a"));
    assert_eq!(a.trial.params.get("lr"), Some(&ParamValue::Float(0.1)));
    assert_eq!(a.trial.params.get("bs"), Some(&ParamValue::Int(128)));
    assert_eq!(a.trial.params.get("opt"), Some(&ParamValue::Str("sgd".into())));
    assert_eq!(a.trial.params.get("nesterov"), Some(&ParamValue::Bool(true)));
    assert_eq!(a.trial.state, TrialState::Complete);
    let steps: Vec<u64> = a.trial.metrics.iter().map(|m| m.step).collect();
    assert_eq!(steps, vec![100, 200, 200, 300], "sorted by step; the null is skipped");
    assert!(a.trial.origin.ends_with(":1"));
    // "nan" as text: diverged by default.
    assert_eq!(runs[1].trial.state, TrialState::Diverged);
    assert!(runs[1].trial.metrics[1].value.is_nan());
    assert!(runs[1].trial.origin.ends_with(":3"), "blank lines count: {}", runs[1].trial.origin);
    assert_eq!(
        (runs[2].trial.state, runs[2].trial.message.as_deref(), runs[2].trial.source.as_deref()),
        (TrialState::Failed, Some("OOM"), Some("lab notebook"))
    );

    let study = study_from_runs("valid/loss", Direction::Minimize, &runs);
    assert_eq!(study.trials[0].record.best_step, Some(300));
    assert_eq!(study.trials[0].record.final_value, Some(0.45));
    let analysis = analyze(&study, &AnalysisConfig::default());
    assert_eq!((analysis.counts.feasible, analysis.counts.diverged, analysis.counts.failed), (1, 1, 1));
}

#[test]
fn jsonl_errors_name_line_field_and_fix() {
    let e = jsonl_err("{\"max_train_steps\": 10, \"curve\": []}\n{\"max_train_steps\": 10, \"curve\": [}\n");
    assert_eq!(e.line, Some(2));
    assert!(e.field.as_deref().unwrap().starts_with("column"), "{e}");
    assert!(e.to_string().contains("runs.jsonl:2"), "{e}");
    assert!(e.to_string().contains("fix:"));

    let e = jsonl_err(r#"{"max_train_steps": 10, "curve": [], "lr": 0.1}"#);
    assert_eq!((e.line, e.field.as_deref()), (Some(1), Some("lr")));
    assert!(e.fix.contains("params"));

    let e = jsonl_err(r#"{"curve": []}"#);
    assert_eq!(e.field.as_deref(), Some("max_train_steps"));
    let e = jsonl_err(r#"{"max_train_steps": 1.5, "curve": []}"#);
    assert!(e.problem.contains("positive integer"));
    let e = jsonl_err(r#"{"max_train_steps": 10}"#);
    assert_eq!(e.field.as_deref(), Some("curve"));

    let e = jsonl_err(r#"{"max_train_steps": 10, "curve": [{"step": 5, "v": 1}, {"step": 5, "v": 2}]}"#);
    assert_eq!(e.field.as_deref(), Some("curve[1].step"));
    assert!(e.problem.contains("duplicate step"));

    let e = jsonl_err(r#"{"max_train_steps": 10, "curve": [{"step": 20, "v": 1}]}"#);
    assert!(e.fix.contains("raise max_train_steps to at least 20"), "{e}");

    let e = jsonl_err(r#"{"max_train_steps": 10, "curve": [{"step": 1, "valid/loss": "bad"}]}"#);
    assert_eq!(e.field.as_deref(), Some("curve[0].valid/loss"));

    let e = jsonl_err(r#"{"max_train_steps": 10, "curve": [], "state": "done"}"#);
    assert!(e.fix.contains("complete"));

    // Nested objects are dotted names (below); a list of objects has no scalar value.
    let e = jsonl_err(r#"{"max_train_steps": 10, "curve": [], "params": {"opt": [{"lr": 1}]}}"#);
    assert_eq!(e.field.as_deref(), Some("params.opt"));
    assert!(e.fix.contains("\"opt.0\""), "{e}");
    let e = jsonl_err(r#"{"max_train_steps": 10, "curve": [], "params": {"opt": {"lr": 1}, "opt.lr": 2}}"#);
    assert_eq!((e.field.as_deref(), e.problem.as_str()), (Some("params.opt.lr"), "duplicate key"));

    let e = jsonl_err(
        "{\"name\": \"x\", \"max_train_steps\": 10, \"curve\": []}\n{\"name\": \"x\", \"max_train_steps\": 10, \"curve\": []}",
    );
    assert_eq!(e.line, Some(2));
    assert!(e.problem.contains("first on line 1"));

    let e = jsonl_err("\n\n");
    assert!(e.problem.contains("no runs"));

    let e = parse_jsonl("/nonexistent/file.jsonl").unwrap_err();
    assert!(e.problem.contains("cannot read"));
}

fn csv_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}

const INDEX: &str =
    "name,max_train_steps,lr,optimizer,state,curve\nrun-a,100,0.1,sgd,,\nrun-b,200,1e-3,adam,diverged,curves/b.csv\n";
const CURVE_A: &str = "step,valid/loss,train/loss\n50,0.8,0.7\n100,0.6,\n";
const CURVE_B: &str = "step,valid/loss\n100,0.9\n200,nan\n";

#[test]
fn csv_dir_reads_runs() {
    let dir = csv_dir(&[("runs.csv", INDEX), ("run-a.csv", CURVE_A), ("curves/b.csv", CURVE_B)]);
    let runs = parse_csv_dir(dir.path()).unwrap();
    assert_eq!(runs.len(), 2);
    let a = &runs[0];
    assert_eq!(a.name.as_deref(), Some("run-a"));
    assert_eq!(a.trial.max_train_steps, 100);
    assert_eq!(a.trial.params.get("lr"), Some(&ParamValue::Float(0.1)));
    assert_eq!(a.trial.params.get("optimizer"), Some(&ParamValue::Str("sgd".into())));
    assert!(
        a.trial.params.get("state").is_none() && a.trial.params.get("curve").is_none(),
        "reserved columns are not parameters"
    );
    assert_eq!(a.trial.metrics.len(), 3, "empty cells are skipped");
    assert_eq!(a.trial.state, TrialState::Complete);
    assert!(a.trial.origin.ends_with("runs.csv:2"));
    assert_eq!(runs[1].trial.state, TrialState::Diverged);
    assert!(runs[1].trial.metrics[1].value.is_nan());
}

#[test]
fn csv_dir_errors() {
    let check = |files: &[(&str, &str)], file_end: &str, line: Option<u64>, words: &str| {
        let dir = csv_dir(files);
        let e = parse_csv_dir(dir.path()).unwrap_err();
        assert!(e.file.to_string_lossy().ends_with(file_end), "{e}");
        assert_eq!(e.line, line, "{e}");
        assert!(e.to_string().contains(words), "{e}");
        assert!(!e.fix.is_empty());
    };
    check(&[("run-a.csv", CURVE_A)], "runs.csv", None, "missing index");
    check(&[("runs.csv", "name,lr\na,1\n")], "runs.csv", Some(1), "max_train_steps");
    check(&[("runs.csv", "name,max_train_steps\na,100\n")], "runs.csv", Some(2), "curve file");
    check(&[("runs.csv", "name,max_train_steps\na,ten\n"), ("a.csv", CURVE_A)], "runs.csv", Some(2), "positive integer");
    check(&[("runs.csv", "name,max_train_steps\na,100\na,100\n"), ("a.csv", CURVE_A)], "runs.csv", Some(3), "duplicate run name");
    check(&[("runs.csv", "name,max_train_steps,curve\na,100,../x.csv\n")], "runs.csv", Some(2), "not a file inside");
    check(&[("runs.csv", "name,max_train_steps\na,100\n"), ("a.csv", "epoch,loss\n1,2\n")], "a.csv", Some(1), "`step`");
    check(&[("runs.csv", "name,max_train_steps\na,100\n"), ("a.csv", "step,loss\n1,2\n2,oops\n")], "a.csv", Some(3), "loss");
    check(
        &[("runs.csv", "name,max_train_steps\na,100\n"), ("a.csv", "step,loss\n1,2\n1,3\n")],
        "a.csv",
        Some(3),
        "duplicate step",
    );
    check(&[("runs.csv", "name,max_train_steps\na,100\n"), ("a.csv", "step,loss\n1,2,3\n")], "a.csv", Some(2), "malformed CSV");
    check(&[("runs.csv", "name,max_train_steps\na,50\n"), ("a.csv", CURVE_A)], "a.csv", Some(3), "beyond");
    check(&[("runs.csv", "name,max_train_steps\na,100\n"), ("a.csv", CURVE_A), ("b.csv", CURVE_A)], "b.csv", None, "not listed");
}

#[test]
fn imported_runs_analyze_end_to_end() {
    // Six runs, each still improving at its end: too low.
    let mut text = String::new();
    for i in 0..6 {
        let curve: Vec<String> = (1..=10)
            .map(|s| format!("{{\"step\": {}, \"valid/loss\": {}}}", s * 10, 2.0 - 0.1 * s as f64 - 0.01 * i as f64))
            .collect();
        text.push_str(&format!(
            "{{\"params\": {{\"lr\": {}}}, \"max_train_steps\": 100, \"curve\": [{}]}}\n",
            0.001 * (i + 1) as f64,
            curve.join(", ")
        ));
    }
    let (_d, path) = jsonl(&text);
    let runs = parse_jsonl(&path).unwrap();
    let a = analyze(&study_from_runs("valid/loss", Direction::Minimize, &runs), &AnalysisConfig::default());
    assert_eq!(a.budget.feasible.verdict, Verdict::TooLow);
    assert_eq!(a.budget.feasible.suggested_max_train_steps, Some(200));
}
