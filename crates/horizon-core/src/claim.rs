//! What a worker asking for work gets: the claim policy, a pure function from what storage
//! holds of a study to a decision, as data.
//!
//! Storage builds a [`ClaimView`] inside its claim transaction, asks the study's
//! [`ClaimPolicy`], and applies the [`ClaimDecision`] in the same transaction, so the decision
//! and its effect are one atomic step whatever the number of workers and machines: two workers
//! asking at once see each other's claims and get different work, and a trial is promoted
//! once. The policy holds no state, so a study resumed from its database alone (after a crash,
//! on another machine) gets the same decisions.
//!
//! - [`FixedBudget`]: today's study, one budget for every trial: a waiting trial (a retry, an
//!   interrupted or requeued one) first, then the next sample while fewer than `trials` were
//!   drawn, then done.
//! - [`LadderPolicy`]: a ladder of growing budgets ([`crate::ladder`]): waiting trials first,
//!   then ASHA's promote / launch / wait / done, with each promotion resuming from the
//!   checkpoint its previous rung wrote where the schedule allows it.
//!
//! The next kinds of multi-stage work (rounds with schedule transfer) are further policies
//! over the same view.

use crate::ladder::{Ladder, LadderDecision, LadderTrial, RungOutcome};
use crate::spec::Direction;
use crate::trial::{RungRecord, TrialRecord, TrialState};

/// What storage holds of a study at the moment of a claim. Fields a policy does not ask for
/// ([`ClaimPolicy::needs_history`]) are left empty, so the common claim reads two rows.
#[derive(Debug, Clone, Default)]
pub struct ClaimView {
    /// The oldest waiting trial (lowest number), if any.
    pub oldest_waiting: Option<TrialRecord>,
    /// Sample indices handed out so far (trials drawn from the sampler).
    pub sampled: u64,
    /// Every trial, by number (only with `needs_history`).
    pub trials: Vec<TrialRecord>,
    /// Every rung of every trial, by trial number then rung (only with `needs_history`).
    pub rungs: Vec<RungRecord>,
    /// Live (not deleted) checkpoints of complete trials at their current rung, the ones a
    /// promotion can resume from, as `(trial id, step)` by trial then step (only with
    /// `needs_history`).
    pub checkpoints: Vec<(i64, u64)>,
}

impl ClaimView {
    /// The view a claim would see, from stored records read outside a claim (no checkpoints:
    /// they only say where a promotion resumes, never whether there is work). What a
    /// multi-stage plan asks a policy about the stage it is at.
    pub fn of_records(sampled: u64, trials: Vec<TrialRecord>, rungs: Vec<RungRecord>) -> ClaimView {
        let oldest_waiting = trials.iter().filter(|t| t.state == TrialState::Waiting).min_by_key(|t| t.number).cloned();
        ClaimView { oldest_waiting, sampled, trials, rungs, checkpoints: Vec::new() }
    }
}

/// What to do for the asking worker.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClaimDecision {
    /// Run the waiting trial `trial` (storage id) again at its current rung.
    Retry { trial: i64 },
    /// Draw the next sample and start it at rung 0 with this budget.
    Launch { budget: u64 },
    /// Start a new configuration with these parameters at rung (round) `rung` with `budget`
    /// (a later round's new trials, drawn from the space the previous round narrowed).
    LaunchAt { rung: u32, budget: u64, params: crate::Params },
    /// Move trial `trial` (storage id), complete at rung `rung - 1`, to rung `rung` with
    /// `budget`, resuming from its checkpoint at step `resume_step` (or from scratch), with its
    /// parameters replaced by `params` when given (a schedule carried to the longer budget).
    Promote { trial: i64, rung: u32, budget: u64, resume_step: Option<u64>, params: Option<crate::Params> },
    /// Nothing to run now, but results still to come may make work (a ladder's promotions):
    /// ask again later.
    Wait,
    /// The study has nothing more to run.
    Done,
}

/// A study's claim policy. Implementations are pure: the decision depends only on the view.
pub trait ClaimPolicy: Send + Sync {
    /// Whether the policy reads `rungs` and `checkpoints` of the view.
    fn needs_history(&self) -> bool {
        false
    }

    fn decide(&self, view: &ClaimView) -> ClaimDecision;

    /// Steps at which the attempt of `trial` about to run should write a checkpoint (passed in
    /// `HORIZON_CHECKPOINT_STEPS`): a ladder asks for the one its next rung would resume from.
    fn checkpoint_steps(&self, _trial: &TrialRecord) -> Vec<u64> {
        Vec::new()
    }
}

/// One budget for every trial, `trials` of them: waiting trials first, then new samples.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedBudget {
    pub trials: u64,
    pub max_train_steps: u64,
}

impl ClaimPolicy for FixedBudget {
    fn decide(&self, view: &ClaimView) -> ClaimDecision {
        if let Some(t) = &view.oldest_waiting {
            return ClaimDecision::Retry { trial: t.id };
        }
        if view.sampled < self.trials {
            return ClaimDecision::Launch { budget: self.max_train_steps };
        }
        ClaimDecision::Done
    }
}

/// Where a trial's schedule stops depending on the budget, as horizon knows it before the run
/// (the built-in workloads' schedules are known from their parameters): `(params, budget) ->
/// step`. `None` where horizon cannot know; the trainer's declaration
/// (`{"event": "budget_independent", ...}`) is used then.
pub type KnownPrefix = dyn Fn(&crate::Params, u64) -> Option<u64> + Send + Sync;

/// A ladder of growing budgets with schedule-consistent promotion.
pub struct LadderPolicy {
    pub ladder: Ladder,
    /// Configurations started at rung 0.
    pub trials: u64,
    pub direction: Direction,
    /// Resume promoted trials from a checkpoint where the schedule allows it (else always
    /// restart from scratch).
    pub resume: bool,
    pub known_prefix: Option<Box<KnownPrefix>>,
}

impl std::fmt::Debug for LadderPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LadderPolicy")
            .field("ladder", &self.ladder)
            .field("trials", &self.trials)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

impl LadderPolicy {
    /// The step a rung's run of `trial` shares with any longer budget: horizon's own knowledge
    /// of the schedule if it has it, else what the trainer declared at that rung.
    fn prefix(&self, trial: &TrialRecord, rung: &RungRecord) -> Option<u64> {
        let known = self.known_prefix.as_ref().and_then(|f| f(&trial.params, rung.budget));
        known.or(rung.budget_independent_until).map(|p| p.min(rung.budget))
    }

    /// The checkpoint a promotion of `rung`'s trial resumes from: the latest live checkpoint of
    /// the trial at or before the shared prefix, written at that rung (after its start step).
    fn resume_step(&self, view: &ClaimView, rung: &RungRecord, prefix: Option<u64>) -> Option<u64> {
        let prefix = prefix?;
        if !self.resume {
            return None;
        }
        latest_checkpoint(view, rung, prefix)
    }
}

/// The claim policy a study file asks for: its rounds, its `[ladder]`, or one fixed budget.
pub fn for_study(spec: &crate::StudySpec) -> Box<dyn ClaimPolicy> {
    if let Some(rounds) = RoundsPolicy::of_study(spec) {
        return Box::new(rounds);
    }
    let Some(l) = &spec.ladder else {
        return Box::new(FixedBudget { trials: spec.trials, max_train_steps: spec.max_train_steps });
    };
    // horizon knows the built-in workloads' schedules from their parameters; a user's trainer
    // declares its own (docs/protocol.md).
    let known_prefix: Option<Box<KnownPrefix>> = spec.trainer.workload.clone().map(|w| {
        Box::new(move |params: &crate::Params, budget: u64| crate::workloads::known_budget_independent_until(&w, params, budget))
            as Box<KnownPrefix>
    });
    Box::new(LadderPolicy {
        ladder: l.ladder.clone(),
        trials: spec.trials,
        direction: spec.objective.direction,
        resume: l.resume,
        known_prefix,
    })
}

/// Tuning in rounds ([`crate::rounds`]): round 0 samples `trials` configurations from the
/// study's space; each later round starts once the previous one has finished, carries the
/// previous round's best on (their schedule carried to the longer budget by the method's rule,
/// resuming where the carried schedule shares a prefix with the shorter one), and samples its
/// new trials from the space the transfer table makes of the previous round's best.
///
/// With [`RoundsPolicy::through`] the claims stop at one round: that round's stage of a
/// multi-stage run ([`crate::stages`]) is done when the capped policy says [`ClaimDecision::Done`].
#[derive(Clone)]
pub struct RoundsPolicy {
    pub rounds: Vec<crate::spec::RoundSpec>,
    pub space: crate::space::SearchSpace,
    pub sampler: crate::sampler::SamplerSpec,
    pub seed: u64,
    pub direction: Direction,
    pub roles: std::collections::BTreeMap<String, crate::rounds::ParamRole>,
    /// The built-in workload, whose schedule parameters horizon knows how to carry.
    pub workload: Option<String>,
    /// The last round to make claims for (all of them when `None`).
    pub last: Option<usize>,
}

impl std::fmt::Debug for RoundsPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoundsPolicy").field("rounds", &self.rounds).field("last", &self.last).finish_non_exhaustive()
    }
}

/// One round's results: every trial that ran it with its record there, in trial order.
type RoundResults<'a> = Vec<(&'a TrialRecord, &'a RungRecord)>;

impl RoundsPolicy {
    /// The policy of a study file in rounds (`None` when it has no `[[round]]`).
    pub fn of_study(spec: &crate::StudySpec) -> Option<RoundsPolicy> {
        (!spec.rounds.is_empty()).then(|| RoundsPolicy {
            rounds: spec.rounds.clone(),
            space: spec.space.clone(),
            sampler: spec.sampler.clone(),
            seed: spec.seed,
            direction: spec.objective.direction,
            roles: spec.roles.clone(),
            workload: spec.trainer.workload.clone(),
            last: None,
        })
    }

    /// The same policy, claiming nothing past round `r`.
    pub fn through(&self, r: usize) -> RoundsPolicy {
        RoundsPolicy { last: Some(r), ..self.clone() }
    }

    /// The first round that has not finished (claims still to make, or trials still running),
    /// `None` when every round has: the stage a multi-stage run is at, from stored state alone.
    /// A waiting trial (a retry) keeps the round it belongs to open.
    pub fn current_round(&self, view: &ClaimView) -> Option<usize> {
        // A retry belongs to its own round: judge each round without the study's oldest waiting
        // trial (which may be a later round's), and with its own waiting trials instead.
        let view = ClaimView { oldest_waiting: None, ..view.clone() };
        let by_round = self.index(&view);
        (0..self.rounds.len()).find(|&r| {
            let waiting = by_round.get(r).is_some_and(|res| res.iter().any(|(_, g)| g.state == TrialState::Waiting));
            waiting || self.decide_with(&view, &by_round, Some(r)) != ClaimDecision::Done
        })
    }

    /// How parameter `name` carries into round `r`: the round's override, else the role's default.
    pub fn transfer(&self, r: usize, name: &str) -> crate::rounds::Transfer {
        self.rounds[r]
            .transfer
            .get(name)
            .copied()
            .unwrap_or_else(|| self.roles.get(name).copied().unwrap_or(crate::rounds::ParamRole::Other).default_transfer())
    }

    /// Every round's results, indexed once per decision (a study's claims would otherwise scan
    /// every trial for every rung record).
    fn index<'a>(&self, view: &'a ClaimView) -> Vec<RoundResults<'a>> {
        let by_id: std::collections::HashMap<i64, &TrialRecord> = view.trials.iter().map(|t| (t.id, t)).collect();
        let mut out: Vec<RoundResults<'a>> = vec![Vec::new(); self.rounds.len()];
        for g in &view.rungs {
            if let (Some(slot), Some(t)) = (out.get_mut(g.rung as usize), by_id.get(&g.trial)) {
                slot.push((t, g));
            }
        }
        out
    }

    /// The best `k` of a round's results (by their value there), best first.
    fn best<'a>(&self, results: &[(&'a TrialRecord, &'a RungRecord)], k: usize) -> RoundResults<'a> {
        let mut done: RoundResults<'a> = results
            .iter()
            .copied()
            .filter(|(_, g)| g.state == TrialState::Complete && g.best_value.is_some_and(f64::is_finite))
            .collect();
        done.sort_by(|a, b| {
            let (x, y) = (a.1.best_value.unwrap_or(f64::NAN), b.1.best_value.unwrap_or(f64::NAN));
            let by = match self.direction {
                Direction::Minimize => x.total_cmp(&y),
                Direction::Maximize => y.total_cmp(&x),
            };
            by.then(a.0.number.cmp(&b.0.number))
        });
        done.truncate(k);
        done
    }

    /// Round `r`'s search space, made from round `r - 1`'s best by the transfer table.
    pub fn space_for(&self, view: &ClaimView, r: usize) -> crate::space::SearchSpace {
        self.space_from(&self.index(view), r)
    }

    fn space_from(&self, by_round: &[RoundResults<'_>], r: usize) -> crate::space::SearchSpace {
        if r == 0 {
            return self.space.clone();
        }
        let prev = &self.rounds[r - 1];
        // The best of the previous round, at least a few: the range they span is the narrowed one.
        let k = (self.rounds[r].carry as usize).max(((prev.trials + prev.carry) as usize).div_ceil(4)).max(1);
        let best = self.best(&by_round[r - 1], k);
        // The parameters each ran that round with (a carried trial's may have changed since).
        let top: Vec<&crate::Params> = best.iter().map(|(_, g)| &g.params).collect();
        crate::rounds::next_space(&self.space, &|name| self.transfer(r, name), &top)
    }

    /// A carried trial's parameters at the longer budget (its schedule carried by rule) and
    /// the step it can resume from.
    fn carried(
        &self,
        view: &ClaimView,
        trial: &TrialRecord,
        from: &RungRecord,
        budget: u64,
    ) -> (Option<crate::Params>, Option<u64>) {
        let Some(w) = &self.workload else {
            // A trainer of the user's own: parameters unchanged, its declared prefix.
            let step = from.budget_independent_until.and_then(|p| latest_checkpoint(view, from, p));
            return (None, step);
        };
        if crate::workloads::workload(w).is_none_or(|i| i.common.is_empty()) {
            let step = crate::workloads::known_budget_independent_until(w, &trial.params, from.budget)
                .and_then(|p| latest_checkpoint(view, from, p));
            return (None, step);
        }
        match crate::workloads::transfer_params(&trial.params, from.budget, budget) {
            Some((params, _)) => {
                let short = crate::workloads::schedule_of(&trial.params, from.budget);
                let long = crate::workloads::schedule_of(&params, budget);
                let shared = match (short, long) {
                    (Some(a), Some(b)) => a.identical_until(&b),
                    _ => 0,
                };
                let changed = params != trial.params;
                (changed.then_some(params), latest_checkpoint(view, from, shared))
            }
            None => (None, None),
        }
    }
}

/// The latest live checkpoint of a rung at or before `prefix` (and after the rung's start, never
/// at step 0): the one a promotion resumes from.
fn latest_checkpoint(view: &ClaimView, rung: &RungRecord, prefix: u64) -> Option<u64> {
    let start = rung.entry.start_step();
    view.checkpoints
        .iter()
        .filter(|(t, step)| *t == rung.trial && *step <= prefix.min(rung.budget) && *step >= start && *step > 0)
        .map(|(_, step)| *step)
        .max()
}

impl RoundsPolicy {
    fn decide_with(&self, view: &ClaimView, by_round: &[RoundResults<'_>], last: Option<usize>) -> ClaimDecision {
        if let Some(t) = &view.oldest_waiting {
            return ClaimDecision::Retry { trial: t.id };
        }
        let rounds = last.map_or(self.rounds.len(), |l| (l + 1).min(self.rounds.len()));
        for (r, round) in self.rounds.iter().enumerate().take(rounds) {
            let results = &by_round[r];
            let carried = results.iter().filter(|(_, g)| g.entry != crate::trial::RungEntry::Started).count() as u64;
            let started = results.len() as u64 - carried;
            let budget = round.max_train_steps;
            let prev_running = r > 0 && by_round[r - 1].iter().any(|(_, g)| !g.state.is_finished());
            if r > 0 && carried < round.carry {
                // Carry the previous round's best on, in order, once that round has finished.
                if prev_running {
                    return ClaimDecision::Wait;
                }
                let next = self
                    .best(&by_round[r - 1], round.carry as usize)
                    .into_iter()
                    .find(|(t, _)| !results.iter().any(|(u, _)| u.id == t.id));
                if let Some((t, from)) = next {
                    let (params, resume_step) = self.carried(view, t, from, budget);
                    return ClaimDecision::Promote { trial: t.id, rung: r as u32, budget, resume_step, params };
                }
            }
            if started < round.trials {
                if r == 0 {
                    return ClaimDecision::Launch { budget };
                }
                if prev_running {
                    return ClaimDecision::Wait;
                }
                let space = self.space_from(by_round, r);
                let Ok(sampler) = self.sampler.build(&space, self.seed.wrapping_add(r as u64)) else {
                    return ClaimDecision::Wait;
                };
                return match sampler.sample(started) {
                    Ok(params) => {
                        // Its schedule is carried from the previous round's budget by the same rule
                        // as the carried trials' (for the built-in trainers).
                        let from = self.rounds[r - 1].max_train_steps;
                        let params = match &self.workload {
                            Some(w) if crate::workloads::workload(w).is_some_and(|i| !i.common.is_empty()) => {
                                crate::workloads::transfer_params(&params, from, budget).map_or(params, |(p, _)| p)
                            }
                            _ => params,
                        };
                        ClaimDecision::LaunchAt { rung: r as u32, budget, params }
                    }
                    Err(_) => ClaimDecision::Wait,
                };
            }
            // This round has all it will get; the next one starts once it has finished.
            if results.iter().any(|(_, g)| !g.state.is_finished()) {
                return ClaimDecision::Wait;
            }
        }
        ClaimDecision::Done
    }
}

impl ClaimPolicy for RoundsPolicy {
    fn needs_history(&self) -> bool {
        true
    }

    fn decide(&self, view: &ClaimView) -> ClaimDecision {
        self.decide_with(view, &self.index(view), self.last)
    }

    fn checkpoint_steps(&self, trial: &TrialRecord) -> Vec<u64> {
        // The step a carried schedule shares with this round's, for built-in trainers.
        let r = trial.rung as usize;
        let (Some(w), Some(next)) = (&self.workload, self.rounds.get(r + 1)) else { return Vec::new() };
        if next.carry == 0 {
            return Vec::new();
        }
        if crate::workloads::workload(w).is_some_and(|i| i.common.is_empty()) {
            return vec![trial.max_train_steps];
        }
        let short = crate::workloads::schedule_of(&trial.params, trial.max_train_steps);
        let long = crate::workloads::transfer_params(&trial.params, trial.max_train_steps, next.max_train_steps)
            .and_then(|(p, _)| crate::workloads::schedule_of(&p, next.max_train_steps));
        match (short, long) {
            (Some(a), Some(b)) => Some(a.identical_until(&b)).filter(|&p| p > 0).into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

/// How many runs of a rung a ladder of `trials` configurations makes when every rung fills
/// (ASHA's sizes: `trials`, then `floor(n / eta)` at each rung above, at least one).
pub fn planned_runs(ladder: &Ladder, trials: u64) -> u64 {
    let mut n = trials;
    let mut total = 0;
    for _ in &ladder.rungs {
        total += n;
        n = (n / ladder.eta).max(1).min(n);
    }
    total
}

/// Each trial's ladder history from its rung records (in trial-number, rung order).
pub fn ladder_history(rungs: &[RungRecord]) -> Vec<LadderTrial> {
    let mut history: Vec<LadderTrial> = Vec::new();
    for r in rungs {
        let outcome = match r.state {
            TrialState::Waiting | TrialState::Running => RungOutcome::Pending,
            TrialState::Complete => match r.best_value {
                Some(v) if v.is_finite() => RungOutcome::Finished(v),
                _ => RungOutcome::Infeasible,
            },
            TrialState::Incomplete | TrialState::Diverged | TrialState::Failed => RungOutcome::Infeasible,
        };
        match history.last_mut() {
            Some(t) if t.number == r.number => t.rungs.push(outcome),
            _ => history.push(LadderTrial { number: r.number, rungs: vec![outcome] }),
        }
    }
    history
}

impl ClaimPolicy for LadderPolicy {
    fn needs_history(&self) -> bool {
        true
    }

    fn decide(&self, view: &ClaimView) -> ClaimDecision {
        if let Some(t) = &view.oldest_waiting {
            return ClaimDecision::Retry { trial: t.id };
        }
        // Imported trials (no sample index) are not on the ladder.
        let on_ladder: std::collections::HashSet<i64> =
            view.trials.iter().filter(|t| t.sample_index.is_some()).map(|t| t.id).collect();
        let sampled: Vec<RungRecord> = view.rungs.iter().filter(|r| on_ladder.contains(&r.trial)).cloned().collect();
        let history = ladder_history(&sampled);
        match crate::ladder::next(&self.ladder, &history, self.trials.max(view.sampled), self.direction) {
            LadderDecision::Launch { budget } if view.sampled < self.trials => ClaimDecision::Launch { budget },
            LadderDecision::Launch { .. } => ClaimDecision::Wait,
            LadderDecision::Promote { trial, rung, budget } => {
                let from = sampled.iter().find(|r| r.number == trial && r.rung as usize == rung - 1);
                let record = view.trials.iter().find(|t| t.number == trial);
                let (Some(from), Some(record)) = (from, record) else { return ClaimDecision::Wait };
                let resume_step = self.resume_step(view, from, self.prefix(record, from));
                ClaimDecision::Promote { trial: from.trial, rung: rung as u32, budget, resume_step, params: None }
            }
            LadderDecision::Wait => ClaimDecision::Wait,
            LadderDecision::Done => ClaimDecision::Done,
        }
    }

    fn checkpoint_steps(&self, trial: &TrialRecord) -> Vec<u64> {
        // The top rung is never promoted: no resume point to ask for.
        if !self.resume || trial.rung as usize >= self.ladder.top() {
            return Vec::new();
        }
        let known = self.known_prefix.as_ref().and_then(|f| f(&trial.params, trial.max_train_steps));
        known.filter(|&p| p > 0).map(|p| vec![p.min(trial.max_train_steps)]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Params;
    use crate::space::ParamKind;
    use crate::trial::RungEntry;

    fn trial(number: u64, state: TrialState) -> TrialRecord {
        TrialRecord { id: 100 + number as i64, ..TrialRecord::new(number, Params::default(), 100, state) }
    }

    fn rung(number: u64, rung: u32, budget: u64, state: TrialState, value: Option<f64>) -> RungRecord {
        RungRecord {
            trial: 100 + number as i64,
            number,
            rung,
            budget,
            state,
            entry: if rung == 0 { RungEntry::Started } else { RungEntry::Restarted { from: rung - 1 } },
            best_step: value.map(|_| budget),
            best_value: value,
            final_step: value.map(|_| budget),
            final_value: value,
            budget_independent_until: None,
            steps_run: budget,
            message: None,
            started_at: None,
            finished_at: None,
            params: Params::default(),
        }
    }

    fn policy(known: Option<u64>) -> LadderPolicy {
        LadderPolicy {
            ladder: Ladder::geometric(100, 3, 900).unwrap(),
            trials: 3,
            direction: Direction::Minimize,
            resume: true,
            known_prefix: known.map(|k| Box::new(move |_: &Params, b: u64| Some(b - k)) as Box<KnownPrefix>),
        }
    }

    #[test]
    fn a_fixed_budget_retries_then_samples_then_is_done() {
        let p = FixedBudget { trials: 2, max_train_steps: 500 };
        let waiting = trial(0, TrialState::Waiting);
        assert_eq!(
            p.decide(&ClaimView { oldest_waiting: Some(waiting), sampled: 2, ..Default::default() }),
            ClaimDecision::Retry { trial: 100 }
        );
        assert_eq!(p.decide(&ClaimView { sampled: 1, ..Default::default() }), ClaimDecision::Launch { budget: 500 });
        assert_eq!(p.decide(&ClaimView { sampled: 2, ..Default::default() }), ClaimDecision::Done);
        assert!(!p.needs_history());
    }

    fn view(checkpoints: Vec<(i64, u64)>, declared: Option<u64>) -> ClaimView {
        let trials = (0..3).map(|n| trial(n, TrialState::Complete)).collect();
        let mut rungs: Vec<RungRecord> =
            [0.5, 0.2, 0.7].iter().enumerate().map(|(n, v)| rung(n as u64, 0, 100, TrialState::Complete, Some(*v))).collect();
        rungs[1].budget_independent_until = declared;
        ClaimView { oldest_waiting: None, sampled: 3, trials, rungs, checkpoints }
    }

    #[test]
    fn a_promotion_resumes_from_the_latest_checkpoint_within_the_shared_prefix() {
        // Decay of 20 steps: rung 0 (100 steps) shares steps up to 80 with any longer budget.
        let v = view(vec![(101, 40), (101, 80), (101, 100), (100, 80)], None);
        assert_eq!(
            policy(Some(20)).decide(&v),
            ClaimDecision::Promote { trial: 101, rung: 1, budget: 300, resume_step: Some(80), params: None }
        );
        // Only a checkpoint past the prefix: restart from scratch, and say so.
        let v = view(vec![(101, 100)], None);
        assert_eq!(
            policy(Some(20)).decide(&v),
            ClaimDecision::Promote { trial: 101, rung: 1, budget: 300, resume_step: None, params: None }
        );
        // Horizon does not know the schedule: the trainer's declaration decides; none, restart.
        let v = view(vec![(101, 40), (101, 80)], Some(50));
        assert_eq!(
            policy(None).decide(&v),
            ClaimDecision::Promote { trial: 101, rung: 1, budget: 300, resume_step: Some(40), params: None }
        );
        let v = view(vec![(101, 40), (101, 80)], None);
        assert_eq!(
            policy(None).decide(&v),
            ClaimDecision::Promote { trial: 101, rung: 1, budget: 300, resume_step: None, params: None }
        );
        // Resume switched off.
        let v = view(vec![(101, 80)], None);
        let off = LadderPolicy { resume: false, ..policy(Some(20)) };
        assert_eq!(off.decide(&v), ClaimDecision::Promote { trial: 101, rung: 1, budget: 300, resume_step: None, params: None });
    }

    #[test]
    fn waiting_trials_come_first_and_imported_runs_stay_off_the_ladder() {
        let mut v = view(vec![], None);
        v.oldest_waiting = Some(trial(7, TrialState::Waiting));
        assert_eq!(policy(None).decide(&v), ClaimDecision::Retry { trial: 107 });
        // An imported run (no sample index) that is better than all: not promoted.
        let mut v = view(vec![], None);
        v.trials.push(TrialRecord { sample_index: None, ..trial(3, TrialState::Complete) });
        v.rungs.push(rung(3, 0, 100, TrialState::Complete, Some(0.01)));
        assert_eq!(
            policy(None).decide(&v),
            ClaimDecision::Promote { trial: 101, rung: 1, budget: 300, resume_step: None, params: None }
        );
    }

    #[test]
    fn workers_wait_while_a_running_rung_may_still_promote() {
        let mut v = view(vec![], None);
        for r in &mut v.rungs {
            r.state = TrialState::Running;
        }
        assert_eq!(policy(None).decide(&v), ClaimDecision::Wait);
        let mut v = view(vec![], None);
        v.sampled = 1;
        v.trials.truncate(1);
        v.rungs.truncate(1);
        assert_eq!(policy(None).decide(&v), ClaimDecision::Launch { budget: 100 });
    }

    fn rounds_policy() -> RoundsPolicy {
        use crate::space::{ParamDef, ParamKind, Scale, SearchSpace};
        let round = |max_train_steps, trials, carry| crate::spec::RoundSpec {
            max_train_steps,
            trials,
            carry,
            transfer: Default::default(),
        };
        RoundsPolicy {
            rounds: vec![round(100, 3, 0), round(400, 2, 1)],
            space: SearchSpace {
                params: vec![ParamDef { name: "x".into(), kind: ParamKind::Float { low: 0.001, high: 1.0, scale: Scale::Log } }],
            },
            sampler: crate::sampler::SamplerSpec::default(),
            seed: 0,
            direction: Direction::Minimize,
            roles: [("x".to_string(), crate::rounds::ParamRole::Optimizer)].into(),
            workload: None,
            last: None,
        }
    }

    /// Trial `n` with `x`, at round 0, in `state` with `value`.
    fn round0(n: u64, x: f64, state: TrialState, value: Option<f64>) -> (TrialRecord, RungRecord) {
        let params = Params(vec![("x".into(), crate::ParamValue::Float(x))]);
        let t = TrialRecord { params: params.clone(), ..trial(n, state) };
        (t, RungRecord { params, ..rung(n, 0, 100, state, value) })
    }

    #[test]
    fn rounds_sample_then_carry_the_best_then_sample_the_narrowed_space_then_finish() {
        let p = rounds_policy();
        let view = |runs: Vec<(TrialRecord, RungRecord)>| {
            let (trials, rungs): (Vec<_>, Vec<_>) = runs.into_iter().unzip();
            ClaimView { sampled: trials.len() as u64, trials, rungs, ..Default::default() }
        };
        assert_eq!(p.decide(&view(vec![])), ClaimDecision::Launch { budget: 100 });
        assert_eq!(p.current_round(&view(vec![])), Some(0));
        // Round 0 full but running: round 1 waits for it.
        let running = vec![
            round0(0, 0.01, TrialState::Complete, Some(0.3)),
            round0(1, 0.1, TrialState::Running, None),
            round0(2, 0.5, TrialState::Complete, Some(0.2)),
        ];
        assert_eq!(p.decide(&view(running.clone())), ClaimDecision::Wait);
        assert_eq!(p.current_round(&view(running.clone())), Some(0), "a round with a trial running is not over");
        assert_eq!(p.through(0).decide(&view(running)), ClaimDecision::Wait, "capped, it waits for its own round");
        // Round 0 finished: its best (trial 2) is carried on, unchanged (no built-in schedule).
        let done = vec![
            round0(0, 0.01, TrialState::Complete, Some(0.3)),
            round0(1, 0.1, TrialState::Failed, None),
            round0(2, 0.5, TrialState::Complete, Some(0.2)),
        ];
        assert_eq!(
            p.decide(&view(done.clone())),
            ClaimDecision::Promote { trial: 102, rung: 1, budget: 400, resume_step: None, params: None }
        );
        // Capped at round 0, the finished round is done, and the stage has moved on to round 1.
        assert_eq!(p.through(0).decide(&view(done.clone())), ClaimDecision::Done);
        assert_eq!(p.current_round(&view(done.clone())), Some(1));
        // A trial waiting for a retry keeps its round open.
        let mut retry = done.clone();
        retry[1].0.state = TrialState::Waiting;
        retry[1].1.state = TrialState::Waiting;
        let mut retry = view(retry);
        retry.oldest_waiting = Some(retry.trials[1].clone());
        assert_eq!(p.current_round(&retry), Some(0));
        // Then two new trials from the space narrowed around the best (a quarter of round 0,
        // at least the one carried: trial 2 alone, so the least margin on each side).
        let mut carried = done.clone();
        carried[2].1.state = TrialState::Complete;
        let mut r1 = carried[2].1.clone();
        r1.rung = 1;
        r1.budget = 400;
        r1.entry = crate::trial::RungEntry::Restarted { from: 0 };
        r1.state = TrialState::Running;
        let mut v = view(carried);
        v.rungs.push(r1);
        let ClaimDecision::LaunchAt { rung: 1, budget: 400, params } = p.decide(&v) else { panic!("{:?}", p.decide(&v)) };
        let x = params.get("x").unwrap().as_f64().unwrap();
        let m = (1.0f64.ln() - 0.001f64.ln()) * crate::rounds::MIN_MARGIN_SHARE;
        let (low, high) = ((0.5f64.ln() - m).exp(), (0.5f64.ln() + m).exp());
        assert!((low..=high).contains(&x), "near the best (0.5): {x}");
        let ParamKind::Float { low: l, high: h, .. } = p.space_for(&v, 1).params[0].kind.clone() else { panic!() };
        assert!((l - low).abs() < 1e-12 && (h - high).abs() < 1e-12, "{l}..{h}");
        // Everything run: done.
        let mut finished = v.clone();
        finished.rungs.last_mut().unwrap().state = TrialState::Complete;
        for n in 3..5 {
            let (t, mut g) = round0(n, 0.1, TrialState::Complete, Some(0.1));
            (g.rung, g.budget) = (1, 400);
            finished.trials.push(TrialRecord { rung: 1, ..t });
            finished.rungs.push(g);
        }
        assert_eq!(p.decide(&finished), ClaimDecision::Done);
        assert_eq!(p.current_round(&finished), None, "every round has finished");
        // A round-1 trial waiting for its retry keeps round 1 open, not round 0.
        let mut retry = finished.clone();
        let last = retry.trials.len() - 1;
        retry.trials[last].state = TrialState::Waiting;
        retry.rungs.last_mut().unwrap().state = TrialState::Waiting;
        retry.oldest_waiting = Some(retry.trials[last].clone());
        assert_eq!(p.current_round(&retry), Some(1));
    }

    #[test]
    fn planned_runs_follow_the_rung_sizes() {
        let l = Ladder::geometric(1, 3, 27).unwrap();
        assert_eq!(planned_runs(&l, 27), 27 + 9 + 3 + 1);
        assert_eq!(planned_runs(&l, 2), 2 + 1 + 1 + 1);
        assert_eq!(planned_runs(&l, 0), 0);
    }

    #[test]
    fn the_checkpoint_for_the_next_rung_is_asked_for_in_advance() {
        let p = policy(Some(20));
        let t = TrialRecord { rung: 0, max_train_steps: 100, ..trial(0, TrialState::Running) };
        assert_eq!(p.checkpoint_steps(&t), vec![80]);
        // The top rung is never promoted.
        let top = TrialRecord { rung: 2, max_train_steps: 900, ..t.clone() };
        assert!(p.checkpoint_steps(&top).is_empty());
        assert!(policy(None).checkpoint_steps(&t).is_empty());
    }
}
