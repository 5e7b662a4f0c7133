//! The dispatcher: claims trials, runs up to `jobs` attempts at once, and reports events.
//!
//! Policy stays out of here: which trial to run next is the storage's atomic claim, what an
//! attempt's outcome means is `horizon_core::trial`, and whether another worker is gone is
//! `horizon_core::trial::is_abandoned`. The worker holds no state that storage does not have,
//! so any number of workers (processes, machines) can share a study, and a killed one resumes.
//!
//! A study's policy may also stop running trials: a worker given a
//! [`Scheduler`](crate::scheduler::Scheduler) consults it while trials run and ends the attempts
//! it names as complete, with its reason (see [`crate::scheduler`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use horizon_core::claim::ClaimPolicy;
use horizon_core::decision::Decision;
use horizon_core::params::Params;
use horizon_core::sampler::Sampler;
use horizon_core::selection::Selection;
use horizon_core::trial::RungEntry;
use horizon_core::trial::{Lease, TrialState, is_abandoned};
use horizon_store::{Claim, ClaimRequest, ClaimedTrial, Storage, StoreError, StudyRecord, TrialId};

use crate::RunError;
use crate::attempt::{AttemptInput, AttemptResult, AttemptStart, Program, StopHandle, run_attempt};
use crate::launch::AttemptFiles;
use crate::process::{hostname, pid_alive, trial_processes_in_group};
use crate::resolve::ResolvedStudy;
use crate::scheduler::{CONSULT_AFTER_PROGRESS, CONSULT_EVERY, Scheduler, read_view};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Attempts running at once.
    pub jobs: usize,
    /// A worker on another host whose heartbeat is older than this is presumed dead.
    pub lease_timeout: Duration,
    /// How often running trials of other workers are checked for abandonment.
    pub reclaim_every: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions { jobs: 1, lease_timeout: Duration::from_secs(60), reclaim_every: Duration::from_secs(2) }
    }
}

/// What the user asks of a running worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Launch nothing new; let running trials finish. A second `Drain` terminates.
    Drain,
    /// Stop running trials now (SIGTERM, grace, SIGKILL); they will run again on resume.
    Terminate,
}

/// Everything a reporter needs to show a study's progress.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        study: String,
        database: PathBuf,
        /// Trials to run (with a ladder: runs of a rung, as ASHA's rung sizes plan them).
        total: u64,
        finished: u64,
        jobs: usize,
        /// The ladder's rung budgets, if the study runs one.
        ladder: Option<Vec<u64>>,
    },
    TrialStarted {
        number: u64,
        attempt: u32,
        params: Params,
        /// The ladder rung and its budget (rung 0 at the study's budget without a ladder).
        rung: u32,
        max_train_steps: u64,
        /// How the trial came to this rung.
        entry: RungEntry,
    },
    /// Nothing to run until running trials (here or elsewhere) finish: a ladder's next
    /// promotions depend on them.
    Waiting,
    Progress {
        number: u64,
        step: u64,
        max_train_steps: u64,
        /// The best objective so far (step, value), by retrospective selection.
        best: Option<(u64, f64)>,
    },
    TrialFinished(Box<AttemptResult>),
    /// A trial abandoned by a dead worker was put back in the queue.
    Requeued {
        number: u64,
        reason: String,
    },
    Draining,
    Terminating,
}

/// The schema of [`Event::json`]'s lines (docs/json.md, "horizon run --json").
pub const EVENT_SCHEMA: &str = "horizon.event/1";

impl Event {
    /// The event as one JSON object, `{"schema", "event", ...}` (docs/json.md): what `horizon
    /// run --json` streams, one per line. Non-finite numbers are `null`.
    pub fn json(&self) -> serde_json::Value {
        use serde_json::json;
        let finite = |x: Option<f64>| x.filter(|v| v.is_finite());
        let mut doc = match self {
            Event::Started { study, database, total, finished, jobs, ladder } => json!({
                "event": "started", "study": study, "database": database, "total": total,
                "finished": finished, "jobs": jobs, "ladder": ladder,
            }),
            Event::TrialStarted { number, attempt, params, rung, max_train_steps, entry } => json!({
                "event": "trial_started", "number": number, "attempt": attempt, "params": params,
                "rung": rung, "max_train_steps": max_train_steps, "entry": entry,
            }),
            Event::Waiting => json!({"event": "waiting"}),
            Event::Progress { number, step, max_train_steps, best } => json!({
                "event": "progress", "number": number, "step": step, "max_train_steps": max_train_steps,
                "best_step": best.map(|b| b.0), "best_value": finite(best.map(|b| b.1)),
            }),
            Event::TrialFinished(r) => {
                let s = r.selection.as_ref();
                json!({
                    "event": "trial_finished", "number": r.trial.number, "attempt": r.trial.attempt,
                    "rung": r.trial.rung, "max_train_steps": r.trial.max_train_steps, "state": r.state.as_str(),
                    "best_step": s.map(|s| s.best_step), "best_value": finite(s.map(|s| s.best_value)),
                    "final_step": s.map(|s| s.final_step), "final_value": finite(s.map(|s| s.final_value)),
                    "message": r.message, "exit_code": r.exit_code, "warnings": r.warnings,
                    "seconds": r.duration.as_secs_f64(), "lease_lost": r.lease_lost,
                })
            }
            Event::Requeued { number, reason } => json!({"event": "requeued", "number": number, "reason": reason}),
            Event::Draining => json!({"event": "draining"}),
            Event::Terminating => json!({"event": "terminating"}),
        };
        doc["schema"] = json!(EVENT_SCHEMA);
        doc
    }
}

/// What a worker did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerSummary {
    pub attempts: usize,
    pub completed: usize,
    /// Ended well short of their budget (the trainer stopped early).
    pub incomplete: usize,
    pub diverged: usize,
    pub failed: usize,
    /// Attempts that will run again (retries and interruptions).
    pub requeued: usize,
    /// The worker stopped because the user asked.
    pub stopped_early: bool,
}

enum Msg {
    Control(Control),
    Progress {
        number: u64,
        step: u64,
        max_train_steps: u64,
        best: Option<(u64, f64)>,
    },
    /// An attempt ended; keyed by trial and attempt, because a retried trial can be claimed
    /// again before the dispatcher reads this message.
    Finished {
        key: (TrialId, u32),
        result: Box<Result<AttemptResult, StoreError>>,
    },
}

/// A handle to send [`Control`]s to a running worker (e.g. from a signal thread).
#[derive(Clone)]
pub struct ControlHandle(Sender<Msg>);

impl ControlHandle {
    pub fn send(&self, control: Control) {
        let _ = self.0.send(Msg::Control(control));
    }
}

struct Running {
    number: u64,
    stop: StopHandle,
    gpu: Option<String>,
    thread: JoinHandle<()>,
    /// The scheduler asked this attempt to stop.
    concluding: bool,
}

/// One process's share of a study.
pub struct Worker {
    study: ResolvedStudy,
    storage: Arc<dyn Storage>,
    options: WorkerOptions,
    events: Sender<Event>,
    inbox: (Sender<Msg>, Receiver<Msg>),
    record: StudyRecord,
    sampler: Arc<dyn Sampler>,
    program: Program,
    lease: Lease,
    scheduler: Option<Box<dyn Scheduler>>,
    /// What the study runs next: one fixed budget, or a ladder (`horizon_core::claim`).
    policy: Arc<dyn ClaimPolicy>,
}

/// How often a worker told to wait, with nothing of its own running, asks again.
pub const WAIT_POLL: Duration = Duration::from_millis(500);

impl Worker {
    /// Open (or create) the study in storage and prepare to run it.
    pub fn new(
        study: ResolvedStudy,
        storage: Arc<dyn Storage>,
        options: WorkerOptions,
        events: Sender<Event>,
    ) -> Result<Worker, RunError> {
        let record = study.open_study(storage.as_ref())?;
        let sampler: Arc<dyn Sampler> =
            Arc::from(study.spec.sampler.build(&study.spec.space, study.spec.seed).map_err(RunError::Incompatible)?);
        let host = hostname();
        let pid = std::process::id();
        let worker = format!("{host}:{pid}:{}", (crate::now() * 1e6) as u64);
        let timeout = Some(options.lease_timeout.as_secs_f64());
        let policy = Arc::from(horizon_core::claim::for_study(&study.spec));
        Ok(Worker {
            study,
            storage,
            options,
            events,
            inbox: channel(),
            record,
            sampler,
            program: Program::Subprocess,
            lease: Lease { worker, host, pid, heartbeat_at: 0.0, timeout },
            scheduler: None,
            policy,
        })
    }

    /// Run trials with a function in this process instead of the study's command.
    pub fn with_program(mut self, program: Program) -> Worker {
        self.program = program;
        self
    }

    /// Consult `scheduler` while trials run, and stop the attempts it decides to stop.
    pub fn with_scheduler(mut self, scheduler: Box<dyn Scheduler>) -> Worker {
        self.scheduler = Some(scheduler);
        self
    }

    /// Claim with `policy` instead of the study's own (a round's stage, capped at the round).
    pub fn with_claim_policy(mut self, policy: Arc<dyn ClaimPolicy>) -> Worker {
        self.policy = policy;
        self
    }

    pub fn control_handle(&self) -> ControlHandle {
        ControlHandle(self.inbox.0.clone())
    }

    pub fn study(&self) -> &StudyRecord {
        &self.record
    }

    /// The number of attempts to run at once: `jobs`, capped by the number of GPUs if any.
    fn slots(&self) -> usize {
        let gpus = self.study.spec.trainer.gpus.len();
        let jobs = self.options.jobs.max(1);
        if gpus > 0 { jobs.min(gpus) } else { jobs }
    }

    /// Run until the study has no trial left for this worker, or the user stops it.
    pub fn run(mut self) -> Result<WorkerSummary, RunError> {
        let spec = self.study.spec.clone();
        // A call to an unreachable database fails in time for a trial to notice it lost its
        // lease (after half the lease timeout without a write) and stop.
        self.storage.limit_call_time((self.options.lease_timeout / 8).clamp(Duration::from_millis(500), Duration::from_secs(30)));
        let trials = self.storage.trials(self.record.id)?;
        let staged = !spec.rounds.is_empty();
        let (total, finished) = match &spec.ladder {
            None if staged => {
                let rungs = self.storage.rungs(self.record.id)?;
                let planned: u64 = spec.rounds.iter().map(|r| r.trials + r.carry).sum();
                let finished = rungs.iter().filter(|r| r.state.is_finished()).count() as u64;
                (planned.max(finished), finished)
            }
            None => (
                horizon_core::trial::planned_total(spec.trials, &trials),
                trials.iter().filter(|t| t.state.is_finished()).count() as u64,
            ),
            Some(l) => {
                let rungs = self.storage.rungs(self.record.id)?;
                let finished = rungs.iter().filter(|r| r.state.is_finished()).count() as u64;
                (horizon_core::claim::planned_runs(&l.ladder, spec.trials).max(finished), finished)
            }
        };
        let _ = self.events.send(Event::Started {
            study: spec.name.clone(),
            database: self.study.storage_url().redacted().into(),
            total,
            finished,
            jobs: self.slots(),
            ladder: match &spec.ladder {
                Some(l) => Some(l.ladder.rungs.clone()),
                None if staged => Some(spec.rounds.iter().map(|r| r.max_train_steps).collect()),
                None => None,
            },
        });
        let mut free_gpus: Vec<String> = spec.trainer.gpus.iter().rev().cloned().collect();
        let mut running: HashMap<(TrialId, u32), Running> = HashMap::new();
        let mut summary = WorkerSummary::default();
        let mut draining = false;
        let mut last_reclaim: Option<Instant> = None;
        // The last claim said to wait (a ladder whose running rungs may still promote).
        let mut waiting = false;
        let mut waiting_announced = false;
        // When the scheduler was last consulted, and whether an attempt stored new metrics since.
        let mut consulted: (Option<Instant>, bool) = (None, false);
        let mut outage = Outage::default();
        loop {
            let mut exhausted = false;
            while !draining && running.len() < self.slots() {
                if last_reclaim.is_none_or(|t| t.elapsed() >= self.options.reclaim_every) {
                    last_reclaim = Some(Instant::now());
                    if outage.ride(self.reclaim_abandoned(&running))?.is_none() {
                        waiting = true;
                        break;
                    }
                }
                // The lease dates from before the claim was asked for (its answer may come late).
                let claimed_at = Instant::now();
                let Some(claim) = outage.ride(self.claim())? else {
                    // The database is unreachable: ask again soon (running trials ride it out).
                    waiting = true;
                    break;
                };
                let claimed = match claim {
                    Claim::Run(claimed) => *claimed,
                    Claim::Wait => {
                        // Results still to come (here or in another process) may promote a
                        // trial: ask again when one of ours finishes, or after a while.
                        waiting = true;
                        break;
                    }
                    Claim::Done => {
                        exhausted = true;
                        break;
                    }
                };
                waiting = false;
                let gpu = free_gpus.pop();
                let t = &claimed.trial;
                let _ = self.events.send(Event::TrialStarted {
                    number: t.number,
                    attempt: t.attempt,
                    params: t.params.clone(),
                    rung: t.rung,
                    max_train_steps: t.max_train_steps,
                    entry: claimed.rung.entry,
                });
                let key = (t.id, t.attempt);
                running.insert(key, self.launch(claimed, gpu, claimed_at));
            }
            if running.is_empty() && (draining || exhausted) {
                // Before leaving, make sure no trial was abandoned by a worker that died meanwhile.
                if !draining && self.reclaim_abandoned(&running)? > 0 {
                    continue;
                }
                // Nothing left to claim, but other workers' trials still run: stay until they
                // finish, so that one of them dying (its lease expiring) does not leave its trial
                // unfinished with every worker gone.
                let others = if draining {
                    Some(false)
                } else {
                    outage
                        .ride(self.storage.trials_in_state(self.record.id, TrialState::Running).map_err(RunError::from))?
                        .map(|r| !r.is_empty())
                };
                if others != Some(false) {
                    waiting = true;
                } else {
                    break;
                }
            }
            // With a scheduler, wake at least once per consultation; told to wait with nothing
            // of our own running, ask again soon.
            let mut wait =
                if self.scheduler.is_some() { self.options.reclaim_every.min(CONSULT_EVERY) } else { self.options.reclaim_every };
            if waiting && running.is_empty() {
                if !waiting_announced {
                    waiting_announced = true;
                    let _ = self.events.send(Event::Waiting);
                }
                wait = wait.min(WAIT_POLL);
            } else {
                waiting_announced = false;
            }
            let msg = match self.inbox.1.recv_timeout(wait) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    self.consult(&mut running, &mut consulted);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => unreachable!("the worker holds a sender"),
            };
            match msg {
                Msg::Control(Control::Drain) if !draining => {
                    draining = true;
                    summary.stopped_early = true;
                    let _ = self.events.send(Event::Draining);
                }
                Msg::Control(_) => {
                    draining = true;
                    summary.stopped_early = true;
                    let _ = self.events.send(Event::Terminating);
                    for r in running.values() {
                        r.stop.stop("interrupted: horizon was stopped");
                    }
                }
                Msg::Progress { number, step, max_train_steps, best } => {
                    consulted.1 = true;
                    let _ = self.events.send(Event::Progress { number, step, max_train_steps, best });
                }
                Msg::Finished { key, result } => {
                    let done = running.remove(&key).expect("every finished attempt was launched by this worker");
                    let _ = done.thread.join();
                    if let Some(gpu) = done.gpu {
                        free_gpus.push(gpu);
                    }
                    let result = match *result {
                        Ok(r) => r,
                        Err(e) => {
                            // Storage failed under a trial: stop the others cleanly and report.
                            for r in running.values() {
                                r.stop.stop("interrupted: storage error");
                            }
                            for (_, r) in running.drain() {
                                let _ = r.thread.join();
                            }
                            return Err(RunError::Store(e));
                        }
                    };
                    summary.attempts += 1;
                    match result.state {
                        TrialState::Complete => summary.completed += 1,
                        TrialState::Incomplete => summary.incomplete += 1,
                        TrialState::Diverged => summary.diverged += 1,
                        TrialState::Failed => summary.failed += 1,
                        _ => summary.requeued += 1,
                    }
                    tracing::debug!("trial {} attempt {} -> {}", done.number, result.trial.attempt, result.state);
                    let _ = self.events.send(Event::TrialFinished(Box::new(result)));
                }
            }
            self.consult(&mut running, &mut consulted);
        }
        Ok(summary)
    }

    /// Hand the scheduler (if any) what storage holds now while trials run (every
    /// [`CONSULT_EVERY`], and soon after an attempt stored new metrics), and stop the running
    /// attempts it names. A decision about a trial this worker does not run is ignored; a failed
    /// read is logged and tried again on the next look.
    fn consult(&mut self, running: &mut HashMap<(TrialId, u32), Running>, (last, fresh): &mut (Option<Instant>, bool)) {
        let Some(scheduler) = self.scheduler.as_mut() else { return };
        let since = last.map(|t| t.elapsed());
        let due = since.is_none_or(|d| d >= CONSULT_EVERY || (*fresh && d >= CONSULT_AFTER_PROGRESS));
        if running.is_empty() || !due {
            return;
        }
        *last = Some(Instant::now());
        *fresh = false;
        let view = match read_view(self.storage.as_ref(), self.record.id, &scheduler.metrics()) {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!("reading the study for its scheduler: {e}");
                return;
            }
        };
        for decision in scheduler.decide(&view) {
            match decision {
                Decision::Stop { trial, reason } => {
                    if let Some(r) = running.values_mut().find(|r| r.number == trial && !r.concluding) {
                        tracing::debug!("trial {trial}: stopping: {reason}");
                        r.concluding = true;
                        r.stop.conclude(&reason);
                    }
                }
            }
        }
    }

    fn claim(&self) -> Result<Claim, RunError> {
        let lease = Lease { heartbeat_at: crate::now(), ..self.lease.clone() };
        let sampler = self.sampler.clone();
        let sample = move |index: u64| sampler.sample(index).map_err(|e| e.to_string());
        Ok(self
            .storage
            .claim_trial(self.record.id, &ClaimRequest { lease: &lease, policy: self.policy.as_ref(), sample: &sample })?)
    }

    fn launch(&self, claimed: ClaimedTrial, gpu: Option<String>, claimed_at: Instant) -> Running {
        let ClaimedTrial { trial, rung, resume_from } = claimed;
        let start =
            AttemptStart { resume_from, step: rung.entry.start_step(), checkpoint_steps: self.policy.checkpoint_steps(&trial) };
        let (stop, rx) = StopHandle::new();
        let inbox = self.inbox.0.clone();
        let progress_tx = self.inbox.0.clone();
        let (number, max_train_steps, key) = (trial.number, trial.max_train_steps, (trial.id, trial.attempt));
        let input = AttemptInput {
            storage: self.storage.clone(),
            spec: self.study.spec.clone(),
            trial_dir: self.study.trial_dir(trial.number),
            working_dir: self.study.working_dir.clone(),
            horizon_exe: self.study.horizon_exe.clone(),
            trial,
            gpu: gpu.clone(),
            on_progress: Box::new(move |step, best| {
                let _ = progress_tx.send(Msg::Progress { number, step, max_train_steps, best });
            }),
            start,
            lease_timeout: self.options.lease_timeout,
            claimed_at,
        };
        let program = self.program.clone();
        let handle = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("trial-{number}"))
            .spawn(move || {
                let result = run_attempt(&program, input, (handle, rx));
                let _ = inbox.send(Msg::Finished { key, result: Box::new(result) });
            })
            .expect("spawning a trial thread");
        Running { number, stop, gpu, thread, concluding: false }
    }

    /// End what a dead worker's trainer left in its process group (e.g. data-loader processes).
    fn kill_leftovers(&self, number: u64, attempt: u32) {
        let trial_dir = self.study.trial_dir(number);
        let files = AttemptFiles::new(&trial_dir, attempt);
        // The file is the trainer's to overwrite: only processes of that group that carry this
        // attempt's environment are signalled, one by one.
        let Some(pgid) =
            crate::files::read_small(&files.pgid, 32).and_then(|b| String::from_utf8_lossy(&b).trim().parse::<u32>().ok())
        else {
            return;
        };
        if pgid <= 1 {
            return;
        }
        for pid in trial_processes_in_group(pgid, &trial_dir, attempt) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }

    /// Requeue running trials whose worker is gone, and this worker's own that it no longer runs
    /// (an attempt it gave up while the database was unreachable, a claim whose answer was
    /// lost). Returns how many were requeued.
    fn reclaim_abandoned(&self, running: &HashMap<(TrialId, u32), Running>) -> Result<usize, RunError> {
        // Heartbeats are the database's time: compare them with its clock, not this machine's.
        let now = self.storage.now()?;
        let mut count = 0;
        for t in self.storage.trials_in_state(self.record.id, TrialState::Running)? {
            let Some(lease) = t.lease.as_ref() else { continue };
            let orphan = lease.worker == self.lease.worker && !running.contains_key(&(t.id, t.attempt));
            if lease.worker == self.lease.worker && !orphan {
                continue;
            }
            if orphan || is_abandoned(lease, now, &self.lease.host, pid_alive, self.options.lease_timeout.as_secs_f64()) {
                let reason = if orphan {
                    format!("requeued: this worker ({}) lost the attempt while the database was unreachable", lease.worker)
                } else {
                    format!("requeued: worker {} ({}, pid {}) is gone", lease.worker, lease.host, lease.pid)
                };
                if self.storage.requeue_abandoned(t.id, t.attempt, &lease.worker, Some(lease.heartbeat_at), &reason, now)? {
                    count += 1;
                    if lease.host == self.lease.host {
                        self.kill_leftovers(t.number, t.attempt);
                    }
                    let _ = self.events.send(Event::Requeued { number: t.number, reason });
                }
            }
        }
        Ok(count)
    }
}

/// How long a worker rides out a database it cannot reach before it gives up (its running
/// trials give theirs up after the lease timeout, since another worker may take them over).
pub const STORAGE_PATIENCE: Duration = Duration::from_secs(300);

/// Since when the worker's own storage calls (claims, the abandoned-trial scan) have failed for
/// an unreachable database.
#[derive(Default)]
struct Outage(Option<Instant>);

impl Outage {
    /// The call's value; `None` (try again later) when the database was unreachable, up to
    /// [`STORAGE_PATIENCE`]; the error past it, or for any other failure.
    fn ride<T>(&mut self, result: Result<T, RunError>) -> Result<Option<T>, RunError> {
        match result {
            Ok(value) => {
                if let Some(since) = self.0.take() {
                    tracing::warn!("the database answers again after {:.0}s", since.elapsed().as_secs_f64());
                }
                Ok(Some(value))
            }
            Err(RunError::Store(e)) if e.is_transient() => {
                let since = *self.0.get_or_insert_with(|| {
                    tracing::warn!("cannot reach the database ({e}); trying again for up to {}s", STORAGE_PATIENCE.as_secs());
                    Instant::now()
                });
                if since.elapsed() >= STORAGE_PATIENCE { Err(RunError::Store(e)) } else { Ok(None) }
            }
            Err(e) => Err(e),
        }
    }
}

/// Trials of a study counted by state.
pub fn count_states(trials: &[horizon_core::TrialRecord]) -> HashMap<TrialState, usize> {
    let mut counts = HashMap::new();
    for t in trials {
        *counts.entry(t.state).or_insert(0) += 1;
    }
    counts
}

/// The best trial's selection among complete trials. On a ladder, among those at the highest
/// rung any complete trial reached: values at shorter budgets are not comparable with it.
pub fn best_of(
    trials: &[horizon_core::TrialRecord],
    direction: horizon_core::Direction,
) -> Option<(&horizon_core::TrialRecord, Selection)> {
    let top = trials.iter().filter(|t| t.state == TrialState::Complete).map(|t| t.rung).max()?;
    trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.rung == top)
        .filter_map(|t| {
            Some((
                t,
                Selection {
                    best_step: t.best_step?,
                    best_value: t.best_value?,
                    final_step: t.final_step?,
                    final_value: t.final_value?,
                    evaluations: 0,
                },
            ))
        })
        .fold(None, |best: Option<(&horizon_core::TrialRecord, Selection)>, (t, s)| match best {
            Some((_, b)) if !direction.better(s.best_value, b.best_value) => best,
            _ => Some((t, s)),
        })
}
