//! Stopping and resuming: kill -9, Ctrl-C once and twice, and two workers on one study.
//! Real signals to the real binary; synchronisation through the database and marker files.

mod util;

use std::collections::BTreeSet;

use util::*;

fn gated(s: &TestStudy) -> std::path::PathBuf {
    s.path().join("gate")
}

fn numbers_and_indices(s: &TestStudy) -> (Vec<i64>, BTreeSet<i64>) {
    let db = s.db();
    let numbers = db
        .prepare("SELECT number FROM trials ORDER BY number")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let indices =
        db.prepare("SELECT sample_index FROM trials").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    (numbers, indices)
}

#[test]
fn kill_9_then_resume_loses_duplicates_and_skips_nothing() {
    // Phase 1: three trials run to completion.
    let mut o = StudyOptions { trials: 3, mode: "slow", ..Default::default() };
    let s = TestStudy::new(StudyOptions { trials: 3, mode: "slow", ..Default::default() });
    std::fs::write(gated(&s), "go").unwrap();
    let env_cmd = |args: &[&str]| {
        let mut c = s.cmd(args);
        c.env("GATE", gated(&s));
        c
    };
    assert!(env_cmd(&["run", "study.toml", "-j", "2"]).output().unwrap().status.success());
    let first: Vec<serde_json::Value> = s.trials();
    assert!(first.iter().all(|t| t["state"] == "complete"));

    // Phase 2: the study grows to 6 trials; trials 3 and 4 block on the gate; kill -9 horizon.
    o.trials = 6;
    s.write_spec(&o);
    std::fs::remove_file(gated(&s)).unwrap();
    for n in 0..3 {
        let _ = std::fs::remove_file(s.trial_dir(n).join("started"));
    }
    let mut child = env_cmd(&["run", "study.toml", "-j", "2", "--no-progress"])
        .env("FIXTURE_GRANDCHILD", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("two running trials", LONG, || s.started_markers() == 2);
    let pids: Vec<i64> = [3, 4].iter().map(|n| s.argv_record(*n)["pid"].as_i64().unwrap()).collect();
    send_signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    assert_eq!(s.count("SELECT COUNT(*) FROM trials WHERE state = 'running'"), 2, "left running by the dead worker");
    wait_for("the orphaned trainers to die with horizon", LONG, || pids.iter().all(|p| !pid_alive(*p)));
    let grandchildren: Vec<i64> = [3, 4].iter().map(|n| s.argv_record(*n)["grandchild"].as_i64().unwrap()).collect();
    assert!(grandchildren.iter().all(|p| pid_alive(*p)), "the parent-death signal reaches only the trainer");

    // Phase 3: resume.
    std::fs::write(gated(&s), "go").unwrap();
    let out = env_cmd(&["run", "study.toml", "-j", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    wait_for("the resuming worker to end the dead trainers' process groups", LONG, || {
        grandchildren.iter().all(|p| !pid_alive(*p))
    });
    let trials = s.trials();
    assert_eq!(trials.len(), 6);
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        let n = t["number"].as_u64().unwrap();
        let expected_attempts = if n == 3 || n == 4 { 2 } else { 1 };
        assert_eq!(t["attempts"], expected_attempts, "trial {n}: completed trials never rerun, interrupted ones rerun once");
    }
    for (before, after) in first.iter().zip(&trials) {
        assert_eq!(before["finished_at"], after["finished_at"], "completed trials are untouched");
    }
    let (numbers, indices) = numbers_and_indices(&s);
    assert_eq!(numbers, (0..6).collect::<Vec<_>>());
    assert_eq!(indices, (0..6).collect(), "the quasi-random sequence continued without gaps or reuse");
    let requeued = s.count("SELECT COUNT(*) FROM attempts WHERE outcome = 'waiting' AND message LIKE 'requeued: worker%'");
    assert_eq!(requeued, 2);
}

#[test]
fn two_workers_share_one_study_without_duplicates() {
    let s = TestStudy::new(StudyOptions { trials: 12, mode: "slow", ..Default::default() });
    let spawn = |tag: &str| {
        let mut c = s.cmd(&["run", "study.toml", "-j", "2", "--no-progress"]);
        c.env("GATE", gated(&s))
            .stdout(std::fs::File::create(s.path().join(format!("{tag}.out"))).unwrap())
            .stderr(std::fs::File::create(s.path().join(format!("{tag}.err"))).unwrap());
        c.spawn().unwrap()
    };
    let mut a = spawn("a");
    let mut b = spawn("b");
    // Each worker runs at most two trials at once, so four started trials means both work.
    wait_for("both workers to run two trials each", LONG, || s.started_markers() == 4);
    std::fs::write(gated(&s), "go").unwrap();
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let trials = s.trials();
    assert_eq!(trials.len(), 12);
    assert!(trials.iter().all(|t| t["state"] == "complete" && t["attempts"] == 1), "{trials:?}");
    let (numbers, indices) = numbers_and_indices(&s);
    assert_eq!(numbers, (0..12).collect::<Vec<_>>());
    assert_eq!(indices, (0..12).collect());
    assert_eq!(s.count("SELECT COUNT(DISTINCT pid) FROM attempts"), 2, "both processes ran trials");
    assert_eq!(s.count("SELECT COUNT(*) FROM attempts"), 12, "every trial ran exactly once");
}

#[test]
fn first_ctrl_c_drains_and_the_next_run_resumes() {
    let s = TestStudy::new(StudyOptions { trials: 5, mode: "gate", ..Default::default() });
    let spawn = |tag: &str| {
        let mut c = s.cmd(&["run", "study.toml", "-j", "2", "--no-progress"]);
        c.env("GATE", gated(&s))
            .stdout(std::fs::File::create(s.path().join(format!("{tag}.stdout"))).unwrap())
            .stderr(std::fs::File::create(s.path().join(format!("{tag}.stderr"))).unwrap());
        c.spawn().unwrap()
    };
    let mut child = spawn("first");
    wait_for("two running trials", LONG, || s.started_markers() == 2);
    send_signal(&child, libc::SIGINT);
    wait_for("horizon to acknowledge Ctrl-C", LONG, || s.output_of("first").contains("no new trials"));
    std::fs::write(gated(&s), "go").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", s.output_of("first"));
    assert_eq!(s.count("SELECT COUNT(*) FROM trials"), 2, "nothing new was launched");
    assert_eq!(s.count("SELECT COUNT(*) FROM trials WHERE state = 'complete'"), 2, "running trials finished");
    assert!(s.output_of("first").contains("resumes the study"));

    let out = s.cmd(&["run", "study.toml", "-j", "2"]).env("GATE", gated(&s)).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.count("SELECT COUNT(*) FROM trials WHERE state = 'complete'"), 5);
    assert_eq!(s.count("SELECT MAX(attempt) FROM trials"), 1);
}

#[test]
fn second_ctrl_c_terminates_running_trials_which_rerun_on_resume() {
    let s = TestStudy::new(StudyOptions {
        trials: 3,
        mode: "ignore-term",
        trainer: "kill_grace = \"1s\"".into(),
        ..Default::default()
    });
    let mut child = s.spawn_run(&["-j", "2"], "first");
    wait_for("two running trials", LONG, || s.started_markers() == 2);
    let pids: Vec<i64> = [0, 1].iter().map(|n| s.argv_record(*n)["pid"].as_i64().unwrap()).collect();
    send_signal(&child, libc::SIGINT);
    wait_for("horizon to acknowledge Ctrl-C", LONG, || s.output_of("first").contains("no new trials"));
    send_signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", s.output_of("first"));
    assert!(pids.iter().all(|p| !pid_alive(*p)), "trainers that ignore SIGTERM are killed after the grace period");
    assert_eq!(s.count("SELECT COUNT(*) FROM trials WHERE state = 'waiting'"), 2);
    assert_eq!(s.count("SELECT failures FROM trials WHERE number = 0"), 0, "an interruption is not a failure");
    let message: String = s.db().query_row("SELECT message FROM trials WHERE number = 0", [], |r| r.get(0)).unwrap();
    assert!(message.contains("interrupted"), "{message}");

    // Resume with a trainer that now finishes: the interrupted trials run again, then the rest.
    let out = s.cmd(&["run", "study.toml", "-j", "2"]).env("FIXTURE_MODE_OVERRIDE", "ok").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(trials.len(), 3);
    assert!(trials.iter().all(|t| t["state"] == "complete"), "{trials:?}");
    assert_eq!(trials[0]["attempts"], 2);
    assert_eq!(trials[1]["attempts"], 2);
    assert_eq!(trials[2]["attempts"], 1);
}

#[test]
fn sigterm_terminates_like_a_second_ctrl_c() {
    let s = TestStudy::new(StudyOptions { trials: 2, mode: "hang", ..Default::default() });
    let mut child = s.spawn_run(&["-j", "2"], "first");
    wait_for("two running trials", LONG, || s.started_markers() == 2);
    send_signal(&child, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(s.count("SELECT COUNT(*) FROM trials WHERE state = 'waiting'"), 2);
    assert_eq!(s.count("SELECT COUNT(*) FROM attempts WHERE exit_code IS NULL AND outcome = 'waiting'"), 2);
}
