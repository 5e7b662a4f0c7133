//! Many workers on one study (`horizon worker`): four worker processes share one database; two
//! are killed with SIGKILL while they hold trials; the survivors requeue and finish those, and
//! the study ends exactly as one `horizon run` of the same file does: every trial once, the same
//! parameters and the same results, no metric lost or doubled.

mod util;

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use util::*;

const STUDY: &str = r#"
[study]
name = "shared"
trials = 10
max_train_steps = 600
eval_every = 50
seed = 7

[objective]
metric = "valid/loss"
direction = "minimize"

[trainer]
workload = "digits-mlp"

[params.learning_rate]
type = "float"
low = 0.01
high = 1.0
scale = "log"

[params.hidden]
type = "fixed"
value = 32
"#;

/// Per trial number: (params, state, best step, best value bits, metric rows).
type Results = BTreeMap<u64, (String, String, i64, u64, i64)>;

fn results(db: &std::path::Path) -> Results {
    let db = rusqlite::Connection::open(db).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT number, params_json, state, best_step, best_value, (SELECT COUNT(*) FROM metrics m WHERE m.trial_id = t.id)
             FROM trials t ORDER BY number",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, u64>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, f64>(4)?.to_bits(), r.get(5)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn worker(s: &TestStudy, url: &str, args: &[&str], tag: &str) -> Child {
    let mut all = vec!["worker", "--storage", url, "--no-progress"];
    all.extend_from_slice(args);
    s.cmd(&all)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.path().join(format!("{tag}.stderr"))).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn four_workers_two_killed_finish_the_study_as_one_run_does() {
    // The reference: one `horizon run` of the file.
    let reference = TestStudy::new(StudyOptions::default());
    std::fs::write(&reference.spec, STUDY).unwrap();
    assert!(reference.run(&["--jobs", "2"]).status.success());
    let expected = results(&reference.study_dir().join("horizon.db"));
    assert_eq!(expected.len(), 10);

    let s = TestStudy::new(StudyOptions::default());
    std::fs::write(&s.spec, STUDY).unwrap();
    let db = s.path().join("shared.db");
    let url = format!("sqlite://{}", db.display());
    // The first worker creates the study from the file; the others find it by name.
    let mut workers = vec![worker(&s, &url, &["study.toml"], "w0")];
    wait_for("the study to be stored", LONG, || {
        rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM studies", [], |r| r.get::<_, i64>(0)))
            .unwrap_or(0)
            == 1
    });
    for w in 1..4 {
        workers.push(worker(&s, &url, &["--study", "shared"], &format!("w{w}")));
    }
    // Kill two workers while each holds a running trial.
    let mut holders: Vec<u32> = Vec::new();
    wait_for("two workers to hold running trials", LONG, || {
        let Ok(c) = rusqlite::Connection::open(&db) else { return false };
        let Ok(mut stmt) = c.prepare("SELECT DISTINCT lease_pid FROM trials WHERE state = 'running'") else { return false };
        holders = stmt.query_map([], |r| r.get::<_, u32>(0)).unwrap().filter_map(Result::ok).collect();
        holders.iter().filter(|pid| workers.iter().any(|w| w.id() == **pid)).count() >= 2
    });
    let mut killed = 0;
    for w in workers.iter_mut() {
        if killed < 2 && holders.contains(&w.id()) {
            send_signal(w, libc::SIGKILL);
            w.wait().unwrap();
            killed += 1;
        }
    }
    assert_eq!(killed, 2);
    // The survivors requeue the dead workers' trials and finish the study.
    for (i, w) in workers.iter_mut().enumerate() {
        wait_for("a worker to finish", Duration::from_secs(300), || w.try_wait().unwrap().is_some());
        let status = w.wait().unwrap();
        if status.code().is_some() {
            let err = std::fs::read_to_string(s.path().join(format!("w{i}.stderr"))).unwrap_or_default();
            assert!(status.success(), "worker {i}: {status:?}\n{err}");
        }
    }

    let got = results(&db);
    assert_eq!(got, expected, "the same trials, parameters, results and metric rows as one run");
    let c = rusqlite::Connection::open(&db).unwrap();
    let requeued: i64 = c.query_row("SELECT COUNT(*) FROM trials WHERE attempt > 1", [], |r| r.get(0)).unwrap();
    assert!(requeued >= 2, "the killed workers' trials ran again ({requeued})");
    // Each trial completed exactly once: one attempt with a complete outcome.
    let complete: Vec<(u64, i64)> = c
        .prepare(
            "SELECT t.number, (SELECT COUNT(*) FROM attempts a WHERE a.trial_id = t.id AND a.outcome = 'complete') FROM trials t ORDER BY t.number",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(complete.iter().all(|(_, n)| *n == 1), "{complete:?}");

    // The reading commands take the database file itself, and find the trials where the
    // stored study file puts them.
    let status = s.horizon(&["status", "shared.db", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!((status["trials"].as_u64(), status["states"]["complete"].as_u64()), (Some(10), Some(10)));
    let trial = s.horizon(&["trial", "shared.db", "3", "--json"]);
    assert!(trial.status.success(), "{}", text(&trial));
    let trial: serde_json::Value = serde_json::from_slice(&trial.stdout).unwrap();
    assert_eq!(trial["trial_dir"].as_str(), Some(s.study_dir().join("trials/00003").to_str().unwrap()));
    let watch = s.horizon(&["watch", "shared.db", "--once"]);
    assert!(String::from_utf8_lossy(&watch.stdout).starts_with("study shared: 10 of 10 trials: 10 complete"), "{}", text(&watch));

    // The study directory now belongs to that database: a run with another one (or the
    // default) would number trials into the same trial directories, and is refused.
    for other in [vec!["run", "study.toml"], vec!["run", "study.toml", "--storage", "elsewhere.db"]] {
        let out = s.horizon(&other);
        assert!(!out.status.success(), "{other:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("belongs to the database") && err.contains("fix:"), "{err}");
    }
    assert!(!s.study_dir().join("horizon.db").exists(), "nothing was created");
    assert_eq!(results(&db), expected, "nothing was touched");
}

#[test]
fn a_worker_names_what_is_missing() {
    let s = TestStudy::new(StudyOptions::default());
    std::fs::write(&s.spec, STUDY).unwrap();
    let url = format!("sqlite://{}", s.path().join("empty.db").display());
    let out = s.horizon(&["worker", "--storage", &url, "--study", "shared"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds no study named \"shared\" (it holds none yet)") && err.contains("fix:"), "{err}");
}

#[test]
fn a_lease_not_renewed_within_the_timeout_is_requeued_by_the_databases_clock() {
    let s = TestStudy::new(StudyOptions::default());
    std::fs::write(&s.spec, STUDY.replace("trials = 10", "trials = 2")).unwrap();
    let db = s.path().join("shared.db");
    let url = format!("sqlite://{}", db.display());
    assert!(s.horizon(&["run", "study.toml", "--storage", &url, "--no-progress"]).status.success());
    // Trial 1 as a worker on another machine left it: running, its lease last renewed 30 s ago
    // by the database's clock.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "UPDATE trials SET state = 'running', attempt = attempt + 1, lease_worker = 'ghost', lease_host = 'elsewhere',
            lease_pid = 1, heartbeat_at = (julianday('now') - 2440587.5) * 86400.0 - 30, finished_at = NULL
         WHERE number = 1;
         UPDATE rungs SET state = 'running' WHERE trial_id = (SELECT id FROM trials WHERE number = 1);",
    )
    .unwrap();
    drop(c);
    // 30 s is past a 10 s timeout: the worker requeues the trial and runs it again.
    let out = s.horizon(&["worker", "--storage", &url, "--study", "shared", "--no-progress", "--lease-timeout", "10"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("requeued: worker ghost (elsewhere, pid 1) is gone"), "{shown}");
    let c = rusqlite::Connection::open(&db).unwrap();
    let (state, attempt): (String, u32) =
        c.query_row("SELECT state, attempt FROM trials WHERE number = 1", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((state.as_str(), attempt), ("complete", 3), "requeued, then run again as attempt 3");
}
