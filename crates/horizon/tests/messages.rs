//! Reading a study one may only read, and the messages of refused or failed commands: each says
//! what happened once, and names the fix. Real processes, real files, real permissions.
//!
//! Read-only studies: the tests run as root here, and root ignores permission bits. So the
//! reading commands run as another user (`nobody`, through `setuid` in the child) when the test
//! runs as root, and as the test's own user otherwise; either way the kernel enforces the
//! permissions, and each test first checks that the reader really cannot write there.

mod util;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use util::*;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Run `cmd` as a user who may only read what the test made read-only.
fn as_reader(cmd: &mut Command) -> &mut Command {
    if is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    cmd
}

/// Makes a tree read-only (directories 0555, files 0444) for as long as it lives.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn new(root: &Path) -> ReadOnly {
        set_tree(root, 0o555, 0o444);
        ReadOnly(root.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        set_tree(&self.0, 0o755, 0o644);
    }
}

fn set_tree(path: &Path, dir_mode: u32, file_mode: u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        // Open it up before descending, close it after.
        if dir_mode & 0o200 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(dir_mode)).unwrap();
        }
        for entry in std::fs::read_dir(path).unwrap() {
            set_tree(&entry.unwrap().path(), dir_mode, file_mode);
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(dir_mode)).unwrap();
    } else if meta.is_file() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(file_mode)).unwrap();
    }
}

/// A finished study whose directories the reader can enter (a temporary directory is 0700).
fn finished_study(options: StudyOptions) -> TestStudy {
    let s = TestStudy::new(options);
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    s
}

/// Close the study's database cleanly (the last connection folds the WAL in and removes it).
fn close_cleanly(s: &TestStudy) {
    let conn = rusqlite::Connection::open(s.study_dir().join("horizon.db")).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    drop(conn);
}

fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), e.metadata().unwrap().len())
        })
        .collect();
    all.sort();
    all
}

fn reader(s: &TestStudy, args: &[&str]) -> Output {
    let mut cmd = s.cmd(args);
    as_reader(&mut cmd).output().unwrap()
}

/// The reader cannot create a file in `dir` (the setup works as intended).
fn assert_cannot_write(s: &TestStudy, dir: &Path) {
    let mut probe = Command::new("sh");
    probe.arg("-c").arg(format!("touch '{}/probe'", dir.display())).current_dir(s.path()).stderr(Stdio::null());
    let status = as_reader(&mut probe).status().unwrap();
    assert!(!status.success(), "the reader could write in {}: the test would prove nothing", dir.display());
}

#[test]
fn reading_commands_work_on_a_study_the_user_may_only_read() {
    let s = finished_study(StudyOptions { trials: 3, mode: "checkpoint", ..Default::default() });
    let expected = s.trials();
    close_cleanly(&s);
    let dir = s.study_dir();
    // No -wal or -shm: SQLite cannot create them in a read-only directory, so this is the case
    // a plain read-only open fails on.
    assert!(
        !dir.join("horizon.db-wal").exists() && !dir.join("horizon.db-shm").exists(),
        "a cleanly closed database leaves no WAL"
    );
    let db_before = std::fs::read(dir.join("horizon.db")).unwrap();
    let files_before = listing(&dir);
    let _ro = ReadOnly::new(&s.path().join("horizon-runs"));
    assert_cannot_write(&s, &dir);

    let dir_arg = dir.to_str().unwrap();
    for args in [
        vec!["status", "study.toml"],
        vec!["status", dir_arg, "--json"],
        vec!["trials", "study.toml", "--json"],
        vec!["trials", "study.toml", "--state", "complete"],
        vec!["best", "study.toml"],
        vec!["best", "study.toml", "--json"],
        vec!["analyze", "study.toml"],
        vec!["trial", "study.toml", "1"],
        vec!["trial", dir_arg, "2", "--json"],
        vec!["export", "study.toml", "--format", "jsonl"],
        vec!["check", "study.toml"],
    ] {
        let out = reader(&s, &args);
        assert!(out.status.success(), "horizon {args:?} on a read-only study: {}", text(&out));
        assert!(!out.stdout.is_empty(), "horizon {args:?} printed nothing");
    }
    let out = reader(&s, &["trials", "study.toml", "--json"]);
    let got: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got, expected, "the read-only view is the study as stored");
    assert_eq!(listing(&dir), files_before, "nothing was created in the study directory");
    assert_eq!(std::fs::read(dir.join("horizon.db")).unwrap(), db_before, "the database was not written");

    // Commands that write say why they cannot, once, and what to do.
    for args in [vec!["run", "study.toml"], vec!["requeue", "study.toml", "--trial", "0"]] {
        let out = reader(&s, &args);
        assert_eq!(out.status.code(), Some(1), "horizon {args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("readonly") || err.contains("ermission denied"), "{err}");
        assert!(err.contains("fix:") && err.contains("write access"), "{err}");
        assert_no_repeats(&err);
    }
    assert_eq!(std::fs::read(dir.join("horizon.db")).unwrap(), db_before);
}

#[test]
fn a_read_only_study_is_read_with_the_changes_still_in_its_wal() {
    let s = finished_study(StudyOptions { trials: 2, ..Default::default() });
    close_cleanly(&s);
    // A writer that is still open, with a change only in the WAL (no checkpoint).
    let writer = s.db();
    writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    writer.execute("UPDATE trials SET message = 'written after the run' WHERE number = 1", []).unwrap();
    let wal = s.study_dir().join("horizon.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let _ro = ReadOnly::new(&s.path().join("horizon-runs"));
    assert_cannot_write(&s, &s.study_dir());

    let out = reader(&s, &["trial", "study.toml", "1", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["trial"]["message"], "written after the run", "the reader sees what is in the WAL, not a stale file");
    drop(writer);
}

#[test]
fn a_read_only_study_with_an_older_schema_is_refused_with_the_fix() {
    let s = finished_study(StudyOptions { trials: 1, ..Default::default() });
    let version: i64 = s.db().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    s.db().pragma_update(None, "user_version", version - 1).unwrap();
    close_cleanly(&s);
    {
        let _ro = ReadOnly::new(&s.path().join("horizon-runs"));
        assert_cannot_write(&s, &s.study_dir());
        let out = reader(&s, &["status", "study.toml"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("schema version {}", version - 1)) && err.contains("older"), "{err}");
        assert!(err.contains("cannot be upgraded") && err.contains("fix:"), "{err}");
        assert_no_repeats(&err);
    }
    let after: i64 = s.db().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(after, version - 1, "a read-only open migrates nothing");
}

#[test]
fn a_new_study_where_the_user_may_not_write_is_refused_once_with_the_fix() {
    let s = TestStudy::new(StudyOptions { trials: 1, ..Default::default() });
    let _ro = ReadOnly::new(s.path());
    assert_cannot_write(&s, s.path());
    let out = reader(&s, &["run", "study.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied (os error 13)"), "{err}");
    assert!(err.contains("fix:") && err.contains("write access"), "{err}");
    assert_no_repeats(&err);
    assert!(!s.path().join("horizon-runs").exists());
}

/// No sentence of an error message appears twice ("Permission denied: Permission denied").
fn assert_no_repeats(err: &str) {
    let parts: Vec<&str> = err.split([':', '\n']).map(str::trim).filter(|p| p.len() > 12).collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(p), "{p:?} is said twice in: {err}");
    }
    assert!(err.matches("(os error").count() <= 1, "{err}");
}

#[test]
fn a_study_directory_that_is_a_file_is_refused_with_the_fix() {
    let s = TestStudy::new(StudyOptions { trials: 1, ..Default::default() });
    std::fs::create_dir_all(s.path().join("horizon-runs")).unwrap();
    std::fs::write(s.study_dir(), "not a directory").unwrap();
    let out = s.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{} is a file, not a directory", s.study_dir().display())), "{err}");
    assert!(err.contains("fix:") && err.contains("[study] directory"), "{err}");
    assert!(!err.contains("os error"), "{err}");

    // A file where a folder above it should be.
    std::fs::remove_file(s.study_dir()).unwrap();
    std::fs::remove_dir(s.path().join("horizon-runs")).unwrap();
    std::fs::write(s.path().join("horizon-runs"), "").unwrap();
    let out = s.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be created") && err.contains("horizon-runs is a file"), "{err}");
    assert!(!err.contains("os error"), "{err}");

    // `horizon import --into` a file.
    std::fs::write(s.path().join("runs.jsonl"), "{\"max_train_steps\": 10, \"curve\": [{\"step\": 5, \"valid/loss\": 1.0}]}\n")
        .unwrap();
    let out = s.horizon(&["import", "runs.jsonl", "--into", "horizon-runs", "--objective", "valid/loss"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a file, not a directory") && err.contains("fix:") && !err.contains("os error"), "{err}");
}

#[test]
fn a_changed_identity_shows_the_stored_value_beside_the_new_one() {
    let s = TestStudy::new(StudyOptions { trials: 1, ..Default::default() });
    assert!(s.run(&[]).status.success());
    s.write_spec(&StudyOptions {
        trials: 1,
        max_train_steps: 200,
        args: vec!["--extra={max_train_steps}".into()],
        ..Default::default()
    });
    let out = s.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_train_steps: stored 100, this file 200"), "{err}");
    assert!(err.contains("trainer.command: stored [") && err.contains("\"--extra={max_train_steps}\"]"), "{err}");
    assert!(err.contains("fix:"), "{err}");
    // `horizon check` shows the same, without running or writing.
    let out = s.horizon(&["check", "study.toml", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["database"]["state"], "refused");
    assert!(doc["database"]["differences"][0].as_str().unwrap().contains("stored 100, this file 200"), "{doc}");
}

#[test]
fn lowering_trials_is_not_silent() {
    let s = TestStudy::new(StudyOptions { trials: 3, ..Default::default() });
    assert!(s.run(&[]).status.success());
    s.write_spec(&StudyOptions { trials: 2, ..Default::default() });
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trials = 2") && err.contains("already has 3 sampled trials") && err.contains("never removed"), "{err}");
    assert_eq!(s.trials().len(), 3);
    // Raising it is not a note.
    s.write_spec(&StudyOptions { trials: 4, ..Default::default() });
    let out = s.run(&[]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("never removed"));
    assert_eq!(s.trials().len(), 4);
}

#[test]
fn an_interruption_is_said_once() {
    let s = TestStudy::new(StudyOptions { trials: 1, mode: "gate", trainer: "kill_grace = \"5s\"".into(), ..Default::default() });
    let mut child = s
        .cmd(&["run", "study.toml", "--no-progress"])
        .env("GATE", s.path().join("gate-never-opens"))
        .stdout(std::fs::File::create(s.path().join("run.stdout")).unwrap())
        .stderr(std::fs::File::create(s.path().join("run.stderr")).unwrap())
        .spawn()
        .unwrap();
    wait_for("the trial to start", LONG, || s.started_markers() == 1);
    send_signal(&child, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let out = s.output_of("run");
    assert!(out.contains("trial 0 was interrupted: horizon was stopped"), "{out}");
    assert!(!out.contains("interrupted: interrupted"), "{out}");
}

#[test]
fn usage_errors_exit_2_and_name_the_choices() {
    let s = TestStudy::new(StudyOptions { trials: 1, ..Default::default() });
    assert!(s.run(&[]).status.success());
    let out = s.horizon(&["trials", "study.toml", "--state", "finished"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a trial state") && err.contains("complete") && err.contains("failed"), "{err}");

    let out = s.horizon(&["workload", "run", "no-such-model"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown workload") && err.contains("digits-mlp"), "{err}");
    assert!(!err.contains("started by `horizon run`"), "the name is checked before the environment: {err}");

    let out = s.horizon(&["requeue", "study.toml"]);
    assert_eq!(out.status.code(), Some(2), "requeue needs --failed or --trial: {}", text(&out));
}
