//! `horizon watch` and `horizon run --json`: a live view of a study run by another process, and
//! the run's events as JSON lines.

mod util;

use std::process::Stdio;

use serde_json::Value;
use util::*;

#[test]
fn watch_shows_a_study_another_process_runs_and_stops_cleanly_on_ctrl_c() {
    let s = TestStudy::new(StudyOptions { trials: 2, mode: "gate", ..Default::default() });
    let gate = s.path().join("gate");
    let mut run = s
        .cmd(&["run", "study.toml", "--no-progress", "--jobs", "2", "--json"])
        .env("GATE", &gate)
        .stdout(std::fs::File::create(s.path().join("run.stdout")).unwrap())
        .stderr(std::fs::File::create(s.path().join("run.stderr")).unwrap())
        .spawn()
        .unwrap();
    wait_for("both trials to start", LONG, || s.started_markers() == 2);
    // Both report step 10 before the gate: the view shows them running there, with the value.
    wait_for("the view to show both at step 10", LONG, || {
        let out = s.horizon(&["watch", "study.toml", "--once"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("running (2):") && text.matches(": step 10/100  valid/loss ").count() == 2
    });

    // The continuous view, not on a terminal: a line per change.
    let log = s.path().join("watch.stdout");
    let mut watch = s
        .cmd(&["watch", "study.toml", "--every", "0.1"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the first line", LONG, || std::fs::read_to_string(&log).unwrap_or_default().contains("2 running"));
    std::fs::write(&gate, "").unwrap();
    assert!(run.wait().unwrap().success());
    wait_for("the view to see the study finish", LONG, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("2 complete; best valid/loss"))
    });
    send_signal(&watch, libc::SIGINT);
    let status = watch.wait().unwrap();
    assert!(status.success(), "watch ends cleanly on Ctrl-C: {status:?}");

    // The run's stdout was its events, one JSON object per line, ending with how it ended.
    let events: Vec<Value> = std::fs::read_to_string(s.path().join("run.stdout"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(events.iter().all(|e| e["schema"] == "horizon.event/1"));
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"finished"));
    assert_eq!(kinds.iter().filter(|k| **k == "trial_started").count(), 2);
    let finished: Vec<&Value> = events.iter().filter(|e| e["event"] == "trial_finished").collect();
    assert_eq!(finished.len(), 2);
    for f in &finished {
        assert_eq!(f["state"], "complete");
        assert!(f["best_value"].as_f64().is_some() && f["best_step"].as_u64().is_some(), "{f}");
    }
    // Progress carries the step and the best value so far.
    assert!(events.iter().any(|e| e["event"] == "progress" && e["step"] == 10 && e["best_value"].as_f64().is_some()));
    let last = events.last().unwrap();
    assert_eq!(last["stopped"], false);
    let trials = s.trials();
    let best =
        trials.iter().min_by(|a, b| a["best_value"].as_f64().unwrap().total_cmp(&b["best_value"].as_f64().unwrap())).unwrap();
    assert_eq!(last["best"]["number"], best["number"]);
}

#[test]
fn a_study_in_rounds_stopped_between_rounds_says_it_is_unfinished() {
    let extra = "[[round]]\nmax_train_steps = 50\ntrials = 1\n\n[[round]]\nmax_train_steps = 100\ncarry = 1\ntrials = 0\n";
    let s = TestStudy::new(StudyOptions { trials: 1, mode: "gate", extra: extra.into(), ..Default::default() });
    let gate = s.path().join("gate");
    let mut run = s
        .cmd(&["run", "study.toml", "--no-progress"])
        .env("GATE", &gate)
        .stdout(std::fs::File::create(s.path().join("run.stdout")).unwrap())
        .stderr(std::fs::File::create(s.path().join("run.stderr")).unwrap())
        .spawn()
        .unwrap();
    wait_for("round 1's trial to start", LONG, || s.started_markers() == 1);
    // Ctrl-C once: round 1's trial finishes, round 2 does not start.
    send_signal(&run, libc::SIGINT);
    wait_for("the drain to be announced", LONG, || s.output_of("run").contains("stopping: no new trials"));
    std::fs::write(&gate, "").unwrap();
    let status = run.wait().unwrap();
    let out = s.output_of("run");
    assert_eq!(status.code(), Some(130), "round 2 never ran: the study is not finished\n{out}");
    assert!(out.contains("stopped with its later rungs or rounds left; `horizon run study.toml` resumes the study"), "{out}");
}
