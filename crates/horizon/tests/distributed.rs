//! Many workers on one study (`horizon worker`): four worker processes share one database; two
//! are killed with SIGKILL while they hold trials; the survivors requeue and finish those, and
//! the study ends exactly as one `horizon run` of the same file does: every trial once, the same
//! parameters and the same results, no metric lost or doubled.

mod util;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use horizon_core::trial::TrialState;
use horizon_store::{Access, Storage, StorageUrl};

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
type Results = BTreeMap<u64, (String, String, Option<u64>, Option<u64>, usize)>;

fn open(url: &str) -> Option<Arc<dyn Storage>> {
    horizon_store::open(&StorageUrl::parse(url).unwrap(), Access::ReadOnly).ok()
}

/// The study "shared" as stored at `url`, read through the storage interface (any backend).
fn results(url: &str) -> Results {
    let s = open(url).expect("the database opens");
    let study = s.study("shared").unwrap().expect("the study is stored");
    s.trials(study.id)
        .unwrap()
        .into_iter()
        .map(|t| {
            let rows = s.rung_metrics(t.id, 0).unwrap().len();
            let value = t.params.to_json_string();
            (t.number, (value, t.state.as_str().to_string(), t.best_step, t.best_value.map(f64::to_bits), rows))
        })
        .collect()
}

/// Per trial number: how many of its attempts completed it.
fn completions(url: &str) -> Vec<(u64, usize)> {
    let s = open(url).unwrap();
    let study = s.study("shared").unwrap().unwrap();
    s.trials(study.id)
        .unwrap()
        .iter()
        .map(|t| (t.number, s.attempts(t.id).unwrap().iter().filter(|a| a.outcome == Some(TrialState::Complete)).count()))
        .collect()
}

fn running_pids(url: &str) -> Vec<u32> {
    let Some(s) = open(url) else { return Vec::new() };
    let Ok(Some(study)) = s.study("shared") else { return Vec::new() };
    s.trials_in_state(study.id, TrialState::Running)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.lease.as_ref().map(|l| l.pid))
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

/// The reference: one `horizon run` of the file.
fn one_run() -> Results {
    let reference = TestStudy::new(StudyOptions::default());
    std::fs::write(&reference.spec, STUDY).unwrap();
    assert!(reference.run(&["--jobs", "2"]).status.success());
    let expected = results(reference.study_dir().join("horizon.db").to_str().unwrap());
    assert_eq!(expected.len(), 10);
    expected
}

/// Four workers on the study at `url`, two killed with SIGKILL while each holds a trial: the
/// survivors finish it, every trial completes once, and the results equal `expected`.
fn four_workers_two_killed(s: &TestStudy, url: &str, expected: &Results) {
    // The first worker creates the study from the file; the others find it by name.
    let mut workers = vec![worker(s, url, &["study.toml"], "w0")];
    wait_for("the study to be stored", LONG, || open(url).is_some_and(|st| st.study("shared").is_ok_and(|x| x.is_some())));
    for w in 1..4 {
        workers.push(worker(s, url, &["--study", "shared"], &format!("w{w}")));
    }
    // Kill two workers while each holds a running trial.
    let mut holders: Vec<u32> = Vec::new();
    wait_for("two workers to hold running trials", LONG, || {
        holders = running_pids(url);
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
    assert_eq!(&results(url), expected, "the same trials, parameters, results and metric rows as one run");
    let st = open(url).unwrap();
    let study = st.study("shared").unwrap().unwrap();
    let requeued = st.trials(study.id).unwrap().iter().filter(|t| t.attempt > 1).count();
    assert!(requeued >= 2, "the killed workers' trials ran again ({requeued})");
    // Each trial completed exactly once: one attempt with a complete outcome.
    let complete = completions(url);
    assert!(complete.iter().all(|(_, n)| *n == 1), "{complete:?}");
}

#[test]
fn four_workers_two_killed_finish_the_study_as_one_run_does() {
    let expected = one_run();
    let s = TestStudy::new(StudyOptions::default());
    std::fs::write(&s.spec, STUDY).unwrap();
    let db = s.path().join("shared.db");
    let url = format!("sqlite://{}", db.display());
    four_workers_two_killed(&s, &url, &expected);

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
    assert_eq!(results(&url), expected, "nothing was touched");
}

/// The same on PostgreSQL: four workers, two killed, the study as one run.
#[test]
fn four_workers_on_postgres_two_killed_finish_the_study_as_one_run_does() {
    let expected = one_run();
    let db = horizon_store::testing::scratch_database();
    let s = TestStudy::new(StudyOptions::default());
    std::fs::write(&s.spec, STUDY).unwrap();
    four_workers_two_killed(&s, &db.url, &expected);
    // What the worker shows never holds a password, and the study directory records the
    // database it belongs to by its URL.
    // Reading commands take the database's URL, and find the trials where the stored study
    // file puts them.
    let status = s.horizon(&["status", &db.url, "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!((status["trials"].as_u64(), status["states"]["complete"].as_u64()), (Some(10), Some(10)));
    let trial = s.horizon(&["trial", &db.url, "3", "--json"]);
    assert!(trial.status.success(), "{}", text(&trial));
    let trial: serde_json::Value = serde_json::from_slice(&trial.stdout).unwrap();
    assert_eq!(trial["trial_dir"].as_str(), Some(s.study_dir().join("trials/00003").to_str().unwrap()));
    let marker = std::fs::read_to_string(s.study_dir().join("storage.url")).unwrap();
    let id = open(&db.url).unwrap().database_id().unwrap();
    assert_eq!(marker, format!("{}\n{id}\n", db.url));
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

/// A TCP proxy to the database whose forwarding can be cut (both directions stop, connections
/// stay open, new ones are accepted and go nowhere: a network partition) and healed.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: (String, u16)) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let flag = open.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect((upstream.0.as_str(), upstream.1)) else { continue };
                for (from, to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    let flag = flag.clone();
                    std::thread::spawn(move || pump(from, to, &flag));
                }
            }
        });
        Proxy { port, open }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    fn heal(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Forward `from` to `to` while the link is open; while it is cut, read nothing (what is sent
/// waits in the kernel's buffers, unanswered).
fn pump(mut from: TcpStream, mut to: TcpStream, open: &AtomicBool) {
    use std::io::{Read, Write};
    from.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if !open.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// `postgres://user@host:port/db` as its host and port, and with another port.
fn host_port(url: &str) -> ((String, u16), impl Fn(u16) -> String + '_) {
    let (head, rest) = url.split_once('@').unwrap();
    let (authority, tail) = rest.split_once('/').unwrap();
    let (host, port) = authority.rsplit_once(':').unwrap();
    let host = host.to_string();
    let with_port = move |p: u16| format!("{head}@{}:{p}/{tail}", authority.rsplit_once(':').unwrap().0);
    ((host, port.parse().unwrap()), with_port)
}

/// A scratch PostgreSQL database, a proxy to it (and its URL through the proxy), and a study
/// "shared" of one trial of 20 steps with the fixture in `mode`, waiting at its gate.
fn behind_a_proxy(mode: &'static str) -> (horizon_store::testing::ScratchDatabase, Proxy, String, TestStudy) {
    let db = horizon_store::testing::scratch_database();
    let (upstream, _) = host_port(&db.url);
    let proxy = Proxy::start(upstream);
    let via_proxy = host_port(&db.url).1(proxy.port);
    let study = StudyOptions { name: "shared", trials: 1, max_train_steps: 20, eval_every: 10, mode, ..StudyOptions::default() };
    (db, proxy, via_proxy, TestStudy::new(study))
}

/// A network partition between a worker and PostgreSQL: the cut-off worker stops its trial
/// before its lease expires, another worker requeues the trial once it has and runs it, the two
/// never run it at once, and once the link heals the cut-off worker finishes cleanly.
#[test]
fn a_worker_cut_off_from_the_database_stops_its_trial_before_another_takes_it_over() {
    let (db, proxy, via_proxy, s) = behind_a_proxy("slow");
    let gate = s.path().join("gate");
    let started = s.study_dir().join("trials/00000/started");
    let spawn = |url: &str, args: &[&str], tag: &str| {
        let mut all = vec!["worker", "--storage", url, "--no-progress", "--lease-timeout", "8"];
        all.extend_from_slice(args);
        s.cmd(&all)
            .env("GATE", &gate)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(s.path().join(format!("{tag}.stderr"))).unwrap())
            .spawn()
            .unwrap()
    };
    // Worker A reaches the database through the proxy; its trainer waits at step 10.
    let mut a = spawn(&via_proxy, &["study.toml"], "a");
    wait_for("worker A's trial to start", LONG, || started.exists() && running_pids(&db.url) == [a.id()]);
    let argv: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.study_dir().join("trials/00000/argv.json")).unwrap()).unwrap();
    let first_trainer = argv["pid"].as_i64().unwrap();
    assert!(pid_alive(first_trainer));

    proxy.cut();
    // Worker B, on a working link, requeues the trial once its lease has expired (8 s without a
    // renewal, by the database's clock) and runs it again.
    let mut b = spawn(&db.url, &["--study", "shared"], "b");
    let store = open(&db.url).unwrap();
    let study = store.study("shared").unwrap().unwrap();
    // When A's trainer was first seen gone (this machine's clock, which is the database's here).
    let mut first_seen_dead: Option<f64> = None;
    wait_for("worker B to take the trial over", Duration::from_secs(120), || {
        if first_seen_dead.is_none() && !pid_alive(first_trainer) {
            first_seen_dead = Some(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64());
        }
        store.trials(study.id).unwrap()[0].lease.as_ref().is_some_and(|l| l.pid == b.id())
    });
    let attempts = store.attempts(store.trials(study.id).unwrap()[0].id).unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].outcome, Some(TrialState::Waiting), "attempt 1 was requeued: {attempts:?}");
    // A stopped its trainer before B's attempt began: the two never ran the trial at once.
    let dead = first_seen_dead.expect("worker A's trainer still runs while B runs the trial");
    assert!(dead < attempts[1].started_at, "A's trainer was gone at {dead}, B's attempt began at {}", attempts[1].started_at);

    // B finishes the trial; the link heals and A, finding nothing left, exits cleanly.
    std::fs::write(&gate, "go").unwrap();
    proxy.heal();
    for (w, tag) in [(&mut b, "b"), (&mut a, "a")] {
        wait_for("a worker to finish", Duration::from_secs(120), || w.try_wait().unwrap().is_some());
        let err = std::fs::read_to_string(s.path().join(format!("{tag}.stderr"))).unwrap_or_default();
        assert!(w.wait().unwrap().success(), "worker {tag}:\n{err}");
    }
    let err = std::fs::read_to_string(s.path().join("a.stderr")).unwrap();
    assert!(err.contains("stopped before another worker may take the trial over"), "{err}");
    let trial = &store.trials(study.id).unwrap()[0];
    assert_eq!((trial.state, trial.attempt), (TrialState::Complete, 2));
    let attempts = store.attempts(trial.id).unwrap();
    assert_eq!(attempts.iter().filter(|a| a.outcome == Some(TrialState::Complete)).count(), 1);
    // Every evaluation once: train and valid at steps 10 and 20.
    let points = store.metrics(trial.id).unwrap();
    assert_eq!(
        points.iter().map(|p| (p.step, p.name.as_str())).collect::<Vec<_>>(),
        [(10, "train/loss"), (10, "valid/loss"), (20, "train/loss"), (20, "valid/loss")]
    );
}

/// `--gpus` gives a worker's trials this machine's GPUs, one each (CUDA_VISIBLE_DEVICES), in
/// place of the study file's, and caps the slots at their number.
#[test]
fn a_workers_gpus_pin_each_trial_to_one_of_them() {
    let s =
        TestStudy::new(StudyOptions { name: "shared", trials: 3, trainer: "gpus = [\"0\"]".into(), ..StudyOptions::default() });
    let url = format!("sqlite://{}", s.path().join("shared.db").display());
    let out = s.horizon(&["worker", "--storage", &url, "study.toml", "--jobs", "8", "--gpus", "7,GPU-9f2c", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut seen = Vec::new();
    for n in 0..3 {
        let argv: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(s.study_dir().join(format!("trials/{n:05}/argv.json"))).unwrap())
                .unwrap();
        seen.push(argv["cuda"].as_str().unwrap().to_string());
    }
    assert!(seen.iter().all(|g| g == "7" || g == "GPU-9f2c"), "{seen:?}");
    let out = s.horizon(&["worker", "--storage", &url, "--study", "shared", "--gpus", "0,,1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--gpus"), "{}", text(&out));
}

/// A database briefly unreachable while a trial reports and checkpoints: the trial runs on,
/// nothing it recorded is lost (its checkpoints, and retention's deletions, are written once
/// the database answers), and it completes in its first attempt.
#[test]
fn a_brief_outage_loses_no_metric_and_no_checkpoint() {
    let (db, proxy, via_proxy, s) = behind_a_proxy("slow-checkpoint");
    let gate = s.path().join("gate");
    let trial_dir = s.study_dir().join("trials/00000");
    let mut worker = s
        .cmd(&["worker", "--storage", &via_proxy, "study.toml", "--no-progress", "--lease-timeout", "40"])
        .env("GATE", &gate)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.path().join("w.stderr")).unwrap())
        .spawn()
        .unwrap();
    wait_for("the trial to start", LONG, || trial_dir.join("started").exists() && running_pids(&db.url) == [worker.id()]);
    let argv: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(trial_dir.join("argv.json")).unwrap()).unwrap();
    let trainer = argv["pid"].as_i64().unwrap();
    // Cut the link; the trainer reports both evaluations, announces both checkpoints and exits.
    proxy.cut();
    std::fs::write(&gate, "go").unwrap();
    wait_for("the trainer to finish", LONG, || !pid_alive(trainer));
    // The worker found the database unreachable while it had them to write.
    let met = |s: &TestStudy| std::fs::read_to_string(s.path().join("w.stderr")).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !met(&s).contains("(is the server") {
        assert!(std::time::Instant::now() < deadline, "the worker never met the outage:\n{}", met(&s));
        std::thread::park_timeout(Duration::from_millis(20));
    }
    proxy.heal();
    wait_for("the worker to finish", Duration::from_secs(120), || worker.try_wait().unwrap().is_some());
    let err = std::fs::read_to_string(s.path().join("w.stderr")).unwrap();
    assert!(worker.wait().unwrap().success(), "{err}");

    let store = open(&db.url).unwrap();
    let study = store.study("shared").unwrap().unwrap();
    let trial = &store.trials(study.id).unwrap()[0];
    assert_eq!((trial.state, trial.attempt), (TrialState::Complete, 1), "{err}");
    assert_eq!(store.metrics(trial.id).unwrap().len(), 4, "train and valid at steps 10 and 20");
    let checkpoints = store.checkpoints(trial.id).unwrap();
    assert_eq!(checkpoints.iter().map(|c| c.step).collect::<Vec<_>>(), [10, 20], "{err}");
    for c in &checkpoints {
        assert_eq!(c.deleted, !trial_dir.join(&c.path).exists(), "the database says of {} what the disk says", c.path);
    }
}
