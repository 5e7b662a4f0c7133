//! `horizon sweep-lr`: the constant-learning-rate sweep that picks an initial
//! `max_train_steps` (docs/method.md section 2). The decisions are `horizon_core::lr_sweep`'s; this
//! module runs the stages it asks for, each an ordinary study in
//! `<study dir>/lr-sweep/<stage>/`, and prints the report. Running it again resumes: finished
//! stages are read back from their databases, not run again.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use horizon_core::lr_sweep::{
    BudgetSource, HeldBy, LrOutcome, LrSweepSpec, Next, Observed, Side, Stage, SweepReport, Verdict, held_params,
    next_stage, stage_study,
};
use horizon_core::{StudySpec, TrialState};
use horizon_runner::RunError;
use horizon_runner::resolve::ResolvedStudy;
use horizon_store::Storage;
use serde::Serialize;

use crate::cli::SweepArgs;
use crate::run::{SignalRelay, run_study};
use crate::table::num;

/// The sweep's directory inside the study directory.
pub const SWEEP_DIR: &str = "lr-sweep";

#[derive(Serialize)]
struct SweepOutput<'a> {
    schema: &'static str,
    study: &'a str,
    param: &'a str,
    held: Vec<horizon_core::lr_sweep::Held>,
    directory: String,
    #[serde(flatten)]
    report: &'a SweepReport,
}

pub fn sweep_lr(args: SweepArgs) -> Result<ExitCode> {
    let base = ResolvedStudy::load(&args.study)?;
    let sweep = base.spec.lr_sweep_spec(&base.spec_path.display().to_string())?;
    let root = base.dir.join(SWEEP_DIR);
    let relay = SignalRelay::install()?;
    let show_bar = !args.no_progress && std::io::stderr().is_terminal();
    let mut err = std::io::stderr().lock();
    writeln!(err, "learning-rate sweep of study {}: {} held constant, fit when {}", base.spec.name, sweep.param, sweep.fit)?;
    writeln!(err, "  held: {}", describe_held(&base.spec, &sweep))?;
    drop(err);

    let mut observed = Observed::default();
    let report = loop {
        let stage = match next_stage(&sweep, &observed) {
            Next::Done(report) => break report,
            Next::Run(stage) => stage,
        };
        eprintln!("stage {}: {}", stage.name(), describe_stage(&sweep, &stage));
        let study = stage_resolved(&base, &sweep, &stage, &root)?;
        crate::run::check_study_dir(&study.dir)?;
        let storage = Arc::new(study.open_storage()?);
        let (_, study_id) = run_study(&study, storage.clone(), args.jobs, show_bar, &relay).map_err(|e| explain_incompatible(e, &root))?;
        if relay.stopped() {
            eprintln!("stopped; `horizon sweep-lr {}` resumes the sweep", args.study.display());
            return Ok(ExitCode::from(crate::EXIT_STOPPED));
        }
        let outcomes = stage_outcomes(storage.as_ref(), study_id, &sweep, &study.dir)?;
        match stage {
            Stage::FindSteps { .. } => {
                let outcome = outcomes.into_iter().next().map(|(_, o)| o).context("the find-steps stage ran no trial")?;
                if let LrOutcome::Fit { steps } = outcome {
                    eprintln!("  fit at step {steps}: N = {}", sweep.found_budget(steps));
                }
                observed.find_steps = Some(outcome);
            }
            Stage::Grid { .. } => observed.grids.push(outcomes),
        }
    };

    let mut out = std::io::stdout().lock();
    if args.json {
        let output = SweepOutput {
            schema: "horizon.lr-sweep/1",
            study: &base.spec.name,
            param: &sweep.param,
            held: held_params(&base.spec, &sweep),
            directory: root.display().to_string(),
            report: &report,
        };
        writeln!(out, "{}", serde_json::to_string(&output)?)?;
    } else {
        write!(out, "{}", render_report(&sweep, &report, &root))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The stage's study, bound to its directory under the sweep's.
fn stage_resolved(base: &ResolvedStudy, sweep: &LrSweepSpec, stage: &Stage, root: &Path) -> Result<ResolvedStudy> {
    let spec = stage_study(&base.spec, sweep, stage);
    let mut study = ResolvedStudy::new(spec, &base.spec_path)?;
    study.dir = root.join(stage.name());
    Ok(study)
}

/// A stage that was run with other settings cannot be continued: say how to start over.
fn explain_incompatible(e: anyhow::Error, root: &Path) -> anyhow::Error {
    match e.downcast_ref::<RunError>() {
        Some(RunError::Incompatible(_)) => e.context(format!(
            "the learning-rate sweep in {} was run with other settings.\n  fix: delete {} to start the sweep over (or restore the [lr_sweep] and [params] you ran it with)",
            root.display(),
            root.display()
        )),
        _ => e,
    }
}

/// Each trial's learning rate and what it did, from storage. A stage whose trials have not all
/// finished (another process still holds one) is not judged: half a grid could move an edge.
fn stage_outcomes(storage: &dyn Storage, study: horizon_store::StudyId, sweep: &LrSweepSpec, dir: &Path) -> Result<Vec<(f64, LrOutcome)>> {
    let trials = storage.trials(study)?;
    let unfinished: Vec<String> =
        trials.iter().filter(|t| matches!(t.state, TrialState::Waiting | TrialState::Running)).map(|t| t.number.to_string()).collect();
    if !unfinished.is_empty() {
        bail!(
            "trial(s) {} of the sweep stage in {} have not finished (another horizon may be running them).\n  fix: let it finish, or run `horizon sweep-lr` again once it has stopped: the stage resumes",
            unfinished.join(", "),
            dir.display()
        );
    }
    let curves = storage.study_metric(study, &sweep.fit.metric)?;
    let mut out = Vec::new();
    for t in trials {
        let lr = t.params.get(&sweep.param).and_then(|v| v.as_f64()).context("a sweep trial without its learning rate")?;
        let message = || t.message.clone().unwrap_or_else(|| t.state.to_string());
        let outcome = match t.state {
            TrialState::Complete => {
                let curve: Vec<(u64, f64)> = curves.iter().filter(|(id, _, _)| *id == t.id).map(|(_, s, v)| (*s, *v)).collect();
                match sweep.fit.first_step(&curve) {
                    Some(steps) => LrOutcome::Fit { steps },
                    None => LrOutcome::Never { best: sweep.fit.closest(&curve) },
                }
            }
            TrialState::Diverged => LrOutcome::Diverged { message: message() },
            _ => LrOutcome::Failed { message: message() },
        };
        out.push((lr, outcome));
    }
    Ok(out)
}

fn describe_held(spec: &StudySpec, sweep: &LrSweepSpec) -> String {
    let held = held_params(spec, sweep);
    if held.is_empty() {
        return "nothing else".into();
    }
    held.iter()
        .map(|h| {
            let why = match h.by {
                HeldBy::Off => "off",
                HeldBy::Set => "lr_sweep.set",
                HeldBy::Fixed => "fixed",
                HeldBy::Middle => "middle of its range",
                HeldBy::Constant => "constant learning rate",
            };
            format!("{} = {} ({why})", h.name, h.value)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_stage(sweep: &LrSweepSpec, stage: &Stage) -> String {
    match stage {
        Stage::FindSteps { lr, max_steps } => format!(
            "{} = {lr} for up to {max_steps} steps, to find N (the first of {}, {}, {}, ... steps that fits)",
            sweep.param,
            sweep.start_steps,
            2 * sweep.start_steps,
            4 * sweep.start_steps
        ),
        Stage::Grid { index: 0, lrs, steps } => {
            format!("{} constant learning rates for {steps} steps each: {}", lrs.len(), join(lrs))
        }
        Stage::Grid { lrs, steps, .. } => format!("extending the grid past its edge: {} for {steps} steps each", join(lrs)),
    }
}

fn join(lrs: &[f64]) -> String {
    lrs.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

/// The report as text: the table of learning rates, the verdict and the evidence.
pub fn render_report(sweep: &LrSweepSpec, r: &SweepReport, root: &Path) -> String {
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    line(String::new());
    match &r.budget {
        Some(BudgetSource::Given { steps }) => line(format!("N = {steps} steps (lr_sweep.steps)")),
        Some(BudgetSource::Found { lr, fit_step, start_steps, steps }) => line(format!(
            "N = {steps} steps: at {} = {lr} the training set was fit at step {fit_step}, within the doubled budget {steps} (from {start_steps})",
            sweep.param
        )),
        None => {}
    }
    if !r.results.is_empty() {
        let rows: Vec<[String; 2]> = r
            .results
            .iter()
            .map(|(lr, o)| {
                let what = match o {
                    LrOutcome::Fit { steps } if r.fastest.contains(lr) => format!("{steps}  <- fastest"),
                    LrOutcome::Fit { steps } => steps.to_string(),
                    LrOutcome::Never { best: Some(b) } => format!("never (closest {}: {})", sweep.fit.metric, num(*b)),
                    LrOutcome::Never { best: None } => "never".into(),
                    LrOutcome::Diverged { message } => format!("diverged ({message})"),
                    LrOutcome::Failed { message } => format!("failed ({message})"),
                };
                [lr.to_string(), what]
            })
            .collect();
        let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max(sweep.param.len());
        line(format!("{:<width$}  steps to fit ({})", sweep.param, r.fit));
        for [lr, what] in rows {
            line(format!("{lr:<width$}  {what}"));
        }
    }
    for (side, lrs) in &r.extensions {
        line(format!("extended the grid past its {side} edge with {}", join(lrs)));
    }
    line(String::new());
    let suggested = r.suggested_max_train_steps.map(|n| n.to_string()).unwrap_or_default();
    let fastest = join(&r.fastest);
    match &r.verdict {
        Verdict::Found => {
            line(format!(
                "fastest: {} = {fastest}, inside the swept range, fit in {suggested} steps.",
                sweep.param
            ));
            line(format!("initial max_train_steps: {suggested}"));
            line("  (docs/method.md section 2: the steps the fastest constant learning rate needs to fit the training set perfectly,".into());
            line("   without regularization or augmentation; tune the real study at this budget)".into());
        }
        Verdict::EdgeUnresolved { sides } => {
            let edge = |side: &Side| {
                let rate = match side {
                    Side::Low => r.fastest.first(),
                    Side::High => r.fastest.last(),
                };
                rate.map(|x| x.to_string()).unwrap_or_default()
            };
            let at: Vec<String> = sides.iter().map(|side| format!("the {side} edge ({})", edge(side))).collect();
            line(format!(
                "fastest: {} = {fastest}, still at {} after {} extension(s): a faster learning rate may lie beyond.",
                sweep.param,
                at.join(" and "),
                r.extensions.len()
            ));
            line(format!("upper bound on the initial max_train_steps: {suggested}"));
            let moves: Vec<String> = sides
                .iter()
                .map(|side| match side {
                    Side::Low => format!("lr_sweep.low below {}", edge(side)),
                    Side::High => format!("lr_sweep.high above {}", edge(side)),
                })
                .collect();
            line(format!("  fix: move {} or raise lr_sweep.extensions, then run sweep-lr again", moves.join(" and ")));
        }
        Verdict::CannotFit { lr, max_steps } => {
            line(format!(
                "the training set was not fit ({}) within {max_steps} steps at {} = {lr}: it cannot be fit perfectly under this setup.",
                r.fit, sweep.param
            ));
            line("  The sweep assumes a perfect fit is reachable (docs/method.md section 2). If it is not, treat the workload as".into());
            line("  compute-bound: tune in rounds with growing budgets (docs/method.md section 3), and expect regularization to".into());
            line("  help little. Or loosen lr_sweep.fit, raise lr_sweep.max_steps, or try another lr_sweep.find_lr.".into());
        }
        Verdict::FindStepsFailed { lr, message } => {
            let diverged = matches!(r.results.first(), Some((_, LrOutcome::Diverged { .. })));
            line(format!(
                "the find-steps trial at {} = {lr} {}: {message}",
                sweep.param,
                if diverged { "diverged" } else { "failed" }
            ));
            if diverged {
                line("  fix: choose a smaller lr_sweep.find_lr (it defaults to the grid's geometric middle), or give N as lr_sweep.steps".into());
            } else {
                line(format!("  fix: read the trial's log in {}/find-steps/ and fix the trainer, or give N as lr_sweep.steps", root.display()));
            }
        }
        Verdict::NothingFit { steps } => {
            line(format!("no learning rate fit the training set ({}) within N = {steps} steps.", r.fit));
            match r.budget {
                Some(BudgetSource::Found { .. }) => line(format!(
                    "  fix: give a longer N as lr_sweep.steps (above {steps}), or widen lr_sweep.low/high"
                )),
                _ => line("  fix: raise lr_sweep.steps, or widen lr_sweep.low/high".into()),
            }
        }
    }
    line(format!("trials and curves: {}/<stage> (`horizon trials DIR` works on each)", root.display()));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use horizon_core::criterion::Criterion;

    #[test]
    fn the_report_names_the_fastest_rate_and_the_budget() {
        let sweep: LrSweepSpec = serde_json::from_value(serde_json::json!({
            "param": "learning_rate", "low": 0.01, "high": 1.0, "points": 3, "fit": "train/error <= 0",
            "steps": 400, "start_steps": 100, "max_steps": 1600, "find_lr": null, "extensions": 2,
            "extend_by": 2, "eval_every": 10, "set": {}
        }))
        .unwrap();
        assert_eq!(sweep.fit, Criterion::parse("train/error <= 0").unwrap());
        let report = SweepReport {
            fit: sweep.fit.to_string(),
            budget: Some(BudgetSource::Given { steps: 400 }),
            results: vec![(0.01, LrOutcome::Never { best: Some(0.05) }), (0.1, LrOutcome::Fit { steps: 130 }), (1.0, LrOutcome::Diverged { message: "nan".into() })],
            fastest: vec![0.1],
            extensions: vec![],
            verdict: Verdict::Found,
            suggested_max_train_steps: Some(130),
        };
        let text = render_report(&sweep, &report, Path::new("/x/lr-sweep"));
        assert!(text.contains("130  <- fastest"), "{text}");
        assert!(text.contains("initial max_train_steps: 130"), "{text}");
        assert!(text.contains("diverged (nan)"), "{text}");
        assert!(text.contains("never (closest train/error: 0.05"), "{text}");
    }
}
