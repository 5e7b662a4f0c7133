//! The library path: a study whose trials are Rust closures, with real SQLite storage.

use std::sync::Arc;
use std::sync::mpsc::channel;

use horizon_core::StudySpec;
use horizon_core::trial::TrialState;
use horizon_runner::attempt::{InProcessTrial, Program};
use horizon_runner::resolve::ResolvedStudy;
use horizon_runner::worker::{Event, Worker, WorkerOptions};
use horizon_store::Storage;

fn study(dir: &std::path::Path, trials: u64) -> ResolvedStudy {
    let text = format!(
        r#"
[study]
name = "lib"
trials = {trials}
max_train_steps = 50
eval_every = 5
[objective]
metric = "valid/loss"
direction = "minimize"
[trainer]
command = ["true"]
metrics = ["valid/loss"]
retries = 1
[params.x]
type = "float"
low = -1.0
high = 1.0
"#
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, &text).unwrap();
    ResolvedStudy::new(StudySpec::parse(&text, "study.toml").unwrap(), &path).unwrap()
}

fn train(t: &mut InProcessTrial<'_>) -> Result<(), String> {
    let x = t.params.get("x").unwrap().as_f64().unwrap();
    if x > 0.8 {
        return Err("x too large for this model".into());
    }
    let mut step = t.eval_every;
    while step <= t.max_train_steps && !t.should_stop() {
        let loss = if x < -0.8 { f64::NAN } else { x * x + (step as f64 / 50.0 - 0.5).powi(2) };
        t.report(step, "valid", &[("loss", loss)]);
        step += t.eval_every;
    }
    Ok(())
}

#[test]
fn closures_run_as_trials_with_the_same_recording_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let study = study(tmp.path(), 40);
    let storage = Arc::new(study.open_storage().unwrap());
    let (tx, rx) = channel();
    let worker = Worker::new(study, storage.clone(), WorkerOptions { jobs: 3, ..Default::default() }, tx)
        .unwrap()
        .with_program(Program::InProcess(Arc::new(train)));
    let id = worker.study().id;
    let summary = worker.run().unwrap();
    let events: Vec<Event> = rx.into_iter().collect();
    let trials = storage.trials(id).unwrap();
    assert_eq!(trials.len(), 40);
    assert_eq!(summary.completed + summary.diverged + summary.failed, 40);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::TrialFinished(_))).count(), summary.attempts);
    for t in &trials {
        let x = t.params.get("x").unwrap().as_f64().unwrap();
        let expected = if x > 0.8 { TrialState::Failed } else if x < -0.8 { TrialState::Diverged } else { TrialState::Complete };
        assert_eq!(t.state, expected, "x = {x}");
        match t.state {
            // The bowl's bottom is at step 25 of 50.
            TrialState::Complete => assert_eq!(t.best_step, Some(25)),
            TrialState::Failed => assert_eq!((t.attempt, t.failures), (2, 2), "one retry"),
            _ => assert_eq!(t.attempt, 1, "divergence is not retried"),
        }
    }
    assert!(trials.iter().any(|t| t.state == TrialState::Failed) && trials.iter().any(|t| t.state == TrialState::Diverged),
        "40 Halton points in [-1, 1] reach both ends");
}
