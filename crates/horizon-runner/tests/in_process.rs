//! The library path: a study whose trials are Rust closures, with real SQLite storage.

use std::sync::Arc;
use std::sync::mpsc::channel;

use horizon_core::StudySpec;
use horizon_core::trial::TrialState;
use horizon_runner::attempt::{InProcessTrial, Program};
use horizon_runner::resolve::ResolvedStudy;
use horizon_runner::worker::{Event, Worker, WorkerOptions};

/// A study of `trials` closure trials of 50 steps, with extra `[trainer]` lines.
fn study_with(dir: &std::path::Path, trials: u64, trainer: &str) -> ResolvedStudy {
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
{trainer}
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

fn study(dir: &std::path::Path, trials: u64) -> ResolvedStudy {
    study_with(dir, trials, "retries = 1")
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
    let storage = study.open_storage().unwrap();
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
        let expected = if x > 0.8 {
            TrialState::Failed
        } else if x < -0.8 {
            TrialState::Diverged
        } else {
            TrialState::Complete
        };
        assert_eq!(t.state, expected, "x = {x}");
        match t.state {
            // The bowl's bottom is at step 25 of 50.
            TrialState::Complete => assert_eq!(t.best_step, Some(25)),
            TrialState::Failed => assert_eq!((t.attempt, t.failures), (2, 2), "one retry"),
            _ => assert_eq!(t.attempt, 1, "divergence is not retried"),
        }
    }
    assert!(
        trials.iter().any(|t| t.state == TrialState::Failed) && trials.iter().any(|t| t.state == TrialState::Diverged),
        "40 Halton points in [-1, 1] reach both ends"
    );
}

/// `trainer.stop_when`: a trial stops at the first evaluation where the criterion holds, and
/// counts as complete (what the learning-rate sweep relies on).
#[test]
fn stop_when_ends_a_trial_as_complete_at_the_first_step_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let text = r#"
[study]
name = "fit"
trials = 5
max_train_steps = 100
eval_every = 5
[objective]
metric = "valid/loss"
direction = "minimize"
[trainer]
command = ["true"]
metrics = ["valid/loss", "train/error"]
stop_when = "train/error <= 0"
[params.speed]
type = "discrete"
values = [0, 2, 3, 4, 20]
"#;
    let path = tmp.path().join("study.toml");
    std::fs::write(&path, text).unwrap();
    let study = ResolvedStudy::new(StudySpec::parse(text, "study.toml").unwrap(), &path).unwrap();
    let storage = study.open_storage().unwrap();
    let (tx, _rx) = channel();
    // Train error falls by `speed` percent per step; speed 0 never fits, speed 20 fits at the
    // first evaluation, before any objective value exists: it must not be stopped until its
    // objective arrives, or the trial would have no selection.
    let train = |t: &mut InProcessTrial<'_>| -> Result<(), String> {
        let speed = t.params.get("speed").unwrap().as_f64().unwrap();
        let mut step = t.eval_every;
        while step <= t.max_train_steps && !t.should_stop() {
            let error = (1.0 - speed * step as f64 / 100.0).max(0.0);
            t.report(step, "train", &[("error", error)]);
            if step == t.eval_every && t.should_stop() {
                return Err("told to stop before the objective was reported".into());
            }
            t.report(step, "valid", &[("loss", error + 0.1)]);
            step += t.eval_every;
        }
        Ok(())
    };
    let worker = Worker::new(study, storage.clone(), WorkerOptions::default(), tx)
        .unwrap()
        .with_program(Program::InProcess(Arc::new(train)));
    let id = worker.study().id;
    worker.run().unwrap();
    for t in storage.trials(id).unwrap() {
        let speed = t.params.get("speed").unwrap().as_f64().unwrap();
        assert_eq!(t.state, TrialState::Complete, "speed {speed}: {:?}", t.message);
        let last = storage.metrics(t.id).unwrap().iter().map(|m| m.step).max().unwrap();
        if speed == 0.0 {
            assert_eq!((last, t.message.as_deref()), (100, None), "never fits: trains the whole budget");
        } else {
            // The first multiple of 5 at which speed * step >= 100.
            let fit = (100.0 / speed / 5.0).ceil() as u64 * 5;
            assert_eq!(last, fit, "speed {speed} stops where it fits");
            let message = t.message.unwrap();
            assert!(
                message.contains(&format!("stopped at step {fit} of 100")) && message.contains("train/error <= 0 held"),
                "{message}"
            );
        }
    }
}

fn one_trial(dir: &std::path::Path, trainer: &str) -> ResolvedStudy {
    study_with(dir, 1, trainer)
}

fn run_one(
    study: ResolvedStudy,
    f: impl Fn(&mut InProcessTrial<'_>) -> Result<(), String> + Send + Sync + 'static,
) -> horizon_core::TrialRecord {
    let storage = study.open_storage().unwrap();
    let (tx, _rx) = channel();
    let worker =
        Worker::new(study, storage.clone(), WorkerOptions::default(), tx).unwrap().with_program(Program::InProcess(Arc::new(f)));
    let id = worker.study().id;
    worker.run().unwrap();
    storage.trials(id).unwrap().remove(0)
}

#[test]
fn closures_follow_stop_on_divergence_and_the_timeout_like_subprocesses() {
    // A NaN at step 10: stopped at once by default, trained on with stop_on_divergence = false;
    // diverged either way.
    let nan_at_10 = |t: &mut InProcessTrial<'_>| {
        let mut step = t.eval_every;
        while step <= t.max_train_steps && !t.should_stop() {
            t.report(step, "valid", &[("loss", if step == 10 { f64::NAN } else { 1.0 / step as f64 })]);
            step += t.eval_every;
        }
        Ok(())
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = run_one(one_trial(tmp.path(), ""), nan_at_10);
    assert_eq!((t.state, t.final_step), (TrialState::Diverged, Some(10)), "{t:?}");
    let tmp = tempfile::tempdir().unwrap();
    let t = run_one(one_trial(tmp.path(), "stop_on_divergence = false"), nan_at_10);
    assert_eq!((t.state, t.final_step), (TrialState::Diverged, Some(50)), "trained on: {t:?}");

    // A closure that would run forever: the timeout fails it, as it would a subprocess.
    let tmp = tempfile::tempdir().unwrap();
    let t = run_one(one_trial(tmp.path(), "timeout = \"1s\""), |t: &mut InProcessTrial<'_>| {
        t.report(5, "valid", &[("loss", 0.5)]);
        while !t.should_stop() {
            std::thread::yield_now();
        }
        Ok(())
    });
    assert_eq!(t.state, TrialState::Failed, "{t:?}");
    assert_eq!(t.message.as_deref(), Some("timed out after 1s"));

    // Returning early without a reason is incomplete, as for a subprocess.
    let tmp = tempfile::tempdir().unwrap();
    let t = run_one(one_trial(tmp.path(), ""), |t: &mut InProcessTrial<'_>| {
        t.report(5, "valid", &[("loss", 0.5)]);
        Ok(())
    });
    assert_eq!(t.state, TrialState::Incomplete, "{t:?}");
}
