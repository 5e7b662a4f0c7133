//! End-to-end tests of `horizon run` against misbehaving trainers (`fixtures/hostile.py`): what a
//! trainer writes must never make horizon delete or write outside the trial's directory, lose
//! stored data, record a short run as complete, or grow without bound.

mod util;

use std::path::Path;

use serde_json::Value;
use util::*;

const HOSTILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hostile.py");

/// A study of `trials` runs of the hostile trainer in `mode`, with extra trainer arguments and
/// TOML.
fn study(mode: &str, trials: u64, max_train_steps: u64, args: &[&str], extra: &str) -> TestStudy {
    let s = TestStudy::new(StudyOptions::default());
    let mut command = vec![format!("{:?}", "python3"), format!("{HOSTILE:?}"), format!("{:?}", format!("--mode={mode}"))];
    command.extend(args.iter().map(|a| format!("{a:?}")));
    let toml = format!(
        r#"
[study]
name = "hostile"
trials = {trials}
max_train_steps = {max_train_steps}
eval_every = 1

[objective]
metric = "valid/loss"
direction = "minimize"

[trainer]
command = [{command}]
metrics = ["valid/loss"]
kill_grace = "1s"

[params.x]
type = "float"
low = 0.0
high = 1.0

{extra}
"#,
        command = command.join(", ")
    );
    std::fs::write(&s.spec, toml).unwrap();
    s
}

fn warnings(s: &TestStudy, number: u64) -> Vec<String> {
    let db = s.db();
    let mut stmt = db
        .prepare("SELECT w.message FROM warnings w JOIN trials t ON t.id = w.trial_id WHERE t.number = ?1 ORDER BY w.id")
        .unwrap();
    stmt.query_map([number], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn checkpoint_announcements_cannot_delete_the_database_other_files_or_the_trial_directory() {
    let s = study("escape", 1, 30, &[], "[checkpoints]\nkeep_best = 1\nkeep_latest = false");
    // The file the trainer aims at outside the study, through `../../../elsewhere/file` and a
    // symbolic link.
    let elsewhere = s.path().join("horizon-runs/elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("file"), "precious").unwrap();
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", text(&out));

    let t = &s.trials()[0];
    assert_eq!(t["state"], "complete", "{t}");
    assert_eq!(std::fs::read_to_string(elsewhere.join("file")).unwrap(), "precious");
    assert!(s.study_dir().join("horizon.db").is_file(), "the database survived");
    let dir = s.trial_dir(0);
    for f in ["attempt-1.metrics.jsonl", "attempt-1.stdout", "attempt-1.stderr"] {
        assert!(dir.join(f).is_file(), "{f} survived");
    }
    // Retention still did its job on the real checkpoints: only the best (the last) is left.
    let kept: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ckpt-"))
        .collect();
    assert_eq!(kept, ["ckpt-30"], "{kept:?}");
    // Every hostile announcement was kept with a warning saying why.
    let w = warnings(&s, 0).join("\n");
    for expected in [
        "\"../../horizon.db\" (step 1) not deleted: it contains '..'",
        "\"../../../elsewhere/file\" (step 2) not deleted: it contains '..'",
        "\".\" (step 3) not deleted: it names the trial directory itself",
        "\"out/file\" (step 4) not deleted: it resolves (through a symbolic link) to outside the trial directory",
        "\"attempt-1.stdout\" (step 5) not deleted: it is one of horizon's own files",
        "(step 6) not deleted: it is one of horizon's own files",
    ] {
        assert!(w.contains(expected), "missing warning {expected:?} in:\n{w}");
    }
    // The empty path is refused by the protocol parser, before retention sees it.
    assert!(w.contains("a checkpoint event needs a non-empty string \"path\""), "{w}");
    // The study is still readable afterwards: nothing stored was lost.
    assert_eq!(s.count("SELECT COUNT(*) FROM metrics"), 30);
}

#[test]
fn a_trainer_that_stops_after_one_epoch_is_incomplete_and_kept_out_of_the_verdict() {
    let s = study("one-epoch", 6, 100, &[], "");
    let out = s.run(&["--jobs", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for t in s.trials() {
        assert_eq!(t["state"], "incomplete", "{t}");
        assert_eq!(t["attempts"], 1, "never retried: {t}");
        let m = t["message"].as_str().unwrap();
        assert!(m.contains("exited 0 at step 5 of 100"), "{m}");
    }
    assert!(stdout.contains("incomplete"), "the run's own output says so: {stdout}");

    let out = s.horizon(&["analyze", "study.toml", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a["counts"]["incomplete"], 6);
    assert_eq!(a["counts"]["feasible"], 0);
    let v = &a["budget"]["feasible"];
    assert_eq!(v["verdict"], "insufficient_evidence", "no 'too high' from runs that never trained: {v}");
    assert!(v["suggested_max_train_steps"].is_null(), "{v}");
    assert_eq!(v["excluded"][0]["reason"], "incomplete");
    assert_eq!(v["excluded"][0]["trials"], 6);
    let out = s.horizon(&["analyze", "study.toml"]);
    let text_out = String::from_utf8_lossy(&out.stdout);
    assert!(text_out.contains("excluded: 6 incomplete"), "{text_out}");
    assert!(!text_out.contains("TOO HIGH"), "{text_out}");
}

#[test]
fn a_stop_when_stop_is_still_complete() {
    // The one legitimate early end: a criterion that holds at step 5 of 100.
    let s = study("one-epoch", 1, 100, &[], "");
    let spec = std::fs::read_to_string(&s.spec)
        .unwrap()
        .replace("kill_grace = \"1s\"", "kill_grace = \"1s\"\nstop_when = \"valid/loss <= 0.3\"");
    std::fs::write(&s.spec, spec).unwrap();
    let out = s.run(&[]);
    assert!(out.status.success());
    let said = text(&out);
    assert!(said.contains("trial 0 complete:") && said.contains("; stopped at step"), "the run says why it stopped: {said}");
    let t = &s.trials()[0];
    assert_eq!(t["state"], "complete", "{t}");
    assert!(t["message"].as_str().unwrap().contains("valid/loss <= 0.3 held at step 4"), "{t}");
}

#[test]
fn steps_beyond_the_budget_are_ignored_with_a_warning() {
    let s = study("beyond", 1, 20, &[], "[checkpoints]\nkeep_best = 1");
    assert!(s.run(&[]).status.success());
    let t = &s.trials()[0];
    assert_eq!(t["state"], "complete", "{t}");
    assert_eq!(t["best_step"], 20, "the value 0.0 at step i64::MAX is not selected: {t}");
    assert_eq!(t["final_step"], 20);
    assert_eq!(s.count("SELECT MAX(step) FROM metrics"), 20);
    assert_eq!(s.count("SELECT COUNT(*) FROM checkpoints"), 0, "the checkpoint beyond the budget is not recorded");
    let w = warnings(&s, 0).join("\n");
    assert!(w.contains("step 9223372036854775807 is beyond max_train_steps 20; line ignored"), "{w}");
}

#[test]
fn overlong_lines_are_skipped_and_the_rest_recorded() {
    let s = study("long-lines", 1, 10, &[], "");
    assert!(s.run(&[]).status.success());
    let t = &s.trials()[0];
    assert_eq!(t["state"], "complete", "{t}");
    // Steps 1 and 2..=10 are stored; the 2 MiB line at step 2 (loss 0.1) is not.
    assert_eq!(s.count("SELECT COUNT(*) FROM metrics WHERE name = 'valid/loss'"), 10);
    assert_eq!(t["best_value"].as_f64().unwrap(), 0.1, "{t}");
    let w = warnings(&s, 0);
    let overlong: Vec<&String> = w.iter().filter(|m| m.contains("longer than the limit of 1048576; line skipped")).collect();
    assert_eq!(overlong.len(), 3, "{w:?}");
    assert!(overlong[0].starts_with("metrics line 1: 3145728 bytes"), "{w:?}");
    assert!(overlong[2].contains("2097152 bytes"), "the last line, without its newline: {w:?}");
}

#[test]
fn a_flood_of_evaluations_is_recorded_completely() {
    // 200,000 evaluations of the objective, each step reported many times: the last value of
    // each step is kept, and the selection is over those.
    let s = study("flood", 1, 1000, &["--lines=200000"], "");
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let t = &s.trials()[0];
    assert_eq!(t["state"], "complete", "{t}");
    assert_eq!(s.count("SELECT COUNT(*) FROM metrics"), 1000);
    // The last write of step k is line 199000 + k (1-based), with value 1/(199000 + k).
    assert_eq!(t["best_step"], 1000, "{t}");
    assert_eq!(t["best_value"].as_f64().unwrap(), 1.0 / 200_000.0);
}

/// Peak resident memory of a process in bytes (`VmHWM`), while it runs.
fn peak_memory(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

#[test]
fn sigterm_is_answered_within_the_grace_period_whatever_the_metric_volume() {
    // A trainer writes 150 MB of metrics as fast as it can, then ignores SIGTERM. horizon must
    // stop it (SIGKILL after the 1 s grace), stop reading, and exit, in bounded memory.
    let s = study("flood-forever", 1, 100, &["--megabytes=150"], "");
    let mut child = s.spawn_run(&[], "run");
    let marker = s.trial_dir(0).join("flooding");
    wait_for("the trainer to start flooding", LONG, || marker.exists());
    let done = s.trial_dir(0).join("flooded");
    let mut peak = 0;
    wait_for("the trainer to write its 150 MB", LONG, || {
        peak = peak.max(peak_memory(child.id()).unwrap_or(0));
        done.exists()
    });
    send_signal(&child, libc::SIGTERM);
    let mut status = None;
    wait_for("horizon to exit after SIGTERM", LONG, || {
        peak = peak.max(peak_memory(child.id()).unwrap_or(0));
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(130), "{}", s.output_of("run"));
    eprintln!("peak memory of horizon: {} MB", peak >> 20);
    assert!(peak > 0 && peak < 100 << 20, "peak memory {} MB while recording 150 MB of metrics", peak >> 20);
    let t = &s.trials()[0];
    assert_eq!(t["state"], "waiting", "interrupted, to run again: {t}");
    assert!(Path::new(&s.trial_dir(0)).join("attempt-1.metrics.jsonl").is_file());
}

#[test]
fn incomplete_trials_run_again_once_the_trainer_is_fixed() {
    let s = study("one-epoch", 2, 100, &[], "");
    assert!(s.run(&[]).status.success());
    assert!(s.trials().iter().all(|t| t["state"] == "incomplete"));
    // Fix the trainer (the same study file; the trainer now trains to its budget), requeue the
    // incomplete trials, run again.
    let out = s.horizon(&["requeue", "study.toml", "--incomplete"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("requeued 2 trials of study"), "{}", text(&out));
    let out = s.cmd(&["run", "study.toml"]).env("HOSTILE_MODE_OVERRIDE", "flood").env("HOSTILE_LINES", "100").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for t in s.trials() {
        assert_eq!(t["state"], "complete", "{t}");
        assert_eq!(t["attempts"], 2, "{t}");
    }
}
