//! `horizon check STUDY.toml` (and `horizon run --dry-run`): parse and resolve a study file and
//! show what a run would do, without running anything: no database is created or written, no
//! directory is made. The sampler is a pure function of `(seed, index)`, so the points shown are
//! the ones the study's trials get.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use horizon_core::trial::{TrialRecord, TrialState};
use horizon_core::{Params, StudySpec};
use horizon_runner::launch::{AttemptFiles, plan};
use horizon_runner::resolve::{ResolvedStudy, find_on_path, identity_differences};
use horizon_store::{Access, StorageUrl};
use serde_json::json;

use crate::table::{param, shell_quote};

pub fn check(path: &Path, points: u64, as_json: bool) -> Result<()> {
    let study = ResolvedStudy::load(path)?;
    let spec = &study.spec;
    let sampler = spec.sampler.build(&spec.space, spec.seed).map_err(anyhow::Error::msg)?;
    let shown = points.min(spec.trials).min(sampler.capacity().unwrap_or(u64::MAX));
    let sampled: Vec<(u64, Params)> = (0..shown).map(|i| Ok((i, sampler.sample(i)?))).collect::<Result<_>>()?;
    let db = database_state(&study);

    // Trial 0's first attempt, as the runner would launch it (the trial directory is not created).
    let first = sampled.first().map(|(_, p)| p.clone()).unwrap_or_default();
    // On a ladder (or in rounds), trial 0 starts at rung 0's (round 1's) budget, asked for the
    // checkpoint a promotion (a carry) would resume from.
    let budget = match (&spec.ladder, spec.rounds.first()) {
        (Some(l), _) => l.ladder.rungs[0],
        (None, Some(r)) => r.max_train_steps,
        (None, None) => spec.max_train_steps,
    };
    let trial = TrialRecord::new(0, first, budget, TrialState::Running);
    let policy = horizon_core::claim::for_study(spec);
    let start = horizon_runner::attempt::AttemptStart { checkpoint_steps: policy.checkpoint_steps(&trial), ..Default::default() };
    let files = AttemptFiles::new(&study.trial_dir(0), 1);
    let gpu = spec.trainer.gpus.first().map(String::as_str);
    let launch = plan(spec, &trial, &files, &study.working_dir, gpu, &study.horizon_exe, &start);
    let program = launch
        .argv
        .first()
        .map(|p| if p.contains('/') { study.working_dir.join(p) } else { find_on_path(p).unwrap_or_else(|| p.into()) });

    let mut out = std::io::stdout().lock();
    if as_json {
        let doc = json!({
            "study": spec.name,
            "study_file": study.spec_path,
            "study_dir": study.dir,
            "study_dir_exists": study.dir.is_dir(),
            "database": db.json(&study),
            "working_dir": study.working_dir,
            "program": program,
            "trials": spec.trials,
            "max_train_steps": spec.max_train_steps,
            "eval_every": spec.eval_every,
            "seed": spec.seed,
            "sampler": spec.sampler,
            "ladder": spec.ladder,
            "rounds": spec.rounds,
            "points": sampled.iter().map(|(i, p)| json!({"sample_index": i, "params": p})).collect::<Vec<_>>(),
            "trial": {
                "number": 0,
                "attempt": 1,
                "trial_dir": files.trial_dir,
                "argv": launch.argv,
                "env": launch.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "working_dir": launch.working_dir,
            },
        });
        writeln!(out, "{doc}")?;
        return Ok(());
    }
    writeln!(out, "{}: a valid study file; nothing was run or written", study.spec_path.display())?;
    let size = match (&spec.ladder, spec.rounds.is_empty()) {
        (Some(_), _) => format!("{} configurations, the top rung {} steps", spec.trials, spec.max_train_steps),
        (None, false) => {
            format!("{} up to {} steps", horizon_analysis::text::plural(spec.rounds.len(), "round"), spec.max_train_steps)
        }
        (None, true) => format!("{} trials of {} steps", spec.trials, spec.max_train_steps),
    };
    writeln!(out, "  study        {} ({size}, evaluated every {}; seed {})", spec.name, spec.eval_every, spec.seed)?;
    if let Some(l) = &spec.ladder {
        let rungs: Vec<String> = l.ladder.rungs.iter().map(u64::to_string).collect();
        let resume = match (l.resume, spec.trainer.workload.is_some(), start.checkpoint_steps.first()) {
            (false, ..) => "promotions restart from scratch (resume = false)".to_string(),
            (true, true, Some(step)) => {
                format!("promotions resume from the checkpoint at the end of the shared schedule (trial 0: step {step})")
            }
            (true, true, None) => "promotions restart from scratch: this schedule shares nothing with longer budgets".to_string(),
            (true, false, _) => {
                "promotions resume where the trainer declares its schedule budget-independent (docs/protocol.md 6a)".to_string()
            }
        };
        writeln!(
            out,
            "  ladder       rungs {} (eta {}), about {} rung runs; {resume}",
            rungs.join(", "),
            l.ladder.eta,
            horizon_core::claim::planned_runs(&l.ladder, spec.trials)
        )?;
    }
    for (r, round) in spec.rounds.iter().enumerate() {
        let mut what = vec![format!("{} steps per trial", round.max_train_steps)];
        if round.carry > 0 {
            what.push(format!("the best {} of round {r} carried on (their schedule by the transfer rule)", round.carry));
        }
        if round.trials > 0 {
            what.push(if r == 0 {
                format!("{} sampled", round.trials)
            } else {
                format!("{} new from the narrowed space", round.trials)
            });
        }
        let resume = match (r, start.checkpoint_steps.first()) {
            (0, Some(step)) if spec.rounds.get(1).is_some_and(|n| n.carry > 0) => {
                format!("; carried trials resume from the checkpoint at the end of the shared schedule (trial 0: step {step})")
            }
            _ => String::new(),
        };
        writeln!(out, "  round {}      {}{resume}", r + 1, what.join(", "))?;
    }
    let exists = if study.dir.is_dir() { "exists" } else { "does not exist yet; `horizon run` creates it" };
    writeln!(out, "  study dir    {} ({exists})", study.dir.display())?;
    writeln!(out, "  database     {}", db.text(&study))?;
    writeln!(out, "  working dir  {}", study.working_dir.display())?;
    if let Some(p) = &program {
        writeln!(out, "  program      {}", p.display())?;
    }
    let sampler = serde_json::to_value(&spec.sampler)?;
    writeln!(out, "  sampler      {}", sampler)?;
    writeln!(
        out,
        "\nthe first {} (sample index: parameters; the trials get these, in this order)",
        horizon_analysis::text::plural(sampled.len(), "sampled point")
    )?;
    for (i, p) in &sampled {
        let values: Vec<String> = p.iter().map(|(n, v)| format!("{n}={}", param(v))).collect();
        writeln!(out, "  {i:>4}  {}", values.join("  "))?;
    }
    writeln!(out, "\ntrial 0, attempt 1 would run (in {}):", launch.working_dir.display())?;
    let argv: Vec<String> = launch.argv.iter().map(|a| shell_quote(a)).collect();
    writeln!(out, "  argv  {}", argv.join(" "))?;
    writeln!(out, "  env   (added to horizon's own environment)")?;
    for (k, v) in &launch.env {
        writeln!(out, "        {}", shell_quote(&format!("{k}={v}")))?;
    }
    Ok(())
}

/// What the study's database says about this file, read without writing.
enum Database {
    Missing,
    Unreadable(String),
    NoStudy,
    Matches { trials: usize, finished: usize },
    Refused { differences: Vec<String> },
}

impl Database {
    fn text(&self, study: &ResolvedStudy) -> String {
        let path = study.db_path().display().to_string();
        match self {
            Database::Missing => format!("{path} (not created yet)"),
            Database::Unreadable(e) => format!("{path} (cannot be read: {e})"),
            Database::NoStudy => format!("{path} (holds no study {:?} yet: `horizon run` creates it)", study.spec.name),
            Database::Matches { trials, finished } => {
                format!(
                    "{path} (study {:?}: {}, {finished} finished; this file matches it, so `horizon run` resumes it)",
                    study.spec.name,
                    horizon_analysis::text::plural(*trials, "trial")
                )
            }
            Database::Refused { differences } => format!(
                "{path}: `horizon run` would refuse this file: the stored study {:?} was started with different identity fields:\n    {}",
                study.spec.name,
                differences.join("\n    ")
            ),
        }
    }

    fn json(&self, study: &ResolvedStudy) -> serde_json::Value {
        let path = study.db_path();
        match self {
            Database::Missing => json!({"path": path, "state": "missing"}),
            Database::Unreadable(e) => json!({"path": path, "state": "unreadable", "error": e}),
            Database::NoStudy => json!({"path": path, "state": "no_study"}),
            Database::Matches { trials, finished } => {
                json!({"path": path, "state": "matches", "trials": trials, "finished": finished})
            }
            Database::Refused { differences } => json!({"path": path, "state": "refused", "differences": differences}),
        }
    }
}

fn database_state(study: &ResolvedStudy) -> Database {
    let path = study.db_path();
    if !path.is_file() {
        return Database::Missing;
    }
    let read = || -> Result<Database> {
        let storage = horizon_store::open(&StorageUrl::sqlite(&path), Access::ReadOnly)?;
        let Some(stored) = storage.study(&study.spec.name)? else { return Ok(Database::NoStudy) };
        let identity: serde_json::Value = serde_json::from_str(&stored.identity_json)?;
        let new = study.spec.identity();
        if !StudySpec::identity_changes(&identity, &new).is_empty() {
            return Ok(Database::Refused { differences: identity_differences(&identity, &new) });
        }
        let trials = storage.trials(stored.id)?;
        Ok(Database::Matches { trials: trials.len(), finished: trials.iter().filter(|t| t.state.is_finished()).count() })
    };
    read().unwrap_or_else(|e| Database::Unreadable(format!("{e:#}")))
}
