//! Floors under `overhead`'s numbers: what the storage calls and the process launches of a trial
//! cost on their own, without the worker, its threads and the recorder. Prints one JSON line per
//! measurement, in the same shape as `overhead` (`path` names the measurement).
//!
//! ```text
//! floors --trials 2000 --trainer target/release/trivial-trainer
//! ```
//!
//! - `store-per-report`: per trial, `claim_trial`, 10 × `append_metrics` of one point, and
//!   `finish_attempt` on a fresh SQLite file: 12 write transactions, what the in-process path
//!   writes (`InProcessTrial::report` flushes on every call).
//! - `store-batched`: the same trial with one `append_metrics` of 10 points: 3 transactions,
//!   what the subprocess path writes when the 10 lines arrive together.
//! - `spawn-posix`: create a metrics file, spawn the trainer with `Command` (own process
//!   group, no `pre_exec`, so std can use posix_spawn), wait.
//! - `spawn-in-group`: the same through `horizon_runner::process::spawn_in_group`, whose
//!   `pre_exec` hook (PR_SET_PDEATHSIG) makes std fork the parent instead.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use horizon_core::selection::Selection;
use horizon_core::trial::Lease;
use horizon_core::{MetricPoint, ParamValue, Params, TrialState};
use horizon_store::{ClaimRequest, Finish, NewStudy, SqliteStorage, Storage};

const STEPS: u64 = 10;

fn line(path: &str, trials: u64, wall_s: f64) {
    println!(
        "{}",
        serde_json::json!({ "path": path, "trials": trials, "jobs": 1, "wall_s": wall_s, "per_trial_ms": wall_s * 1e3 / trials as f64 })
    );
}

fn store(dir: &Path, trials: u64, batched: bool) -> Result<f64> {
    let storage = SqliteStorage::open(&dir.join("floor.db"))?;
    let study =
        storage.open_or_create_study(&NewStudy { name: "floor".into(), spec_json: "{}".into(), identity_json: "{}".into() })?;
    let lease =
        Lease { worker: "bench:1:1".into(), host: "bench".into(), pid: std::process::id(), heartbeat_at: 0.0, timeout: None };
    let sample = |i: u64| -> Result<Params, String> {
        Ok(Params(vec![("x".into(), ParamValue::Float(i as f64 / 1000.0)), ("y".into(), ParamValue::Float(0.5))]))
    };
    let started = Instant::now();
    for _ in 0..trials {
        let policy = horizon_core::claim::FixedBudget { trials, max_train_steps: STEPS };
        let request = ClaimRequest { lease: &lease, policy: &policy, sample: &sample };
        let horizon_store::Claim::Run(claimed) = storage.claim_trial(study.id, &request)? else {
            anyhow::bail!("the study ran out of trials")
        };
        let trial = claimed.trial;
        let points: Vec<MetricPoint> =
            (1..=STEPS).map(|step| MetricPoint { step, name: "valid/loss".into(), value: 1.0 / step as f64 }).collect();
        if batched {
            storage.append_metrics(trial.id, trial.attempt, &points)?;
        } else {
            for p in points {
                storage.append_metrics(trial.id, trial.attempt, std::slice::from_ref(&p))?;
            }
        }
        let last = 1.0 / STEPS as f64;
        storage.finish_attempt(
            trial.id,
            trial.attempt,
            &Finish {
                state: TrialState::Complete,
                message: None,
                selection: Some(Selection {
                    best_step: STEPS,
                    best_value: last,
                    final_step: STEPS,
                    final_value: last,
                    evaluations: STEPS as usize,
                }),
                counts_as_failure: false,
                exit_code: Some(0),
                at: 0.0,
                steps_run: STEPS,
                budget_independent_until: None,
            },
        )?;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn spawn(dir: &Path, trials: u64, trainer: &Path, in_group: bool) -> Result<f64> {
    let started = Instant::now();
    for i in 0..trials {
        let metrics = dir.join(format!("{}-{i}.metrics.jsonl", if in_group { "group" } else { "posix" }));
        std::fs::File::create(&metrics)?;
        let mut cmd = Command::new(trainer);
        cmd.env("HORIZON_PARAMS", r#"{"x":1.5,"y":0.01}"#)
            .env("HORIZON_MAX_TRAIN_STEPS", STEPS.to_string())
            .env("HORIZON_METRICS_FILE", &metrics)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child =
            if in_group { horizon_runner::process::spawn_in_group(&mut cmd)? } else { cmd.process_group(0).spawn()? };
        let status = child.wait()?;
        if !status.success() {
            bail!("{} exited with {status}", trainer.display());
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let mut trials = 2000u64;
    let mut trainer: Option<PathBuf> = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--trials" => trials = it.next().context("--trials needs a value")?.parse()?,
            "--trainer" => trainer = Some(it.next().context("--trainer needs a value")?.into()),
            _ => bail!("usage: floors [--trials N (2000)] [--trainer PATH (a compiled trivial trainer)]"),
        }
    }
    for (name, batched) in [("store-per-report", false), ("store-batched", true)] {
        let tmp = tempfile::Builder::new().prefix("horizon-floors-").tempdir()?;
        line(name, trials, store(tmp.path(), trials, batched)?);
    }
    if let Some(trainer) = trainer {
        let trainer = std::path::absolute(&trainer)?;
        for (name, in_group) in [("spawn-posix", false), ("spawn-in-group", true)] {
            let tmp = tempfile::Builder::new().prefix("horizon-floors-").tempdir()?;
            line(name, trials, spawn(tmp.path(), trials, &trainer, in_group)?);
        }
    }
    Ok(())
}
