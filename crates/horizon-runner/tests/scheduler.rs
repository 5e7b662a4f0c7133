//! The policy hook: a worker's scheduler stops running trials, which end complete with the
//! scheduler's reason (never failed, never incomplete), for closures and subprocesses alike.

use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use horizon_core::StudySpec;
use horizon_core::decision::{Decision, StudyView};
use horizon_core::trial::TrialState;
use horizon_runner::attempt::{InProcessTrial, Program};
use horizon_runner::resolve::ResolvedStudy;
use horizon_runner::scheduler::from_fn;
use horizon_runner::worker::{Worker, WorkerOptions};
use horizon_store::Storage;

fn study(dir: &std::path::Path, command: &str) -> ResolvedStudy {
    let text = format!(
        r#"
[study]
name = "hook"
trials = 3
max_train_steps = 100
eval_every = 5
[objective]
metric = "valid/loss"
direction = "minimize"
[trainer]
command = {command}
metrics = ["valid/loss"]
kill_grace = "5s"
[params.x]
type = "float"
low = 0.0
high = 1.0
"#
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, &text).unwrap();
    ResolvedStudy::new(StudySpec::parse(&text, "study.toml").unwrap(), &path).unwrap()
}

/// Stop every running trial once its curve has reached step 20; record what it was shown.
fn stop_at_20(seen: Arc<Mutex<usize>>) -> Box<dyn horizon_runner::scheduler::Scheduler> {
    Box::new(from_fn(vec!["valid/loss".into()], move |view: &StudyView| {
        *seen.lock().unwrap() += 1;
        view.trials
            .iter()
            .filter(|t| t.state == TrialState::Running)
            .filter(|t| view.curve("valid/loss", t.number).last().is_some_and(|(step, _)| *step >= 20))
            .map(|t| Decision::Stop { trial: t.number, reason: format!("enough for trial {}", t.number) })
            .collect()
    }))
}

fn check_stopped(storage: &dyn Storage, id: i64) {
    let trials = storage.trials(id).unwrap();
    assert_eq!(trials.len(), 3);
    for t in &trials {
        // Stopped well short of its budget (below the 90% that `incomplete` is about), yet
        // complete: a policy stopped it, the trainer did not end short on its own.
        assert_eq!(t.state, TrialState::Complete, "{t:?}");
        let last = t.final_step.unwrap();
        assert!((20..90).contains(&last), "trial {}: stopped at {last}", t.number);
        assert_eq!(t.message.as_deref(), Some(format!("stopped at step {last} of 100: enough for trial {}", t.number).as_str()));
        assert_eq!(t.failures, 0);
    }
}

#[test]
fn a_schedulers_decision_ends_closures_as_complete_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let study = study(tmp.path(), r#"["true"]"#);
    let storage = study.open_storage().unwrap();
    let train = |t: &mut InProcessTrial<'_>| -> Result<(), String> {
        let mut step = t.eval_every;
        while step <= t.max_train_steps && !t.should_stop() {
            t.report(step, "valid", &[("loss", 1.0 / step as f64)]);
            std::thread::sleep(Duration::from_millis(40));
            step += t.eval_every;
        }
        Ok(())
    };
    let seen = Arc::new(Mutex::new(0));
    let (tx, _rx) = channel();
    let worker = Worker::new(study, storage.clone(), WorkerOptions { jobs: 3, ..Default::default() }, tx)
        .unwrap()
        .with_program(Program::InProcess(Arc::new(train)))
        .with_scheduler(stop_at_20(seen.clone()));
    let id = worker.study().id;
    let summary = worker.run().unwrap();
    assert_eq!((summary.completed, summary.incomplete, summary.failed), (3, 0, 0));
    assert!(*seen.lock().unwrap() > 0);
    check_stopped(storage.as_ref(), id);
}

#[test]
fn a_schedulers_decision_ends_subprocesses_as_complete_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    // A trainer that reports every 5 steps, slowly, and dies of SIGTERM as most do.
    let script = tmp.path().join("train.py");
    std::fs::write(
        &script,
        r#"
import json, os, time
out = open(os.environ["HORIZON_METRICS_FILE"], "a")
every = int(os.environ["HORIZON_EVAL_EVERY"])
for step in range(every, int(os.environ["HORIZON_MAX_TRAIN_STEPS"]) + 1, every):
    out.write(json.dumps({"step": step, "split": "valid", "metrics": {"loss": 1.0 / step}}) + "\n")
    out.flush()
    time.sleep(0.05)
"#,
    )
    .unwrap();
    let study = study(tmp.path(), &format!("[\"python3\", {:?}]", script.display().to_string()));
    let storage = study.open_storage().unwrap();
    let seen = Arc::new(Mutex::new(0));
    let (tx, _rx) = channel();
    let worker = Worker::new(study, storage.clone(), WorkerOptions { jobs: 3, ..Default::default() }, tx)
        .unwrap()
        .with_scheduler(stop_at_20(seen.clone()));
    let id = worker.study().id;
    let summary = worker.run().unwrap();
    assert_eq!((summary.completed, summary.incomplete, summary.failed), (3, 0, 0), "{summary:?}");
    check_stopped(storage.as_ref(), id);
}

#[test]
fn without_a_scheduler_nothing_is_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let study = study(tmp.path(), r#"["true"]"#);
    let storage = study.open_storage().unwrap();
    let train = |t: &mut InProcessTrial<'_>| -> Result<(), String> {
        let mut step = t.eval_every;
        while step <= t.max_train_steps && !t.should_stop() {
            t.report(step, "valid", &[("loss", 1.0 / step as f64)]);
            step += t.eval_every;
        }
        Ok(())
    };
    let (tx, _rx) = channel();
    let worker = Worker::new(study, storage.clone(), WorkerOptions { jobs: 3, ..Default::default() }, tx)
        .unwrap()
        .with_program(Program::InProcess(Arc::new(train)));
    let id = worker.study().id;
    worker.run().unwrap();
    assert!(
        storage
            .trials(id)
            .unwrap()
            .iter()
            .all(|t| t.state == TrialState::Complete && t.final_step == Some(100) && t.message.is_none())
    );
}
