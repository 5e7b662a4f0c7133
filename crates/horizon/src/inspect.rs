//! `horizon trial STUDY N`: one trial in full; `horizon export`: metrics as CSV or JSON Lines.
//! Both read the database opened read-only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use horizon_core::MetricPoint;
use horizon_core::rng::trial_seed;
use horizon_core::trial::TrialRecord;
use horizon_runner::resolve::trial_dir;
use horizon_store::AttemptRecord;
use serde_json::json;

use crate::cli::{ExportArgs, ExportFormat, TrialArgs};
use crate::show::{checkpoint_path, trial_json};
use crate::table::{Table, num, opt_int, opt_num, param};
use crate::target::{self, Target};

pub fn trial(args: TrialArgs) -> Result<()> {
    let t = target::open(&args.show.study, args.show.name.as_deref())?;
    let trial = find_trial(&t, args.number)?;
    let dir = trial_dir(&t.dir, trial.number);
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let attempts = t.storage.attempts(trial.id)?;
    let warnings = t.storage.warnings(trial.id)?;
    let checkpoints = t.storage.checkpoints(trial.id)?;
    let metrics = t.storage.metrics(trial.id)?;
    let imported = t.storage.imports(t.study.id)?.into_iter().find(|i| i.trial == trial.id);
    let files = list_files(&dir);
    let seed = (trial.sample_index.is_some() || imported.is_none()).then(|| trial_seed(t.spec.seed.unwrap_or(0), trial.number));
    let curves = curves(&metrics);
    let rungs: Vec<_> = t.storage.rungs(t.study.id)?.into_iter().filter(|r| r.trial == trial.id).collect();

    let mut out = std::io::stdout().lock();
    if args.show.json {
        let mut record = trial_json(&trial);
        record["schema"] = json!(crate::show::TRIAL_SCHEMA);
        record["rungs"] = crate::show::rungs_json(&t, &trial, &rungs);
        record["imported"] = json!(imported.as_ref().map(|i| json!({"origin": i.origin, "source": i.source})));
        let doc = json!({
            "schema": crate::show::TRIAL_DETAIL_SCHEMA,
            "study": t.study.name,
            "trial": record,
            "sample_index": trial.sample_index,
            "seed": seed,
            "trial_dir": dir,
            "imported": imported.as_ref().map(|i| json!({"origin": i.origin, "source": i.source})),
            "attempts": attempts.iter().map(attempt_json).collect::<Vec<_>>(),
            "warnings": warnings.iter().map(|w| json!({"attempt": w.attempt, "message": w.message})).collect::<Vec<_>>(),
            "checkpoints": checkpoints.iter().map(|c| json!({
                "step": c.step, "attempt": c.attempt, "path": checkpoint_path(&dir, &c.path), "kept": !c.deleted,
            })).collect::<Vec<_>>(),
            "files": files.iter().map(|(name, bytes)| json!({"name": name, "bytes": bytes})).collect::<Vec<_>>(),
            "curves": curves.iter().map(|(name, points)| {
                (name.clone(), json!(points.iter().map(|(step, v)| json!({"step": step, "value": value_json(*v)})).collect::<Vec<_>>()))
            }).collect::<serde_json::Map<_, _>>(),
        });
        writeln!(out, "{doc}")?;
        return Ok(());
    }

    writeln!(out, "trial {} of study {}: {}", trial.number, t.study.name, trial.state)?;
    if let Some(m) = &trial.message {
        writeln!(out, "  reason      {m}")?;
    }
    let params: Vec<String> = trial.params.iter().map(|(n, v)| format!("{n} = {}", param(v))).collect();
    writeln!(out, "  parameters  {}", if params.is_empty() { "(none)".to_string() } else { params.join(", ") })?;
    match (trial.best_step, trial.best_value) {
        (Some(step), Some(value)) => writeln!(
            out,
            "  result      {} {} at step {step} of {} (final {} at step {})",
            t.objective,
            num(value),
            trial.max_train_steps,
            opt_num(trial.final_value),
            opt_int(trial.final_step)
        )?,
        _ => writeln!(out, "  result      no finite {} ({} steps budgeted)", t.objective, trial.max_train_steps)?,
    }
    if let Some(seed) = seed {
        writeln!(out, "  seed        {seed} (HORIZON_SEED)")?;
    }
    if let Some(i) = &imported {
        writeln!(out, "  imported    from {}{}", i.origin, i.source.as_deref().map(|s| format!(" ({s})")).unwrap_or_default())?;
    }
    writeln!(out, "  directory   {}", dir.display())?;
    writeln!(out, "  failures    {} (counted against retries)", trial.failures)?;
    if rungs.len() > 1 || trial.rung > 0 {
        writeln!(
            out,
            "
rungs ({}; the curves below are rung {}'s)",
            rungs.len(),
            trial.rung
        )?;
        let mut table = Table::new(&[
            ("rung", true),
            ("budget", true),
            ("state", false),
            ("how", false),
            ("best step", true),
            ("best", true),
            ("steps run", true),
        ]);
        for r in &rungs {
            table.push(vec![
                r.rung.to_string(),
                r.budget.to_string(),
                r.state.to_string(),
                r.entry.to_string(),
                opt_int(r.best_step),
                opt_num(r.best_value),
                r.steps_run.to_string(),
            ]);
        }
        write!(out, "{}", indent(&table.render()))?;
    }

    writeln!(out, "\nattempts ({})", attempts.len())?;
    if !attempts.is_empty() {
        let mut table = Table::new(&[
            ("attempt", true),
            ("rung", true),
            ("started (UTC)", false),
            ("took", true),
            ("outcome", false),
            ("exit", true),
            ("message", false),
        ]);
        for a in &attempts {
            table.push(vec![
                a.attempt.to_string(),
                a.rung.to_string(),
                utc(a.started_at),
                a.finished_at.map(|f| format!("{:.1}s", f - a.started_at)).unwrap_or_else(|| "running".into()),
                a.outcome.map(|o| o.to_string()).unwrap_or_else(|| "-".into()),
                a.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                a.message.clone().unwrap_or_default(),
            ]);
        }
        write!(out, "{}", indent(&table.render()))?;
    }

    writeln!(out, "\nwarnings ({})", warnings.len())?;
    for w in &warnings {
        writeln!(out, "  attempt {}: {}", w.attempt, w.message)?;
    }

    let kept: Vec<_> = checkpoints.iter().filter(|c| !c.deleted).collect();
    writeln!(out, "\nkept checkpoints ({} of {} announced)", kept.len(), checkpoints.len())?;
    for c in kept {
        let best = if Some(c.step) == trial.best_step { "  (best)" } else { "" };
        writeln!(out, "  step {:<8} {}{best}", c.step, checkpoint_path(&dir, &c.path).display())?;
    }

    writeln!(out, "\nfiles in the trial directory ({})", files.len())?;
    for (name, bytes) in &files {
        writeln!(out, "  {name:<32} {bytes} bytes")?;
    }

    let evaluations = metrics.iter().map(|m| m.step).collect::<std::collections::BTreeSet<_>>();
    writeln!(
        out,
        "\nmetrics ({} metrics at {} steps; `horizon export` writes them as CSV or JSON Lines)",
        curves.len(),
        evaluations.len()
    )?;
    if !curves.is_empty() {
        let names: Vec<&String> = curves.keys().collect();
        let mut columns: Vec<(&str, bool)> = vec![("step", true)];
        columns.extend(names.iter().map(|n| (n.as_str(), true)));
        let mut table = Table::new(&columns);
        let by_step: BTreeMap<(u64, &str), f64> = metrics.iter().map(|m| ((m.step, m.name.as_str()), m.value)).collect();
        for step in &evaluations {
            let mut row = vec![step.to_string()];
            row.extend(names.iter().map(|n| by_step.get(&(*step, n.as_str())).map(|v| num(*v)).unwrap_or_default()));
            table.push(row);
        }
        write!(out, "{}", indent(&table.render()))?;
    }
    Ok(())
}

pub fn export(args: ExportArgs) -> Result<()> {
    let t = target::open(&args.study, args.name.as_deref())?;
    let trials: Vec<TrialRecord> = if args.trials.is_empty() {
        t.storage.trials(t.study.id)?
    } else {
        args.trials.iter().map(|&n| find_trial(&t, n)).collect::<Result<_>>()?
    };
    let mut buffer: Vec<u8> = Vec::new();
    if args.format == ExportFormat::Csv {
        writeln!(buffer, "trial,rung,step,metric,value")?;
    }
    // Every rung a trial ran (a study without a ladder has rung 0 only), each its own curve.
    for trial in &trials {
        for rung in 0..=trial.rung {
            for m in t.storage.rung_metrics(trial.id, rung)? {
                match args.format {
                    ExportFormat::Csv => {
                        writeln!(buffer, "{},{rung},{},{},{}", trial.number, m.step, csv_cell(&m.name), csv_value(m.value))?
                    }
                    ExportFormat::Jsonl => writeln!(
                        buffer,
                        "{}",
                        json!({"trial": trial.number, "rung": rung, "step": m.step, "metric": m.name, "value": value_json(m.value)})
                    )?,
                }
            }
        }
    }
    match &args.output {
        Some(path) => std::fs::write(path, &buffer).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().lock().write_all(&buffer)?,
    }
    Ok(())
}

fn find_trial(t: &Target, number: u64) -> Result<TrialRecord> {
    let trials = t.storage.trials(t.study.id)?;
    let count = trials.len();
    match trials.into_iter().find(|tr| tr.number == number) {
        Some(tr) => Ok(tr),
        None if count == 0 => bail!("study {:?} has no trials yet", t.study.name),
        None => bail!(
            "study {:?} has no trial {number}; its trials are numbered 0 to {}\n  fix: `horizon trials` lists them",
            t.study.name,
            count - 1
        ),
    }
}

/// Every metric's curve, by name, as (step, value) in step order.
fn curves(metrics: &[MetricPoint]) -> BTreeMap<String, Vec<(u64, f64)>> {
    let mut curves: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    for m in metrics {
        curves.entry(m.name.clone()).or_default().push((m.step, m.value));
    }
    curves
}

/// A metric value in JSON: a number, or the protocol's strings for what JSON cannot hold.
fn value_json(v: f64) -> serde_json::Value {
    if v.is_finite() { json!(v) } else { json!(csv_value(v)) }
}

/// A metric value as text that reads back exactly (`nan`, `inf`, `-inf` for the others).
fn csv_value(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{v:?}")
    }
}

/// A CSV cell, quoted when it needs to be (RFC 4180).
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn attempt_json(a: &AttemptRecord) -> serde_json::Value {
    json!({
        "attempt": a.attempt,
        "worker": a.worker,
        "host": a.host,
        "pid": a.pid,
        "started_at": a.started_at,
        "finished_at": a.finished_at,
        "outcome": a.outcome.map(|o| o.as_str()),
        "message": a.message,
        "exit_code": a.exit_code,
        "rung": a.rung,
    })
}

/// The plain files of a trial directory with their sizes, by name (none if it is missing).
fn list_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    Some(if meta.is_dir() { (format!("{name}/"), 0) } else { (name, meta.len()) })
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` in UTC.
fn utc(secs: f64) -> String {
    let total = secs.max(0.0) as i64;
    let (days, rest) = (total.div_euclid(86_400), total.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000.5), "2023-11-14 22:13:20");
    }

    #[test]
    fn values_read_back_exactly() {
        for v in [0.1, 1e-7, 1e300, -2.5, 3.0] {
            assert_eq!(csv_value(v).parse::<f64>().unwrap(), v);
        }
        assert_eq!((csv_value(f64::NAN), csv_value(f64::NEG_INFINITY)), ("nan".to_string(), "-inf".to_string()));
        assert_eq!(csv_cell("valid/loss"), "valid/loss");
        assert_eq!(csv_cell("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
