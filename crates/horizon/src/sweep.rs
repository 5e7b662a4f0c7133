//! `horizon sweep-lr`: the constant-learning-rate sweep that picks an initial
//! `max_train_steps` (docs/method.md section 2). The decisions are `horizon_core::lr_sweep`'s and
//! the stage loop is `horizon_runner::stages` (the one rounds use): [`LrSweepPlan`] names each
//! grid, an ordinary study in `<study dir>/lr-sweep/<stage>/` with the policy `lr_sweep::stops`
//! as the worker's scheduler (it stops trials that cannot change the answer). This module runs
//! them with progress and prints the report. Running it again resumes: finished stages are read
//! back from their databases, not run again.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use horizon_core::lr_sweep::{
    BudgetSource, Held, HeldBy, LrOutcome, LrSweepSpec, Side, SweepReport, Verdict, held_params, shapes_the_schedule,
};
use horizon_runner::RunError;
use horizon_runner::resolve::ResolvedStudy;
use horizon_runner::stages::{Driven, LrSweepPlan, StageEnd, drive};
use serde::Serialize;

use crate::cli::SweepArgs;
use crate::run::SignalRelay;
use crate::table::num;

/// The sweep's directory inside the study directory.
pub const SWEEP_DIR: &str = "lr-sweep";

#[derive(Serialize)]
struct SweepOutput<'a> {
    schema: &'static str,
    study: &'a str,
    param: &'a str,
    held: &'a [Held],
    directory: String,
    #[serde(flatten)]
    report: &'a SweepReport,
}

pub fn sweep_lr(args: SweepArgs) -> Result<ExitCode> {
    let base = ResolvedStudy::load(&args.study)?;
    let origin = base.spec_path.display().to_string();
    let sweep = base.spec.lr_sweep_spec(&origin)?;
    // Refused before anything runs: a schedule that cannot be made constant, a parameter
    // without a value to hold it at.
    let held = held_params(&base.spec, &sweep, &origin)?;
    let root = base.dir.join(SWEEP_DIR);
    let relay = SignalRelay::install()?;
    let show_bar = !args.no_progress && std::io::stderr().is_terminal();
    let mut err = std::io::stderr().lock();
    writeln!(err, "learning-rate sweep of study {}: {} held constant, fit when {}", base.spec.name, sweep.param, sweep.fit)?;
    writeln!(err, "  held: {}", describe_held(&base.spec, &held))?;
    if base.spec.trainer.workload.is_none() && !held.iter().any(|h| h.by == HeldBy::Constant || shapes_the_schedule(&h.name)) {
        writeln!(
            err,
            "  note: no parameter sets the learning-rate schedule, so the trainer must keep {} constant itself; if one does, declare its constant value ([params.NAME] constant = VALUE, docs/lr-sweep.md)",
            sweep.param
        )?;
    }
    drop(err);

    let mut plan = LrSweepPlan::new(base.clone(), sweep.clone(), held.clone(), root.clone());
    let driven = drive(&mut plan, |stage| -> Result<StageEnd> {
        eprintln!("{}", stage.headline);
        crate::run::check_study_dir(&stage.study.dir)?;
        let storage = stage.study.open_storage()?;
        let (summary, _) = crate::run::run_stage(
            stage,
            storage,
            horizon_runner::worker::WorkerOptions { jobs: args.jobs.max(1), ..Default::default() },
            crate::progress::Reporting::Human { bar: show_bar },
            &relay,
        )
        .map_err(|e| explain_incompatible(e, &root))?;
        Ok(if summary.stopped_early || relay.stopped() { StageEnd::Stopped } else { StageEnd::Ran })
    })?;
    let report = match driven {
        Driven::Done(report) => report,
        Driven::Stopped => {
            eprintln!("stopped; `horizon sweep-lr {}` resumes the sweep", args.study.display());
            return Ok(ExitCode::from(crate::EXIT_STOPPED));
        }
    };

    let mut out = std::io::stdout().lock();
    if args.json {
        let output = SweepOutput {
            schema: "horizon.lr-sweep/2",
            study: &base.spec.name,
            param: &sweep.param,
            held: &held,
            directory: root.display().to_string(),
            report: &report,
        };
        writeln!(out, "{}", serde_json::to_string(&output)?)?;
    } else {
        write!(out, "{}", render_report(&sweep, &report, &root))?;
    }
    Ok(ExitCode::SUCCESS)
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

fn describe_held(spec: &horizon_core::StudySpec, held: &[Held]) -> String {
    if held.is_empty() {
        return "nothing else".into();
    }
    let workload = spec.trainer.workload.as_deref().unwrap_or("the workload");
    held.iter()
        .map(|h| {
            let why = match h.by {
                HeldBy::Off => "off".to_string(),
                HeldBy::Set => "lr_sweep.set".to_string(),
                HeldBy::Fixed => "fixed".to_string(),
                HeldBy::Default => format!("{workload}'s default"),
                HeldBy::Constant => "constant learning rate".to_string(),
            };
            format!("{} = {} ({why})", h.name, h.value)
        })
        .collect::<Vec<_>>()
        .join(", ")
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
        BudgetSource::Given { steps } => line(format!("N = {steps} steps (lr_sweep.steps)")),
        BudgetSource::Cap { steps } => {
            line(format!("budget: the cap, {steps} steps (lr_sweep.max_steps); the fastest fit bounds every other rate"))
        }
    }
    if !r.results.is_empty() {
        let closest =
            |best: &Option<f64>| best.map(|b| format!("; closest {}: {}", sweep.fit.metric, num(b))).unwrap_or_default();
        let rows: Vec<[String; 2]> = r
            .results
            .iter()
            .map(|(lr, o)| {
                let what = match o {
                    LrOutcome::Fit { steps } if r.fastest.contains(lr) => format!("{steps}  <- fastest"),
                    LrOutcome::Fit { steps } => steps.to_string(),
                    LrOutcome::Never { best: Some(b) } => format!("never (closest {}: {})", sweep.fit.metric, num(*b)),
                    LrOutcome::Never { best: None } => "never".into(),
                    LrOutcome::Slower { than, best } => format!("slower (not fit by step {than}{})", closest(best)),
                    LrOutcome::Stalled { at, best } => format!("stalled (no progress by step {at}{})", closest(best)),
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
    match r.suggested_max_train_steps.filter(|n| *n > 0) {
        Some(n) => line(format!(
            "trained: {} steps in all, {:.1}x the fastest rate's steps-to-fit",
            r.trained_steps,
            r.trained_steps as f64 / n as f64
        )),
        None => line(format!("trained: {} steps in all", r.trained_steps)),
    }
    line(String::new());
    let suggested = r.suggested_max_train_steps.map(|n| n.to_string()).unwrap_or_default();
    let fastest = join(&r.fastest);
    match &r.verdict {
        Verdict::Found => {
            line(format!("fastest: {} = {fastest}, inside the swept range, fit in {suggested} steps.", sweep.param));
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
                "fastest: {} = {fastest}, still at {} after {}: a faster learning rate may lie beyond.",
                sweep.param,
                at.join(" and "),
                horizon_analysis::text::plural(r.extensions.len(), "extension")
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
        Verdict::NothingFit { steps } => {
            match r.budget {
                BudgetSource::Cap { .. } => {
                    line(format!(
                        "the training set was not fit ({}) within {steps} steps at any learning rate: it cannot be fit perfectly under this setup.",
                        r.fit
                    ));
                    line("  The sweep assumes a perfect fit is reachable (docs/method.md section 2). If it is not, treat the workload as".into());
                    line("  compute-bound: tune in rounds with growing budgets (docs/method.md section 3), and expect regularization to".into());
                    line("  help little. Or loosen lr_sweep.fit, raise lr_sweep.max_steps, or widen lr_sweep.low/high.".into());
                }
                BudgetSource::Given { .. } => {
                    line(format!("no learning rate fit the training set ({}) within N = {steps} steps.", r.fit));
                    line("  fix: raise lr_sweep.steps (or leave it out to run against lr_sweep.max_steps), or widen lr_sweep.low/high".into());
                }
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
    fn the_report_names_the_fastest_rate_the_budget_and_the_cost() {
        let sweep: LrSweepSpec = serde_json::from_value(serde_json::json!({
            "param": "learning_rate", "low": 0.01, "high": 1.0, "points": 3, "fit": "train/error <= 0",
            "steps": null, "max_steps": 1600, "patience": 100, "prune": true, "extensions": 2,
            "extend_by": 2, "eval_every": 10, "set": {}
        }))
        .unwrap();
        assert_eq!(sweep.fit, Criterion::parse("train/error <= 0").unwrap());
        let report = SweepReport {
            fit: sweep.fit.to_string(),
            budget: BudgetSource::Cap { steps: 1600 },
            results: vec![
                (0.001, LrOutcome::Stalled { at: 100, best: Some(0.9) }),
                (0.01, LrOutcome::Slower { than: 130, best: Some(0.05) }),
                (0.1, LrOutcome::Fit { steps: 130 }),
                (1.0, LrOutcome::Diverged { message: "nan".into() }),
            ],
            fastest: vec![0.1],
            extensions: vec![],
            verdict: Verdict::Found,
            suggested_max_train_steps: Some(130),
            trained_steps: 390,
        };
        let text = render_report(&sweep, &report, Path::new("/x/lr-sweep"));
        assert!(text.contains("130  <- fastest"), "{text}");
        assert!(text.contains("initial max_train_steps: 130"), "{text}");
        assert!(text.contains("diverged (nan)"), "{text}");
        assert!(text.contains("slower (not fit by step 130; closest train/error: 0.05"), "{text}");
        assert!(text.contains("stalled (no progress by step 100; closest train/error: 0.9"), "{text}");
        assert!(text.contains("trained: 390 steps in all, 3.0x the fastest rate's steps-to-fit"), "{text}");
    }
}
