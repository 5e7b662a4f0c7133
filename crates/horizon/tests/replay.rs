//! The `replay` workload through the real binary: a ladder over a small generated file of
//! recorded runs; promoted trials resume where their rung ended, and the recorded values
//! arrive exactly.

mod util;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use util::*;

/// Six recorded runs of 9 steps, evaluated at every step; lower `BASE` is better at every step.
/// Run 5 diverged: its training loss is NaN at step 2.
const BASE: [f64; 6] = [0.3, 0.25, 0.33, 0.41, 0.2, 0.37];

fn valid_error(run: usize, step: u64) -> f64 {
    BASE[run] + 0.5 / (step as f64 + 1.0 / 3.0)
}

fn train_loss(run: usize, step: u64) -> f64 {
    (1.0 + run as f64 / 7.0) / (step as f64).sqrt()
}

fn runs_file() -> String {
    let mut out = String::new();
    for (run, _) in BASE.iter().enumerate() {
        let curve: Vec<Value> = (1..=9u64)
            .map(|s| {
                let loss = if run == 5 && s >= 2 { json!("nan") } else { json!(train_loss(run, s)) };
                json!({"step": s, "valid/error": valid_error(run, s), "train/loss": loss})
            })
            .collect();
        let line =
            json!({"name": format!("run-{run}"), "params": {"lr": 0.1 * (run + 1) as f64}, "max_train_steps": 9, "curve": curve});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

const STUDY: &str = r#"
[study]
name = "replay-ladder"
trials = 6
max_train_steps = 9
eval_every = 1
seed = 0

[objective]
metric = "valid/error"
direction = "minimize"

[trainer]
workload = "replay"

[ladder]
rungs = [3, 9]
eta = 3

[sampler]
kind = "grid"
points = 6

[params.runs]
type = "fixed"
value = "data/runs.jsonl"

[params.run]
type = "int"
low = 0
high = 5
"#;

#[test]
fn a_replay_ladder_resumes_promoted_trials_and_stores_the_recorded_values_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A relative `runs` resolves against the trainer's working directory: the study file's.
    std::fs::create_dir(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/runs.jsonl"), runs_file()).unwrap();
    std::fs::write(dir.join("study.toml"), STUDY).unwrap();
    let horizon =
        |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_horizon")).args(args).current_dir(dir).output().unwrap();

    let out = horizon(&["run", "study.toml", "--no-progress"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("promoted from rung 0 to rung 1 (9 steps), resuming from its checkpoint at step 3"), "{shown}");

    let trials: Vec<Value> = {
        let out = horizon(&["trials", "study.toml", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let run_of = |t: &Value| t["params"]["run"].as_u64().unwrap() as usize;
    assert_eq!(trials.iter().map(run_of).collect::<BTreeSet<_>>(), (0..6).collect(), "every run once (the grid)");
    // Six at rung 0 (one diverged), the best two (runs 4 and 1) go on.
    let promoted: Vec<&Value> = trials.iter().filter(|t| t["rung"] == 1).collect();
    assert_eq!(promoted.iter().map(|t| run_of(t)).collect::<BTreeSet<_>>(), BTreeSet::from([1, 4]), "{trials:#?}");
    for t in &promoted {
        let rungs = t["rungs"].as_array().unwrap();
        assert_eq!(rungs[0]["budget"], 3);
        assert_eq!(rungs[1]["entry"], json!({"kind": "resumed", "from": 0, "step": 3}), "{t}");
        assert_eq!(rungs[1]["steps_run"], 6, "9 steps less the 3 resumed");
        assert_eq!(rungs[1]["budget_independent_until"], 9, "the replay declares its whole run");
        assert_eq!((t["state"].as_str(), t["max_train_steps"].as_u64()), (Some("complete"), Some(9)));
        // The best of a decreasing curve is its last value, exactly as recorded.
        assert_eq!(rungs[0]["best_value"].as_f64(), Some(valid_error(run_of(t), 3)));
        assert_eq!(rungs[1]["best_value"].as_f64(), Some(valid_error(run_of(t), 9)));
    }
    let diverged = trials.iter().find(|t| run_of(t) == 5).unwrap();
    assert_eq!(diverged["state"], "diverged", "{diverged}");

    // Every stored value is the recorded one, bit for bit, at rung 0 (steps 1..3) and, for the
    // promoted trials, at rung 1 (steps 1..9: rung 0's copy up to 3, the resumed attempt after).
    let out = horizon(&["export", "study.toml", "--format", "jsonl"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut stored: BTreeMap<(u64, u64), BTreeMap<(u64, String), Value>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let key = (row["trial"].as_u64().unwrap(), row["rung"].as_u64().unwrap());
        stored
            .entry(key)
            .or_default()
            .insert((row["step"].as_u64().unwrap(), row["metric"].as_str().unwrap().into()), row["value"].clone());
    }
    for t in &trials {
        let (number, run) = (t["number"].as_u64().unwrap(), run_of(t));
        if run == 5 {
            continue;
        }
        let top = t["rung"].as_u64().unwrap();
        for rung in 0..=top {
            let budget = if rung == 0 { 3 } else { 9 };
            let mut expected = BTreeMap::new();
            for s in 1..=budget {
                expected.insert((s, "valid/error".to_string()), json!(valid_error(run, s)));
                expected.insert((s, "train/loss".to_string()), json!(train_loss(run, s)));
            }
            assert_eq!(stored[&(number, rung)], expected, "trial {number} (run {run}) rung {rung}");
        }
    }
    // The diverged run: recorded up to its NaN, nothing after.
    let number = diverged["number"].as_u64().unwrap();
    let d = &stored[&(number, 0)];
    assert_eq!(d.keys().map(|(s, _)| *s).max(), Some(2), "{d:?}");
    assert_eq!(d[&(2, "train/loss".to_string())], json!("nan"));

    // Each promoted trial's resumed attempt read the checkpoint of its own run.
    for t in &promoted {
        let trial_dir = dir.join("horizon-runs/replay-ladder/trials").join(format!("{:05}", t["number"].as_u64().unwrap()));
        let checkpoint: Value = serde_json::from_slice(&std::fs::read(trial_dir.join("replay-3.json")).unwrap()).unwrap();
        assert_eq!((checkpoint["run"].as_u64(), checkpoint["step"].as_u64()), (Some(run_of(t) as u64), Some(3)));
        let stderr = std::fs::read_to_string(trial_dir.join("attempt-2.stderr")).unwrap();
        assert!(stderr.contains("resuming after step 3"), "{stderr}");
    }
}

#[test]
fn a_replay_study_refuses_the_trainers_parameters_and_a_missing_file_fails_the_trial_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let horizon =
        |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_horizon")).args(args).current_dir(dir).output().unwrap();
    let with_lr = STUDY.to_string() + "\n[params.learning_rate]\ntype = \"fixed\"\nvalue = 0.1\n";
    std::fs::write(dir.join("study.toml"), with_lr).unwrap();
    let out = horizon(&["check", "study.toml"]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("workload replay has no parameter \"learning_rate\"") && shown.contains("it takes: runs, run"),
        "{shown}"
    );

    // No runs file: the trial fails, and its message shows the replay's error.
    std::fs::write(dir.join("study.toml"), STUDY.replace("trials = 6", "trials = 1")).unwrap();
    let out = horizon(&["run", "study.toml", "--no-progress"]);
    let shown = text(&out);
    assert!(
        shown.contains("parameter runs = \"data/runs.jsonl\": cannot replay from it") && shown.contains("cannot read"),
        "{shown}"
    );
}

/// The replay study in two rounds, 3 steps then `last` (carrying the best 2), run once: its
/// output.
fn run_in_rounds(last: u64) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/runs.jsonl"), runs_file()).unwrap();
    let rounds = STUDY
        .replace(
            "[ladder]\nrungs = [3, 9]\neta = 3\n",
            &format!(
                "[[round]]\nmax_train_steps = 3\ntrials = 6\n\n[[round]]\nmax_train_steps = {last}\ncarry = 2\ntrials = 0\n"
            ),
        )
        .replace("max_train_steps = 9\n", &format!("max_train_steps = {last}\n"));
    assert!(rounds.contains("[[round]]"));
    std::fs::write(dir.join("study.toml"), rounds).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_horizon"))
        .args(["run", "study.toml", "--no-progress"])
        .current_dir(dir)
        .output()
        .unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    shown
}

#[test]
fn replay_in_rounds_says_nothing_about_a_learning_rate_it_does_not_have() {
    let shown = run_in_rounds(9);
    assert!(shown.contains("round 2 of 2: 9 steps per trial, the best 2 of round 1 carried on"), "{shown}");
    assert!(!shown.contains("learning rate"), "a replay has no learning rate to re-tune: {shown}");
}

#[test]
fn a_best_from_an_earlier_round_says_it_is_not_a_result_at_the_studys_budget() {
    // The recorded runs are 9 steps long: none can finish a round of 12.
    let shown = run_in_rounds(12);
    assert!(shown.contains("no trial finished a later round: this is the best at round 1, not at 12 steps"), "{shown}");
}
