//! `horizon run`: run or resume a study, with progress, signals and a final table.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::channel;

use anyhow::Result;
use horizon_runner::resolve::ResolvedStudy;
use horizon_runner::worker::{Control, ControlHandle, Worker, WorkerOptions, best_of};
use horizon_store::Storage;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::cli::RunArgs;
use crate::table::num;

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let study = ResolvedStudy::load(&args.study)?;
    let storage = Arc::new(study.open_storage()?);
    let (events_tx, events_rx) = channel();
    let options = WorkerOptions { jobs: args.jobs.max(1), ..WorkerOptions::default() };
    let worker = Worker::new(study.clone(), storage.clone(), options, events_tx)?;
    let study_id = worker.study().id;
    watch_signals(worker.control_handle())?;
    let spec = study.spec.clone();
    let show_bar = !args.no_progress && std::io::stderr().is_terminal();
    let reporter = crate::progress::spawn(events_rx, show_bar, spec.objective.metric.clone(), spec.objective.direction, spec.trainer.retries);
    let summary = worker.run();
    let _ = reporter.join();
    let summary = summary?;

    let trials = storage.trials(study_id)?;
    let mut out = std::io::stdout().lock();
    writeln!(out)?;
    write!(out, "{}", crate::show::trials_table(&trials, &spec.objective.metric))?;
    if let Some((t, s)) = best_of(&trials, spec.objective.direction) {
        writeln!(
            out,
            "\nbest: trial {} with {} {} at step {} of {} ({}% of the budget)",
            t.number,
            spec.objective.metric,
            num(s.best_value),
            s.best_step,
            t.max_train_steps,
            (100.0 * s.best_step as f64 / t.max_train_steps as f64).round()
        )?;
    }
    let unfinished = trials.iter().filter(|t| !t.state.is_finished()).count() as u64
        + spec.trials.saturating_sub(trials.len() as u64);
    if summary.stopped_early && unfinished > 0 {
        writeln!(out, "stopped with {unfinished} trial(s) left; `horizon run {}` resumes the study", args.study.display())?;
        return Ok(ExitCode::from(crate::EXIT_STOPPED));
    }
    Ok(ExitCode::SUCCESS)
}

/// First Ctrl-C drains (no new trials), a second one terminates; SIGTERM terminates.
fn watch_signals(control: ControlHandle) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        let mut interrupts = 0;
        for signal in signals.forever() {
            if signal == SIGINT {
                interrupts += 1;
            }
            control.send(if signal == SIGINT && interrupts == 1 { Control::Drain } else { Control::Terminate });
        }
    });
    Ok(())
}
