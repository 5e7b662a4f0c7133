//! The built-in workloads as horizon runs them: metric lines, checkpoints, resume, stop,
//! determinism and parameter errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use horizon_core::protocol::{Report, parse_line};
use horizon_core::workloads::workload;
use horizon_core::{ParamValue, Params};
use horizon_workloads::{RunEnd, TrialEnv, WorkloadError, run};

fn params(pairs: &[(&str, ParamValue)]) -> Params {
    let mut p = Params::default();
    for (k, v) in pairs {
        p.set(k, v.clone());
    }
    p
}

fn int(i: i64) -> ParamValue {
    ParamValue::Int(i)
}
fn float(x: f64) -> ParamValue {
    ParamValue::Float(x)
}
fn text(s: &str) -> ParamValue {
    ParamValue::Str(s.into())
}

/// A trial directory with its metrics file.
struct Trial {
    dir: tempfile::TempDir,
}

impl Trial {
    fn new() -> Trial {
        Trial { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn env(&self, p: &Params, steps: u64, eval_every: u64, seed: u64, attempt: u32) -> TrialEnv {
        TrialEnv {
            params: p.clone(),
            max_train_steps: steps,
            eval_every,
            seed,
            trial_dir: self.path().to_path_buf(),
            metrics_file: self.path().join(format!("attempt-{attempt}.metrics.jsonl")),
            checkpoint_every: 0,
            checkpoint_steps: vec![],
            resume_from: None,
        }
    }

    fn lines(&self, attempt: u32) -> Vec<String> {
        let text = std::fs::read_to_string(self.path().join(format!("attempt-{attempt}.metrics.jsonl"))).unwrap();
        text.lines().map(str::to_string).collect()
    }
}

fn run_ok(name: &str, env: &TrialEnv) -> RunEnd {
    run(name, env, &AtomicBool::new(false)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every line parses as protocol v1; returns the metrics lines' (step, name, value).
fn parsed(lines: &[String]) -> Vec<(u64, String, f64)> {
    let mut out = Vec::new();
    for line in lines {
        match parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}")) {
            Report::Metrics { step, values } => out.extend(values.into_iter().map(|(n, v)| (step, n, v))),
            Report::Checkpoint { .. } | Report::BudgetIndependent { .. } => {}
        }
    }
    out
}

fn is_event(line: &str) -> bool {
    line.contains("\"event\"")
}

fn is_checkpoint(line: &str) -> bool {
    matches!(parse_line(line), Ok(Report::Checkpoint { .. }))
}

/// The declaration a run writes first: `{"event":"budget_independent","step":S}`.
fn declaration(step: u64) -> String {
    format!("{{\"event\":\"budget_independent\",\"step\":{step}}}")
}

/// A few steps with evaluations at every step: exactly the catalog's metrics, all finite, at
/// every evaluation step.
fn reports_the_catalog_metrics(name: &str, p: Params, steps: u64) {
    let trial = Trial::new();
    let env = trial.env(&p, steps, 1, 3, 1);
    assert_eq!(run_ok(name, &env), RunEnd::Finished);
    let values = parsed(&trial.lines(1));
    let expected: BTreeSet<&str> = workload(name).unwrap().metrics.iter().copied().collect();
    for step in 1..=steps {
        let names: BTreeSet<&str> = values.iter().filter(|(s, _, _)| *s == step).map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(names, expected, "{name} step {step}");
    }
    for (step, n, v) in &values {
        assert!(v.is_finite(), "{name}: {n} = {v} at step {step}");
        if n.ends_with("error") {
            assert!((0.0..=1.0).contains(v), "{name}: {n} = {v}");
        }
    }
    assert_eq!(values.iter().map(|v| v.0).max(), Some(steps));
}

#[test]
fn digits_mlp_reports_the_catalog_metrics() {
    reports_the_catalog_metrics("digits-mlp", Params::default(), 3);
}

#[test]
fn mnist_mlp_reports_the_catalog_metrics() {
    reports_the_catalog_metrics("mnist-mlp", params(&[("augment", int(2))]), 3);
}

#[test]
fn jargon_lm_reports_the_catalog_metrics_at_its_defaults() {
    reports_the_catalog_metrics("jargon-lm", Params::default(), 2);
}

/// A small language model for the tests that run many steps.
fn small_lm() -> Params {
    params(&[
        ("context", int(16)),
        ("d_model", int(16)),
        ("heads", int(2)),
        ("layers", int(1)),
        ("batch_size", int(8)),
        ("optimizer", text("adam")),
        ("learning_rate", float(3e-3)),
        ("dropout", float(0.1)),
        ("grad_clip", float(0.5)),
        ("label_smoothing", float(0.1)),
    ])
}

#[test]
fn the_same_seed_gives_the_same_metrics_and_another_seed_does_not() {
    for (name, p, steps) in [
        ("digits-mlp", params(&[("dropout", float(0.2))]), 6),
        ("mnist-mlp", params(&[("augment", int(2)), ("dropout", float(0.1)), ("batch_size", int(16))]), 4),
        ("jargon-lm", small_lm(), 4),
    ] {
        let trial = Trial::new();
        run_ok(name, &trial.env(&p, steps, 2, 11, 1));
        run_ok(name, &trial.env(&p, steps, 2, 11, 2));
        run_ok(name, &trial.env(&p, steps, 2, 12, 3));
        assert_eq!(trial.lines(1), trial.lines(2), "{name}: same seed");
        assert_ne!(trial.lines(1), trial.lines(3), "{name}: another seed");
    }
}

/// Run `steps` straight; run again with a checkpoint at `half` (which must not change what is
/// reported); resume a third attempt from that checkpoint: it reports the checkpoint's
/// evaluation again and then exactly what the straight run reported.
fn resume_is_bit_for_bit(name: &str, p: Params, steps: u64, half: u64, eval_every: u64) {
    let trial = Trial::new();
    run_ok(name, &trial.env(&p, steps, eval_every, 5, 1));
    let straight = trial.lines(1);

    let mut with_checkpoint = trial.env(&p, steps, eval_every, 5, 2);
    // As horizon asks for periodic checkpoints: at every multiple of `half`.
    with_checkpoint.checkpoint_every = half;
    run_ok(name, &with_checkpoint);
    let lines = trial.lines(2);
    let announcement = |s: u64| format!("{{\"event\":\"checkpoint\",\"step\":{s},\"path\":\"ckpt-{s}\"}}");
    let events: Vec<&String> = lines.iter().filter(|l| is_checkpoint(l)).collect();
    let expected: Vec<String> = (1..=steps / half).map(|k| announcement(k * half)).collect();
    assert_eq!(events, expected.iter().collect::<Vec<_>>(), "{name}: checkpoints at every multiple of {half}");
    let at = lines.iter().position(|l| *l == announcement(half)).unwrap();
    // After the step's metrics, before the next step's.
    assert!(parsed(&lines[..at]).iter().all(|v| v.0 <= half) && parsed(&lines[at..]).iter().all(|v| v.0 > half));
    assert_eq!(
        lines.iter().filter(|l| !is_checkpoint(l)).cloned().collect::<Vec<_>>(),
        straight,
        "{name}: checkpointing changes nothing"
    );
    let ckpt = trial.path().join(format!("ckpt-{half}"));
    for file in ["model.safetensors", "optimizer.bpk", "state.json"] {
        assert!(ckpt.join(file).is_file(), "{file} in the checkpoint");
    }

    let mut second = trial.env(&p, steps, eval_every, 5, 3);
    second.resume_from = Some(trial.path().join(format!("ckpt-{half}")));
    assert_eq!(run_ok(name, &second), RunEnd::Finished);
    let second_lines = trial.lines(3);
    assert!(is_event(&straight[0]) && second_lines[0] == straight[0], "{name}: the same declaration first");

    let at = |lines: &[String], cmp: &dyn Fn(u64) -> bool| -> Vec<String> {
        lines.iter().filter(|l| !is_event(l)).filter(|l| cmp(parsed(&[l.to_string()])[0].0)).cloned().collect()
    };
    // The checkpoint step's evaluation is reported again, identically.
    assert_eq!(at(&second_lines, &|s| s == half), at(&straight, &|s| s == half), "{name}: re-reported evaluation");
    assert!(!at(&straight, &|s| s == half).is_empty(), "{name}: the checkpoint step is an evaluation step");
    // Then everything after it, bit for bit.
    let after = at(&straight, &|s| s > half);
    assert!(!after.is_empty());
    assert_eq!(at(&second_lines, &|s| s > half), after, "{name}: after resuming");
}

#[test]
fn digits_mlp_resumes_bit_for_bit() {
    let p = params(&[
        ("dropout", float(0.2)),
        ("nesterov", ParamValue::Bool(true)),
        ("weight_decay", float(1e-3)),
        ("schedule", text("cosine")),
        ("warmup_steps", int(3)),
    ]);
    resume_is_bit_for_bit("digits-mlp", p, 40, 20, 10);
}

#[test]
fn mnist_mlp_resumes_bit_for_bit() {
    let p = params(&[
        ("augment", int(2)),
        ("optimizer", text("adamw")),
        ("learning_rate", float(1e-3)),
        ("weight_decay", float(0.01)),
        ("batch_size", int(32)),
        ("hidden", int(64)),
        ("schedule", text("wsd")),
        ("decay_steps", int(4)),
        ("label_smoothing", float(0.1)),
    ]);
    resume_is_bit_for_bit("mnist-mlp", p, 12, 6, 3);
}

#[test]
fn jargon_lm_resumes_bit_for_bit() {
    resume_is_bit_for_bit("jargon-lm", small_lm(), 8, 4, 2);
}

/// Metric values by (step, name), as `f64::to_bits`: two of these are equal only if every value
/// is equal bit for bit.
fn bits(lines: &[String], keep: impl Fn(u64) -> bool) -> BTreeMap<(u64, String), u64> {
    parsed(lines).into_iter().filter(|v| keep(v.0)).map(|(step, name, x)| ((step, name), x.to_bits())).collect()
}

/// `left == right`, or a panic naming the first value that differs (or is missing) and how.
fn assert_same_bits(left: &BTreeMap<(u64, String), u64>, right: &BTreeMap<(u64, String), u64>, what: &str) {
    let keys: BTreeSet<&(u64, String)> = left.keys().chain(right.keys()).collect();
    for key in keys {
        let (l, r) = (left.get(key).copied().map(f64::from_bits), right.get(key).copied().map(f64::from_bits));
        assert!(left.get(key) == right.get(key), "{what}: first difference at step {} {}: {l:?} against {r:?}", key.0, key.1);
    }
}

/// The steps of a run's events: its budget-independence declarations and its checkpoints.
fn events(lines: &[String]) -> (Vec<u64>, Vec<u64>) {
    let (mut declared, mut checkpoints) = (Vec::new(), Vec::new());
    for line in lines {
        match parse_line(line).unwrap() {
            Report::BudgetIndependent { step } => declared.push(step),
            Report::Checkpoint { step, path } => {
                assert_eq!(path, format!("ckpt-{step}"));
                checkpoints.push(step);
            }
            Report::Metrics { .. } => {}
        }
    }
    (declared, checkpoints)
}

/// A ladder's promotion of digits-mlp from budget `b1` to `b2`: (a) a run at `b1` declares `s1`
/// budget-independent and checkpoints it, as horizon asks; (b) a run from scratch at `b2`;
/// (c) a run at `b2` resumed from (a)'s checkpoint. (c) reports exactly what (b) does from
/// `s1` on, bit for bit, and (a) agrees with (b) up to `s1` (and not after it: its schedule
/// ends sooner).
fn promotion_is_bit_for_bit(p: Params, b1: u64, b2: u64, s1: u64, eval_every: u64) {
    let trial = Trial::new();
    let mut rung0 = trial.env(&p, b1, eval_every, 21, 1);
    rung0.checkpoint_steps = vec![s1];
    run_ok("digits-mlp", &rung0);
    let a = trial.lines(1);
    assert_eq!(events(&a), (vec![s1], vec![s1]), "(a) declares {s1} and checkpoints it");
    assert_eq!(a[0], declaration(s1), "the declaration comes first");
    assert_eq!(horizon_core::workloads::budget_independent_until(&p, b1), Some(s1), "the ladder's prediction");

    run_ok("digits-mlp", &trial.env(&p, b2, eval_every, 21, 2));
    let b = trial.lines(2);
    let b2_declared = horizon_core::workloads::budget_independent_until(&p, b2).unwrap();
    assert_eq!(events(&b), (vec![b2_declared], vec![]));

    let mut rung1 = trial.env(&p, b2, eval_every, 21, 3);
    rung1.resume_from = Some(trial.path().join(format!("ckpt-{s1}")));
    assert_eq!(run_ok("digits-mlp", &rung1), RunEnd::Finished);
    let c = trial.lines(3);
    assert_eq!(events(&c), (vec![b2_declared], vec![]), "(c) declares what a run at {b2} does");

    // (c) is (b) from the checkpoint on: every value after it, and the checkpoint step's
    // evaluation when it is one at b2 too.
    let after = bits(&b, |s| s > s1);
    assert!(after.len() > 10, "{after:?}");
    assert_same_bits(&bits(&c, |s| s > s1), &after, &format!("(c) against (b) after step {s1}"));
    assert_same_bits(&bits(&c, |s| s <= s1), &bits(&b, |s| s == s1), &format!("(c) re-reporting step {s1}"));
    // (a) is (b) before the checkpoint: the shared prefix, at the steps both evaluate ((a) also
    // evaluates its last step).
    let before = bits(&b, |s| s <= s1);
    assert!(before.len() >= 8, "{before:?}");
    assert_same_bits(&bits(&a, |s| s <= s1 && s % eval_every == 0), &before, &format!("(a) against (b) up to step {s1}"));
    let b_at = bits(&b, |_| true);
    // After it (a) decays sooner, so it is not (b): a test that could not fail proves nothing.
    for step in (s1 + 1..=b1).filter(|s| s % eval_every == 0) {
        for metric in ["train/lr", "valid/loss"] {
            let key = (step, metric.to_string());
            assert_ne!(bits(&a, |_| true)[&key], b_at[&key], "(a) and (b) at {key:?}");
        }
    }
}

#[test]
fn digits_mlp_promoted_under_wsd_continues_bit_for_bit() {
    // The decay of the 60-step run starts at step 40, that of the 180-step run at 160.
    let p = params(&[
        ("schedule", text("wsd")),
        ("decay_steps", int(20)),
        ("warmup_steps", int(5)),
        ("optimizer", text("adam")),
        ("learning_rate", float(2e-3)),
        ("weight_decay", float(1e-4)),
        ("dropout", float(0.2)),
        ("hidden", int(64)),
        ("batch_size", int(32)),
    ]);
    promotion_is_bit_for_bit(p, 60, 180, 40, 10);
}

#[test]
fn digits_mlp_promoted_under_a_constant_rate_continues_from_the_end_of_its_rung() {
    // A constant rate does not depend on the budget: the whole 55-step run is shared, and it
    // resumes from its last step (not an evaluation step at 180 steps).
    let p = params(&[
        ("nesterov", ParamValue::Bool(true)),
        ("learning_rate", float(0.05)),
        ("weight_decay", float(1e-3)),
        ("grad_clip", float(1.0)),
        ("dropout", float(0.3)),
        ("label_smoothing", float(0.1)),
        ("hidden", int(64)),
        ("batch_size", int(32)),
    ]);
    promotion_is_bit_for_bit(p, 55, 180, 55, 10);
}

#[test]
fn every_schedule_declares_what_the_ladder_predicts() {
    // The ladder computes the resume step from the parameters (horizon_core::workloads); the
    // workload declares it from the schedule it runs. They must agree.
    for (schedule, expected) in [("constant", 12), ("rsqrt", 12), ("wsd", 8), ("linear", 2), ("cosine", 2)] {
        let p = params(&[("schedule", text(schedule)), ("warmup_steps", int(2)), ("decay_steps", int(4)), ("hidden", int(8))]);
        let trial = Trial::new();
        run_ok("digits-mlp", &trial.env(&p, 12, 12, 1, 1));
        let lines = trial.lines(1);
        assert_eq!(lines[0], declaration(expected), "{schedule}");
        assert_eq!(events(&lines).0, vec![expected], "{schedule}: declared once");
        assert_eq!(horizon_core::workloads::budget_independent_until(&p, 12), Some(expected), "{schedule}");
    }
}

#[test]
fn a_checkpoint_past_the_budget_is_refused() {
    let p = params(&[("hidden", int(16))]);
    let trial = Trial::new();
    let mut env = trial.env(&p, 8, 4, 1, 1);
    env.checkpoint_steps = vec![8];
    run_ok("digits-mlp", &env);
    let mut shorter = trial.env(&p, 5, 4, 1, 2);
    shorter.resume_from = Some(trial.path().join("ckpt-8"));
    let e = run("digits-mlp", &shorter, &AtomicBool::new(false)).unwrap_err();
    assert!(
        matches!(&e, WorkloadError::Resume { reason, .. } if reason.contains("step 8") && reason.contains("HORIZON_MAX_TRAIN_STEPS = 5")),
        "{e:?}"
    );
    assert!(e.to_string().contains("ckpt-8"), "{e}");
    // Refused before anything is reported, the declaration included.
    assert!(trial.lines(2).is_empty(), "{:?}", trial.lines(2));
    // At exactly its step it resumes, reports that evaluation again and ends.
    let mut same = trial.env(&p, 8, 4, 1, 3);
    same.resume_from = Some(trial.path().join("ckpt-8"));
    assert_eq!(run_ok("digits-mlp", &same), RunEnd::Finished);
    let resumed = trial.lines(3);
    assert_eq!(resumed[0], declaration(8));
    assert_same_bits(&bits(&resumed, |_| true), &bits(&trial.lines(1), |s| s == 8), "re-reported step 8");
}

#[test]
fn a_stop_finishes_the_step_writes_a_checkpoint_and_a_resumed_run_continues() {
    let p = params(&[("dropout", float(0.3)), ("optimizer", text("adam")), ("learning_rate", float(1e-3))]);
    let trial = Trial::new();
    run_ok("digits-mlp", &trial.env(&p, 10, 4, 9, 1));
    let straight = trial.lines(1);

    // Stop requested before the run starts: it trains one step (not an evaluation step),
    // checkpoints it and announces it.
    let stop = AtomicBool::new(true);
    let end = run("digits-mlp", &trial.env(&p, 10, 4, 9, 2), &stop).unwrap();
    assert_eq!(end, RunEnd::Stopped { step: 1 });
    // The default schedule is constant: every step is budget-independent.
    assert_eq!(trial.lines(2), vec![declaration(10), r#"{"event":"checkpoint","step":1,"path":"ckpt-1"}"#.to_string()]);
    assert!(trial.path().join("ckpt-1/model.safetensors").is_file());
    assert!(!trial.path().join("ckpt-1.tmp").exists());

    // Resume by the announced (relative) path, as horizon would: through the environment.
    let dir = trial.path().to_string_lossy().into_owned();
    let metrics = trial.path().join("attempt-3.metrics.jsonl").to_string_lossy().into_owned();
    let json = p.to_json_string();
    let env = TrialEnv::from_lookup(|var| {
        Some(match var {
            "HORIZON_PARAMS" => json.clone(),
            "HORIZON_MAX_TRAIN_STEPS" => "10".into(),
            "HORIZON_EVAL_EVERY" => "4".into(),
            "HORIZON_SEED" => "9".into(),
            "HORIZON_TRIAL_DIR" => dir.clone(),
            "HORIZON_METRICS_FILE" => metrics.clone(),
            "HORIZON_CHECKPOINT_STEPS" => String::new(),
            "HORIZON_RESUME_FROM" => "ckpt-1".into(),
            _ => return None,
        })
    })
    .unwrap();
    assert_eq!(env.resume_from.as_deref(), Some(trial.path().join("ckpt-1").as_path()));
    assert_eq!(run_ok("digits-mlp", &env), RunEnd::Finished);
    assert_eq!(trial.lines(3), straight);
}

#[test]
fn digits_mlp_fits_its_training_set_perfectly() {
    // Plain SGD with momentum at a constant rate: about 30 epochs of 1,397 examples.
    let p = params(&[("learning_rate", float(0.1)), ("batch_size", int(64))]);
    let trial = Trial::new();
    run_ok("digits-mlp", &trial.env(&p, 700, 50, 0, 1));
    let values = parsed(&trial.lines(1));
    let train_error = |step: u64| values.iter().find(|(s, n, _)| *s == step && n == "train/error").unwrap().2;
    assert!(train_error(50) > 0.0, "not fitted after 50 steps");
    assert_eq!(train_error(700), 0.0, "{values:?}");
    let valid_error = values.iter().find(|(s, n, _)| *s == 700 && n == "valid/error").unwrap().2;
    assert!(valid_error < 0.05, "valid/error {valid_error}");
}

#[test]
fn a_diverging_run_reports_a_non_finite_loss_and_ends() {
    // The first update makes the weights astronomically large; the next forward pass overflows.
    let p = params(&[("learning_rate", float(1e30))]);
    let trial = Trial::new();
    assert_eq!(run_ok("digits-mlp", &trial.env(&p, 500, 50, 1, 1)), RunEnd::Finished);
    let lines = trial.lines(1);
    let values = parsed(&lines);
    let last = values.iter().map(|v| v.0).max().unwrap();
    assert!(last < 10, "stopped early, at step {last}: {lines:?}");
    assert!(values.iter().any(|(s, n, v)| *s == last && n == "train/loss" && !v.is_finite()), "{lines:?}");
    let last_line = lines.last().unwrap();
    assert!(last_line.contains(r#""loss":"nan""#) || last_line.contains(r#""loss":"inf""#), "{last_line}");
}

fn error_of(name: &str, p: Params) -> WorkloadError {
    let trial = Trial::new();
    run(name, &trial.env(&p, 10, 5, 1, 1), &AtomicBool::new(false)).expect_err("refused")
}

#[test]
fn bad_parameters_are_refused_by_name() {
    let cases: Vec<(&str, Params, &str)> = vec![
        ("digits-mlp", params(&[("optimizer", text("rmsprop"))]), "optimizer"),
        ("digits-mlp", params(&[("batch_size", int(0))]), "batch_size"),
        ("digits-mlp", params(&[("batch_size", int(5000))]), "batch_size"),
        ("digits-mlp", params(&[("learning_rate", float(-1.0))]), "learning_rate"),
        ("digits-mlp", params(&[("dropout", float(1.0))]), "dropout"),
        ("digits-mlp", params(&[("hidden", float(1.5))]), "hidden"),
        ("digits-mlp", params(&[("nesterov", text("yes"))]), "nesterov"),
        ("digits-mlp", params(&[("schedule", text("wsd"))]), "decay_steps"),
        ("digits-mlp", params(&[("warmup_steps", int(11))]), "warmup_steps"),
        ("mnist-mlp", params(&[("augment", int(-1))]), "augment"),
        ("jargon-lm", params(&[("d_model", int(30)), ("heads", int(4))]), "heads"),
    ];
    for (name, p, param) in cases {
        let e = error_of(name, p.clone());
        assert!(matches!(&e, WorkloadError::InvalidParam { name, .. } if name == param), "{p:?}: {e:?}");
        let msg = e.to_string();
        assert!(msg.contains(param) && msg.contains("expected"), "{msg}");
    }
    let e = error_of("digits-mlp", params(&[("optimizer", text("rmsprop"))]));
    assert_eq!(e.to_string(), r#"parameter optimizer = "rmsprop" is invalid: expected one of "sgd", "adam", "adamw""#);

    let e = error_of("digits-mlp", params(&[("context", int(8))]));
    assert!(matches!(e, WorkloadError::UnknownParam { .. }), "{e:?}");
    assert!(e.to_string().contains("\"context\"") && e.to_string().contains("hidden"), "{e}");

    let e = error_of("cifar-resnet", Params::default());
    assert!(e.to_string().contains("digits-mlp"), "{e}");
}

#[test]
fn a_checkpoint_resumes_only_the_run_it_came_from() {
    let p = params(&[("hidden", int(32))]);
    let trial = Trial::new();
    let mut env = trial.env(&p, 2, 1, 1, 1);
    env.checkpoint_steps = vec![2];
    run_ok("digits-mlp", &env);
    let mut other = trial.env(&params(&[("hidden", int(32)), ("dropout", float(0.5))]), 4, 1, 1, 2);
    other.resume_from = Some(trial.path().join("ckpt-2"));
    let e = run("digits-mlp", &other, &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(e, WorkloadError::Resume { .. }) && e.to_string().contains("parameters"), "{e}");
    other.params = p.clone();
    other.resume_from = Some(trial.path().join("ckpt-7"));
    let e = run("digits-mlp", &other, &AtomicBool::new(false)).unwrap_err();
    assert!(e.to_string().contains("ckpt-7"), "{e}");
}

#[test]
fn the_environment_is_read_with_errors_that_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    let base = move |var: &str| -> Option<String> {
        Some(match var {
            "HORIZON_PARAMS" => r#"{"learning_rate": 0.05, "optimizer": "adam"}"#.into(),
            "HORIZON_MAX_TRAIN_STEPS" => "100".into(),
            "HORIZON_EVAL_EVERY" => "10".into(),
            "HORIZON_SEED" => "42".into(),
            "HORIZON_TRIAL_DIR" => d.clone(),
            "HORIZON_METRICS_FILE" => format!("{d}/m.jsonl"),
            "HORIZON_CHECKPOINT_EVERY" => "25".into(),
            "HORIZON_CHECKPOINT_STEPS" => "20, 40,60".into(),
            "HORIZON_RESUME_FROM" => "/abs/ckpt-20".into(),
            _ => return None,
        })
    };
    let env = TrialEnv::from_lookup(&base).unwrap();
    assert_eq!(env.max_train_steps, 100);
    assert_eq!(env.eval_every, 10);
    assert_eq!(env.seed, 42);
    assert_eq!(env.checkpoint_steps, vec![20, 40, 60]);
    assert_eq!(env.checkpoint_every, 25);
    let asked: Vec<u64> = (1..=100).filter(|&s| env.is_checkpoint_step(s)).collect();
    assert_eq!(asked, vec![20, 25, 40, 50, 60, 75, 100]);
    assert_eq!(env.resume_from.as_deref(), Some(Path::new("/abs/ckpt-20")));
    assert_eq!(env.params.get("optimizer"), Some(&text("adam")));

    for (var, value, needle) in [
        ("HORIZON_MAX_TRAIN_STEPS", Some("0"), "HORIZON_MAX_TRAIN_STEPS"),
        ("HORIZON_EVAL_EVERY", Some("ten"), "HORIZON_EVAL_EVERY"),
        ("HORIZON_PARAMS", Some("[1]"), "HORIZON_PARAMS"),
        ("HORIZON_CHECKPOINT_STEPS", Some("10,x"), "HORIZON_CHECKPOINT_STEPS"),
        ("HORIZON_CHECKPOINT_EVERY", Some("0"), "HORIZON_CHECKPOINT_EVERY"),
        ("HORIZON_TRIAL_DIR", Some("/no/such/dir"), "HORIZON_TRIAL_DIR"),
        ("HORIZON_SEED", None, "HORIZON_SEED"),
    ] {
        let e = TrialEnv::from_lookup(|v| if v == var { value.map(str::to_string) } else { base(v) }).unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
    }
    // Unset or empty: no checkpoints, no resume.
    let env = TrialEnv::from_lookup(|v| match v {
        "HORIZON_CHECKPOINT_STEPS" | "HORIZON_CHECKPOINT_EVERY" => Some(String::new()),
        "HORIZON_RESUME_FROM" => None,
        _ => base(v),
    })
    .unwrap();
    assert!(env.checkpoint_steps.is_empty() && env.checkpoint_every == 0 && env.resume_from.is_none());
    assert!(!(1..=100).any(|s| env.is_checkpoint_step(s)));
}
