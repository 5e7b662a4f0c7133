//! One conversion of parameter values: the same scalar gives the same `ParamValue` (or the same
//! refusal) whether a JSON Lines run, a CSV index, a TensorBoard run's `params.json`,
//! `hparams.yaml` or directory name wrote it; nested objects and mappings are dotted names in
//! JSON and YAML alike.

use std::fs;
use std::path::{Path, PathBuf};

use horizon_core::ParamValue;
use horizon_import::{ImportError, Run, parse_csv_dir, parse_jsonl, parse_tensorboard_dir};

/// A real event file (tensorboardX; scalars at steps 10 and 20).
fn events() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tensorboard/b/events.out.tfevents.1700000000.fixture")
}

/// A TensorBoard log directory with one run in `run_dir`, beside `files`.
fn tensorboard(run_dir: &str, files: &[(&str, &str)]) -> Result<Vec<Run>, ImportError> {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join(run_dir);
    fs::create_dir_all(&run).unwrap();
    fs::copy(events(), run.join("events.out.tfevents.1700000000.host")).unwrap();
    for (name, text) in files {
        fs::write(run.join(name), text).unwrap();
    }
    parse_tensorboard_dir(root.path())
}

fn jsonl(params: &str) -> Result<Vec<Run>, ImportError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.jsonl");
    fs::write(&path, format!(r#"{{"params": {params}, "max_train_steps": 20, "curve": [{{"step": 10, "loss": 1.0}}]}}"#))
        .unwrap();
    parse_jsonl(&path)
}

fn csv(cell: &str) -> Result<Vec<Run>, ImportError> {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("runs.csv"), format!("name,max_train_steps,p\nr,20,{cell}\n")).unwrap();
    fs::write(dir.path().join("r.csv"), "step,loss\n10,1.0\n").unwrap();
    parse_csv_dir(dir.path())
}

/// The value of `p`, or the refusal's problem.
fn p(runs: Result<Vec<Run>, ImportError>) -> Result<Option<ParamValue>, String> {
    runs.map(|r| r[0].trial.params.get("p").cloned()).map_err(|e| e.problem)
}

#[test]
fn the_same_scalar_is_the_same_value_in_every_format() {
    use ParamValue::{Bool, Float, Int, Str};
    // (JSON, CSV cell, YAML, directory name value); `None`: the format cannot write it.
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<&'a str>, Result<Option<ParamValue>, &'a str>);
    let cases: Vec<Case> = vec![
        (Some("0.1"), Some("0.1"), Some("0.1"), Some("0.1"), Ok(Some(Float(0.1)))),
        (Some("1e-4"), Some("1e-4"), Some("1e-4"), Some("1e-4"), Ok(Some(Float(1e-4)))),
        (Some("1.0"), Some("1.0"), Some("1.0"), Some("1.0"), Ok(Some(Float(1.0)))),
        (Some("128"), Some("128"), Some("128"), Some("128"), Ok(Some(Int(128)))),
        (Some("-3"), Some("-3"), Some("-3"), Some("-3"), Ok(Some(Int(-3)))),
        // Python writes True (str(True), pandas' to_csv, an f-string directory name).
        (Some("true"), Some("True"), Some("True"), Some("True"), Ok(Some(Bool(true)))),
        (Some("false"), Some("FALSE"), Some("false"), Some("False"), Ok(Some(Bool(false)))),
        (Some("\"sgd\""), Some("sgd"), Some("sgd"), Some("sgd"), Ok(Some(Str("sgd".into())))),
        // Text by its syntax stays text.
        (Some("\"0.1\""), None, Some("'0.1'"), None, Ok(Some(Str("0.1".into())))),
        // No value: the run has none for the parameter.
        (Some("null"), Some(""), Some("~"), None, Ok(None)),
        // An integer past 64 bits is refused, not rounded to a float.
        (
            Some("9223372036854775808"),
            Some("9223372036854775808"),
            Some("9223372036854775808"),
            Some("9223372036854775808"),
            Err("out of range"),
        ),
        (None, Some("nan"), Some(".nan"), Some("inf"), Err("not finite")),
        // A list of scalars: one text parameter, the same from JSON and YAML.
        (Some("[0.9, 0.999]"), None, Some("[0.9, 0.999]"), None, Ok(Some(Str("[0.9,0.999]".into())))),
        (Some("[\"relu\", 2, true]"), None, Some("[relu, 2, True]"), None, Ok(Some(Str("[\"relu\",2,true]".into())))),
    ];
    for (json, cell, yaml, dir, want) in cases {
        let check = |format: &str, got: Result<Option<ParamValue>, String>| match (&want, &got) {
            (Ok(w), Ok(g)) => assert_eq!(g, w, "{format}: {json:?} {cell:?} {yaml:?} {dir:?}"),
            (Err(words), Err(problem)) => assert!(problem.contains(words), "{format}: {problem}"),
            _ => panic!("{format}: {json:?} {cell:?} {yaml:?} {dir:?}: got {got:?}, want {want:?}"),
        };
        if let Some(json) = json {
            check("jsonl", p(jsonl(&format!(r#"{{"p": {json}}}"#))));
            check("params.json", p(tensorboard("run", &[("params.json", &format!(r#"{{"p": {json}}}"#))])));
        }
        if let Some(cell) = cell {
            check("csv", p(csv(cell)));
        }
        if let Some(yaml) = yaml {
            check("hparams.yaml", p(tensorboard("run", &[("hparams.yaml", &format!("p: {yaml}\n"))])));
        }
        if let Some(dir) = dir {
            check("directory name", p(tensorboard(&format!("p={dir}"), &[])));
        }
    }
}

#[test]
fn nested_keys_are_dotted_names_in_yaml_and_json() {
    let want =
        vec![("optimizer.lr".to_string(), ParamValue::Float(0.1)), ("optimizer.momentum".to_string(), ParamValue::Float(0.9))];
    let params = |runs: Result<Vec<Run>, ImportError>| runs.unwrap()[0].trial.params.0.clone();
    assert_eq!(params(tensorboard("run", &[("hparams.yaml", "optimizer: {lr: 0.1, momentum: 0.9}\n")])), want);
    assert_eq!(params(tensorboard("run", &[("params.yaml", "optimizer:\n  lr: 0.1\n  momentum: 0.9\n")])), want);
    assert_eq!(params(tensorboard("run", &[("params.json", r#"{"optimizer": {"lr": 0.1, "momentum": 0.9}}"#)])), want);
    assert_eq!(params(jsonl(r#"{"optimizer": {"lr": 0.1, "momentum": 0.9}}"#)), want);

    // What PyTorch Lightning's save_hyperparameters writes: tuples, nested configs, nulls. A
    // nested max_train_steps is a parameter like any other; only the top-level one is the budget.
    let runs = tensorboard(
        "version_0",
        &[(
            "hparams.yaml",
            "batch_size: 128\nbetas: !!python/tuple\n- 0.9\n- 0.999\nlr: 0.001\nmodel:\n  hidden: [64, 64]\n  dropout: 0.1\nscheduler: null\ntrainer:\n  max_train_steps: 5\nmax_train_steps: 20\n",
        )],
    )
    .unwrap();
    let t = &runs[0].trial;
    assert_eq!(
        t.params.0,
        [
            ("batch_size".to_string(), ParamValue::Int(128)),
            ("betas".to_string(), ParamValue::Str("[0.9,0.999]".into())),
            ("lr".to_string(), ParamValue::Float(0.001)),
            ("model.hidden".to_string(), ParamValue::Str("[64,64]".into())),
            ("model.dropout".to_string(), ParamValue::Float(0.1)),
            ("trainer.max_train_steps".to_string(), ParamValue::Int(5)),
        ]
    );
    assert_eq!(t.max_train_steps, 20);
}

#[test]
fn what_yaml_cannot_say_as_a_parameter_is_refused_with_file_line_key_and_fix() {
    let refuse = |text: &str| tensorboard("run", &[("hparams.yaml", text)]).unwrap_err();
    let e = refuse("lr: 0.1\nargs: !!python/object:argparse.Namespace\n  lr: 0.1\n");
    assert!(e.file.ends_with("run/hparams.yaml"), "{e}");
    assert_eq!((e.line, e.field.as_deref()), (Some(2), Some("args")), "{e}");
    assert!(e.problem.contains("!!python/object:argparse.Namespace"), "{e}");
    assert!(e.to_string().contains("hparams.yaml:2: args: the YAML tag"), "{e}");
    assert!(e.fix.contains("vars(args)"), "{e}");

    let e = refuse("model:\n  layers:\n    - units: 64\n");
    assert_eq!((e.line, e.field.as_deref()), (Some(3), Some("model.layers")), "{e}");
    assert!(e.fix.contains("model.layers.0"), "{e}");

    let e = refuse("optimizer:\n  lr: 0.1\noptimizer.lr: 0.2\n");
    assert_eq!((e.line, e.field.as_deref(), e.problem.as_str()), (Some(3), Some("optimizer.lr"), "duplicate key"), "{e}");
}
