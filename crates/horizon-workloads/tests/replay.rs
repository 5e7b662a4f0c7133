//! The `replay` workload: recorded curves reported exactly, up to the budget; a diverged run's
//! NaN; a run shorter than the budget; checkpoints and resume; errors that name the fix.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use horizon_core::{ParamValue, Params};
use horizon_workloads::{RunEnd, TrialEnv, WorkloadError, run};

/// Four recorded runs: a complete one (budget 10, evaluated every 2 steps, with a step-0
/// evaluation and two metrics without a split); one that diverged with a recorded NaN at step 6;
/// one recorded at a shorter budget (4); one recorded as diverged whose curve just stops (as in
/// the AlexNet data).
const RUNS: &str = r#"{"name": "good", "params": {"lr": 0.1}, "max_train_steps": 10, "curve": [{"step": 0, "valid/error": 0.9}, {"step": 2, "train/loss": 2.5, "valid/error": 0.7, "valid/loss": 1.8, "lr": 0.1, "epoch": 1}, {"step": 4, "train/loss": 1.25, "valid/error": 0.5, "valid/loss": 1.5}, {"step": 6, "train/loss": 0.8, "valid/error": 0.35}, {"step": 8, "train/loss": 0.6, "valid/error": 0.3}, {"step": 10, "train/loss": 0.55, "valid/error": 0.29}]}

{"name": "blew-up", "params": {"lr": 3.0}, "max_train_steps": 10, "curve": [{"step": 2, "train/loss": 2.4, "valid/error": 0.8}, {"step": 4, "train/loss": 9.5, "valid/error": 0.85}, {"step": 6, "train/loss": "nan", "valid/error": 0.9}, {"step": 8, "train/loss": "nan", "valid/error": 0.9}], "state": "diverged"}
{"name": "short", "params": {"lr": 0.01}, "max_train_steps": 4, "curve": [{"step": 2, "train/loss": 3.0, "valid/error": 0.6}, {"step": 4, "train/loss": 2.0, "valid/error": 0.4}]}
{"name": "stopped", "params": {"lr": 1.0}, "max_train_steps": 10, "curve": [{"step": 2, "train/loss": 2.6, "valid/error": 0.75}], "state": "diverged", "message": "loss became NaN after 1 of 5 evaluations"}
"#;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("runs.jsonl"), RUNS).unwrap();
        std::fs::create_dir(dir.path().join("trial")).unwrap();
        Setup { dir }
    }

    fn runs(&self) -> PathBuf {
        self.dir.path().join("runs.jsonl")
    }

    fn trial_dir(&self) -> PathBuf {
        self.dir.path().join("trial")
    }

    fn env(&self, run: ParamValue, budget: u64, attempt: u32) -> TrialEnv {
        let mut params = Params::default();
        params.set("runs", ParamValue::Str(self.runs().display().to_string()));
        params.set("run", run);
        TrialEnv {
            params,
            max_train_steps: budget,
            eval_every: 1,
            seed: 0,
            trial_dir: self.trial_dir(),
            metrics_file: self.trial_dir().join(format!("attempt-{attempt}.metrics.jsonl")),
            checkpoint_every: 0,
            checkpoint_steps: vec![],
            resume_from: None,
        }
    }

    fn lines(&self, attempt: u32) -> Vec<String> {
        let text = std::fs::read_to_string(self.trial_dir().join(format!("attempt-{attempt}.metrics.jsonl"))).unwrap();
        text.lines().map(str::to_string).collect()
    }
}

fn replay(env: &TrialEnv) -> RunEnd {
    run("replay", env, &AtomicBool::new(false)).unwrap_or_else(|e| panic!("{e}"))
}

fn replay_err(env: &TrialEnv) -> String {
    match run("replay", env, &AtomicBool::new(false)) {
        Ok(end) => panic!("expected an error, got {end:?}"),
        Err(e) => e.to_string(),
    }
}

fn int(i: i64) -> ParamValue {
    ParamValue::Int(i)
}

#[test]
fn a_complete_run_is_reported_exactly_up_to_the_budget() {
    let s = Setup::new();
    assert_eq!(replay(&s.env(int(0), 6, 1)), RunEnd::Finished);
    assert_eq!(
        s.lines(1),
        [
            r#"{"event":"budget_independent","step":6}"#,
            r#"{"step":0,"split":"valid","metrics":{"error":0.9}}"#,
            r#"{"step":2,"split":"train","metrics":{"loss":2.5}}"#,
            r#"{"step":2,"split":"valid","metrics":{"error":0.7,"loss":1.8}}"#,
            r#"{"step":2,"metrics":{"lr":0.1,"epoch":1.0}}"#,
            r#"{"step":4,"split":"train","metrics":{"loss":1.25}}"#,
            r#"{"step":4,"split":"valid","metrics":{"error":0.5,"loss":1.5}}"#,
            r#"{"step":6,"split":"train","metrics":{"loss":0.8}}"#,
            r#"{"step":6,"split":"valid","metrics":{"error":0.35}}"#,
        ]
    );
}

#[test]
fn a_recorded_nan_is_reported_and_ends_the_run() {
    let s = Setup::new();
    assert_eq!(replay(&s.env(ParamValue::Str("blew-up".into()), 10, 1)), RunEnd::Finished);
    assert_eq!(
        s.lines(1),
        [
            r#"{"event":"budget_independent","step":10}"#,
            r#"{"step":2,"split":"train","metrics":{"loss":2.4}}"#,
            r#"{"step":2,"split":"valid","metrics":{"error":0.8}}"#,
            r#"{"step":4,"split":"train","metrics":{"loss":9.5}}"#,
            r#"{"step":4,"split":"valid","metrics":{"error":0.85}}"#,
            r#"{"step":6,"split":"train","metrics":{"loss":"nan"}}"#,
            r#"{"step":6,"split":"valid","metrics":{"error":0.9}}"#,
        ],
        "nothing after the first non-finite loss"
    );
    // Read to a budget before the blow-up, the same run is healthy.
    let s = Setup::new();
    replay(&s.env(int(1), 4, 1));
    assert_eq!(s.lines(1).len(), 5);
    assert!(s.lines(1).iter().all(|l| !l.contains("nan")));
}

#[test]
fn a_run_recorded_as_diverged_whose_curve_stops_reports_nan_at_the_next_step() {
    let s = Setup::new();
    replay(&s.env(int(3), 10, 1));
    assert_eq!(
        s.lines(1),
        [
            r#"{"event":"budget_independent","step":10}"#,
            r#"{"step":2,"split":"train","metrics":{"loss":2.6}}"#,
            r#"{"step":2,"split":"valid","metrics":{"error":0.75}}"#,
            r#"{"step":3,"split":"train","metrics":{"loss":"nan"}}"#,
        ]
    );
    // Within a budget the recorded run lived through, nothing is made up.
    let s = Setup::new();
    replay(&s.env(int(3), 2, 1));
    assert_eq!(s.lines(1).len(), 3);
    assert!(s.lines(1).iter().all(|l| !l.contains("nan")));
}

#[test]
fn a_run_shorter_than_the_budget_just_ends() {
    let s = Setup::new();
    assert_eq!(replay(&s.env(ParamValue::Str("short".into()), 10, 1)), RunEnd::Finished);
    assert_eq!(
        s.lines(1),
        [
            r#"{"event":"budget_independent","step":10}"#,
            r#"{"step":2,"split":"train","metrics":{"loss":3.0}}"#,
            r#"{"step":2,"split":"valid","metrics":{"error":0.6}}"#,
            r#"{"step":4,"split":"train","metrics":{"loss":2.0}}"#,
            r#"{"step":4,"split":"valid","metrics":{"error":0.4}}"#,
        ]
    );
}

#[test]
fn checkpoints_at_the_asked_steps_and_a_resume_reports_the_rest() {
    let s = Setup::new();
    // Rung 0 of a ladder: budget 4, the next rung resumes from step 4; also every 3 steps.
    let mut env = s.env(int(0), 4, 1);
    env.checkpoint_every = 3;
    env.checkpoint_steps = vec![4];
    replay(&env);
    let lines = s.lines(1);
    assert_eq!(lines[5], r#"{"event":"checkpoint","step":3,"path":"replay-3.json"}"#, "{lines:#?}");
    assert_eq!(lines.last().unwrap(), r#"{"event":"checkpoint","step":4,"path":"replay-4.json"}"#);
    assert_eq!(lines.len(), 9);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(s.trial_dir().join("replay-4.json")).unwrap()).unwrap();
    assert_eq!((saved["step"].as_u64(), saved["run"].as_u64(), saved["name"].as_str()), (Some(4), Some(0), Some("good")));
    assert!(!s.trial_dir().join("replay-4.json.tmp").exists());

    // Rung 1: budget 10, resumed from the checkpoint (as announced: relative to the trial dir).
    let mut env = s.env(int(0), 10, 2);
    env.resume_from = Some(s.trial_dir().join("replay-4.json"));
    replay(&env);
    let resumed = s.lines(2);
    // From scratch at budget 10, for comparison.
    replay(&s.env(int(0), 10, 3));
    let scratch = s.lines(3);
    assert_eq!(resumed[0], r#"{"event":"budget_independent","step":10}"#);
    // The checkpoint's step again, then everything after it: the tail of the run from scratch.
    let from = scratch.iter().position(|l| l.starts_with(r#"{"step":4,"#)).unwrap();
    assert_eq!(resumed[1..], scratch[from..], "resumed: {resumed:#?}");
}

#[test]
fn a_stopped_replay_checkpoints_the_step_it_stopped_at() {
    let s = Setup::new();
    let end = run("replay", &s.env(int(0), 10, 1), &AtomicBool::new(true)).unwrap();
    assert_eq!(end, RunEnd::Stopped { step: 0 }, "the first step with anything to report");
    assert_eq!(s.lines(1).last().unwrap(), r#"{"event":"checkpoint","step":0,"path":"replay-0.json"}"#);
}

#[test]
fn a_resume_refuses_another_run_a_changed_file_and_a_step_past_the_budget() {
    let s = Setup::new();
    let mut env = s.env(int(0), 4, 1);
    env.checkpoint_steps = vec![4];
    replay(&env);
    let checkpoint = s.trial_dir().join("replay-4.json");

    let mut other = s.env(int(2), 10, 2);
    other.resume_from = Some(checkpoint.clone());
    let e = replay_err(&other);
    assert!(
        e.contains("cannot resume from checkpoint") && e.contains("written replaying run 0 but this trial replays run 2"),
        "{e}"
    );

    let mut shorter = s.env(int(0), 3, 2);
    shorter.resume_from = Some(checkpoint.clone());
    let e = replay_err(&shorter);
    assert!(e.contains("at step 4, past this run's budget HORIZON_MAX_TRAIN_STEPS = 3"), "{e}");

    // The file changed under the study: run 0 is now another run.
    std::fs::write(s.runs(), RUNS.replacen("\"valid/error\": 0.5,", "\"valid/error\": 0.51,", 1)).unwrap();
    let mut changed = s.env(int(0), 10, 2);
    changed.resume_from = Some(checkpoint);
    let e = replay_err(&changed);
    assert!(
        e.contains("is not the run the checkpoint was written from") && e.contains("restore it, or start a new study"),
        "{e}"
    );

    let mut missing = s.env(int(0), 10, 2);
    missing.resume_from = Some(s.trial_dir().join("replay-9.json"));
    assert!(replay_err(&missing).contains("replay-9.json"));
}

#[test]
fn bad_parameters_and_files_are_refused_with_the_fix() {
    let s = Setup::new();
    let e = replay_err(&s.env(int(4), 10, 1));
    assert!(e.contains("parameter run = 4 is out of range") && e.contains("has 4 runs, numbered 0 to 3"), "{e}");
    assert!(e.contains("high = 3"), "{e}");
    let e = replay_err(&s.env(int(-1), 10, 1));
    assert!(e.contains("parameter run = -1 is out of range"), "{e}");

    let e = replay_err(&s.env(ParamValue::Str("nope".into()), 10, 1));
    assert!(e.contains("no run in") && e.contains("is named \"nope\"") && e.contains("good, blew-up, short, stopped"), "{e}");

    let e = replay_err(&s.env(ParamValue::Bool(true), 10, 1));
    assert!(e.contains("parameter run = true is invalid"), "{e}");

    let mut env = s.env(int(0), 10, 1);
    env.params.set("runs", ParamValue::Str(s.dir.path().join("absent.jsonl").display().to_string()));
    let e = replay_err(&env);
    assert!(e.contains("parameter runs = ") && e.contains("absent.jsonl: cannot read"), "{e}");

    let mut env = s.env(int(0), 10, 1);
    env.params = Params::default();
    let e = replay_err(&env);
    assert!(e.contains("parameter runs is not set") && e.contains("[params.runs] type = \"fixed\""), "{e}");

    // A malformed file: the import parser's message, with the line and the field.
    std::fs::write(s.runs(), "{\"max_train_steps\": 5, \"curve\": [{\"step\": 9, \"valid/error\": 0.1}]}\n").unwrap();
    let e = replay_err(&s.env(int(0), 10, 1));
    assert!(e.contains("runs.jsonl:1: curve[0].step: step 9 is beyond max_train_steps 5"), "{e}");

    // The optimizer parameters the trainers take mean nothing to a recording.
    let mut env = s.env(int(0), 10, 1);
    env.params.set("learning_rate", ParamValue::Float(0.1));
    let e = run("replay", &env, &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(&e, WorkloadError::UnknownParam { accepted, .. } if accepted == "runs, run"), "{e}");
}

#[test]
fn the_plan_is_plain_data() {
    let s = Setup::new();
    let runs = horizon_import::parse_jsonl(s.runs()).unwrap();
    let good = &runs[0].trial;
    let steps = horizon_workloads::replay::plan(good, 10, Some(8), |s| s == 9);
    let got: Vec<(u64, usize, bool)> = steps.iter().map(|s| (s.step, s.values.len(), s.checkpoint)).collect();
    assert_eq!(got, [(8, 2, false), (9, 0, true), (10, 2, false)]);
}
