//! Orchestration overhead per trial (issue 2): runs a study of `--trials` trivial trials through
//! horizon's real worker and real SQLite storage, and prints one JSON line with the timing.
//!
//! ```text
//! overhead --trials 2000 --path inprocess
//! overhead --trials 2000 --path subprocess --trainer target/release/trivial-trainer
//! overhead --trials 500  --path subprocess --trainer bench/trivial_trainer.py
//! ```
//!
//! Each trial reports 10 values of `valid/loss` (steps 1..=10). The in-process path runs a
//! closure through `Program::InProcess`; the subprocess path launches the trainer once per trial
//! (trial protocol v1: environment in, `$HORIZON_METRICS_FILE` out). `wall_s` is the time of
//! `Worker::run` alone; `setup_s` (writing the study file, resolving it, opening the database,
//! `Worker::new`) is reported beside it. After the timed run the storage is checked: every trial
//! must be complete with 10 stored values, or the program fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use horizon_core::{StudySpec, TrialState};
use horizon_runner::attempt::{InProcessTrial, Program};
use horizon_runner::resolve::ResolvedStudy;
use horizon_runner::worker::{Event, Worker, WorkerOptions};
use horizon_store::Storage;

const STEPS: u64 = 10;

/// The trivial objective, shared in spirit by the trainers and `optuna_overhead.py`.
fn loss(x: f64, y: f64, step: u64) -> f64 {
    (x - 2.0).powi(2) + (y.ln() + 3.0).powi(2) + 1.0 / step as f64
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PathKind {
    InProcess,
    Subprocess,
}

struct Args {
    trials: u64,
    path: PathKind,
    jobs: usize,
    trainer: Option<PathBuf>,
    python: String,
    keep: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: overhead [--trials N (2000)] [--path inprocess|subprocess] [--jobs J (1)]\n\
         \x20               [--trainer PATH (subprocess; a .py file runs under --python, default python3)]\n\
         \x20               [--keep (keep the temp dir and print its path on stderr)]"
    );
    std::process::exit(2)
}

fn parse_args() -> Result<Args> {
    let mut args =
        Args { trials: 2000, path: PathKind::InProcess, jobs: 1, trainer: None, python: "python3".into(), keep: false };
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
            "--trials" => args.trials = value("--trials")?.parse().context("--trials")?,
            "--jobs" => args.jobs = value("--jobs")?.parse().context("--jobs")?,
            "--path" => {
                args.path = match value("--path")?.as_str() {
                    "inprocess" | "in-process" => PathKind::InProcess,
                    "subprocess" => PathKind::Subprocess,
                    other => bail!("--path: {other:?} is neither inprocess nor subprocess"),
                }
            }
            "--trainer" => args.trainer = Some(PathBuf::from(value("--trainer")?)),
            "--python" => args.python = value("--python")?,
            "--keep" => args.keep = true,
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other:?}");
                usage()
            }
        }
    }
    if args.trials == 0 || args.jobs == 0 {
        bail!("--trials and --jobs must be at least 1");
    }
    if args.path == PathKind::Subprocess && args.trainer.is_none() {
        bail!("--path subprocess needs --trainer PATH");
    }
    Ok(args)
}

/// A TOML basic string (JSON string syntax is a subset of it for the characters we emit).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string is always JSON")
}

fn study_toml(trials: u64, command: &[String]) -> String {
    let command: Vec<String> = command.iter().map(|c| toml_str(c)).collect();
    format!(
        r#"[study]
name = "overhead"
trials = {trials}
max_train_steps = {STEPS}
eval_every = 1
seed = 0

[objective]
metric = "valid/loss"
direction = "minimize"

[trainer]
command = [{command}]
metrics = ["valid/loss"]

[sampler]
kind = "halton"

[params.x]
type = "float"
low = -10.0
high = 10.0

[params.y]
type = "float"
low = 1e-3
high = 1.0
scale = "log"
"#,
        command = command.join(", ")
    )
}

fn trainer_command(args: &Args) -> Result<Vec<String>> {
    match args.path {
        // Never run: ResolvedStudy only checks that the program exists.
        PathKind::InProcess => Ok(vec!["true".into()]),
        PathKind::Subprocess => {
            let trainer = args.trainer.as_deref().expect("checked in parse_args");
            let trainer = std::path::absolute(trainer).with_context(|| trainer.display().to_string())?;
            if !trainer.is_file() {
                bail!("--trainer {}: no such file", trainer.display());
            }
            let shown = trainer.display().to_string();
            Ok(if trainer.extension().is_some_and(|e| e == "py") { vec![args.python.clone(), shown] } else { vec![shown] })
        }
    }
}

fn train(t: &mut InProcessTrial<'_>) -> Result<(), String> {
    let get = |name: &str| t.params.get(name).and_then(|v| v.as_f64()).ok_or_else(|| format!("no float parameter {name}"));
    let (x, y) = (get("x")?, get("y")?);
    for step in 1..=t.max_train_steps {
        t.report(step, "valid", &[("loss", loss(x, y, step))]);
        if t.should_stop() {
            break;
        }
    }
    Ok(())
}

fn check(storage: &dyn Storage, study: i64, trials: u64) -> Result<()> {
    let all = storage.trials(study)?;
    let complete = all.iter().filter(|t| t.state == TrialState::Complete).count() as u64;
    if all.len() as u64 != trials || complete != trials {
        let first_bad = all.iter().find(|t| t.state != TrialState::Complete);
        bail!(
            "expected {trials} complete trials, found {} trials of which {complete} complete; first other: {:?}",
            all.len(),
            first_bad.map(|t| (t.number, t.state, t.message.clone()))
        );
    }
    let points = storage.study_metric(study, "valid/loss")?.len() as u64;
    if points != trials * STEPS {
        bail!("expected {} stored valid/loss values, found {points}", trials * STEPS);
    }
    Ok(())
}

fn run(args: &Args, dir: &Path) -> Result<serde_json::Value> {
    let setup = Instant::now();
    let spec_path = dir.join("study.toml");
    let text = study_toml(args.trials, &trainer_command(args)?);
    std::fs::write(&spec_path, &text).with_context(|| spec_path.display().to_string())?;
    let spec = StudySpec::parse(&text, &spec_path.display().to_string())?;
    let study = ResolvedStudy::new(spec, &spec_path)?;
    let db = study.db_path();
    let storage = study.open_storage()?;
    let storage_dyn: Arc<dyn Storage> = storage.clone();

    // Drain the event stream as a reporter would, counting finished trials; the thread ends
    // when the worker (the only sender) is dropped.
    let (events, rx) = mpsc::channel::<Event>();
    let reporter = std::thread::spawn(move || rx.iter().filter(|e| matches!(e, Event::TrialFinished(_))).count());

    let worker = Worker::new(study, storage_dyn.clone(), WorkerOptions { jobs: args.jobs, ..Default::default() }, events)?;
    let study_id = worker.study().id;
    let worker = match args.path {
        PathKind::InProcess => worker.with_program(Program::InProcess(Arc::new(train))),
        PathKind::Subprocess => worker,
    };
    let setup_s = setup.elapsed().as_secs_f64();

    let started = Instant::now();
    let summary = worker.run()?;
    let wall_s = started.elapsed().as_secs_f64();

    let finished_events = reporter.join().expect("the reporter thread does not panic");
    if summary.completed as u64 != args.trials || finished_events as u64 != args.trials {
        bail!(
            "the worker completed {} trials ({finished_events} finish events), expected {}: {summary:?}",
            summary.completed,
            args.trials
        );
    }
    check(storage_dyn.as_ref(), study_id, args.trials)?;
    let db_bytes: u64 =
        ["", "-wal", "-shm"].iter().filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok()).map(|m| m.len()).sum();

    let path = match args.path {
        PathKind::InProcess => "horizon-inprocess".to_string(),
        PathKind::Subprocess => {
            let trainer = args.trainer.as_deref().unwrap();
            let lang = if trainer.extension().is_some_and(|e| e == "py") { "python" } else { "rust" };
            format!("horizon-subprocess-{lang}")
        }
    };
    Ok(serde_json::json!({
        "path": path,
        "trials": args.trials,
        "jobs": args.jobs,
        "wall_s": wall_s,
        "per_trial_ms": wall_s * 1e3 / args.trials as f64,
        "setup_s": setup_s,
        "db_bytes": db_bytes,
    }))
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let tmp = tempfile::Builder::new().prefix("horizon-overhead-").tempdir()?;
    let result = run(&args, tmp.path());
    if args.keep {
        let kept = tmp.keep();
        eprintln!("kept {}", kept.display());
    }
    println!("{}", result?);
    Ok(())
}
