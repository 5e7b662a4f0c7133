//! One loop for multi-stage work: the learning-rate sweep's grids, a study's rounds, and (as a
//! single stage) a plain study or a ladder.
//!
//! A [`StagePlan`] reads what storage holds and answers with the next [`Stage`] or the finished
//! result (`horizon_core::stages::Next`); the decisions themselves are the pure policies of
//! `horizon-core` (`lr_sweep::next_stage`, `claim::RoundsPolicy::current_round`). [`drive`] asks
//! the plan, hands each stage to the caller's `run` (which runs its study with a
//! [`Worker`](crate::worker::Worker), and shows whatever the caller wants shown), and stops
//! when the plan is done or a stage was stopped by the user. Nothing is kept between stages but
//! what storage holds, so running the same command again resumes at the stage it was in.
//!
//! Plans: [`StudyPlan`] (a study file: its rounds, one stage each, or the whole study as one)
//! and [`LrSweepPlan`] (`horizon sweep-lr`: one study per grid, under the sweep's directory).

use std::path::PathBuf;
use std::sync::Arc;

use horizon_core::TrialState;
use horizon_core::claim::{ClaimPolicy, ClaimView, RoundsPolicy};
use horizon_core::lr_sweep::{self, Held, LrSweepSpec, Observed, StageTrial, SweepReport};
use horizon_core::protocol::is_loss_like;
use horizon_core::stages::Next;
use horizon_store::Storage;

use crate::RunError;
use crate::resolve::ResolvedStudy;
use crate::scheduler::{Scheduler, from_fn};

/// One stage: a study to run, how its claims are made and what watches its running trials.
pub struct Stage {
    /// The stage's name in messages and errors: `grid-0`, `round 2`, or the study's name.
    pub name: String,
    /// What it runs, in a line for the user (empty for a single-stage study).
    pub headline: String,
    /// The study the stage runs: a grid's own study, or the study itself for a round.
    pub study: ResolvedStudy,
    /// The claims it makes (a round's policy, capped at the round); the study's own when
    /// `None`.
    pub claim: Option<Arc<dyn ClaimPolicy>>,
    /// A policy that stops running trials (the sweep's), if any.
    pub scheduler: Option<Box<dyn Scheduler>>,
    /// The round this stage is (0-based), for a study in rounds.
    pub round: Option<usize>,
}

/// How a stage's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageEnd {
    /// Its study ran until it had nothing left to claim.
    Ran,
    /// The user stopped it (a drain or a terminate): the command resumes it later.
    Stopped,
}

/// How [`drive`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Driven<R> {
    /// Every stage ran; the plan's result.
    Done(R),
    /// The user stopped a stage; running the command again resumes at it.
    Stopped,
}

/// Multi-stage work: from what storage holds, the next stage or the result.
pub trait StagePlan {
    type Report;
    /// The stage to run now, or the finished result. Called before the first stage and after
    /// each one ran; it reads storage, never the previous call's answer, except to read back
    /// the stage that just ran.
    fn next(&mut self) -> Result<Next<Stage, Self::Report>, RunError>;
}

/// Run a plan's stages in order with `run` until the plan is done or a stage is stopped. A
/// stage that ran to its end and is asked for again at once is an error (its study could not
/// finish: nothing would change by running it again), never a loop.
pub fn drive<P, E>(plan: &mut P, mut run: impl FnMut(Stage) -> Result<StageEnd, E>) -> Result<Driven<P::Report>, E>
where
    P: StagePlan,
    E: From<RunError>,
{
    let mut ran: Option<String> = None;
    loop {
        let stage = match plan.next()? {
            Next::Done(report) => return Ok(Driven::Done(report)),
            Next::Run(stage) => stage,
        };
        if ran.as_deref() == Some(stage.name.as_str()) {
            return Err(RunError::Stage(format!(
                "stage {} ran to its end but has not finished (its trials could not all finish); nothing new would come of running it again\n  fix: see `horizon status` for trials still waiting or running (another process may hold them), then run the command again",
                stage.name
            ))
            .into());
        }
        ran = Some(stage.name.clone());
        if run(stage)? == StageEnd::Stopped {
            return Ok(Driven::Stopped);
        }
    }
}

/// What a claim policy would see of a study now, read in one transaction (a promotion between
/// two reads could show a round half-moved): for asking a policy outside a claim.
pub fn stored_view(storage: &dyn Storage, study: horizon_store::StudyId) -> Result<ClaimView, RunError> {
    let (record, trials, rungs) = storage.snapshot(study)?;
    Ok(ClaimView::of_records(record.next_sample_index, trials, rungs))
}

/// A study file's stages: one per round for a study in rounds (each round's claims capped at
/// it, so the caller can read the round's checks at its end), else the whole study as one.
pub struct StudyPlan {
    study: ResolvedStudy,
    storage: Arc<dyn Storage>,
    rounds: Option<RoundsPolicy>,
    ran: bool,
}

impl StudyPlan {
    pub fn new(study: ResolvedStudy, storage: Arc<dyn Storage>) -> StudyPlan {
        let rounds = RoundsPolicy::of_study(&study.spec);
        StudyPlan { study, storage, rounds, ran: false }
    }

    /// The round the study is at, from storage (`None` once every round has finished; `Some(0)`
    /// before the study exists).
    pub fn current_round(&self) -> Result<Option<usize>, RunError> {
        let Some(policy) = &self.rounds else { return Ok(None) };
        let Some(record) = self.storage.study(&self.study.spec.name)? else { return Ok(Some(0)) };
        Ok(policy.current_round(&stored_view(self.storage.as_ref(), record.id)?))
    }
}

impl StagePlan for StudyPlan {
    type Report = ();

    fn next(&mut self) -> Result<Next<Stage, ()>, RunError> {
        let Some(policy) = &self.rounds else {
            if std::mem::replace(&mut self.ran, true) {
                return Ok(Next::Done(()));
            }
            return Ok(Next::Run(Stage {
                name: self.study.spec.name.clone(),
                headline: String::new(),
                study: self.study.clone(),
                claim: None,
                scheduler: None,
                round: None,
            }));
        };
        let Some(r) = self.current_round()? else { return Ok(Next::Done(())) };
        let round = &policy.rounds[r];
        let mut what = vec![format!("{} steps per trial", round.max_train_steps)];
        if round.carry > 0 {
            what.push(format!("the best {} of round {} carried on", round.carry, r));
        }
        if round.trials > 0 {
            what.push(format!("{} new", round.trials));
        }
        Ok(Next::Run(Stage {
            name: format!("round {}", r + 1),
            headline: format!("round {} of {}: {}", r + 1, policy.rounds.len(), what.join(", ")),
            study: self.study.clone(),
            claim: Some(Arc::new(policy.through(r))),
            scheduler: None,
            round: Some(r),
        }))
    }
}

/// `horizon sweep-lr`: each grid an ordinary study in `<root>/<stage>/` (`grid-0`, `grid-1`,
/// ...), with `lr_sweep::stops` stopping the trials that cannot change the answer; the next grid
/// (or the report) is `lr_sweep::next_stage` of every grid's stored trials.
pub struct LrSweepPlan {
    base: ResolvedStudy,
    sweep: LrSweepSpec,
    held: Vec<Held>,
    root: PathBuf,
    observed: Observed,
    /// The stage handed out last, read back at the next call.
    pending: Option<ResolvedStudy>,
}

impl LrSweepPlan {
    pub fn new(base: ResolvedStudy, sweep: LrSweepSpec, held: Vec<Held>, root: PathBuf) -> LrSweepPlan {
        LrSweepPlan { base, sweep, held, root, observed: Observed::default(), pending: None }
    }

    /// The sweep's report from what its directory holds, without running anything: `None` when
    /// a grid it asks for has not run (or not finished) yet.
    pub fn stored_report(&mut self) -> Result<Option<SweepReport>, RunError> {
        loop {
            let stage = match lr_sweep::next_stage(&self.sweep, &self.observed) {
                Next::Done(report) => return Ok(Some(report)),
                Next::Run(stage) => stage,
            };
            let study = self.stage_study(&stage)?;
            if !study.db_path().is_file() {
                return Ok(None);
            }
            let url = horizon_store::StorageUrl::sqlite(&study.db_path());
            let storage = horizon_store::open(&url, horizon_store::Access::ReadOnly)?;
            let Some(record) = storage.study(&study.spec.name)? else { return Ok(None) };
            match stage_trials(storage.as_ref(), record.id, &self.sweep, &study.spec.objective.metric, &study) {
                Ok(trials) => self.observed.grids.push(trials),
                Err(RunError::Stage(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// The grid stage's study, bound to its directory under the sweep's.
    fn stage_study(&self, stage: &lr_sweep::Stage) -> Result<ResolvedStudy, RunError> {
        let spec = lr_sweep::stage_study(&self.base.spec, &self.sweep, &self.held, stage);
        let mut study = ResolvedStudy::new(spec, &self.base.spec_path)?;
        study.dir = self.root.join(stage.name());
        Ok(study)
    }
}

impl StagePlan for LrSweepPlan {
    type Report = SweepReport;

    fn next(&mut self) -> Result<Next<Stage, SweepReport>, RunError> {
        if let Some(study) = self.pending.take() {
            let storage = study.open_storage()?;
            let Some(record) = storage.study(&study.spec.name)? else {
                return Err(RunError::Stage(format!("the sweep stage in {} has no study", study.dir.display())));
            };
            let trials = stage_trials(storage.as_ref(), record.id, &self.sweep, &study.spec.objective.metric, &study)?;
            self.observed.grids.push(trials);
        }
        let stage = match lr_sweep::next_stage(&self.sweep, &self.observed) {
            Next::Done(report) => return Ok(Next::Done(report)),
            Next::Run(stage) => stage,
        };
        let study = self.stage_study(&stage)?;
        let policy = self.sweep.clone();
        let prior = lr_sweep::fastest_so_far(&self.sweep, &self.observed);
        let scheduler = from_fn(vec![self.sweep.fit.metric.clone()], move |view| lr_sweep::stops(&policy, prior, view));
        let headline = format!("stage {}: {}", stage.name(), describe_stage(&self.sweep, &stage));
        self.pending = Some(study.clone());
        Ok(Next::Run(Stage {
            name: stage.name(),
            headline,
            study,
            claim: None,
            scheduler: Some(Box::new(scheduler)),
            round: None,
        }))
    }
}

/// A grid stage in a line: its learning rates, its budget and what stops its trials.
fn describe_stage(sweep: &LrSweepSpec, stage: &lr_sweep::Stage) -> String {
    let join = |lrs: &[f64]| lrs.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
    let against = match sweep.steps {
        Some(n) => format!("for up to N = {n} steps"),
        None => format!("against the cap of {} steps (lr_sweep.max_steps)", stage.steps),
    };
    let what = if stage.index == 0 {
        format!("{} constant learning rates {against}: {}", stage.lrs.len(), join(&stage.lrs))
    } else {
        format!("extending the grid past its edge: {} {against}", join(&stage.lrs))
    };
    let stops = if sweep.prune {
        "; each stops at its fit, once a faster rate has fit, or once it stalls"
    } else {
        "; each stops at its fit (lr_sweep.prune = false)"
    };
    format!("{what}{stops}")
}

/// Each trial of a grid as stored: its learning rate, state, fit-metric curve, where a loss
/// first became non-finite and the last step it reported. A grid whose trials have not all
/// finished (another process still holds one) is not judged: half a grid could move an edge.
fn stage_trials(
    storage: &dyn Storage,
    study: horizon_store::StudyId,
    sweep: &LrSweepSpec,
    objective: &str,
    resolved: &ResolvedStudy,
) -> Result<Vec<StageTrial>, RunError> {
    let trials = storage.trials(study)?;
    let unfinished: Vec<String> = trials
        .iter()
        .filter(|t| matches!(t.state, TrialState::Waiting | TrialState::Running))
        .map(|t| t.number.to_string())
        .collect();
    if !unfinished.is_empty() {
        let one = unfinished.len() == 1;
        return Err(RunError::Stage(format!(
            "{} {} of the sweep stage in {} {} not finished (another horizon may be running {}).\n  fix: let it finish, or run `horizon sweep-lr` again once it has stopped: the stage resumes",
            if one { "trial" } else { "trials" },
            unfinished.join(", "),
            resolved.dir.display(),
            if one { "has" } else { "have" },
            if one { "it" } else { "them" }
        )));
    }
    let mut out = Vec::new();
    for t in trials {
        let Some(lr) = t.params.get(&sweep.param).and_then(|v| v.as_f64()) else {
            return Err(RunError::Stage(format!(
                "trial {} of the sweep stage in {} has no learning rate {}",
                t.number,
                resolved.dir.display(),
                sweep.param
            )));
        };
        let points = storage.metrics(t.id)?;
        let mut curve: Vec<(u64, f64)> =
            points.iter().filter(|p| p.name == sweep.fit.metric).map(|p| (p.step, p.value)).collect();
        curve.sort_by_key(|(step, _)| *step);
        let diverged_at = (t.state == TrialState::Diverged)
            .then(|| points.iter().filter(|p| !p.value.is_finite() && is_loss_like(&p.name, objective)).map(|p| p.step).min())
            .flatten();
        out.push(StageTrial {
            number: t.number,
            lr,
            state: t.state,
            message: t.message.clone(),
            curve,
            diverged_at,
            last_step: points.iter().map(|p| p.step).max(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan that hands out the stages of a list, each until `done` says it is finished.
    struct ListPlan {
        stages: Vec<&'static str>,
        finished: std::rc::Rc<std::cell::RefCell<Vec<&'static str>>>,
        study: ResolvedStudy,
    }

    impl StagePlan for ListPlan {
        type Report = usize;
        fn next(&mut self) -> Result<Next<Stage, usize>, RunError> {
            let done = self.finished.borrow();
            Ok(match self.stages.iter().find(|s| !done.contains(s)) {
                None => Next::Done(done.len()),
                Some(name) => Next::Run(Stage {
                    name: name.to_string(),
                    headline: String::new(),
                    study: self.study.clone(),
                    claim: None,
                    scheduler: None,
                    round: None,
                }),
            })
        }
    }

    fn study() -> ResolvedStudy {
        let dir = std::env::temp_dir();
        let spec = horizon_core::StudySpec::parse(
            "[study]\nname = \"s\"\ntrials = 1\nmax_train_steps = 10\neval_every = 5\n[objective]\nmetric = \"valid/loss\"\ndirection = \"minimize\"\n[trainer]\nworkload = \"digits-mlp\"\n",
            "s.toml",
        )
        .unwrap();
        // Nothing is run or written: the stages' study is only handed to the caller.
        ResolvedStudy::new(spec, &dir.join("s.toml")).unwrap()
    }

    #[test]
    fn stages_run_in_order_until_done_and_a_stop_ends_the_drive() {
        let finished = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut plan = ListPlan { stages: vec!["a", "b", "c"], finished: finished.clone(), study: study() };
        let mut seen = Vec::new();
        let out = drive(&mut plan, |stage| {
            seen.push(stage.name.clone());
            let name = ["a", "b", "c"].into_iter().find(|n| *n == stage.name).unwrap();
            finished.borrow_mut().push(name);
            Ok::<_, RunError>(StageEnd::Ran)
        })
        .unwrap();
        assert_eq!(out, Driven::Done(3));
        assert_eq!(seen, ["a", "b", "c"]);

        // Stopped in the middle: the drive ends there, and a new drive resumes at that stage.
        finished.borrow_mut().clear();
        let mut seen = Vec::new();
        let out = drive(&mut plan, |stage| {
            seen.push(stage.name.clone());
            if stage.name == "b" {
                return Ok::<_, RunError>(StageEnd::Stopped);
            }
            finished.borrow_mut().push("a");
            Ok(StageEnd::Ran)
        })
        .unwrap();
        assert_eq!(out, Driven::Stopped);
        assert_eq!(seen, ["a", "b"]);
        let mut seen = Vec::new();
        drive(&mut plan, |stage| {
            seen.push(stage.name.clone());
            let name = ["a", "b", "c"].into_iter().find(|n| *n == stage.name).unwrap();
            finished.borrow_mut().push(name);
            Ok::<_, RunError>(StageEnd::Ran)
        })
        .unwrap();
        assert_eq!(seen, ["b", "c"], "resumed at the stage that was stopped");
    }

    #[test]
    fn a_stage_that_ran_but_did_not_finish_is_an_error_not_a_loop() {
        let finished = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut plan = ListPlan { stages: vec!["a", "b"], finished: finished.clone(), study: study() };
        let mut runs = 0;
        let err = drive(&mut plan, |_| {
            runs += 1;
            Ok::<_, RunError>(StageEnd::Ran)
        })
        .unwrap_err();
        assert_eq!(runs, 1);
        assert!(err.to_string().contains("stage a ran to its end but has not finished"), "{err}");
    }
}
