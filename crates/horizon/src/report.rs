//! `horizon report`: the study's HTML report (`horizon_report`), from what `analyze` reads plus
//! the study card, the best trial's schedules and the study's learning-rate sweep.

use std::io::Write;

use anyhow::{Context, Result};
use horizon_core::TrialState;
use horizon_report::{ReportInput, StudyCard};
use horizon_runner::worker::{best_of, count_states};

use crate::cli::ReportArgs;
use crate::target;

pub fn report(args: ReportArgs) -> Result<()> {
    let t = target::open(&args.study, args.name.as_deref())?;
    let read = crate::analyze::read(&t)?;
    let all = t.storage.trials(t.study.id)?;
    let counts = count_states(&all);
    let best = best_of(&all, t.direction);
    let study_file = match &t.spec_path {
        Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?),
        None => Some(serde_json::to_string_pretty(&t.spec.raw)?),
    };
    let card = StudyCard {
        name: t.study.name.clone(),
        objective: t.objective.clone(),
        direction: t.direction.as_str().to_string(),
        study_file,
        states: TrialState::ALL
            .iter()
            .filter_map(|s| counts.get(s).filter(|n| **n > 0).map(|n| (s.as_str().to_string(), *n)))
            .collect(),
        best: best.map(|(tr, s)| (tr.number, s.best_value, s.best_step, tr.max_train_steps)),
        reproduce: best.and_then(|(tr, _)| crate::repro::reproduce(&t, tr)).map(|r| r.shell_line()),
        imported_from: t.spec.imported_from.clone(),
    };
    // The best trial's schedule at each budget it ran (the built-in trainers').
    let rungs = t.storage.rungs(t.study.id)?;
    let schedules = match (best, t.spec.workload.as_deref().and_then(horizon_core::workloads::workload)) {
        (Some((tr, _)), Some(w)) if !w.common.is_empty() && read.ladder.is_some() => rungs
            .iter()
            .filter(|g| g.trial == tr.id)
            .filter_map(|g| horizon_core::workloads::schedule_of(&g.params, g.budget).map(|s| (g.budget, s)))
            .collect(),
        _ => Vec::new(),
    };
    let sweep = stored_sweep(&t)?;
    let title = read.ladder.as_ref().map(|l| crate::show::stages_title(l, t.spec.ladder_rungs.is_none()));
    let input = ReportInput {
        card,
        data: &read.data,
        analysis: &read.analysis,
        stages: read.ladder.as_ref().zip(title),
        rounds: read.rounds.as_deref().unwrap_or(&[]),
        schedules,
        sweep: sweep.as_ref().map(|(p, r)| (p.clone(), r)),
    };
    let report = horizon_report::extract(&input);
    let html = horizon_report::render(&report);
    let path = args.output.clone().unwrap_or_else(|| t.dir.join("report.html"));
    write_atomically(&path, html.as_bytes())?;
    let sections: Vec<&str> = [
        Some("study card"),
        report.budget.as_ref().map(|_| "budget verdict"),
        (!report.curves.is_empty()).then_some("training curves"),
        (!report.axes.is_empty()).then_some("axis and isolation plots"),
        report.sweep.as_ref().map(|_| "learning-rate sweep"),
        report.stages.as_ref().map(|s| if s.rounds { "rounds" } else { "ladder" }),
    ]
    .into_iter()
    .flatten()
    .collect();
    writeln!(std::io::stderr(), "wrote {} ({} KB): {}", path.display(), html.len().div_ceil(1024), sections.join(", "))?;
    Ok(())
}

/// The study's learning-rate sweep (`horizon sweep-lr`), when the report was asked of the study
/// file and its sweep has run to the end.
fn stored_sweep(t: &target::Target) -> Result<Option<(String, horizon_core::lr_sweep::SweepReport)>> {
    let Some(path) = &t.spec_path else { return Ok(None) };
    let root = t.dir.join(crate::sweep::SWEEP_DIR);
    if !root.is_dir() {
        return Ok(None);
    }
    let base = horizon_runner::resolve::ResolvedStudy::load(path)?;
    let origin = base.spec_path.display().to_string();
    let sweep = base.spec.lr_sweep_spec(&origin)?;
    let held = horizon_core::lr_sweep::held_params(&base.spec, &sweep, &origin)?;
    let param = sweep.param.clone();
    let mut plan = horizon_runner::stages::LrSweepPlan::new(base, sweep, held, root);
    Ok(plan.stored_report()?.map(|r| (param, r)))
}

/// Write `bytes` to `path` through a temporary file beside it, so a reader never sees half a
/// report.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "report.html".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    // A new file (never one planted there, nor a link followed), then renamed over the target.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing {}", path.display()))
}
