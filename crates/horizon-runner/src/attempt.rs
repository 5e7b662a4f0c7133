//! One attempt of one trial: launch, watch, record, finish.
//!
//! A subprocess attempt is a small state machine driven by one channel: the process's exit
//! (from a waiter thread), a stop request (from the dispatcher), or a tick on which the metrics
//! file is read, divergence and the timeout are checked, and the lease is renewed. Stopping
//! escalates: SIGTERM to the whole process group, then SIGKILL after the grace period.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use horizon_core::StudySpec;
use horizon_core::params::Params;
use horizon_core::protocol::Report;
use horizon_core::protocol::limits::MAX_LINE_BYTES;
use horizon_core::rng::trial_seed;
use horizon_core::selection::Selection;
use horizon_core::trial::{
    AttemptEnd, AttemptOutcome, ProgramEnd, StopCause, TrialRecord, TrialState, attempt_outcome, state_after,
};
use horizon_store::{Finish, Storage, StoreError};

use crate::files::{create_owned_file, ensure_trial_dir};
use crate::launch::{AttemptFiles, plan};
use crate::process::{signal_group, signal_name, spawn_in_group};
use crate::recorder::AttemptRecorder;

/// How often a running subprocess's metrics file is read.
pub const TICK: Duration = Duration::from_millis(100);
/// Lines of a failed trial's stderr shown to the user.
pub const STDERR_TAIL_LINES: usize = 20;
/// The most of the metrics file read between two looks at the channel (stop requests, the
/// process's exit, the timeout): a trainer that writes faster than horizon records cannot delay
/// the response to Ctrl-C or SIGTERM.
pub const READ_PER_LOOK: usize = 4 << 20;

/// A training function run in-process (the library path): it reports through the trial handle
/// and returns `Err` to fail the attempt.
pub type TrainFn = dyn Fn(&mut InProcessTrial<'_>) -> Result<(), String> + Send + Sync;

/// What runs a trial.
#[derive(Clone)]
pub enum Program {
    /// The study's `trainer.command`, as a subprocess speaking trial protocol v1.
    Subprocess,
    /// A function in this process.
    InProcess(Arc<TrainFn>),
}

/// Messages to a running attempt.
#[derive(Debug)]
pub enum AttemptMsg {
    Exited(std::io::Result<ExitStatus>),
    Stop(String),
    /// A policy decided the trial is done (`scheduler::Scheduler`): end it as complete.
    Conclude(String),
}

/// The dispatcher's handle on a running attempt.
#[derive(Clone)]
pub struct StopHandle {
    tx: Sender<AttemptMsg>,
    flag: Arc<AtomicBool>,
    /// Why a policy concluded the trial (read by the in-process path).
    conclusion: Arc<Mutex<Option<String>>>,
}

impl StopHandle {
    pub fn new() -> (StopHandle, Receiver<AttemptMsg>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (StopHandle { tx, flag: Arc::new(AtomicBool::new(false)), conclusion: Arc::new(Mutex::new(None)) }, rx)
    }

    /// Ask the attempt to stop (SIGTERM, grace period, SIGKILL); it is recorded as interrupted.
    pub fn stop(&self, reason: &str) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.tx.send(AttemptMsg::Stop(reason.to_string()));
    }

    /// Ask the attempt to end as **complete**, for `reason` (a policy's decision), the way
    /// `trainer.stop_when` ends it: as soon as the objective has been reported, SIGTERM, grace
    /// period, SIGKILL. Its message says `stopped at step S of N: REASON`.
    pub fn conclude(&self, reason: &str) {
        self.conclusion.lock().expect("conclusion lock").get_or_insert_with(|| reason.to_string());
        let _ = self.tx.send(AttemptMsg::Conclude(reason.to_string()));
    }
}

/// What an attempt calls on each new step: the step, and the best objective so far
/// (step, value).
pub type OnProgress = dyn Fn(u64, Option<(u64, f64)>) + Send;

/// Everything an attempt needs.
pub struct AttemptInput {
    pub storage: Arc<dyn Storage>,
    pub spec: Arc<StudySpec>,
    pub trial: TrialRecord,
    pub trial_dir: PathBuf,
    pub working_dir: PathBuf,
    /// The executable that runs built-in workloads.
    pub horizon_exe: PathBuf,
    pub gpu: Option<String>,
    /// Called with the latest step whenever it advances.
    /// Called when the attempt reports a new step: the step, and the best objective so far
    /// (step, value) by retrospective selection.
    pub on_progress: Box<OnProgress>,
    /// Where this attempt starts: from scratch, or (a ladder's promotion) from a checkpoint of
    /// the trial's previous rung.
    pub start: AttemptStart,
    /// The workers' lease timeout: an attempt none of whose writes succeeded for half this long
    /// stops (before another worker may take the trial over).
    pub lease_timeout: Duration,
    /// When the claim that gave this attempt its lease was asked for.
    pub claimed_at: Instant,
}

/// Where an attempt starts, and what it is asked to checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptStart {
    /// `HORIZON_RESUME_FROM`: the checkpoint as announced (relative to the trial directory).
    pub resume_from: Option<String>,
    /// The step of that checkpoint (0 from scratch): steps run are counted from here.
    pub step: u64,
    /// `HORIZON_CHECKPOINT_STEPS`: checkpoints the claim policy needs; retention keeps them.
    pub checkpoint_steps: Vec<u64>,
}

/// How an attempt ended, after it was written to storage.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub trial: TrialRecord,
    pub outcome: AttemptOutcome,
    /// The trial's state after the attempt (`Waiting` when it will run again).
    pub state: TrialState,
    pub selection: Option<Selection>,
    pub exit_code: Option<i32>,
    /// The last lines of stderr of a failed subprocess.
    pub stderr_tail: Option<String>,
    pub stderr_path: Option<PathBuf>,
    pub warnings: usize,
    /// The message stored with the trial (why it failed, or where and why it stopped early).
    pub message: Option<String>,
    pub duration: Duration,
    /// Storage refused the writes: another worker took the trial over. Nothing was finished.
    pub lease_lost: bool,
}

/// Run one attempt with `program`, write its end to storage, and return how it went.
pub fn run_attempt(
    program: &Program,
    input: AttemptInput,
    stop: (StopHandle, Receiver<AttemptMsg>),
) -> Result<AttemptResult, StoreError> {
    match program {
        Program::Subprocess => run_subprocess(input, stop),
        Program::InProcess(f) => run_in_process(f.as_ref(), input, stop.0.flag, stop.0.conclusion),
    }
}

fn recorder_for(input: &AttemptInput) -> AttemptRecorder {
    // A resumed rung starts with the earlier rung's curve up to the resume step (copied at the
    // claim): the selection covers it. A failed read only narrows the selection to this attempt.
    let earlier = match input.start.step {
        0 => Vec::new(),
        step => match input.storage.metrics(input.trial.id) {
            Ok(m) => m.into_iter().filter(|p| p.step <= step).collect(),
            Err(e) => {
                tracing::warn!("trial {}: reading the curve it resumes: {e}", input.trial.number);
                Vec::new()
            }
        },
    };
    AttemptRecorder::new(
        input.storage.clone(),
        input.trial.id,
        input.trial.attempt,
        &input.spec.objective.metric,
        input.spec.objective.direction,
        input.spec.checkpoints.clone(),
        &input.trial_dir,
        input.trial.max_train_steps,
    )
    .with_stop_when(input.spec.trainer.stop_when.clone())
    .with_lease_timeout(input.lease_timeout)
    .renewed_at(input.claimed_at)
    .keeping(&input.start.checkpoint_steps)
    .with_earlier(&earlier)
}

/// Why horizon stopped a process.
#[derive(Debug, Clone, PartialEq)]
enum StopKind {
    Interrupted(String),
    Diverged,
    /// `trainer.stop_when` held, or a policy concluded the trial: it is complete.
    Reached,
    TimedOut(Duration),
    /// Another worker took the trial over, or may have (the database unreachable too long).
    LeaseLost(String),
}

fn run_subprocess(input: AttemptInput, (handle, rx): (StopHandle, Receiver<AttemptMsg>)) -> Result<AttemptResult, StoreError> {
    let started = Instant::now();
    let files = AttemptFiles::new(&input.trial_dir, input.trial.attempt);
    let mut recorder = recorder_for(&input);
    let spec = input.spec.clone();

    // horizon's own files, created without following links a trainer may have left, and the
    // metrics file opened for reading before the trainer starts: what is read is the file
    // horizon created, whatever the trainer does to the name.
    let prepared = (|| -> std::io::Result<(File, File, File)> {
        ensure_trial_dir(&files.trial_dir)?;
        create_owned_file(&files.metrics)?;
        let metrics = File::open(&files.metrics)?;
        Ok((metrics, create_owned_file(&files.stdout)?, create_owned_file(&files.stderr)?))
    })();
    let launch = plan(&spec, &input.trial, &files, &input.working_dir, input.gpu.as_deref(), &input.horizon_exe, &input.start);
    let mut metrics_file = None;
    let child = prepared.and_then(|(metrics, out, err)| {
        metrics_file = Some(metrics);
        let mut cmd = Command::new(&launch.argv[0]);
        cmd.args(&launch.argv[1..])
            .current_dir(&launch.working_dir)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        spawn_in_group(&mut cmd)
    });
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            let outcome = AttemptOutcome::Failed { reason: format!("could not start {:?}: {e}", launch.argv[0]) };
            return finish(&input, &mut recorder, outcome, None, None, started, None);
        }
    };
    let pgid = child.id();
    // Recorded so that, if horizon dies, the worker that requeues this trial can end whatever
    // the trainer left in its process group (the parent-death signal reaches only the trainer).
    if let Err(e) =
        create_owned_file(&files.pgid).and_then(|mut f| std::io::Write::write_all(&mut f, pgid.to_string().as_bytes()))
    {
        tracing::warn!("{}: {e}", files.pgid.display());
    }
    let waiter_tx = handle.tx.clone();
    let mut child = child;
    std::thread::Builder::new()
        .name(format!("wait-{pgid}"))
        .spawn(move || {
            let _ = waiter_tx.send(AttemptMsg::Exited(child.wait()));
        })
        .expect("spawning a waiter thread");

    // The lease's watchdog: stops the trainer on time (half the lease timeout without a
    // renewal) whatever a storage call on this thread is doing, so that no other worker can
    // take the trial over while it still runs.
    let watch = recorder.lease_watch();
    let watchdog_fired = Arc::new(AtomicBool::new(false));
    let attempt_over = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (fired, over) = (watchdog_fired.clone(), attempt_over.clone());
        std::thread::Builder::new()
            .name(format!("lease-{pgid}"))
            .spawn(move || {
                while !over.load(Ordering::SeqCst) {
                    let left = watch.remaining();
                    if left.is_zero() {
                        fired.store(true, Ordering::SeqCst);
                        signal_group(pgid, libc::SIGKILL);
                        return;
                    }
                    std::thread::park_timeout(left.min(Duration::from_millis(200)));
                }
            })
            .expect("spawning a lease watchdog")
    };
    // Once the watchdog fired, the attempt ended for its lease (checked before the drain, which
    // then writes nothing, and after it).
    let note_watchdog = |stopping: &mut Option<(StopKind, Instant)>| {
        if watchdog_fired.load(Ordering::SeqCst) && !matches!(stopping, Some((StopKind::LeaseLost(_), _))) {
            let why = format!(
                "no write reached the database for half the lease timeout ({:.0}s): stopped before another worker may take the trial over",
                input.lease_timeout.as_secs_f64()
            );
            *stopping = Some((StopKind::LeaseLost(why), Instant::now()));
        }
    };
    let mut tail = LineTail::new(metrics_file.expect("opened before the launch"));
    let mut stopping: Option<(StopKind, Instant)> = None;
    // A policy's reason to end the trial as complete, once it has reported its objective.
    let mut concluded: Option<String> = None;
    let mut killed = false;
    let mut last_progress = None;
    let mut backlog = false;
    let grace = spec.trainer.kill_grace;
    let exit = loop {
        // Behind on the metrics file: look at the channel and read on at once.
        let msg = rx.recv_timeout(if backlog { Duration::ZERO } else { TICK });
        let stop_now = |kind: StopKind, stopping: &mut Option<(StopKind, Instant)>| {
            if stopping.is_none() {
                signal_group(pgid, libc::SIGTERM);
                *stopping = Some((kind, Instant::now() + grace));
            }
        };
        match msg {
            Ok(AttemptMsg::Exited(status)) => break status,
            Ok(AttemptMsg::Stop(reason)) => stop_now(StopKind::Interrupted(reason), &mut stopping),
            Ok(AttemptMsg::Conclude(reason)) => {
                concluded.get_or_insert(reason);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("the attempt holds a sender"),
        }
        backlog = tail.read_lines(&mut recorder, READ_PER_LOOK);
        if recorder.divergence().is_some() && spec.trainer.stop_on_divergence {
            stop_now(StopKind::Diverged, &mut stopping);
        }
        if recorder.stop_when_done() || (concluded.is_some() && recorder.selection().is_some()) {
            stop_now(StopKind::Reached, &mut stopping);
        }
        if let Some(limit) = spec.trainer.timeout
            && started.elapsed() > limit
        {
            stop_now(StopKind::TimedOut(limit), &mut stopping);
        }
        if let Some((_, deadline)) = &stopping
            && !killed
            && Instant::now() >= *deadline
        {
            signal_group(pgid, libc::SIGKILL);
            killed = true;
        }
        match recorder.sync() {
            Ok(None) => {}
            Ok(Some(why)) => {
                // Two workers never run one trial: stop at once, without the grace period.
                signal_group(pgid, libc::SIGKILL);
                killed = true;
                stopping = Some((StopKind::LeaseLost(why), Instant::now()));
            }
            Err(e) => {
                signal_group(pgid, libc::SIGKILL);
                return Err(e);
            }
        }
        if recorder.last_step() != last_progress {
            last_progress = recorder.last_step();
            (input.on_progress)(last_progress.unwrap_or(0), recorder.selection().map(|s| (s.best_step, s.best_value)));
        }
    };
    // The leader is gone; take down whatever it left in its group.
    signal_group(pgid, libc::SIGKILL);
    note_watchdog(&mut stopping);
    // Read what is left. The file is finite now, but may be large: when the user stopped horizon
    // (now or during the drain), the drain ends with the grace period and the trial, which runs
    // again anyway, keeps what was read.
    let mut drain_deadline = match &stopping {
        Some((StopKind::Interrupted(_), _)) => Some(Instant::now() + grace),
        _ => None,
    };
    let mut drained = false;
    loop {
        // A lost lease writes nothing more.
        if matches!(stopping, Some((StopKind::LeaseLost(_), _))) {
            break;
        }
        if !tail.read_lines(&mut recorder, READ_PER_LOOK) {
            drained = true;
            break;
        }
        if let Ok(AttemptMsg::Stop(reason)) = rx.try_recv() {
            stopping = Some((StopKind::Interrupted(reason), Instant::now()));
            drain_deadline.get_or_insert(Instant::now() + grace);
        }
        if drain_deadline.is_some_and(|d| Instant::now() >= d) {
            recorder.warn(format!(
                "stopped reading the metrics file at byte {} to answer the stop within the grace period",
                tail.offset
            ));
            break;
        }
        match recorder.sync() {
            Ok(None) => {}
            Ok(Some(why)) => {
                stopping = Some((StopKind::LeaseLost(why), Instant::now()));
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if drained {
        tail.read_rest(&mut recorder);
    }

    attempt_over.store(true, Ordering::SeqCst);
    watchdog.thread().unpark();
    let _ = watchdog.join();
    note_watchdog(&mut stopping);
    let kind = stopping.map(|(k, _)| k);
    if let Some(StopKind::LeaseLost(why)) = kind {
        return Ok(lost(&input, &recorder, started, why));
    }
    let status = exit.ok();
    let exit_code = status.and_then(|s| s.code());
    // Only a conclusion that stopped the trainer, or came before it exited, says why it ended.
    let concluded = concluded.filter(|_| matches!(kind, Some(StopKind::Reached) | None));
    let stopped = match kind {
        Some(StopKind::Interrupted(reason)) => Some(StopCause::Interrupted(reason)),
        Some(StopKind::Diverged) => Some(StopCause::Diverged),
        Some(StopKind::Reached) => Some(StopCause::Reached),
        Some(StopKind::TimedOut(limit)) => Some(StopCause::TimedOut(humanize(limit))),
        Some(StopKind::LeaseLost(_)) | None => None,
    };
    let outcome = attempt_outcome(&AttemptEnd {
        stopped,
        program: program_end(status),
        divergence: recorder.divergence(),
        reported: recorder.selection().is_some(),
        progress: recorder.last_step(),
        max_train_steps: input.trial.max_train_steps,
        objective: &spec.objective.metric,
        ended_for_a_reason: recorder.reached().is_some() || concluded.is_some(),
    });
    let failed = matches!(outcome, AttemptOutcome::Failed { .. });
    let stderr_tail = if failed { read_tail(&files.stderr, STDERR_TAIL_LINES) } else { None };
    let mut result = finish(&input, &mut recorder, outcome, exit_code, stderr_tail, started, concluded.as_deref())?;
    result.stderr_path = Some(files.stderr);
    Ok(result)
}

/// A subprocess's end, as the outcome rule reads it.
fn program_end(status: Option<ExitStatus>) -> ProgramEnd {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => ProgramEnd::Unknown("lost track of the process".into()),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => ProgramEnd::Exited(code),
            (None, Some(sig)) => ProgramEnd::Signaled(signal_name(sig)),
            (None, None) => ProgramEnd::Unknown(format!("ended with {s}")),
        },
    }
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 120.0 { format!("{secs:.3}s").replace(".000s", "s") } else { format!("{}m", (secs / 60.0).round()) }
}

/// Write the end of an attempt and build its result. `concluded`: a policy's reason for ending
/// it (see [`StopHandle::conclude`]).
fn finish(
    input: &AttemptInput,
    recorder: &mut AttemptRecorder,
    outcome: AttemptOutcome,
    exit_code: Option<i32>,
    stderr_tail: Option<String>,
    started: Instant,
    concluded: Option<&str>,
) -> Result<AttemptResult, StoreError> {
    let trial = &input.trial;
    let state = state_after(&outcome, trial.failures, input.spec.trainer.retries);
    let selection = recorder.selection();
    let mut message = match &outcome {
        AttemptOutcome::Completed => None,
        AttemptOutcome::EndedEarly { reason }
        | AttemptOutcome::Diverged { reason }
        | AttemptOutcome::Failed { reason }
        | AttemptOutcome::Interrupted { reason } => Some(reason.clone()),
    };
    if outcome == AttemptOutcome::Completed
        && let Some(last) = recorder.last_step().filter(|s| *s < trial.max_train_steps)
    {
        message = Some(match recorder.reached().or(concluded) {
            Some(why) => format!("stopped at step {last} of {}: {why}", trial.max_train_steps),
            None => format!("stopped at step {last} of {}", trial.max_train_steps),
        });
    }
    let end = Finish {
        state,
        message: message.clone(),
        selection,
        counts_as_failure: matches!(outcome, AttemptOutcome::Failed { .. }),
        exit_code,
        at: crate::now(),
        steps_run: recorder.last_step().map_or(0, |s| s.saturating_sub(input.start.step)),
        budget_independent_until: recorder.budget_independent_until(),
    };
    // The end is written once the database answers, while the lease may still be ours; past
    // the lease timeout another worker may have taken the trial, and this attempt's end is moot.
    loop {
        match recorder.finish().and_then(|()| input.storage.finish_attempt(trial.id, trial.attempt, &end)) {
            Ok(()) => break,
            Err(StoreError::NotWritable { .. }) => {
                return Ok(lost(input, recorder, started, "another worker took the trial over".into()));
            }
            Err(e) if e.is_transient() && recorder.lease_may_hold() => {
                tracing::warn!("trial {}: writing how the attempt ended: {e}; trying again", trial.number);
                std::thread::sleep(crate::recorder::RETRY_AFTER_OUTAGE);
            }
            Err(e) if e.is_transient() => {
                let why = format!("its end could not be written ({e}) within the lease timeout");
                return Ok(lost(input, recorder, started, why));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(AttemptResult {
        trial: trial.clone(),
        outcome,
        state,
        selection,
        exit_code,
        stderr_tail,
        stderr_path: None,
        warnings: recorder.warnings_seen(),
        message,
        duration: started.elapsed(),
        lease_lost: false,
    })
}

/// The result of an attempt that lost its lease, for `why` (nothing more is written for it).
fn lost(input: &AttemptInput, recorder: &AttemptRecorder, started: Instant, why: String) -> AttemptResult {
    tracing::warn!("trial {} attempt {}: stopped: {why}", input.trial.number, input.trial.attempt);
    AttemptResult {
        trial: input.trial.clone(),
        outcome: AttemptOutcome::Interrupted { reason: why },
        state: TrialState::Waiting,
        selection: recorder.selection(),
        exit_code: None,
        stderr_tail: None,
        stderr_path: None,
        warnings: recorder.warnings_seen(),
        message: None,
        duration: started.elapsed(),
        lease_lost: true,
    }
}

/// The handle an in-process training function reports through.
pub struct InProcessTrial<'a> {
    pub params: &'a Params,
    pub number: u64,
    pub attempt: u32,
    pub max_train_steps: u64,
    pub eval_every: u64,
    pub seed: u64,
    pub trial_dir: &'a Path,
    /// The ladder rung (0 without a ladder); `max_train_steps` is its budget.
    pub rung: u32,
    /// A checkpoint of the previous rung to resume from (as announced), and its step.
    pub resume_from: Option<(&'a str, u64)>,
    /// Steps at which to announce a checkpoint (the next rung resumes from one).
    pub checkpoint_steps: &'a [u64],
    recorder: &'a mut AttemptRecorder,
    stop: Arc<AtomicBool>,
    conclusion: Arc<Mutex<Option<String>>>,
    /// Why the attempt lost its lease, if it did.
    lease_lost: Option<String>,
    /// `trainer.stop_on_divergence`: a non-finite loss ends the trial at once.
    stop_on_divergence: bool,
    /// `trainer.timeout` from the start of the attempt; set once should_stop saw it pass.
    deadline: Option<Instant>,
    timed_out: std::cell::Cell<bool>,
}

impl InProcessTrial<'_> {
    /// Announce a checkpoint written at `step` (a path relative to `trial_dir`, or absolute).
    pub fn checkpoint(&mut self, step: u64, path: &str) {
        self.recorder.report(Report::Checkpoint { step, path: path.to_string() });
    }

    /// Declare the schedule the same under any longer budget up to and including `step`.
    pub fn budget_independent(&mut self, step: u64) {
        self.recorder.report(Report::BudgetIndependent { step });
    }

    /// Report metrics of one split at one step (names are stored as `split/name`).
    pub fn report(&mut self, step: u64, split: &str, metrics: &[(&str, f64)]) {
        let values = metrics.iter().map(|(n, v)| (format!("{split}/{n}"), *v)).collect();
        self.recorder.report(Report::Metrics { step, values });
        match self.recorder.sync_if_due(TICK) {
            Ok(None) => {}
            Ok(Some(why)) => self.lease_lost = Some(why),
            Err(e) => tracing::warn!("trial {}: {e}", self.number),
        }
    }

    /// Whether the training function should return now: the user stopped the study, the
    /// trial diverged, its `stop_when` criterion held, a policy concluded it (once it reported
    /// its objective), or another worker took it over.
    pub fn should_stop(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.timed_out.set(true);
        }
        self.stop.load(Ordering::SeqCst)
            || self.timed_out.get()
            || (self.stop_on_divergence && self.recorder.divergence().is_some())
            || self.recorder.stop_when_done()
            || (self.recorder.selection().is_some() && self.conclusion.lock().expect("conclusion lock").is_some())
            || self.lease_lost.is_some()
    }
}

fn run_in_process(
    f: &TrainFn,
    input: AttemptInput,
    stop: Arc<AtomicBool>,
    conclusion: Arc<Mutex<Option<String>>>,
) -> Result<AttemptResult, StoreError> {
    let started = Instant::now();
    let mut recorder = recorder_for(&input);
    let seed = trial_seed(input.spec.seed, input.trial.number);
    let (ret, lease_lost, timed_out) = {
        let mut handle = InProcessTrial {
            params: &input.trial.params,
            number: input.trial.number,
            attempt: input.trial.attempt,
            max_train_steps: input.trial.max_train_steps,
            eval_every: input.spec.eval_every,
            seed,
            trial_dir: &input.trial_dir,
            rung: input.trial.rung,
            resume_from: input.start.resume_from.as_deref().map(|p| (p, input.start.step)),
            checkpoint_steps: &input.start.checkpoint_steps,
            recorder: &mut recorder,
            stop: stop.clone(),
            conclusion: conclusion.clone(),
            lease_lost: None,
            stop_on_divergence: input.spec.trainer.stop_on_divergence,
            deadline: input.spec.trainer.timeout.map(|t| started + t),
            timed_out: std::cell::Cell::new(false),
        };
        let ret = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut handle)))
            .unwrap_or_else(|_| Err("the training function panicked".into()));
        (ret, handle.lease_lost.take(), handle.timed_out.get())
    };
    if let Some(why) = lease_lost {
        return Ok(lost(&input, &recorder, started, why));
    }
    let concluded = conclusion.lock().expect("conclusion lock").clone().filter(|_| recorder.selection().is_some());
    // The same causes, in the same order, as a subprocess's (the rule is one function).
    let stopped = if recorder.stop_when_done() || concluded.is_some() {
        Some(StopCause::Reached)
    } else if stop.load(Ordering::SeqCst) {
        Some(StopCause::Interrupted("horizon was stopped".into()))
    } else if timed_out {
        input.spec.trainer.timeout.map(|t| StopCause::TimedOut(humanize(t)))
    } else if recorder.divergence().is_some() && input.spec.trainer.stop_on_divergence {
        Some(StopCause::Diverged)
    } else {
        None
    };
    let outcome = attempt_outcome(&AttemptEnd {
        stopped,
        program: ProgramEnd::Returned(ret),
        divergence: recorder.divergence(),
        reported: recorder.selection().is_some(),
        progress: recorder.last_step(),
        max_train_steps: input.trial.max_train_steps,
        objective: &input.spec.objective.metric,
        ended_for_a_reason: recorder.reached().is_some() || concluded.is_some(),
    });
    finish(&input, &mut recorder, outcome, None, None, started, concluded.as_deref())
}

/// Reads complete lines appended to the metrics file since the last read, in bounded memory:
/// a line longer than [`MAX_LINE_BYTES`] is skipped (and reported) without being held.
struct LineTail {
    file: File,
    /// Bytes read so far.
    offset: u64,
    /// The start of a line whose newline has not been read yet.
    partial: Vec<u8>,
    /// Set while skipping an overlong line: its length so far.
    skipping: Option<u64>,
    buf: Vec<u8>,
}

impl LineTail {
    fn new(file: File) -> LineTail {
        LineTail { file, offset: 0, partial: Vec::new(), skipping: None, buf: vec![0; 256 << 10] }
    }

    /// Read up to `budget` bytes and hand each complete line to `recorder`. Returns whether the
    /// budget ran out before the end of the file (there is more to read now).
    fn read_lines(&mut self, recorder: &mut AttemptRecorder, budget: usize) -> bool {
        let mut read = 0;
        while read < budget {
            let n = match self.file.read(&mut self.buf) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    recorder.warn(format!("reading the metrics file at byte {}: {e}", self.offset));
                    return false;
                }
            };
            read += n;
            self.offset += n as u64;
            let mut chunk = &self.buf[..n];
            while let Some(newline) = chunk.iter().position(|&b| b == b'\n') {
                let piece = &chunk[..newline];
                match self.skipping.take() {
                    Some(skipped) => recorder.overlong_line(skipped + piece.len() as u64),
                    None if self.partial.len() + piece.len() > MAX_LINE_BYTES => {
                        recorder.overlong_line((self.partial.len() + piece.len()) as u64);
                    }
                    None if self.partial.is_empty() => recorder.line(&String::from_utf8_lossy(piece)),
                    None => {
                        self.partial.extend_from_slice(piece);
                        recorder.line(&String::from_utf8_lossy(&self.partial));
                    }
                }
                self.partial.clear();
                chunk = &chunk[newline + 1..];
            }
            match &mut self.skipping {
                Some(skipped) => *skipped += chunk.len() as u64,
                None if self.partial.len() + chunk.len() > MAX_LINE_BYTES => {
                    self.skipping = Some((self.partial.len() + chunk.len()) as u64);
                    self.partial = Vec::new();
                }
                None => self.partial.extend_from_slice(chunk),
            }
        }
        true
    }

    /// A last line without its newline (the process is gone, so it is complete).
    fn read_rest(&mut self, recorder: &mut AttemptRecorder) {
        if let Some(skipped) = self.skipping.take() {
            recorder.overlong_line(skipped);
        } else if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            recorder.line(&String::from_utf8_lossy(&rest));
        }
    }
}

/// The last `n` lines of a file (at most 8 KiB of it).
pub fn read_tail(path: &Path, n: usize) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(8192))).ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    (!tail.trim().is_empty()).then_some(tail)
}
