//! The trial state machine.
//!
//! ```text
//!            claim                    completed
//! Waiting ─────────▶ Running ─────────────────────▶ Complete
//!    ▲                  │  ├── ended short ───────▶ Incomplete (exited 0 before 90% of its budget)
//!    │                  │  ├── non-finite loss ───▶ Diverged   (infeasible; never retried)
//!    │                  │  └── failed, no retries ▶ Failed
//!    └──────────────────┘
//!      failed with retries left, interrupted, or abandoned by a dead worker
//! ```
//!
//! Storage enforces the arrows: only a `Waiting` trial (or a new one) can be claimed, only the
//! worker holding the current attempt of a `Running` trial can write to it, and a finished trial
//! is never written again. The functions here decide which arrow an attempt takes.

use crate::params::Params;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    /// Created and queued: a retry, or an attempt that was interrupted.
    Waiting,
    Running,
    Complete,
    /// The trainer exited successfully but its evaluations stop well short of the budget (the
    /// classic loop over a finite data loader that ends after one epoch): not comparable with
    /// trials that trained to the end, so kept out of budget verdicts. Never retried (the same
    /// program would stop at the same place). See [`reached_budget`].
    Incomplete,
    /// Infeasible: the loss became NaN or infinite.
    Diverged,
    /// The program failed (exit status, timeout, no objective) and has no retries left.
    Failed,
}

impl TrialState {
    pub const ALL: [TrialState; 6] = [
        TrialState::Waiting,
        TrialState::Running,
        TrialState::Complete,
        TrialState::Incomplete,
        TrialState::Diverged,
        TrialState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Waiting => "waiting",
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Incomplete => "incomplete",
            TrialState::Diverged => "diverged",
            TrialState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<TrialState> {
        TrialState::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Finished trials are never written again.
    pub fn is_finished(self) -> bool {
        matches!(self, TrialState::Complete | TrialState::Incomplete | TrialState::Diverged | TrialState::Failed)
    }
}

impl std::fmt::Display for TrialState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who runs a trial's current attempt, and when they last said so.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    /// Unique per `horizon run` process.
    pub worker: String,
    pub host: String,
    pub pid: u32,
    /// Seconds since the Unix epoch.
    pub heartbeat_at: f64,
    /// The holder's lease timeout (seconds): its lease is judged expired by it, whatever the
    /// judging worker's own (`None` for a lease recorded by an older horizon).
    #[serde(default)]
    pub timeout: Option<f64>,
}

/// A trial as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrialRecord {
    /// Storage's key.
    pub id: i64,
    /// 0-based, in order of creation within the study.
    pub number: u64,
    /// The sampler index the parameters came from (none for imported or promoted trials).
    pub sample_index: Option<u64>,
    pub params: Params,
    /// The step budget of this trial.
    pub max_train_steps: u64,
    pub state: TrialState,
    /// How many times the trial was launched.
    pub attempt: u32,
    /// How many attempts failed (interruptions do not count).
    pub failures: u32,
    /// Retrospectively selected best evaluation of the objective.
    pub best_step: Option<u64>,
    pub best_value: Option<f64>,
    /// The last evaluation of the objective.
    pub final_step: Option<u64>,
    pub final_value: Option<f64>,
    /// Why the trial failed or diverged, or the last interruption.
    pub message: Option<String>,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub lease: Option<Lease>,
    /// The ladder rung the trial is at (0 without a ladder); `max_train_steps`, the state and
    /// the selection above are that rung's. Earlier rungs are [`RungRecord`]s.
    pub rung: u32,
}

/// How a trial came to run a rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RungEntry {
    /// A new configuration (rung 0), or an imported run.
    Started,
    /// Promoted from rung `from`, resuming from the checkpoint that rung wrote at step `step`.
    Resumed { from: u32, step: u64 },
    /// Promoted from rung `from`, trained from scratch at the new budget (the schedule shares
    /// no prefix with the shorter one, or no checkpoint was there to resume from).
    Restarted { from: u32 },
}

impl RungEntry {
    /// The step training starts at: the resumed checkpoint's, or 0.
    pub fn start_step(self) -> u64 {
        match self {
            RungEntry::Resumed { step, .. } => step,
            _ => 0,
        }
    }
}

impl std::fmt::Display for RungEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RungEntry::Started => f.write_str("started"),
            RungEntry::Resumed { from, step } => write!(f, "promoted from rung {from}, resumed from step {step}"),
            RungEntry::Restarted { from } => write!(f, "promoted from rung {from}, restarted from scratch"),
        }
    }
}

/// One trial's run at one rung: a complete schedule for the rung's budget. Every trial has a
/// rung 0 (a study without a ladder has nothing else); a ladder adds one per promotion.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RungRecord {
    /// The trial's storage key and number.
    pub trial: i64,
    pub number: u64,
    pub rung: u32,
    /// The step budget of this rung (`HORIZON_MAX_TRAIN_STEPS` of its attempts).
    pub budget: u64,
    /// Running or waiting while it is the trial's current rung; how it ended after.
    pub state: TrialState,
    pub entry: RungEntry,
    /// Retrospective selection over the objective at this rung.
    pub best_step: Option<u64>,
    pub best_value: Option<f64>,
    pub final_step: Option<u64>,
    pub final_value: Option<f64>,
    /// The step up to which the run's schedule is the same under any longer budget, as the
    /// trainer declared it (or horizon knew it).
    pub budget_independent_until: Option<u64>,
    /// Training steps this rung's attempts ran (from their start step to the last step they
    /// reported, summed over attempts): the compute it cost.
    pub steps_run: u64,
    pub message: Option<String>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    /// The parameters this rung ran with (a round may carry a trial on with its schedule
    /// transferred, changing them).
    pub params: crate::Params,
}

impl TrialRecord {
    /// A trial as it is first created from sample `number`: attempt 1 about to run, nothing
    /// recorded yet. Callers set what differs with struct update syntax.
    pub fn new(number: u64, params: Params, max_train_steps: u64, state: TrialState) -> TrialRecord {
        TrialRecord {
            id: number as i64,
            number,
            sample_index: Some(number),
            params,
            max_train_steps,
            state,
            attempt: 1,
            failures: 0,
            best_step: None,
            best_value: None,
            final_step: None,
            final_value: None,
            message: None,
            created_at: 0.0,
            started_at: None,
            finished_at: None,
            lease: None,
            rung: 0,
        }
    }
}

/// How many trials a study holds once its sampled trials are done: the sampler fills the
/// study's quota of `planned` trials (or more, if an earlier run of the study planned more), and
/// trials not drawn from the sampler (imported ones) come on top of it.
pub fn planned_total(planned: u64, trials: &[TrialRecord]) -> u64 {
    let sampled = trials.iter().filter(|t| t.sample_index.is_some()).count() as u64;
    planned.max(sampled) + (trials.len() as u64 - sampled)
}

/// How one attempt of a trial ended, as the runner saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// Exited with status 0 and reported the objective.
    Completed,
    /// Exited with status 0 and reported the objective, but stopped well short of the budget
    /// (`reached_budget` is false) without a `stop_when` reason.
    EndedEarly { reason: String },
    /// Reported a non-finite loss.
    Diverged { reason: String },
    /// Non-zero exit, killed by a timeout, or no objective reported.
    Failed { reason: String },
    /// Stopped by horizon (Ctrl-C twice, SIGTERM): to be run again, not a failure.
    Interrupted { reason: String },
}

/// Why horizon ended an attempt itself (before the program ended on its own).
#[derive(Debug, Clone, PartialEq)]
pub enum StopCause {
    /// The user stopped horizon (Ctrl-C twice, SIGTERM).
    Interrupted(String),
    /// A loss became non-finite and the study stops on divergence.
    Diverged,
    /// `trainer.stop_when` held, or a policy concluded the trial: it is complete.
    Reached,
    /// `trainer.timeout` passed; the text is the limit as shown (`"2m"`).
    TimedOut(String),
}

/// How the program itself ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgramEnd {
    /// A subprocess exited with this status.
    Exited(i32),
    /// A subprocess was killed by this signal (`"SIGSEGV"`).
    Signaled(String),
    /// An in-process training function returned.
    Returned(Result<(), String>),
    /// The runner lost track of the process.
    Unknown(String),
}

/// Everything the outcome of an attempt depends on, gathered by the runner for both the
/// subprocess and the in-process path.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEnd<'a> {
    pub stopped: Option<StopCause>,
    pub program: ProgramEnd,
    /// The first non-finite loss, if any (`train/loss was NaN at step 120`).
    pub divergence: Option<&'a str>,
    /// A finite value of the objective was reported (there is a selection).
    pub reported: bool,
    /// The highest step reported.
    pub progress: Option<u64>,
    pub max_train_steps: u64,
    pub objective: &'a str,
    /// The attempt ended early for a stated reason (`stop_when`, a policy's decision), so
    /// ending short of the budget is not the trainer's doing.
    pub ended_for_a_reason: bool,
}

/// How an attempt ended: one rule for every way of running a trial (docs/protocol.md
/// section 8). In order: a non-finite loss is divergence, whatever else happened; an
/// interruption is an interruption unless the program had finished its budget successfully; a
/// reached criterion with a reported objective is complete; a timeout is a failure; otherwise
/// the program's own end decides, and a successful end well short of the budget (without a
/// stated reason) is [`AttemptOutcome::EndedEarly`].
pub fn attempt_outcome(end: &AttemptEnd<'_>) -> AttemptOutcome {
    if let Some(why) = end.divergence {
        return AttemptOutcome::Diverged { reason: why.to_string() };
    }
    let succeeded = matches!(end.program, ProgramEnd::Exited(0) | ProgramEnd::Returned(Ok(())));
    match &end.stopped {
        Some(StopCause::Interrupted(reason)) => {
            let finished = succeeded && end.reported && end.progress.is_some_and(|p| p >= end.max_train_steps);
            return if finished { AttemptOutcome::Completed } else { AttemptOutcome::Interrupted { reason: reason.clone() } };
        }
        Some(StopCause::Reached) if end.reported => return AttemptOutcome::Completed,
        Some(StopCause::TimedOut(limit)) => return AttemptOutcome::Failed { reason: format!("timed out after {limit}") },
        _ => {}
    }
    let failed = |reason: String| AttemptOutcome::Failed { reason };
    match &end.program {
        ProgramEnd::Exited(0) | ProgramEnd::Returned(Ok(())) if end.reported => {
            if end.ended_for_a_reason || reached_budget(end.progress, end.max_train_steps) {
                AttemptOutcome::Completed
            } else {
                AttemptOutcome::EndedEarly {
                    reason: format!(
                        "the trainer exited 0 at step {} of {}, short of its budget (needs at least {:.0}%); kept out of budget verdicts",
                        end.progress.unwrap_or(0),
                        end.max_train_steps,
                        100.0 * REACHED_BUDGET_FRACTION
                    ),
                }
            }
        }
        ProgramEnd::Exited(0) => failed(format!("exited with status 0 but never reported a finite {}", end.objective)),
        ProgramEnd::Returned(Ok(())) => failed(format!("returned but never reported a finite {}", end.objective)),
        ProgramEnd::Exited(code) => failed(format!("exited with status {code}")),
        ProgramEnd::Signaled(signal) => failed(format!("killed by {signal}")),
        ProgramEnd::Returned(Err(reason)) => failed(reason.clone()),
        ProgramEnd::Unknown(why) => failed(why.clone()),
    }
}

/// The state a trial moves to after an attempt, given how many attempts failed before this one
/// and how many retries the study allows.
pub fn state_after(outcome: &AttemptOutcome, failures_before: u32, retries: u32) -> TrialState {
    match outcome {
        AttemptOutcome::Completed => TrialState::Complete,
        AttemptOutcome::EndedEarly { .. } => TrialState::Incomplete,
        AttemptOutcome::Diverged { .. } => TrialState::Diverged,
        AttemptOutcome::Interrupted { .. } => TrialState::Waiting,
        AttemptOutcome::Failed { .. } if failures_before < retries => TrialState::Waiting,
        AttemptOutcome::Failed { .. } => TrialState::Failed,
    }
}

/// The share of its budget a trial must reach to count as trained to the end: a trainer that
/// exits 0 having reported no step at or past this share of `max_train_steps` is
/// [`TrialState::Incomplete`]. 90%, not 100%, because a trainer that evaluates on its own
/// interval (every epoch, say) may end with its last evaluation a little before the budget.
pub const REACHED_BUDGET_FRACTION: f64 = 0.9;

/// Whether `progress` (the highest step an attempt reported) counts as having trained to the
/// end of `max_train_steps`: at least [`REACHED_BUDGET_FRACTION`] of it, rounded up.
pub fn reached_budget(progress: Option<u64>, max_train_steps: u64) -> bool {
    let needed = (max_train_steps as f64 * REACHED_BUDGET_FRACTION).ceil() as u64;
    progress.is_some_and(|p| p >= needed.min(max_train_steps))
}

/// Whether a running trial's worker is gone, so another worker may requeue it.
///
/// On the same host the worker's process is checked directly (`pid_alive`), so a study killed
/// with `kill -9` resumes at once; a worker on another host is presumed dead once its heartbeat
/// is older than its holder's lease timeout (`lease_timeout`, the judge's own, for a lease that
/// does not say): the holder stops its trial after half of its own, so a worker with a shorter
/// timeout cannot take over a trial that still runs.
pub fn is_abandoned(lease: &Lease, now: f64, this_host: &str, pid_alive: impl FnOnce(u32) -> bool, lease_timeout: f64) -> bool {
    if lease.host == this_host && !pid_alive(lease.pid) {
        return true;
    }
    now - lease.heartbeat_at > lease.timeout.unwrap_or(lease_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_spent_before_failing() {
        let failed = AttemptOutcome::Failed { reason: "exit 1".into() };
        assert_eq!(state_after(&failed, 0, 2), TrialState::Waiting);
        assert_eq!(state_after(&failed, 1, 2), TrialState::Waiting);
        assert_eq!(state_after(&failed, 2, 2), TrialState::Failed);
        assert_eq!(state_after(&failed, 0, 0), TrialState::Failed);
    }

    #[test]
    fn divergence_is_final_and_interruptions_requeue() {
        assert_eq!(state_after(&AttemptOutcome::Diverged { reason: "nan".into() }, 0, 5), TrialState::Diverged);
        assert_eq!(state_after(&AttemptOutcome::Interrupted { reason: "ctrl-c".into() }, 9, 0), TrialState::Waiting);
        assert_eq!(state_after(&AttemptOutcome::Completed, 0, 0), TrialState::Complete);
    }

    #[test]
    fn ending_short_is_incomplete_and_final() {
        let early = AttemptOutcome::EndedEarly { reason: "stopped at step 5 of 100".into() };
        assert_eq!(state_after(&early, 0, 5), TrialState::Incomplete);
        assert!(TrialState::Incomplete.is_finished());
        assert!(!reached_budget(Some(5), 100));
        assert!(!reached_budget(Some(89), 100));
        assert!(reached_budget(Some(90), 100));
        assert!(reached_budget(Some(100), 100));
        assert!(!reached_budget(None, 100));
        // Budgets too small for 90% to be below the budget: the budget itself is needed.
        assert!(!reached_budget(Some(0), 1));
        assert!(reached_budget(Some(1), 1));
        assert!(reached_budget(Some(9), 10) && !reached_budget(Some(8), 10));
        // No overflow at the largest budgets.
        assert!(reached_budget(Some(u64::MAX), u64::MAX));
        assert!(!reached_budget(Some(u64::MAX / 2), u64::MAX));
    }

    fn end(program: ProgramEnd) -> AttemptEnd<'static> {
        AttemptEnd {
            stopped: None,
            program,
            divergence: None,
            reported: true,
            progress: Some(100),
            max_train_steps: 100,
            objective: "valid/loss",
            ended_for_a_reason: false,
        }
    }

    #[test]
    fn one_rule_decides_every_attempt() {
        use AttemptOutcome as O;
        let failed = |r: &str| O::Failed { reason: r.into() };
        // The program's own end, the same for a subprocess and a closure.
        assert_eq!(attempt_outcome(&end(ProgramEnd::Exited(0))), O::Completed);
        assert_eq!(attempt_outcome(&end(ProgramEnd::Returned(Ok(())))), O::Completed);
        assert_eq!(attempt_outcome(&end(ProgramEnd::Exited(3))), failed("exited with status 3"));
        assert_eq!(attempt_outcome(&end(ProgramEnd::Signaled("SIGSEGV".into()))), failed("killed by SIGSEGV"));
        assert_eq!(attempt_outcome(&end(ProgramEnd::Returned(Err("oom".into())))), failed("oom"));
        let silent = AttemptEnd { reported: false, ..end(ProgramEnd::Exited(0)) };
        assert_eq!(attempt_outcome(&silent), failed("exited with status 0 but never reported a finite valid/loss"));
        // Divergence wins over everything, an exit status included.
        let nan = AttemptEnd { divergence: Some("valid/loss was NaN at step 3"), ..end(ProgramEnd::Exited(1)) };
        assert_eq!(attempt_outcome(&nan), O::Diverged { reason: "valid/loss was NaN at step 3".into() });
        let nan = AttemptEnd { stopped: Some(StopCause::Interrupted("ctrl-c".into())), ..nan };
        assert!(matches!(attempt_outcome(&nan), O::Diverged { .. }));
        // Short of the budget: incomplete, unless a reason ended it.
        let short = AttemptEnd { progress: Some(5), ..end(ProgramEnd::Exited(0)) };
        assert!(matches!(attempt_outcome(&short), O::EndedEarly { .. }));
        assert_eq!(attempt_outcome(&AttemptEnd { ended_for_a_reason: true, ..short.clone() }), O::Completed);
        assert_eq!(
            attempt_outcome(&AttemptEnd { stopped: Some(StopCause::Reached), program: ProgramEnd::Exited(143), ..short.clone() }),
            O::Completed
        );
        // Stopped by horizon.
        let timed = AttemptEnd { stopped: Some(StopCause::TimedOut("2m".into())), ..short.clone() };
        assert_eq!(attempt_outcome(&timed), failed("timed out after 2m"));
        let interrupted = AttemptEnd { stopped: Some(StopCause::Interrupted("horizon was stopped".into())), ..short };
        assert_eq!(attempt_outcome(&interrupted), O::Interrupted { reason: "horizon was stopped".into() });
        // ... but a trainer that had finished its budget and exits 0 is complete.
        let done = AttemptEnd { stopped: Some(StopCause::Interrupted("x".into())), ..end(ProgramEnd::Exited(0)) };
        assert_eq!(attempt_outcome(&done), O::Completed);
        let killed = AttemptEnd { stopped: Some(StopCause::Interrupted("x".into())), ..end(ProgramEnd::Exited(143)) };
        assert!(matches!(attempt_outcome(&killed), O::Interrupted { .. }));
    }

    #[test]
    fn abandoned_leases() {
        let lease = Lease { worker: "w".into(), host: "a".into(), pid: 10, heartbeat_at: 100.0, timeout: None };
        assert!(is_abandoned(&lease, 101.0, "a", |_| false, 60.0), "dead pid on this host");
        assert!(!is_abandoned(&lease, 101.0, "a", |_| true, 60.0), "live pid, fresh heartbeat");
        assert!(!is_abandoned(&lease, 150.0, "b", |_| panic!("other hosts are not probed"), 60.0));
        assert!(is_abandoned(&lease, 161.0, "b", |_| true, 60.0), "stale heartbeat");
        // The holder's own timeout decides, not the judge's: a judge with 60 s does not take
        // over from a holder with 600 s (which gives its trial up only after 300 s).
        let patient = Lease { timeout: Some(600.0), ..lease.clone() };
        assert!(!is_abandoned(&patient, 161.0, "b", |_| true, 60.0));
        assert!(is_abandoned(&patient, 701.0, "b", |_| true, 60.0));
        let brief = Lease { timeout: Some(10.0), ..lease };
        assert!(is_abandoned(&brief, 111.0, "b", |_| true, 60.0));
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in TrialState::ALL {
            assert_eq!(TrialState::parse(s.as_str()), Some(s));
        }
        assert!(!TrialState::Running.is_finished());
        assert!(TrialState::Diverged.is_finished());
    }
}
