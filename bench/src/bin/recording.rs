//! Recording many evaluations in one trial (issue 9): time and peak memory of horizon's worker
//! while it records `--evals N` metric lines written by a trainer as fast as it can.
//!
//! ```text
//! recording --evals 1000000
//! recording --evals 1000000 --terminate --kill-grace 1s   # how long a stop waits
//! ```
//!
//! Before the timed part, the binary writes a metrics file of N protocol lines
//! `{"step": s, "split": "valid", "metrics": {"loss": v}}`, s = 1..=N, v a noisy decreasing curve
//! (deterministic), into a temp dir, and a study of one trial (`max_train_steps` = N,
//! `eval_every` = 1, objective `valid/loss` minimized) whose trainer is
//! `sh -c 'cat FILE >> "$HORIZON_METRICS_FILE"; date +%s%N > DONE'`: the whole file lands in the
//! metrics file in a fraction of a second, and horizon reads, parses and stores it. The run goes
//! through the real `Worker` with `Program::Subprocess` and the real SQLite storage, as
//! `overhead` does.
//!
//! Reported (one JSON line): `wall_s`, the time of `Worker::run`; `after_trainer_s`, the part of
//! it after the trainer finished writing (the DONE timestamp); the process's peak resident set
//! during the run (`VmHWM` from /proc/self/status, reset through /proc/self/clear_refs just
//! before the run, so it starts at the RSS then, `rss_start_mib`); and what storage holds after
//! the run: the number of stored `valid/loss` values, which must be N and equal to the written
//! values step for step (up to 2 ULP: horizon's JSON parser may read a shortest-roundtrip
//! decimal 1 ULP off; such values are counted as `inexact`), and the trial's best step and value,
//! which must be the stored curve's minimum (earliest on ties); `expected_best_step` is the
//! written curve's. A run that stores anything else fails.
//!
//! With `--floors`, after the run and its checks (outside the timed part and the peak), two pieces
//! of the work are timed alone: `floor_parse_s`, `horizon_core::protocol::parse_line` on every
//! line of the file (already in memory), and `floor_store_s`, `Storage::append_metrics` of the N
//! points into a fresh SQLite database (claimed trial, one call per 4 MiB of lines, as the
//! linear recorder flushes after each 4 MiB read of a backlog).
//!
//! With `--terminate`, a thread sends `Control::Terminate` (what SIGTERM does in `horizon run`)
//! as soon as the trainer has finished writing, and `stop_s` is the time from then to the end of
//! `Worker::run`; storage then holds what was recorded before the stop, and is not checked
//! against N.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use horizon_core::protocol::{Report, parse_line};
use horizon_core::trial::Lease;
use horizon_core::{MetricPoint, ParamValue, Params, StudySpec, TrialState};
use horizon_runner::resolve::ResolvedStudy;
use horizon_runner::worker::{Control, Event, Worker, WorkerOptions};
use horizon_store::{ClaimRequest, NewStudy, SqliteStorage, Storage};

struct Args {
    evals: u64,
    terminate: bool,
    kill_grace: String,
    label: String,
    floors: bool,
    keep: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: recording [--evals N (1000000)] [--label TEXT (printed back)]\n\
         \x20                [--terminate (stop the worker once the trainer has written everything)]\n\
         \x20                [--kill-grace DURATION (trainer.kill_grace, default 10s)]\n\
         \x20                [--floors (after the run: parsing alone, storing alone)]\n\
         \x20                [--keep (keep the temp dir and print its path on stderr)]"
    );
    std::process::exit(2)
}

fn parse_args() -> Result<Args> {
    let mut args =
        Args { evals: 1_000_000, terminate: false, kill_grace: "10s".into(), label: String::new(), floors: false, keep: false };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) => Ok(v),
                None => bail!("{name} needs a value"),
            }
        };
        match flag.as_str() {
            "--evals" => args.evals = value("--evals")?.replace('_', "").parse().context("--evals")?,
            "--terminate" => args.terminate = true,
            "--kill-grace" => args.kill_grace = value("--kill-grace")?,
            "--label" => args.label = value("--label")?,
            "--floors" => args.floors = true,
            "--keep" => args.keep = true,
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other:?}");
                usage()
            }
        }
    }
    if args.evals == 0 {
        bail!("--evals must be at least 1");
    }
    Ok(args)
}

/// The curve: a decreasing exponential with deterministic noise (splitmix64), so that the
/// minimum is somewhere late but not at the last step.
fn value_at(step: u64, n: u64) -> f64 {
    let mut z = step.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let noise = (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5; // [-0.5, 0.5)
    2.0 * (-3.0 * step as f64 / n as f64).exp() + 0.1 + 0.05 * noise
}

/// Writes the metrics file; returns its size and the curve's minimum (earliest step on ties).
fn write_metrics(path: &Path, n: u64) -> Result<(u64, u64, f64)> {
    let file = std::fs::File::create(path).with_context(|| path.display().to_string())?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let (mut best_step, mut best) = (0, f64::INFINITY);
    for step in 1..=n {
        let v = value_at(step, n);
        if v < best {
            (best_step, best) = (step, v);
        }
        // `{}` of an f64 is the shortest text that reads back as the same value.
        writeln!(out, r#"{{"step": {step}, "split": "valid", "metrics": {{"loss": {v}}}}}"#)?;
    }
    out.flush()?;
    drop(out);
    Ok((std::fs::metadata(path)?.len(), best_step, best))
}

/// A TOML basic string (JSON string syntax is a subset of it for the characters we emit).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string is always JSON")
}

fn study_toml(n: u64, metrics: &Path, done: &Path, kill_grace: &str) -> String {
    let command = [
        "sh".to_string(),
        "-c".to_string(),
        r#"cat "$0" >> "$HORIZON_METRICS_FILE" && date +%s%N > "$1""#.to_string(),
        metrics.display().to_string(),
        done.display().to_string(),
    ];
    let command: Vec<String> = command.iter().map(|c| toml_str(c)).collect();
    format!(
        r#"[study]
name = "recording"
trials = 1
max_train_steps = {n}
eval_every = 1
seed = 0

[objective]
metric = "valid/loss"
direction = "minimize"

[trainer]
command = [{command}]
metrics = ["valid/loss"]
kill_grace = {kill_grace}

[sampler]
kind = "halton"

[params.x]
type = "float"
low = -10.0
high = 10.0
"#,
        command = command.join(", "),
        kill_grace = toml_str(kill_grace),
    )
}

/// A field of /proc/self/status in KiB (`VmHWM`, `VmRSS`).
fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Resets VmHWM to the current RSS (Linux >= 4.0). Returns whether it worked.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn epoch_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos()
}

fn mib(kib: Option<u64>) -> serde_json::Value {
    kib.map_or(serde_json::Value::Null, |k| serde_json::json!((k as f64 / 1024.0 * 10.0).round() / 10.0))
}

fn run(args: &Args, dir: &Path) -> Result<serde_json::Value> {
    let n = args.evals;
    let source = dir.join("source.jsonl");
    let done = dir.join("trainer-done");
    let generated = Instant::now();
    let (metrics_bytes, expected_best_step, expected_best) = write_metrics(&source, n)?;
    let generate_s = generated.elapsed().as_secs_f64();

    let spec_path = dir.join("study.toml");
    let text = study_toml(n, &source, &done, &args.kill_grace);
    std::fs::write(&spec_path, &text).with_context(|| spec_path.display().to_string())?;
    let spec = StudySpec::parse(&text, &spec_path.display().to_string())?;
    let study = ResolvedStudy::new(spec, &spec_path)?;
    let db = study.db_path();
    let storage = study.open_storage()?;
    let storage_dyn: Arc<dyn Storage> = storage.clone();

    // Drain the event stream as a reporter would (Progress events come once per read).
    let (events, rx) = mpsc::channel::<Event>();
    let reporter = std::thread::spawn(move || rx.iter().count());
    let worker = Worker::new(study, storage_dyn.clone(), WorkerOptions::default(), events)?;
    let study_id = worker.study().id;

    // With --terminate: Terminate as soon as the trainer has written everything.
    let terminator = args.terminate.then(|| {
        let control = worker.control_handle();
        let done = done.clone();
        std::thread::spawn(move || -> Option<Instant> {
            let give_up = Instant::now() + Duration::from_secs(3600);
            while Instant::now() < give_up {
                if std::fs::metadata(&done).is_ok_and(|m| m.len() > 0) {
                    let sent = Instant::now();
                    control.send(Control::Terminate);
                    return Some(sent);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        })
    });

    let peak_reset = reset_peak();
    let rss_start = status_kib("VmRSS");
    let started = Instant::now();
    let summary = worker.run()?;
    let ended = Instant::now();
    let wall_s = (ended - started).as_secs_f64();
    let ended_ns = epoch_ns();
    let peak = status_kib("VmHWM");
    let rss_end = status_kib("VmRSS");
    let stop_s = match terminator {
        Some(t) => match t.join().expect("the terminator thread does not panic") {
            Some(sent) => Some(ended.saturating_duration_since(sent).as_secs_f64()),
            None => bail!("the trainer never finished writing"),
        },
        None => None,
    };
    let events = reporter.join().expect("the reporter thread does not panic");

    let done_ns: Option<u128> = std::fs::read_to_string(&done).ok().and_then(|s| s.trim().parse().ok());
    let after_trainer_s = done_ns.map(|d| ended_ns.saturating_sub(d) as f64 / 1e9);

    // What storage holds (read after the peak was taken: this read is not part of recording).
    let trials = storage_dyn.trials(study_id)?;
    let [trial] = trials.as_slice() else { bail!("expected one trial, found {}", trials.len()) };
    let mut points = storage_dyn.study_metric(study_id, "valid/loss")?;
    points.sort_by_key(|p| p.1);
    let stored = points.len() as u64;
    // Each value must be the one written, up to the parser's rounding: serde_json without its
    // `float_roundtrip` feature may read a shortest-roundtrip decimal 1 ULP off. Those are
    // counted (`inexact`), anything further fails the run.
    let ulps = |a: f64, b: f64| (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs();
    let mut inexact = 0u64;
    for (i, &(_, step, v)) in points.iter().enumerate() {
        let want = value_at(i as u64 + 1, n);
        if step != i as u64 + 1 || ulps(v, want) > 2 {
            bail!("stored value {i} is step {step} = {v}, expected step {} = {want}", i + 1);
        }
        inexact += u64::from(v != want);
    }
    // The trial's best must be the minimum of the stored curve (earliest step on ties).
    let stored_best = points.iter().fold(None, |best: Option<(u64, f64)>, &(_, step, v)| match best {
        Some((_, b)) if b <= v => best,
        _ => Some((step, v)),
    });
    if !args.terminate {
        if trial.state != TrialState::Complete || summary.completed != 1 {
            bail!("the trial is {:?} ({:?}), expected complete: {summary:?}", trial.state, trial.message);
        }
        if stored != n {
            bail!("expected {n} stored valid/loss values, found {stored}");
        }
        if trial.best_step.zip(trial.best_value) != stored_best {
            bail!("best is step {:?} = {:?}, the stored curve's minimum is {stored_best:?}", trial.best_step, trial.best_value);
        }
    }
    drop(points);
    let floors = if args.floors { Some(floors(dir, &source, n)?) } else { None };
    let db_bytes: u64 =
        ["", "-wal", "-shm"].iter().filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok()).map(|m| m.len()).sum();

    Ok(serde_json::json!({
        "path": "horizon",
        "label": args.label,
        // Set by bench/run-recording when it builds the binary.
        "built_from": option_env!("HORIZON_BENCH_REV"),
        "evals": n,
        "terminate": args.terminate,
        "wall_s": wall_s,
        "per_eval_us": wall_s * 1e6 / n as f64,
        "after_trainer_s": after_trainer_s,
        "stop_s": stop_s,
        "peak_rss_mib": mib(peak),
        "rss_start_mib": mib(rss_start),
        "rss_end_mib": mib(rss_end),
        "peak_reset": peak_reset,
        "stored": stored,
        "state": format!("{:?}", trial.state),
        "message": trial.message,
        "best_step": trial.best_step,
        "best_value": trial.best_value,
        "expected_best_step": expected_best_step,
        "expected_best_value": expected_best,
        "inexact": inexact,
        "final_step": trial.final_step,
        "events": events,
        "metrics_bytes": metrics_bytes,
        "db_bytes": db_bytes,
        "generate_s": generate_s,
        "floor_parse_s": floors.map(|f| f.0),
        "floor_store_s": floors.map(|f| f.1),
        "floor_store_calls": floors.map(|f| f.2),
    }))
}

/// Parsing alone and storing alone; returns (parse seconds, store seconds, append calls).
fn floors(dir: &Path, source: &Path, n: u64) -> Result<(f64, f64, u64)> {
    let text = std::fs::read(source)?;
    let started = Instant::now();
    let mut points = Vec::with_capacity(n as usize);
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match parse_line(&String::from_utf8_lossy(line)) {
            Ok(Report::Metrics { step, values }) => {
                points.extend(values.into_iter().map(|(name, value)| MetricPoint { step, name, value }))
            }
            other => bail!("unexpected line: {other:?}"),
        }
    }
    let parse_s = started.elapsed().as_secs_f64();
    if points.len() as u64 != n {
        bail!("parsed {} points, expected {n}", points.len());
    }

    let chunk = ((4u64 << 20) * n / text.len() as u64).max(1) as usize;
    drop(text);
    let storage = SqliteStorage::open(&dir.join("floor.db"))?;
    let study =
        storage.open_or_create_study(&NewStudy { name: "floor".into(), spec_json: "{}".into(), identity_json: "{}".into() })?;
    let lease =
        Lease { worker: "bench:1:1".into(), host: "bench".into(), pid: std::process::id(), heartbeat_at: 0.0, timeout: None };
    let sample = |_: u64| -> Result<Params, String> { Ok(Params(vec![("x".into(), ParamValue::Float(0.0))])) };
    let policy = horizon_core::claim::FixedBudget { trials: 1, max_train_steps: n };
    let request = ClaimRequest { lease: &lease, policy: &policy, sample: &sample };
    let horizon_store::Claim::Run(claimed) = storage.claim_trial(study.id, &request)? else { bail!("no trial to claim") };
    let trial = claimed.trial;
    let started = Instant::now();
    let mut calls = 0;
    for piece in points.chunks(chunk) {
        storage.append_metrics(trial.id, trial.attempt, piece)?;
        calls += 1;
    }
    Ok((parse_s, started.elapsed().as_secs_f64(), calls))
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let tmp = tempfile::Builder::new().prefix("horizon-recording-").tempdir()?;
    let result = run(&args, tmp.path());
    if args.keep {
        let kept: PathBuf = tmp.keep();
        eprintln!("kept {}", kept.display());
    }
    println!("{}", result?);
    Ok(())
}
