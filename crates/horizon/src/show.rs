//! `horizon status`, `horizon trials` and `horizon best`: read the database, run nothing.

use std::io::Write;

use anyhow::{Result, bail};
use horizon_core::rng::trial_seed;
use horizon_core::spec::{Builtins, expand_template, parse_template};
use horizon_core::trial::{TrialRecord, TrialState};
use horizon_runner::resolve::trial_dir;
use horizon_runner::worker::{best_of, count_states};
use horizon_store::Storage;
use serde_json::json;

use crate::cli::{ShowArgs, TrialsArgs};
use crate::table::{Table, opt_int, opt_num, param, shell_quote};
use crate::target::{self, Target};

pub fn status(args: ShowArgs) -> Result<()> {
    let t = target::open(&args.study, args.name.as_deref())?;
    let trials = t.storage.trials(t.study.id)?;
    let counts = count_states(&trials);
    let best = best_of(&trials, t.direction);
    let planned = horizon_core::trial::planned_total(t.spec["trials"].as_u64().unwrap_or(0), &trials);
    let mut out = std::io::stdout().lock();
    if args.json {
        let by_state: serde_json::Map<String, serde_json::Value> =
            TrialState::ALL.iter().map(|s| (s.as_str().to_string(), json!(counts.get(s).copied().unwrap_or(0)))).collect();
        let doc = json!({
            "study": t.study.name,
            "database": t.dir.join(horizon_runner::resolve::DATABASE_FILE),
            "planned_trials": planned,
            "trials": trials.len(),
            "states": by_state,
            "objective": {"metric": t.objective, "direction": t.spec["objective"]["direction"]},
            "max_train_steps": t.spec["max_train_steps"],
            "eval_every": t.spec["eval_every"],
            "best": best.map(|(trial, _)| trial_json(trial)),
        });
        writeln!(out, "{doc}")?;
        return Ok(());
    }
    writeln!(out, "study    {}  ({})", t.study.name, t.dir.display())?;
    let n = |s: TrialState| counts.get(&s).copied().unwrap_or(0);
    writeln!(
        out,
        "trials   {} of {planned}: {} complete, {} diverged, {} failed, {} running, {} waiting",
        trials.len(),
        n(TrialState::Complete),
        n(TrialState::Diverged),
        n(TrialState::Failed),
        n(TrialState::Running),
        n(TrialState::Waiting),
    )?;
    let direction = t.spec["objective"]["direction"].as_str().unwrap_or("?");
    match (t.spec["max_train_steps"].as_u64(), t.spec["eval_every"].as_u64()) {
        (Some(steps), Some(every)) => writeln!(
            out,
            "budget   max_train_steps {steps}, evaluated every {every} steps; objective {} ({direction})",
            t.objective
        )?,
        // Imported runs: each keeps its own budget.
        _ => {
            let low = trials.iter().map(|t| t.max_train_steps).min().unwrap_or(0);
            let high = trials.iter().map(|t| t.max_train_steps).max().unwrap_or(0);
            let budgets = if low == high { low.to_string() } else { format!("{low} to {high}") };
            writeln!(out, "budget   each run its own (imported): {budgets} steps; objective {} ({direction})", t.objective)?
        }
    }
    match best {
        Some((trial, s)) => writeln!(
            out,
            "best     trial {}: {} {} at step {} of {} (final {})",
            trial.number, t.objective, opt_num(Some(s.best_value)), s.best_step, trial.max_train_steps, opt_num(trial.final_value)
        )?,
        None => writeln!(out, "best     no complete trial yet")?,
    }
    Ok(())
}

pub fn trials(args: TrialsArgs) -> Result<()> {
    let t = target::open(&args.show.study, args.show.name.as_deref())?;
    let mut trials = t.storage.trials(t.study.id)?;
    if let Some(state) = &args.state {
        let Some(state) = TrialState::parse(state) else {
            bail!("--state {state:?} is not a trial state; use one of waiting, running, complete, diverged, failed");
        };
        trials.retain(|tr| tr.state == state);
    }
    let mut out = std::io::stdout().lock();
    if args.show.json {
        // Imported trials also say where they came from (`horizon import`).
        let imports: std::collections::HashMap<i64, horizon_store::ImportRecord> =
            t.storage.imports(t.study.id)?.into_iter().map(|i| (i.trial, i)).collect();
        for trial in &trials {
            let mut doc = trial_json(trial);
            if let Some(i) = imports.get(&trial.id) {
                doc["imported"] = json!({"origin": i.origin, "source": i.source});
            }
            writeln!(out, "{doc}")?;
        }
        return Ok(());
    }
    write!(out, "{}", trials_table(&trials, &t.objective))?;
    Ok(())
}

pub fn best(args: ShowArgs) -> Result<()> {
    let t = target::open(&args.study, args.name.as_deref())?;
    let trials = t.storage.trials(t.study.id)?;
    let Some((trial, s)) = best_of(&trials, t.direction) else {
        bail!("study {:?} has no complete trial yet", t.study.name);
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", trial_json(trial))?;
        return Ok(());
    }
    writeln!(out, "best trial {} of study {}", trial.number, t.study.name)?;
    writeln!(out, "  {} = {} at step {} of {} (retrospectively selected; final value {})",
        t.objective, opt_num(Some(s.best_value)), s.best_step, trial.max_train_steps, opt_num(trial.final_value))?;
    for (name, value) in trial.params.iter() {
        writeln!(out, "  {name} = {}", value)?;
    }
    let dir = trial_dir(&t.dir, trial.number);
    writeln!(out, "  trial directory: {}", dir.display())?;
    if let Some(cmd) = reproduce(&t, trial, &dir) {
        writeln!(out, "  reproduce: {cmd}")?;
    }
    Ok(())
}

/// The trial's command line, with its values filled in, for the user to rerun by hand.
fn reproduce(t: &Target, trial: &TrialRecord, dir: &std::path::Path) -> Option<String> {
    let seed = trial_seed(t.spec["seed"].as_u64().unwrap_or(0), trial.number);
    if let Some(workload) = t.spec["trainer"]["workload"].as_str() {
        return Some(format!(
            "built-in workload {workload} with these parameters, {} steps and HORIZON_SEED={seed} (same seed, same curve)",
            trial.max_train_steps
        ));
    }
    let args = t.spec["trainer"]["command_text"].as_array()?;
    let builtins = Builtins {
        max_train_steps: trial.max_train_steps,
        eval_every: t.spec["eval_every"].as_u64().unwrap_or(0),
        trial_dir: dir.display().to_string(),
        trial_number: trial.number,
        seed,
        metrics_file: "metrics.jsonl".into(),
    };
    let lookup = |name: &str| builtins.value(name, &trial.params);
    let words: Vec<String> = args
        .iter()
        .map(|a| {
            let text = a.as_str().unwrap_or_default();
            let expanded = parse_template(text).map(|p| expand_template(&p, &lookup)).unwrap_or_else(|_| text.to_string());
            shell_quote(&expanded)
        })
        .collect();
    Some(words.join(" "))
}

/// One trial as a JSON object (the `trials --json` line format; NaN becomes null).
pub fn trial_json(t: &TrialRecord) -> serde_json::Value {
    let finite = |x: Option<f64>| x.filter(|v| v.is_finite());
    json!({
        "number": t.number,
        "state": t.state.as_str(),
        "params": t.params,
        "max_train_steps": t.max_train_steps,
        "best_step": t.best_step,
        "best_value": finite(t.best_value),
        "best_fraction": t.best_step.map(|s| s as f64 / t.max_train_steps as f64),
        "final_step": t.final_step,
        "final_value": finite(t.final_value),
        "attempts": t.attempt,
        "failures": t.failures,
        "message": t.message,
        "started_at": t.started_at,
        "finished_at": t.finished_at,
    })
}

/// The table of trials that `horizon trials` and the end of `horizon run` print.
pub fn trials_table(trials: &[TrialRecord], objective: &str) -> String {
    let param_names: Vec<String> = trials.first().map(|t| t.params.iter().map(|(n, _)| n.to_string()).collect()).unwrap_or_default();
    let best_col = format!("best {objective}");
    let mut columns: Vec<(&str, bool)> = vec![("trial", true), ("state", false)];
    columns.extend(param_names.iter().map(|n| (n.as_str(), true)));
    columns.extend([("best step", true), (best_col.as_str(), true), ("final", true), ("note", false)]);
    let mut table = Table::new(&columns);
    for t in trials {
        let mut row = vec![t.number.to_string(), t.state.to_string()];
        row.extend(param_names.iter().map(|n| t.params.get(n).map(param).unwrap_or_default()));
        let note: String = t.message.as_deref().unwrap_or("").chars().take(60).collect();
        row.extend([opt_int(t.best_step), opt_num(t.best_value), opt_num(t.final_value), note]);
        table.push(row);
    }
    table.render()
}
