//! Storage throughput with several processes on one database (issue 14): claims per second and
//! metric points per second of `SqliteStorage` when K worker processes share one file, or of
//! `PostgresStorage` when they share one PostgreSQL database (`--url postgres://...`). The
//! Optuna side is `bench/optuna_store.py`; the drivers are `bench/run-store-throughput`
//! (SQLite) and `bench/run-store-throughput-pg` (PostgreSQL).
//!
//! ```text
//! store_throughput --workers 4 --trials 320 --points 20 [--batch 0] [--dir DIR | --url URL]
//! ```
//!
//! The parent creates a fresh SQLite database in a temporary directory (or `--dir`), or opens
//! the database at `--url` (any storage URL; for PostgreSQL an empty database the caller has
//! created: the parent creates the schema and the study, and never drops anything), with one
//! study, then starts K copies of itself (`--worker`), each of which opens the database on its
//! own (`horizon_store::open(StorageUrl, Access::ReadWrite)`), looks the study up, prints `ready`
//! and waits on its stdin. When all K are ready the parent starts the clock and tells them to go
//! (one line to each stdin). Each worker loops until the study is done:
//!
//! - `claim_trial` with `horizon_core::claim::FixedBudget { trials, max_train_steps: points }`
//!   and a trivial sample function (one float parameter from the sample index);
//! - `append_metrics` of `points` points of `valid/loss` at steps 1..=points, in batches of
//!   `--batch` points; 0 (the default) is one call with all of them, which is what the runner
//!   writes for a trainer that reports its points within one flush interval: the recorder
//!   (`crates/horizon-runner/src/recorder.rs`) buffers reported points and writes them in one
//!   `append_metrics` per flush, at most every 100 ms (`attempt::TICK`) on the in-process path
//!   (`flush_if_due(TICK)`, the rest at `finish`), and per loop over the lines read (up to 4 MiB,
//!   `READ_PER_LOOK`) on the subprocess path. `--batch 1` is one transaction per point, what
//!   Optuna's `trial.report` costs, for comparison only;
//! - `finish_attempt` as `Complete` with the curve's selection.
//!
//! On PostgreSQL the workers connect with `application_name=horizon-bench-worker` (the parent
//! with horizon's default, `horizon`).
//!
//! The clock stops when the last worker has printed its result line (process exit is not
//! timed; neither are start-up and opening the database). The parent prints one JSON line:
//! wall time, claims/s, points/s, write transactions/s, each worker's mean call latencies, and
//! the result of the checks it then runs on the stored study: every trial claimed exactly once
//! (the workers' claimed numbers together are 0..trials, each once; trial numbers and sample
//! indices 0..trials), every trial `Complete` at attempt 1 with one attempt record, and exactly
//! `points` metric rows per trial at steps 1..=points. A failed check or a worker's storage
//! error is reported in `problems` and the exit status is 2; nothing is retried.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use horizon_core::claim::FixedBudget;
use horizon_core::selection::Selection;
use horizon_core::trial::Lease;
use horizon_core::{MetricPoint, ParamValue, Params, TrialState};
use horizon_store::{Access, Claim, ClaimRequest, Finish, NewStudy, Storage, StorageUrl};
use serde_json::{Value, json};

const STUDY: &str = "throughput";
const METRIC: &str = "valid/loss";

struct Args {
    worker: Option<usize>,
    workers: usize,
    trials: u64,
    points: u64,
    batch: u64,
    db: Option<PathBuf>,
    dir: Option<PathBuf>,
    url: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args { worker: None, workers: 1, trials: 320, points: 20, batch: 0, db: None, dir: None, url: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--worker" => a.worker = Some(value()?.parse()?),
            "--workers" => a.workers = value()?.parse()?,
            "--trials" => a.trials = value()?.parse()?,
            "--points" => a.points = value()?.parse()?,
            "--batch" => a.batch = value()?.parse()?,
            "--db" => a.db = Some(value()?.into()),
            "--dir" => a.dir = Some(value()?.into()),
            "--url" => a.url = Some(value()?),
            _ => bail!(
                "usage: store_throughput [--workers K (1)] [--trials T (320)] [--points N (20)] [--batch B (0: all N in one call)] [--dir DIR | --url URL]"
            ),
        }
    }
    if a.workers == 0 || a.trials == 0 || a.points == 0 {
        bail!("--workers, --trials and --points must be positive");
    }
    if a.url.is_some() && a.dir.is_some() {
        bail!("--dir is for a SQLite file in a directory; --url names the database: give one of them");
    }
    Ok(a)
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn open(url: &StorageUrl) -> Result<Arc<dyn Storage>> {
    Ok(horizon_store::open(url, Access::ReadWrite)?)
}

fn loss(x: f64, step: u64) -> f64 {
    (x - 2.0) * (x - 2.0) + 1.0 / step as f64
}

/// One worker process: open, report ready, wait for the go, claim and record until done.
/// A worker's connection to a server says who it is (`application_name`), so that the driver
/// can tell the workers' sessions from the parent's in `pg_stat_activity`.
fn worker_url(url: &StorageUrl) -> StorageUrl {
    match url {
        StorageUrl::Postgres(text) if !text.contains("application_name=") => {
            let sep = if text.contains('?') { '&' } else { '?' };
            StorageUrl::Postgres(format!("{text}{sep}application_name=horizon-bench-worker"))
        }
        other => other.clone(),
    }
}

fn worker(index: usize, url: &StorageUrl, trials: u64, points: u64, batch: u64) -> Result<()> {
    let storage = open(&worker_url(url))?;
    let study = storage.study(STUDY)?.context("no study")?;
    let lease = Lease {
        worker: format!("bench:{}:{index}", std::process::id()),
        host: "bench".into(),
        pid: std::process::id(),
        heartbeat_at: 0.0,
        timeout: None,
    };
    let policy = FixedBudget { trials, max_train_steps: points };
    let sample =
        |i: u64| -> Result<Params, String> { Ok(Params(vec![("x".into(), ParamValue::Float((i % 1000) as f64 / 100.0 - 5.0))])) };
    let request = ClaimRequest { lease: &lease, policy: &policy, sample: &sample };
    let batch = if batch == 0 { points } else { batch } as usize;

    println!("ready");
    std::io::stdout().flush()?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;

    let (mut claim_s, mut append_s, mut finish_s) = (0.0f64, 0.0f64, 0.0f64);
    let mut claim_max_s = 0.0f64;
    let (mut appends, mut written) = (0u64, 0u64);
    let mut claimed: Vec<u64> = Vec::new();
    let outcome = (|| -> Result<()> {
        loop {
            let t = Instant::now();
            let claim = storage.claim_trial(study.id, &request);
            let took = t.elapsed().as_secs_f64();
            claim_s += took;
            claim_max_s = claim_max_s.max(took);
            let trial = match claim? {
                Claim::Run(c) => c.trial,
                Claim::Done => return Ok(()),
                Claim::Wait => bail!("FixedBudget answered Wait"),
            };
            claimed.push(trial.number);
            let x = match trial.params.0.first() {
                Some((_, ParamValue::Float(x))) => *x,
                _ => 0.0,
            };
            let curve: Vec<MetricPoint> =
                (1..=points).map(|step| MetricPoint { step, name: METRIC.into(), value: loss(x, step) }).collect();
            for chunk in curve.chunks(batch) {
                let t = Instant::now();
                let r = storage.append_metrics(trial.id, trial.attempt, chunk);
                append_s += t.elapsed().as_secs_f64();
                r?;
                appends += 1;
                written += chunk.len() as u64;
            }
            let last = loss(x, points);
            let finish = Finish {
                state: TrialState::Complete,
                message: None,
                selection: Some(Selection {
                    best_step: points,
                    best_value: last,
                    final_step: points,
                    final_value: last,
                    evaluations: points as usize,
                }),
                counts_as_failure: false,
                exit_code: Some(0),
                at: unix_now(),
                steps_run: points,
                budget_independent_until: None,
            };
            let t = Instant::now();
            let r = storage.finish_attempt(trial.id, trial.attempt, &finish);
            finish_s += t.elapsed().as_secs_f64();
            r?;
        }
    })();
    let mut line = json!({
        "worker": index,
        "claims": claimed.len(),
        "appends": appends,
        "points": written,
        "claim_s": claim_s,
        "claim_ms_max": claim_max_s * 1e3,
        "append_s": append_s,
        "finish_s": finish_s,
        "busy_s": claim_s + append_s + finish_s,
        "claimed": claimed,
    });
    if let Err(e) = &outcome {
        line["error"] = json!(format!("{e:#}"));
    }
    println!("{line}");
    std::io::stdout().flush()?;
    if outcome.is_err() {
        std::process::exit(1);
    }
    Ok(())
}

/// Check the stored study against what the workers say they did.
fn check(storage: &dyn Storage, trials: u64, points: u64, reports: &[Value]) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let study = storage.study(STUDY)?.context("no study")?;
    let mut claimed: Vec<u64> =
        reports.iter().flat_map(|r| r["claimed"].as_array().into_iter().flatten().filter_map(Value::as_u64)).collect();
    claimed.sort_unstable();
    let expected: Vec<u64> = (0..trials).collect();
    if claimed != expected {
        let mut dup = claimed.clone();
        dup.dedup();
        problems.push(format!(
            "claimed trial numbers are not 0..{trials} each once: {} claims, {} distinct",
            claimed.len(),
            dup.len()
        ));
    }
    let stored = storage.trials(study.id)?;
    let numbers: Vec<u64> = stored.iter().map(|t| t.number).collect();
    if numbers != expected {
        problems.push(format!("stored trial numbers are not 0..{trials}: {} trials", stored.len()));
    }
    let mut samples: Vec<Option<u64>> = stored.iter().map(|t| t.sample_index).collect();
    samples.sort_unstable();
    if samples != expected.iter().map(|&i| Some(i)).collect::<Vec<_>>() {
        problems.push("sample indices are not 0..trials each once".into());
    }
    for t in &stored {
        if t.state != TrialState::Complete || t.attempt != 1 {
            problems.push(format!("trial {}: state {} attempt {}", t.number, t.state, t.attempt));
        }
        let attempts = storage.attempts(t.id)?;
        if attempts.len() != 1 {
            problems.push(format!("trial {}: {} attempt records", t.number, attempts.len()));
        }
        let metrics = storage.metrics(t.id)?;
        let steps: Vec<u64> = metrics.iter().filter(|m| m.name == METRIC).map(|m| m.step).collect();
        if metrics.len() as u64 != points || steps != (1..=points).collect::<Vec<_>>() {
            problems.push(format!("trial {}: {} metric rows, expected {points} at steps 1..={points}", t.number, metrics.len()));
        }
    }
    if problems.len() > 20 {
        let more = problems.len() - 20;
        problems.truncate(20);
        problems.push(format!("... and {more} more"));
    }
    Ok(problems)
}

fn parent(a: &Args) -> Result<()> {
    // The temporary directory lives until the end of the run (a SQLite file in it).
    let mut tmp = None;
    let (url, db) = match &a.url {
        Some(text) => {
            let url = StorageUrl::parse(text)?;
            let db = match &url {
                StorageUrl::Sqlite(path) => Some(path.clone()),
                StorageUrl::Postgres(_) => None,
            };
            (url, db)
        }
        None => {
            let dir = match &a.dir {
                Some(dir) => dir.clone(),
                None => tmp.insert(tempfile::Builder::new().prefix("horizon-store-throughput-").tempdir()?).path().to_path_buf(),
            };
            std::fs::create_dir_all(&dir)?;
            let db = dir.join("horizon.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
            (StorageUrl::sqlite(&db), Some(db))
        }
    };
    let backend = match url {
        StorageUrl::Sqlite(_) => "sqlite",
        StorageUrl::Postgres(_) => "postgres",
    };
    let storage = open(&url)?;
    storage.open_or_create_study(&NewStudy { name: STUDY.into(), spec_json: "{}".into(), identity_json: "{}".into() })?;

    let exe = std::env::current_exe()?;
    let mut children: Vec<Child> = Vec::new();
    for i in 0..a.workers {
        let mut command = Command::new(&exe);
        command.args(["--worker", &i.to_string()]);
        match (&a.url, &db) {
            (Some(text), _) => command.args(["--url", text]),
            (None, Some(db)) => command.arg("--db").arg(db),
            (None, None) => unreachable!("a run without --url has a SQLite file"),
        };
        let child = command
            .args(["--trials", &a.trials.to_string(), "--points", &a.points.to_string(), "--batch", &a.batch.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("spawning a worker")?;
        children.push(child);
    }
    let mut readers: Vec<_> = children.iter_mut().map(|c| BufReader::new(c.stdout.take().unwrap())).collect();
    for (i, r) in readers.iter_mut().enumerate() {
        let mut line = String::new();
        r.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("worker {i} did not get ready: {line:?}");
        }
    }
    let started = Instant::now();
    let started_unix = unix_now();
    for c in &mut children {
        let mut stdin = c.stdin.take().unwrap();
        stdin.write_all(b"go\n")?;
    }
    // Read the result lines as they come (a thread each, so no worker blocks on a full pipe).
    let handles: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                (line, Instant::now())
            })
        })
        .collect();
    let mut reports = Vec::new();
    let mut last = started;
    let mut problems = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        let (line, at) = h.join().unwrap();
        last = last.max(at);
        match serde_json::from_str::<Value>(&line) {
            Ok(v) => {
                if let Some(e) = v.get("error") {
                    problems.push(format!("worker {i}: {}", e.as_str().unwrap_or_default()));
                }
                reports.push(v);
            }
            Err(_) => problems.push(format!("worker {i}: no result line ({line:?})")),
        }
    }
    let wall_s = last.duration_since(started).as_secs_f64();
    for (i, mut c) in children.into_iter().enumerate() {
        let status = c.wait()?;
        if !status.success() {
            problems.push(format!("worker {i} exited with {status}"));
        }
    }
    problems.extend(check(storage.as_ref(), a.trials, a.points, &reports)?);

    let claims: u64 = reports.iter().filter_map(|r| r["claims"].as_u64()).sum();
    let points: u64 = reports.iter().filter_map(|r| r["points"].as_u64()).sum();
    let appends: u64 = reports.iter().filter_map(|r| r["appends"].as_u64()).sum();
    // Write transactions: every claim (one more per worker for the final Done), every append,
    // every finish.
    let write_tx = claims + a.workers as u64 + appends + claims;
    let total = |key: &str| -> f64 { reports.iter().filter_map(|r| r[key].as_f64()).sum() };
    let claim_ms_max = reports.iter().filter_map(|r| r["claim_ms_max"].as_f64()).fold(0.0, f64::max);
    // The SQLite file's size (with its WAL); null on a server (the driver asks the server).
    let db_bytes: Option<u64> = db.as_ref().map(|db| {
        ["", "-wal", "-shm"].iter().filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok()).map(|m| m.len()).sum()
    });
    let ok = problems.is_empty();
    let per_worker: Vec<u64> = reports.iter().filter_map(|r| r["claims"].as_u64()).collect();
    let out = json!({
        "tool": "horizon",
        "backend": backend,
        "variant": if a.batch == 0 || a.batch >= a.points { "batched" } else if a.batch == 1 { "per-point" } else { "batch" },
        "batch": if a.batch == 0 { a.points } else { a.batch },
        "workers": a.workers,
        "trials": a.trials,
        "points_per_trial": a.points,
        "started_unix": started_unix,
        "wall_s": wall_s,
        "claims": claims,
        "points": points,
        "claims_per_s": claims as f64 / wall_s,
        "points_per_s": points as f64 / wall_s,
        "write_tx": write_tx,
        "write_tx_per_s": write_tx as f64 / wall_s,
        // Mean latency of a call, over all workers' calls (a claim includes each worker's final
        // Done, and the time a worker waited for the write lock).
        "claim_ms_mean": total("claim_s") * 1e3 / (claims + a.workers as u64) as f64,
        "claim_ms_max": claim_ms_max,
        "append_ms_mean": if appends > 0 { total("append_s") * 1e3 / appends as f64 } else { 0.0 },
        "finish_ms_mean": total("finish_s") * 1e3 / claims.max(1) as f64,
        // Share of the wall time the mean worker spent inside storage calls.
        "busy_share": total("busy_s") / a.workers as f64 / wall_s,
        "claims_per_worker": per_worker,
        "db_bytes": db_bytes,
        "ok": ok,
        "problems": problems,
    });
    println!("{out}");
    if !ok {
        std::process::exit(2);
    }
    Ok(())
}

fn main() -> Result<()> {
    let a = parse_args()?;
    match a.worker {
        Some(i) => {
            let url = match (&a.url, &a.db) {
                (Some(text), _) => StorageUrl::parse(text)?,
                (None, Some(db)) => StorageUrl::sqlite(db),
                (None, None) => bail!("--worker needs --db or --url"),
            };
            worker(i, &url, a.trials, a.points, a.batch)
        }
        None => parent(&a),
    }
}
