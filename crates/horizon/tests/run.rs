//! End-to-end tests of `horizon run` with real trainer processes and a real SQLite database.

mod util;

use std::collections::BTreeSet;

use util::*;

#[test]
fn a_study_records_every_trial_with_its_retrospective_best_step() {
    let s = TestStudy::new(StudyOptions { trials: 5, ..Default::default() });
    let out = s.run(&["--jobs", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(trials.len(), 5);
    let db = s.db();
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        // Recompute the selection independently from the stored curve.
        let number = t["number"].as_u64().unwrap();
        let mut stmt = db
            .prepare("SELECT m.step, m.value FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.number = ?1 AND m.name = 'valid/loss' ORDER BY m.step")
            .unwrap();
        let curve: Vec<(u64, f64)> =
            stmt.query_map([number], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
        assert_eq!(curve.len(), 10, "one evaluation every 10 of 100 steps");
        let min = curve.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
        let first_best = curve.iter().find(|c| c.1 == min).unwrap().0;
        assert_eq!(t["best_step"].as_u64().unwrap(), first_best, "{t}");
        assert_eq!(t["best_value"].as_f64().unwrap(), min);
        assert_eq!(t["final_step"].as_u64().unwrap(), 100);
        assert_eq!(t["final_value"].as_f64().unwrap(), curve.last().unwrap().1);
    }
    let indices: BTreeSet<i64> =
        db.prepare("SELECT sample_index FROM trials").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(indices, (0..5).collect());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("best step") && stdout.contains("best valid/loss"), "{stdout}");
    assert!(stdout.contains("best: trial "), "{stdout}");
}

#[test]
fn a_failing_trainer_is_retried_then_failed_and_its_stderr_shown() {
    let s = TestStudy::new(StudyOptions { trials: 1, mode: "fail", trainer: "retries = 1".into(), ..Default::default() });
    let out = s.run(&[]);
    assert!(out.status.success(), "a failed trial is data, not a horizon error: {}", text(&out));
    let t = &s.trials()[0];
    assert_eq!(t["state"], "failed");
    assert_eq!(t["attempts"], 2);
    assert_eq!(t["failures"], 2);
    assert!(t["message"].as_str().unwrap().contains("exited with status 3"), "{t}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ValueError: the fixture failed on purpose"), "{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    assert!(s.trial_dir(0).join("attempt-1.stderr").is_file() && s.trial_dir(0).join("attempt-2.stderr").is_file());
}

#[test]
fn a_flaky_trainer_succeeds_on_its_retry() {
    let s = TestStudy::new(StudyOptions { trials: 2, mode: "flaky", trainer: "retries = 2".into(), ..Default::default() });
    assert!(s.run(&[]).status.success());
    for t in s.trials() {
        assert_eq!(t["state"], "complete", "{t}");
        assert_eq!(t["attempts"], 2);
        assert_eq!(t["failures"], 1);
    }
    // The retry started from scratch: only the second attempt's metrics are stored.
    assert_eq!(
        s.count("SELECT COUNT(*) FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.number = 0 AND m.name = 'valid/loss'"),
        10
    );
}

#[test]
fn a_nan_loss_marks_the_trial_diverged_and_stops_it() {
    let s = TestStudy::new(StudyOptions {
        trials: 1,
        mode: "nan",
        trainer: "retries = 3\ntimeout = \"120s\"\nkill_grace = \"2s\"".into(),
        ..Default::default()
    });
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let t = &s.trials()[0];
    assert_eq!(t["state"], "diverged", "{t}");
    assert_eq!(t["attempts"], 1, "divergence is not retried");
    let message = t["message"].as_str().unwrap();
    assert!(message.contains("train/loss was NaN at step 20"), "{message}");
    assert_eq!(t["best_step"], 10, "the finite evaluation before the NaN is still selected");
    let pid = s.argv_record(0)["pid"].as_i64().unwrap();
    assert!(!pid_alive(pid), "the diverged trainer was stopped");
}

#[test]
fn a_hanging_trainer_is_killed_by_the_timeout() {
    let s = TestStudy::new(StudyOptions {
        trials: 1,
        mode: "hang",
        trainer: "timeout = \"1s\"\nkill_grace = \"1s\"".into(),
        ..Default::default()
    });
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let t = &s.trials()[0];
    assert_eq!(t["state"], "failed");
    assert!(t["message"].as_str().unwrap().contains("timed out after 1s"), "{t}");
    assert!(!pid_alive(s.argv_record(0)["pid"].as_i64().unwrap()));
}

#[test]
fn a_trainer_ignoring_sigterm_is_killed_after_the_grace_period() {
    let s = TestStudy::new(StudyOptions {
        trials: 1,
        mode: "ignore-term",
        trainer: "timeout = \"1s\"\nkill_grace = \"1s\"".into(),
        ..Default::default()
    });
    let start = std::time::Instant::now();
    let out = s.run(&[]);
    let took = start.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let t = &s.trials()[0];
    assert_eq!(t["state"], "failed");
    assert!(t["message"].as_str().unwrap().contains("timed out"), "{t}");
    assert!(!pid_alive(s.argv_record(0)["pid"].as_i64().unwrap()), "SIGKILL ended it");
    // It ignored SIGTERM, so it lived through the grace period: at least timeout + grace.
    assert!(took >= std::time::Duration::from_secs(2), "took {took:?}");
    let exit: Option<i64> = s.db().query_row("SELECT exit_code FROM attempts", [], |r| r.get(0)).unwrap();
    assert_eq!(exit, None, "killed by a signal, not an exit");
}

#[test]
fn malformed_metric_lines_are_warnings_not_crashes() {
    let s = TestStudy::new(StudyOptions { trials: 1, mode: "malformed", ..Default::default() });
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.trials()[0]["state"], "complete");
    let warnings: Vec<String> = s
        .db()
        .prepare("SELECT message FROM warnings")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[0].contains("metrics line 1: not JSON"), "{warnings:?}");
    assert!(warnings[1].contains("\"step\" must be a non-negative integer"), "{warnings:?}");
    assert!(warnings[2].contains("not a number"), "{warnings:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("trial 0: 3 warnings (lines ignored"), "{}", text(&out));
}

#[test]
fn parameter_values_reach_the_program_unchanged_without_a_shell() {
    let payload = r#"$(touch pwned); `touch pwned2` && echo 'hi' | cat > out; "quoted" \ * ~"#;
    let s = TestStudy::new(StudyOptions {
        trials: 1,
        args: vec!["--payload={payload}".into(), "literal {{braces}}".into()],
        extra: format!("[params.payload]\ntype = \"categorical\"\nchoices = [{payload:?}]\n"),
        ..Default::default()
    });
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let rec = s.argv_record(0);
    let argv: Vec<&str> = rec["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(argv[2], format!("--payload={payload}"));
    assert_eq!(argv[3], "literal {braces}");
    assert_eq!(rec["params"]["payload"], payload, "HORIZON_PARAMS carries it too");
    for dir in [s.path().to_path_buf(), s.trial_dir(0)] {
        assert!(!dir.join("pwned").exists() && !dir.join("pwned2").exists() && !dir.join("out").exists());
    }
}

#[test]
fn checkpoints_keep_the_best_and_the_latest() {
    let s = TestStudy::new(StudyOptions {
        trials: 2,
        mode: "checkpoint",
        extra: "[checkpoints]\nkeep_best = 1\nkeep_latest = true\n".into(),
        ..Default::default()
    });
    assert!(s.run(&[]).status.success());
    for t in s.trials() {
        let n = t["number"].as_u64().unwrap();
        let best = t["best_step"].as_u64().unwrap();
        let mut on_disk: Vec<String> = std::fs::read_dir(s.trial_dir(n))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f.starts_with("ckpt-"))
            .collect();
        on_disk.sort();
        let mut expected = vec![format!("ckpt-{best}.json"), "ckpt-100.json".to_string()];
        expected.sort();
        expected.dedup();
        assert_eq!(on_disk, expected, "trial {n}");
        let live = s.count(&format!(
            "SELECT COUNT(*) FROM checkpoints c JOIN trials t ON t.id = c.trial_id WHERE t.number = {n} AND c.deleted = 0"
        ));
        assert_eq!(live as usize, expected.len());
    }
}

#[test]
fn read_commands_agree_with_the_database() {
    let s = TestStudy::new(StudyOptions { trials: 4, ..Default::default() });
    assert!(s.run(&["-j", "2"]).status.success());
    let trials = s.trials();
    let best =
        trials.iter().min_by(|a, b| a["best_value"].as_f64().unwrap().total_cmp(&b["best_value"].as_f64().unwrap())).unwrap();
    let out = s.horizon(&["best", "study.toml", "--json"]);
    let reported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reported["number"], best["number"]);
    let out = s.horizon(&["best", "study.toml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("reproduce (fresh trial directory") && text.contains(" env ") && text.contains(" python3 "), "{text}");
    let status = s.horizon(&["status", s.study_dir().to_str().unwrap()]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("4 of 4: 4 complete"), "{status}");
    let status: serde_json::Value = serde_json::from_slice(&s.horizon(&["status", "study.toml", "--json"]).stdout).unwrap();
    assert_eq!(status["states"]["complete"], 4);
    assert_eq!(status["best"]["number"], best["number"]);
    let only_failed = s.horizon(&["trials", "study.toml", "--json", "--state", "failed"]);
    assert!(only_failed.stdout.is_empty());
}

#[test]
fn gpus_are_handed_out_one_per_running_trial() {
    let s = TestStudy::new(StudyOptions { trials: 4, trainer: "gpus = [0, \"GPU-abc\"]".into(), ..Default::default() });
    assert!(s.run(&["-j", "8"]).status.success());
    for n in 0..4 {
        let cuda = s.argv_record(n)["cuda"].as_str().unwrap().to_string();
        assert!(cuda == "0" || cuda == "GPU-abc", "{cuda}");
    }
    // Two GPUs cap the run at two trials at once.
    let out = s.horizon(&["run", "study.toml", "-j", "8"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 at a time"));
}

#[test]
fn bad_study_files_name_the_file_the_field_and_the_fix() {
    let s = TestStudy::new(StudyOptions::default());
    let good = std::fs::read_to_string(&s.spec).unwrap();
    let cases = [
        (good.replace("eval_every = 10", "eval_every = 10\nevaluate = 3"), "evaluate"),
        (good.replace("low = 0.01", "low = 0"), "params.lr.low"),
        (good.replace("metric = \"valid/loss\"", "metric = \"valid/acc\""), "objective.metric"),
        (good.replace(util::FIXTURE, "/nonexistent/train.py"), "trainer.command[1]"),
        (good.replace("\"python3\"", "\"no-such-program-xyz\""), "trainer.command[0]"),
    ];
    for (text, field) in cases {
        std::fs::write(&s.spec, &text).unwrap();
        let out = s.run(&[]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("study.toml"), "{err}");
        assert!(err.contains(field), "expected {field} in: {err}");
        assert!(err.contains("fix:") || err.contains("expected"), "{err}");
        assert!(!s.study_dir().join("horizon.db").exists(), "nothing is created for a bad file");
    }
}

#[test]
fn changing_the_budget_of_a_stored_study_is_refused() {
    let mut o = StudyOptions { trials: 1, ..Default::default() };
    let s = TestStudy::new(StudyOptions { trials: 1, ..Default::default() });
    assert!(s.run(&[]).status.success());
    o.max_train_steps = 200;
    s.write_spec(&o);
    let out = s.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_train_steps") && err.contains("new [study] name"), "{err}");
}

#[test]
fn analyze_judges_the_stored_trials_and_agrees_with_them() {
    let s = TestStudy::new(StudyOptions { trials: 6, ..Default::default() });
    assert!(s.run(&["-j", "2"]).status.success());
    let out = s.horizon(&["analyze", "study.toml", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a["schema"], "horizon.analysis/1");
    assert_eq!(a["objective"], "valid/loss");
    let analyzed = a["trials"].as_array().unwrap();
    let stored = s.trials();
    assert_eq!(analyzed.len(), stored.len());
    for (x, y) in analyzed.iter().zip(&stored) {
        assert_eq!(x["number"], y["number"]);
        assert_eq!(x["best_step"], y["best_step"], "analysis and run select the same step");
    }
    // The verdict must be one of the documented ones, with a suggestion.
    let verdict = a["budget"]["feasible"]["verdict"].as_str().unwrap();
    assert!(["too_high", "too_low", "adequate", "insufficient_evidence"].contains(&verdict), "{verdict}");
    let text_out = String::from_utf8(s.horizon(&["analyze", "study.toml"]).stdout).unwrap();
    assert!(text_out.contains("max_train_steps"), "{text_out}");
}

#[test]
fn a_changed_budget_is_refused_and_leaves_the_stored_study_as_it_was() {
    let s = TestStudy::new(StudyOptions { trials: 2, ..Default::default() });
    assert!(s.run(&[]).status.success());
    s.write_spec(&StudyOptions { trials: 3, max_train_steps: 200, ..Default::default() });
    let out = s.run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_train_steps") && err.contains("new [study] name"), "{err}");
    // Nothing ran and the stored spec is still the one the trials were run with.
    assert_eq!(s.trials().len(), 2);
    let status: serde_json::Value = serde_json::from_slice(&s.horizon(&["status", "study.toml", "--json"]).stdout).unwrap();
    assert_eq!((status["max_train_steps"].as_u64(), status["planned_trials"].as_u64()), (Some(100), Some(2)));
}
