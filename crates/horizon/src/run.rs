//! `horizon run`: run or resume a study, with progress, signals and a final table.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};

use std::path::Path;

use anyhow::{Result, bail};
use horizon_runner::resolve::ResolvedStudy;
use horizon_runner::stages::{Driven, Stage, StageEnd, StudyPlan, drive};
use horizon_runner::worker::{Control, ControlHandle, Worker, WorkerOptions, WorkerSummary, best_of};
use horizon_store::{Storage, StudyId};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::cli::RunArgs;
use crate::progress::Reporting;
use crate::table::num;

pub fn run(args: RunArgs) -> Result<ExitCode> {
    if args.dry_run {
        crate::check::check(&args.study, 5, false)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut study = ResolvedStudy::load(&args.study)?;
    if let Some(url) = &args.storage {
        study = study.with_storage(horizon_store::StorageUrl::parse(url)?);
    }
    let again = match &args.storage {
        Some(url) => {
            format!("horizon run {} --storage {}", args.study.display(), horizon_store::StorageUrl::parse(url)?.redacted())
        }
        None => format!("horizon run {}", args.study.display()),
    };
    let options = RunOptions {
        jobs: args.jobs,
        lease_timeout: WorkerOptions::default().lease_timeout,
        no_progress: args.no_progress,
        json: args.json,
        again,
    };
    run_resolved(study, &options)
}

/// How a study is run, whoever asked (`horizon run`, `horizon worker`).
pub struct RunOptions {
    pub jobs: usize,
    /// A worker on another host whose lease was last renewed longer ago than this is presumed
    /// dead, and its trial requeued.
    pub lease_timeout: std::time::Duration,
    pub no_progress: bool,
    pub json: bool,
    /// The command that resumes the study, for the message when it is stopped.
    pub again: String,
}

/// Run a resolved study to its end (or until stopped), with progress, each round's checks and
/// the final table; the exit code says which.
pub fn run_resolved(study: ResolvedStudy, args: &RunOptions) -> Result<ExitCode> {
    check_study_dir(&study.dir)?;
    let storage = study.open_storage()?;
    note_lowered_trials(&study, storage.as_ref(), &study.spec_path)?;
    note_poor_transfer(&study.spec);
    let relay = SignalRelay::install()?;
    let show_bar = !args.no_progress && std::io::stderr().is_terminal();
    let reporting = if args.json { Reporting::Json } else { Reporting::Human { bar: show_bar } };
    // A study in rounds runs round by round (each round's checks are read at its end); any
    // other study is one stage.
    let mut plan = StudyPlan::new(study.clone(), storage.clone());
    let rounds = horizon_core::claim::RoundsPolicy::of_study(&study.spec);
    let driven = drive(&mut plan, |stage| -> Result<StageEnd> {
        if !stage.headline.is_empty() {
            eprintln!("{}", stage.headline);
        }
        let round = stage.round;
        let options = WorkerOptions { jobs: args.jobs.max(1), lease_timeout: args.lease_timeout, ..WorkerOptions::default() };
        let (summary, _) = run_stage(stage, storage.clone(), options, reporting, &relay)?;
        if summary.stopped_early {
            return Ok(StageEnd::Stopped);
        }
        // The end of a round: what the method asks to re-check, with the numbers.
        if let (Some(r), Some(policy)) = (round, &rounds)
            && let Some(record) = storage.study(&study.spec.name)?
        {
            let spec = &study.spec;
            let all = crate::rounds::findings(
                storage.as_ref(),
                &record,
                policy,
                &spec.objective.metric,
                spec.objective.direction,
                &spec.analysis,
            )?;
            if let Some(f) = all.get(r) {
                let mut out = std::io::stdout().lock();
                if args.json {
                    let doc = serde_json::json!({
                        "schema": horizon_runner::worker::EVENT_SCHEMA, "event": "round_finished", "round": r, "checks": f,
                    });
                    writeln!(out, "{doc}")?;
                } else {
                    writeln!(out, "\n{}", f.render().trim_end())?;
                }
                out.flush()?;
            }
        }
        Ok(StageEnd::Ran)
    })?;
    let Some(record) = storage.study(&study.spec.name)? else { bail!("study {:?} was not created", study.spec.name) };
    let study_id = record.id;
    let spec = &study.spec;

    let trials = storage.trials(study_id)?;
    // Stopped with work left: trials not yet finished, or rungs and rounds not yet run.
    let finished = trials.iter().filter(|t| t.state.is_finished()).count() as u64;
    let unfinished = horizon_core::trial::planned_total(spec.trials, &trials) - finished;
    let stopped = driven == Driven::Stopped && (unfinished > 0 || work_remains(&study, storage.as_ref(), &record)?);
    let mut out = std::io::stdout().lock();
    if args.json {
        // The run's last line: how it ended and the best trial.
        let doc = serde_json::json!({
            "schema": horizon_runner::worker::EVENT_SCHEMA,
            "event": "finished",
            "study": spec.name,
            "stopped": stopped,
            "trials": trials.len(),
            "unfinished": unfinished,
            "best": best_of(&trials, spec.objective.direction).map(|(t, _)| crate::show::trial_json(t)),
        });
        writeln!(out, "{doc}")?;
        return Ok(if stopped { ExitCode::from(crate::EXIT_STOPPED) } else { ExitCode::SUCCESS });
    }
    writeln!(out)?;
    let rungs = storage.rungs(study_id)?;
    write!(out, "{}", crate::show::trials_table(&trials, &rungs, &spec.objective.metric))?;
    let stages: Option<Vec<u64>> = match &spec.ladder {
        Some(l) => Some(l.ladder.rungs.clone()),
        None if !spec.rounds.is_empty() => Some(spec.rounds.iter().map(|r| r.max_train_steps).collect()),
        None => None,
    };
    if let Some(budgets) = &stages {
        writeln!(out)?;
        let report = crate::show::ladder_report_of(storage.as_ref(), study_id, budgets, spec.objective.direction)?;
        write!(out, "{}", crate::show::render_stages(&report, spec.ladder.is_none()))?;
    }
    if let Some((t, s)) = best_of(&trials, spec.objective.direction) {
        // A best below the last rung (round) is not a result at the study's budget: say so.
        let short = match &stages {
            Some(budgets) if (t.rung as usize) + 1 < budgets.len() => {
                let (unit, k) = if spec.ladder.is_some() { ("rung", t.rung) } else { ("round", t.rung + 1) };
                format!(
                    "; no trial finished a later {unit}: this is the best at {unit} {k}, not at {} steps",
                    spec.max_train_steps
                )
            }
            _ => String::new(),
        };
        writeln!(
            out,
            "\nbest: trial {} with {} {} at step {} of {} ({}% of the budget){short}",
            t.number,
            spec.objective.metric,
            num(s.best_value),
            s.best_step,
            t.max_train_steps,
            (100.0 * s.best_step as f64 / t.max_train_steps as f64).round()
        )?;
    }
    if stopped {
        let left = if unfinished > 0 {
            horizon_analysis::text::plural(unfinished as usize, "trial")
        } else {
            "its later rungs or rounds".to_string()
        };
        writeln!(out, "stopped with {left} left; `{}` resumes the study", args.again)?;
        return Ok(ExitCode::from(crate::EXIT_STOPPED));
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the study's claim policy still has work to hand out (a later round, a promotion),
/// whatever the trial count says: a stop between rounds leaves the study unfinished.
fn work_remains(study: &ResolvedStudy, storage: &dyn Storage, record: &horizon_store::StudyRecord) -> Result<bool> {
    let view = horizon_runner::stages::stored_view(storage, record.id)?;
    Ok(horizon_core::claim::for_study(&study.spec).decide(&view) != horizon_core::claim::ClaimDecision::Done)
}

/// Rounds carry schedules to longer budgets by the method's rules; for the families it expects
/// to transfer poorly (a constant rate, an inverse square root) say so once, before running.
fn note_poor_transfer(spec: &horizon_core::StudySpec) {
    let (Some(first), Some(workload)) = (spec.rounds.first(), spec.trainer.workload.as_deref()) else { return };
    // Only the trainers that take the common schedule parameters have a schedule to carry
    // (replay answers from recorded runs: no learning rate of its own).
    if horizon_core::workloads::workload(workload).is_none_or(|w| w.common.is_empty()) {
        return;
    }
    let Ok(sampler) = spec.sampler.build(&spec.space, spec.seed) else { return };
    let Ok(params) = sampler.sample(0) else { return };
    if let Some(warning) = horizon_core::workloads::schedule_of(&params, first.max_train_steps).and_then(|s| s.transfer_warning())
    {
        eprintln!("note: {warning}");
    }
}

/// Refuse a study directory that cannot be one (it, or a folder above it, is a file) with the
/// fix, before anything tries to create it.
pub fn check_study_dir(dir: &Path) -> Result<()> {
    for ancestor in dir.ancestors() {
        match std::fs::metadata(ancestor) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) if ancestor == dir => bail!(
                "the study directory {} is a file, not a directory\n  fix: move that file away, or use another study directory ([study] directory in the study file; --into for `horizon import`)",
                dir.display()
            ),
            Ok(_) => bail!(
                "the study directory {} cannot be created: {} is a file, not a directory\n  fix: move that file away, or use another study directory ([study] directory in the study file; --into for `horizon import`)",
                dir.display(),
                ancestor.display()
            ),
            Err(_) => continue,
        }
    }
    Ok(())
}

/// Trials are never removed: a study file asking for fewer trials than the study already
/// sampled changes nothing, which the user should hear about.
fn note_lowered_trials(study: &ResolvedStudy, storage: &dyn Storage, path: &Path) -> Result<()> {
    let Some(stored) = storage.study(&study.spec.name)? else { return Ok(()) };
    let asked = study.spec.trials;
    if stored.next_sample_index > asked {
        eprintln!(
            "note: {} asks for trials = {asked}, but study {:?} already has {} sampled trials; trials are never removed, so \
             no new trial starts (waiting ones still run).\n  fix: raise trials to extend the study, or give [study] a new name \
             (or directory) for a smaller study",
            path.display(),
            study.spec.name,
            stored.next_sample_index
        );
    }
    Ok(())
}

/// Run one stage's study with `jobs` trials at once, showing progress, until it has nothing
/// left to claim or the user stops it. Returns what the worker did and the study's id.
pub fn run_stage(
    stage: Stage,
    storage: Arc<dyn Storage>,
    options: WorkerOptions,
    reporting: Reporting,
    relay: &SignalRelay,
) -> Result<(WorkerSummary, StudyId)> {
    let (events_tx, events_rx) = channel();
    let study = stage.study;
    let mut worker = Worker::new(study.clone(), storage, options, events_tx)?;
    if let Some(scheduler) = stage.scheduler {
        worker = worker.with_scheduler(scheduler);
    }
    if let Some(policy) = stage.claim {
        worker = worker.with_claim_policy(policy);
    }
    let study_id = worker.study().id;
    relay.attach(worker.control_handle());
    let spec = &study.spec;
    let reporter = match reporting {
        Reporting::Json => crate::progress::spawn_json(events_rx),
        Reporting::Human { bar } => {
            crate::progress::spawn(events_rx, bar, spec.objective.metric.clone(), spec.objective.direction, spec.trainer.retries)
        }
    };
    let summary = worker.run();
    let _ = reporter.join();
    Ok((summary?, study_id))
}

/// Ctrl-C and SIGTERM, relayed to whichever worker runs now: the first Ctrl-C drains (no new
/// trials), a second one terminates; SIGTERM terminates. A worker attached after a signal
/// gets it at once, so a multi-stage command stops between stages too.
pub struct SignalRelay {
    state: Arc<Mutex<RelayState>>,
}

#[derive(Default)]
struct RelayState {
    current: Option<ControlHandle>,
    last: Option<Control>,
}

impl SignalRelay {
    pub fn install() -> Result<SignalRelay> {
        let state = Arc::new(Mutex::new(RelayState::default()));
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let shared = state.clone();
        std::thread::spawn(move || {
            let mut interrupts = 0;
            for signal in signals.forever() {
                if signal == SIGINT {
                    interrupts += 1;
                }
                let control = if signal == SIGINT && interrupts == 1 { Control::Drain } else { Control::Terminate };
                let mut st = shared.lock().expect("relay lock");
                st.last = Some(control);
                if let Some(h) = &st.current {
                    h.send(control);
                }
            }
        });
        Ok(SignalRelay { state })
    }

    /// Relay signals to this worker from now on.
    pub fn attach(&self, handle: ControlHandle) {
        let mut st = self.state.lock().expect("relay lock");
        if let Some(control) = st.last {
            handle.send(control);
        }
        st.current = Some(handle);
    }

    /// Whether the user asked to stop.
    pub fn stopped(&self) -> bool {
        self.state.lock().expect("relay lock").last.is_some()
    }
}
