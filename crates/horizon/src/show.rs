//! `horizon status`, `horizon trials` and `horizon best`: read the database (opened read-only),
//! run nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use horizon_core::trial::{RungEntry, RungRecord, TrialRecord, TrialState};
use horizon_runner::resolve::trial_dir;
use horizon_runner::worker::{best_of, count_states};
use horizon_store::{CheckpointRecord, Storage};
use serde_json::json;

use crate::cli::{ShowArgs, TrialsArgs};
use crate::table::{Table, opt_int, opt_num, param};
use crate::target;

/// The schemas of the `--json` outputs (docs/json.md); each is bumped on any incompatible change.
pub const STATUS_SCHEMA: &str = "horizon.status/1";
/// One line of `horizon trials --json`.
pub const TRIAL_SCHEMA: &str = "horizon.trial/1";
pub const BEST_SCHEMA: &str = "horizon.best/1";
pub const TRIAL_DETAIL_SCHEMA: &str = "horizon.trial-detail/1";

pub fn status(args: ShowArgs) -> Result<()> {
    let t = target::open(&args.study, args.name.as_deref())?;
    let trials = t.storage.trials(t.study.id)?;
    let counts = count_states(&trials);
    let best = best_of(&trials, t.direction);
    let planned = horizon_core::trial::planned_total(t.spec.trials.unwrap_or(0), &trials);
    let ladder = ladder_report(&t)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let by_state: serde_json::Map<String, serde_json::Value> =
            TrialState::ALL.iter().map(|s| (s.as_str().to_string(), json!(counts.get(s).copied().unwrap_or(0)))).collect();
        let doc = json!({
            "schema": STATUS_SCHEMA,
            "study": t.study.name,
            "database": t.dir.join(horizon_runner::resolve::DATABASE_FILE),
            "planned_trials": planned,
            "trials": trials.len(),
            "states": by_state,
            "objective": {"metric": t.objective, "direction": t.direction},
            "max_train_steps": t.spec.max_train_steps,
            "eval_every": t.spec.eval_every,
            "best": best.map(|(trial, _)| trial_json(trial)),
            "ladder": ladder.as_ref().map(|r| serde_json::to_value(r).expect("a report is JSON")),
        });
        writeln!(out, "{doc}")?;
        return Ok(());
    }
    writeln!(out, "study    {}  ({})", t.study.name, t.dir.display())?;
    let n = |s: TrialState| counts.get(&s).copied().unwrap_or(0);
    writeln!(
        out,
        "trials   {} of {planned}: {} complete, {}{} diverged, {} failed, {} running, {} waiting",
        trials.len(),
        n(TrialState::Complete),
        match n(TrialState::Incomplete) {
            0 => String::new(),
            k => format!("{k} incomplete, "),
        },
        n(TrialState::Diverged),
        n(TrialState::Failed),
        n(TrialState::Running),
        n(TrialState::Waiting),
    )?;
    let direction = t.spec.objective.as_ref().map_or("?", |o| o.direction.as_str());
    match (t.spec.max_train_steps, t.spec.eval_every) {
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
            trial.number,
            t.objective,
            opt_num(Some(s.best_value)),
            s.best_step,
            trial.max_train_steps,
            opt_num(trial.final_value)
        )?,
        None => writeln!(out, "best     no complete trial yet")?,
    }
    if let Some(report) = &ladder {
        write!(out, "{}", render_stages(report, t.spec.ladder_rungs.is_none()))?;
    }
    Ok(())
}

/// The ladder's report (rung sizes, promotions, compute, rank agreement) when the study runs
/// one.
pub fn ladder_report(t: &target::Target) -> Result<Option<horizon_analysis::ladder::LadderReport>> {
    // A ladder's rungs, or a study's rounds (each round is a rung of the same records).
    let Some(budgets) = t.spec.stage_budgets() else { return Ok(None) };
    Ok(Some(ladder_report_of(t.storage.as_ref(), t.study.id, &budgets, t.direction)?))
}

/// The report of a ladder, or of a study's rounds (the same records, one rung per round).
pub fn render_stages(report: &horizon_analysis::ladder::LadderReport, rounds: bool) -> String {
    report.render_as(&stages_title(report, rounds))
}

/// The heading of a ladder's or a study's rounds' report: "Ladder of 4 rungs", "2 rounds".
pub fn stages_title(report: &horizon_analysis::ladder::LadderReport, rounds: bool) -> String {
    let n = report.rungs.len();
    if rounds {
        horizon_analysis::text::plural(n, "round")
    } else {
        format!("Ladder of {}", horizon_analysis::text::plural(n, "rung"))
    }
}

pub fn ladder_report_of(
    storage: &dyn Storage,
    study: horizon_store::StudyId,
    budgets: &[u64],
    direction: horizon_core::Direction,
) -> Result<horizon_analysis::ladder::LadderReport> {
    let rungs = storage.rungs(study)?;
    Ok(horizon_analysis::ladder::ladder_report(&rungs, budgets, direction))
}

pub fn trials(args: TrialsArgs) -> Result<()> {
    let t = target::open(&args.show.study, args.show.name.as_deref())?;
    let mut trials = t.storage.trials(t.study.id)?;
    if let Some(state) = args.state {
        trials.retain(|tr| tr.state == state);
    }
    let mut out = std::io::stdout().lock();
    let rungs = t.storage.rungs(t.study.id)?;
    if args.show.json {
        // Imported trials also say where they came from (`horizon import`).
        let imports: std::collections::HashMap<i64, horizon_store::ImportRecord> =
            t.storage.imports(t.study.id)?.into_iter().map(|i| (i.trial, i)).collect();
        for trial in &trials {
            let mut doc = trial_json(trial);
            doc["schema"] = json!(TRIAL_SCHEMA);
            doc["imported"] = json!(imports.get(&trial.id).map(|i| json!({"origin": i.origin, "source": i.source})));
            doc["rungs"] = rungs_json(&t, trial, &rungs);
            writeln!(out, "{doc}")?;
        }
        return Ok(());
    }
    write!(out, "{}", trials_table(&trials, &rungs, &t.objective))?;
    Ok(())
}

/// A trial's rung records in `rungs` (as storage lists them: by trial number, then rung), found
/// by binary search: the tables and `--json` of large studies stay linear.
fn rungs_of<'a>(rungs: &'a [RungRecord], trial: &TrialRecord) -> &'a [RungRecord] {
    let start = rungs.partition_point(|r| r.number < trial.number);
    let len = rungs[start..].partition_point(|r| r.number == trial.number);
    &rungs[start..start + len]
}

/// A trial's rungs as JSON, each with the schedule it ran when horizon knows it (a built-in
/// workload's, from its parameters and the rung's budget).
pub fn rungs_json(t: &target::Target, trial: &TrialRecord, rungs: &[RungRecord]) -> serde_json::Value {
    // The trainers' schedules are known from their parameters; replay has none.
    let builtin = t.spec.workload.as_deref().and_then(horizon_core::workloads::workload).is_some_and(|w| !w.common.is_empty());
    rungs_of(rungs, trial)
        .iter()
        .map(|r| {
            let mut doc = rung_json(r);
            let schedule = builtin.then(|| horizon_core::workloads::schedule_of(&r.params, r.budget)).flatten();
            doc["schedule"] = json!(schedule);
            doc
        })
        .collect()
}

/// One trial's run at one rung as JSON (an element of `trials --json`'s `rungs`).
pub fn rung_json(r: &RungRecord) -> serde_json::Value {
    let finite = |x: Option<f64>| x.filter(|v| v.is_finite());
    json!({
        "rung": r.rung,
        "budget": r.budget,
        "state": r.state.as_str(),
        "entry": r.entry,
        "best_step": r.best_step,
        "best_value": finite(r.best_value),
        "final_step": r.final_step,
        "final_value": finite(r.final_value),
        "steps_run": r.steps_run,
        "budget_independent_until": r.budget_independent_until,
        "message": r.message,
    })
}

/// A trial's ladder history in a few words: each rung's budget and best value, `r` after a
/// rung that was restarted from scratch and `<S` after one resumed from step S.
pub fn rung_history(trial: &TrialRecord, rungs: &[RungRecord]) -> String {
    let mut parts = Vec::new();
    for r in rungs_of(rungs, trial) {
        let value = match (r.state, r.best_value) {
            (TrialState::Complete, Some(v)) => opt_num(Some(v)),
            (state, _) => state.to_string(),
        };
        let how = match r.entry {
            RungEntry::Started => String::new(),
            RungEntry::Resumed { step, .. } => format!(" (from {step})"),
            RungEntry::Restarted { .. } => " (restarted)".to_string(),
        };
        parts.push(format!("{}: {value}{how}", r.budget));
    }
    parts.join(" > ")
}

pub fn best(args: ShowArgs) -> Result<()> {
    let t = target::open(&args.study, args.name.as_deref())?;
    let trials = t.storage.trials(t.study.id)?;
    let Some((trial, s)) = best_of(&trials, t.direction) else {
        bail!("study {:?} has no complete trial yet", t.study.name);
    };
    let dir = trial_dir(&t.dir, trial.number);
    // An imported run was never run here: it has an origin and a source, not a directory.
    let imported = match trial.sample_index {
        None => t.storage.imports(t.study.id)?.into_iter().find(|i| i.trial == trial.id),
        Some(_) => None,
    };
    let repro = crate::repro::reproduce(&t, trial);
    let checkpoint = best_checkpoint(&t.storage.checkpoints(trial.id)?, s.best_step, &dir);
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut doc = trial_json(trial);
        doc["schema"] = json!(BEST_SCHEMA);
        doc["trial_dir"] = match &imported {
            Some(_) => serde_json::Value::Null,
            None => json!(std::path::absolute(&dir).unwrap_or(dir.clone())),
        };
        doc["imported"] = json!(imported.as_ref().map(|i| json!({"origin": i.origin, "source": i.source})));
        doc["checkpoint"] = json!(checkpoint.as_ref().map(|(_, p)| p));
        doc["checkpoint_step"] = json!(checkpoint.as_ref().map(|(step, _)| step));
        doc["command"] = json!(repro.as_ref().map(|r| &r.argv));
        doc["env"] = repro.as_ref().map_or(serde_json::Value::Null, |r| r.env_json());
        doc["working_dir"] = json!(repro.as_ref().map(|r| &r.working_dir));
        doc["reproduce"] = json!(repro.as_ref().map(|r| r.shell_line()));
        writeln!(out, "{doc}")?;
        return Ok(());
    }
    writeln!(out, "best trial {} of study {}", trial.number, t.study.name)?;
    writeln!(
        out,
        "  {} = {} at step {} of {} (retrospectively selected; final value {})",
        t.objective,
        opt_num(Some(s.best_value)),
        s.best_step,
        trial.max_train_steps,
        opt_num(trial.final_value)
    )?;
    for (name, value) in trial.params.iter() {
        writeln!(out, "  {name} = {}", value)?;
    }
    match &imported {
        Some(i) => {
            writeln!(out, "  imported from: {}", i.origin)?;
            if let Some(source) = &i.source {
                writeln!(out, "  source: {source}")?;
            }
        }
        None => writeln!(out, "  trial directory: {}", dir.display())?,
    }
    match &checkpoint {
        Some((step, path)) => writeln!(out, "  best checkpoint (step {step}): {}", path.display())?,
        None if imported.is_some() => {}
        None => writeln!(out, "  best checkpoint: none kept (the trainer announced none at step {})", s.best_step)?,
    }
    match &repro {
        Some(r) => {
            writeln!(out, "  reproduce (fresh trial directory {}; CUDA_VISIBLE_DEVICES as you choose):", r.trial_dir.display())?;
            writeln!(out, "    {}", r.shell_line())?;
            if r.working_dir.is_none() {
                writeln!(out, "  (working directory unknown from the study directory alone: give the study file to include it)")?;
            }
        }
        None => writeln!(out, "  reproduce: not possible here (an imported run: horizon never ran it)")?,
    }
    Ok(())
}

/// The kept checkpoint at the selected step, with its path made absolute (announced paths are
/// relative to the trial directory).
pub fn best_checkpoint(checkpoints: &[CheckpointRecord], best_step: u64, trial_dir: &Path) -> Option<(u64, PathBuf)> {
    checkpoints.iter().find(|c| c.step == best_step && !c.deleted).map(|c| (c.step, checkpoint_path(trial_dir, &c.path)))
}

/// An announced checkpoint path, absolute.
pub fn checkpoint_path(trial_dir: &Path, announced: &str) -> PathBuf {
    let joined = trial_dir.join(announced);
    std::path::absolute(&joined).unwrap_or(joined)
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
        "rung": t.rung,
        "attempts": t.attempt,
        "failures": t.failures,
        "message": t.message,
        "started_at": t.started_at,
        "finished_at": t.finished_at,
    })
}

/// The table of trials that `horizon trials` and the end of `horizon run` print; a ladder's
/// trials also show their rung history (budget: best value, by rung).
pub fn trials_table(trials: &[TrialRecord], rungs: &[RungRecord], objective: &str) -> String {
    let param_names: Vec<String> =
        trials.first().map(|t| t.params.iter().map(|(n, _)| n.to_string()).collect()).unwrap_or_default();
    let ladder = rungs.iter().any(|r| r.rung > 0);
    let best_col = format!("best {objective}");
    let mut columns: Vec<(&str, bool)> = vec![("trial", true), ("state", false)];
    columns.extend(param_names.iter().map(|n| (n.as_str(), true)));
    if ladder {
        columns.push(("rung", true));
    }
    columns.extend([("best step", true), (best_col.as_str(), true), ("final", true)]);
    if ladder {
        columns.push(("rungs (budget: best)", false));
    }
    columns.push(("note", false));
    let mut table = Table::new(&columns);
    for t in trials {
        let mut row = vec![t.number.to_string(), t.state.to_string()];
        row.extend(param_names.iter().map(|n| t.params.get(n).map(param).unwrap_or_default()));
        if ladder {
            row.push(t.rung.to_string());
        }
        row.extend([opt_int(t.best_step), opt_num(t.best_value), opt_num(t.final_value)]);
        if ladder {
            row.push(rung_history(t, rungs));
        }
        row.push(shorten(t.message.as_deref().unwrap_or(""), 60));
        table.push(row);
    }
    table.render()
}

/// `text` in at most `width` characters: cut at a word boundary and marked with an ellipsis,
/// never in the middle of a number ("after 43 of 8" for "after 43 of 87").
pub fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let room: String = text.chars().take(width.saturating_sub(1)).collect();
    let cut = match room.rfind(' ') {
        Some(i) if i >= room.len() / 2 => &room[..i],
        // One long word: cut inside it rather than lose the whole note.
        _ => room.as_str(),
    };
    format!("{}…", cut.trim_end_matches([' ', ',', ';', ':', '(']))
}

#[cfg(test)]
mod shorten_tests {
    use super::shorten;

    #[test]
    fn notes_are_cut_at_words_and_marked() {
        assert_eq!(shorten("short", 60), "short");
        let note = "training loss became NaN after 43 of 87 epochs (nan_train_loss in the source)";
        let s = shorten(note, 36);
        assert!(s.ends_with('…') && s.chars().count() <= 36, "{s}");
        assert_eq!(s, "training loss became NaN after 43…");
        assert!(!shorten("stopped after 43 of 87", 21).contains(" 8…"), "{}", shorten("stopped after 43 of 87", 21));
        assert_eq!(shorten(&"x".repeat(80), 10).chars().count(), 10);
    }
}

#[cfg(test)]
mod table_snapshots {
    use super::trials_table;
    use horizon_core::trial::{RungEntry, RungRecord};
    use horizon_core::{ParamValue, Params, TrialRecord, TrialState};

    /// The trials table of a small ladder: a promoted trial resumed, one restarted, one that
    /// failed with a long message, a parameter at 0, values of very different sizes.
    #[test]
    fn the_trials_table_of_a_ladder() {
        let params = |lr: f64, wd: f64| Params(vec![("lr".into(), ParamValue::Float(lr)), ("wd".into(), ParamValue::Float(wd))]);
        let trial = |n: u64, p: Params, rung: u32, budget: u64, state: TrialState, best: Option<(u64, f64)>| TrialRecord {
            rung,
            best_step: best.map(|b| b.0),
            best_value: best.map(|b| b.1),
            final_step: best.map(|_| budget),
            final_value: best.map(|b| b.1 * 1.01),
            message: (state == TrialState::Failed)
                .then(|| "exit status 1: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB".to_string()),
            ..TrialRecord::new(n, p, budget, state)
        };
        let trials = vec![
            trial(0, params(0.3, 0.0), 1, 300, TrialState::Complete, Some((280, 0.0123))),
            trial(1, params(1.5e-5, 1e-4), 0, 100, TrialState::Complete, Some((100, 2.3))),
            trial(2, params(0.05, 0.0), 1, 300, TrialState::Complete, Some((300, 0.0456))),
            trial(3, params(0.9, 0.01), 0, 100, TrialState::Failed, None),
        ];
        let rung = |t: &TrialRecord, rung: u32, budget: u64, value: Option<f64>, entry: RungEntry| RungRecord {
            trial: t.id,
            number: t.number,
            rung,
            budget,
            state: if value.is_some() { TrialState::Complete } else { t.state },
            entry,
            best_step: value.map(|_| budget),
            best_value: value,
            final_step: None,
            final_value: None,
            budget_independent_until: None,
            steps_run: budget,
            message: None,
            started_at: None,
            finished_at: None,
            params: t.params.clone(),
        };
        let rungs = vec![
            rung(&trials[0], 0, 100, Some(0.05), RungEntry::Started),
            rung(&trials[0], 1, 300, Some(0.0123), RungEntry::Resumed { from: 0, step: 80 }),
            rung(&trials[1], 0, 100, Some(2.3), RungEntry::Started),
            rung(&trials[2], 0, 100, Some(0.09), RungEntry::Started),
            rung(&trials[2], 1, 300, Some(0.0456), RungEntry::Restarted { from: 0 }),
            rung(&trials[3], 0, 100, None, RungEntry::Started),
        ];
        insta::assert_snapshot!(trials_table(&trials, &rungs, "valid/loss"));
    }
}
