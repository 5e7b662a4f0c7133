//! The constant-learning-rate sweep that picks an initial `max_train_steps` (docs/method.md,
//! section 2, "Initial `max_train_steps` from a learning-rate sweep"), as pure policy.
//!
//! The sweep runs in stages, each an ordinary study that the runner executes:
//! 1. **find-steps** (only when the budget `N` is not given): one trial at one learning rate,
//!    trained up to a cap and stopped as soon as the fit criterion holds. With a constant
//!    learning rate and a fixed seed, a run to `2B` steps repeats the run to `B` steps, so
//!    "double the budget until it fits" needs one run: `N` is the first budget of the doubling
//!    sequence `start, 2 start, 4 start, ...` that contains the step where the fit held.
//! 2. **grid-0**: a log-spaced grid of constant learning rates, every regularization and
//!    augmentation parameter at its "off" value, each trial for `N` steps, stopped at the fit.
//! 3. **grid-1, grid-2, ...**: when the fastest learning rate is an edge of everything swept so
//!    far, more learning rates beyond that edge (the same spacing), a bounded number of times.
//!
//! [`next_stage`] takes what the stored stages observed and returns the next stage to run or
//! the finished [`SweepReport`]; it never runs anything. The report's
//! `suggested_max_train_steps` is the step at which the fastest learning rate first met the
//! fit criterion.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::criterion::Criterion;
use crate::params::ParamValue;
use crate::sampler::SamplerSpec;
use crate::space::{ParamDef, ParamKind, SearchSpace};
use crate::spec::{CheckpointSpec, StudySpec};

/// A checked `[lr_sweep]` section (or its defaults); see docs/study-spec.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSweepSpec {
    /// The learning-rate parameter.
    pub param: String,
    /// The first grid's range and size (log-spaced, both ends included).
    pub low: f64,
    pub high: f64,
    pub points: u32,
    /// When the training set counts as perfectly fit.
    pub fit: Criterion,
    /// `N`, the budget of every grid trial; found by the find-steps stage when not given.
    pub steps: Option<u64>,
    /// The first budget of the doubling sequence that finds `N`.
    pub start_steps: u64,
    /// The cap on `N`: the find-steps trial trains at most this long.
    pub max_steps: u64,
    /// The learning rate the find-steps stage uses (default: the grid's middle point, the lower
    /// of the two middle ones for an even number of points).
    pub find_lr: Option<f64>,
    /// How many times the grid may be extended past an edge.
    pub extensions: u32,
    /// Learning rates added per extension.
    pub extend_by: u32,
    /// Evaluation interval of the sweep's trials.
    pub eval_every: u64,
    /// Values for the searched parameters other than the learning rate.
    pub set: BTreeMap<String, ParamValue>,
}

impl LrSweepSpec {
    /// `N` from the find-steps trial's fit step: the first budget of `start_steps, 2
    /// start_steps, ...` that contains it, capped at `max_steps` (the find-steps trial trained at
    /// most that long, so the fit step is within the cap).
    pub fn found_budget(&self, fit_step: u64) -> u64 {
        doubled_budget(self.start_steps, fit_step).min(self.max_steps)
    }

    /// The find-steps stage's learning rate.
    pub fn find_lr(&self) -> f64 {
        self.find_lr.unwrap_or_else(|| {
            let grid = log_grid(self.low, self.high, self.points);
            grid[(grid.len() - 1) / 2]
        })
    }
}

/// Round to 3 significant digits, so that swept learning rates read well (0.0316, not
/// 0.031622776601683784).
pub fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = 2 - x.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// `points` learning rates from `low` to `high`, evenly spaced in log scale, rounded.
pub fn log_grid(low: f64, high: f64, points: u32) -> Vec<f64> {
    if points <= 1 {
        return vec![round_sig(low)];
    }
    let ratio = (high / low).powf(1.0 / f64::from(points - 1));
    (0..points).map(|i| round_sig(low * ratio.powi(i as i32))).collect()
}

/// The spacing ratio of the first grid.
fn grid_ratio(spec: &LrSweepSpec) -> f64 {
    if spec.points <= 1 { 10f64.sqrt() } else { (spec.high / spec.low).powf(1.0 / f64::from(spec.points - 1)) }
}

/// An edge of the swept range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Low,
    High,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Low => "low",
            Side::High => "high",
        })
    }
}

/// What one learning rate did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrOutcome {
    /// The fit criterion first held at this step.
    Fit { steps: u64 },
    /// Trained the whole budget without meeting the criterion; `best` is the fit metric's
    /// value closest to meeting it (none when it was never finite).
    Never { best: Option<f64> },
    /// A loss became NaN or infinite.
    Diverged { message: String },
    /// The trial failed (crash, timeout) or has not finished.
    Failed { message: String },
}

/// A stage of the sweep: a study to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// One trial at `lr` for up to `max_steps`, stopped at the fit.
    FindSteps { lr: f64, max_steps: u64 },
    /// Grid `index` (0 is the first grid, then extensions): one trial per learning rate for
    /// `steps`, stopped at the fit.
    Grid { index: u32, lrs: Vec<f64>, steps: u64 },
}

impl Stage {
    /// The stage's name: its study's name suffix and its directory.
    pub fn name(&self) -> String {
        match self {
            Stage::FindSteps { .. } => "find-steps".into(),
            Stage::Grid { index, .. } => format!("grid-{index}"),
        }
    }
}

/// What the stored stages observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The find-steps trial, if that stage ran.
    pub find_steps: Option<LrOutcome>,
    /// Each grid stage that ran, in order, with each learning rate's outcome.
    pub grids: Vec<Vec<(f64, LrOutcome)>>,
}

/// Where `N` came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum BudgetSource {
    /// `[lr_sweep] steps`.
    Given { steps: u64 },
    /// The find-steps trial at `lr` met the criterion at `fit_step`; `steps` is the first
    /// doubled budget from `start_steps` that contains it.
    Found { lr: f64, fit_step: u64, start_steps: u64, steps: u64 },
}

impl BudgetSource {
    pub fn steps(&self) -> u64 {
        match self {
            BudgetSource::Given { steps } | BudgetSource::Found { steps, .. } => *steps,
        }
    }
}

/// How the sweep ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The fastest learning rate is inside the swept range: its steps-to-fit is the initial
    /// `max_train_steps`.
    Found,
    /// The fastest learning rate is still at an edge after every allowed extension: the
    /// suggestion is an upper bound, the true fastest rate may lie beyond `sides` (both when
    /// the fastest rates tie across the whole range).
    EdgeUnresolved { sides: Vec<Side> },
    /// The find-steps trial never met the criterion within the cap: the training set cannot be
    /// fit perfectly under this setup.
    CannotFit { lr: f64, max_steps: u64 },
    /// The find-steps trial diverged or failed, so there is no `N`.
    FindStepsFailed { lr: f64, message: String },
    /// No learning rate of the grid met the criterion within `N` steps.
    NothingFit { steps: u64 },
}

/// The result of the sweep, with the evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepReport {
    pub fit: String,
    /// `N` and where it came from (none when it could not be found).
    pub budget: Option<BudgetSource>,
    /// Every swept learning rate, ascending, with its outcome.
    pub results: Vec<(f64, LrOutcome)>,
    /// The learning rates that met the criterion in the fewest steps (several when tied).
    pub fastest: Vec<f64>,
    /// Each extension, in order: the side and the learning rates it added.
    pub extensions: Vec<(Side, Vec<f64>)>,
    pub verdict: Verdict,
    /// The initial `max_train_steps`: the fastest learning rate's steps-to-fit.
    pub suggested_max_train_steps: Option<u64>,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Run(Stage),
    Done(SweepReport),
}

/// The learning rate whose `Never` outcome came closest to the fit (the largest of ties).
fn closest_to_fit(results: &[(f64, LrOutcome)], fit: &Criterion) -> Option<f64> {
    let mut best: Option<(f64, f64)> = None;
    for (lr, o) in results {
        if let LrOutcome::Never { best: Some(v) } = o {
            let d = fit.distance(*v);
            if best.is_none_or(|(_, bd)| d <= bd) {
                best = Some((*lr, d));
            }
        }
    }
    best.map(|(lr, _)| lr)
}

/// The first budget of `start, 2 start, 4 start, ...` that is at least `fit_step`.
pub fn doubled_budget(start: u64, fit_step: u64) -> u64 {
    let mut n = start.max(1);
    while n < fit_step {
        n = n.saturating_mul(2);
    }
    n
}

/// The sweep's next stage, or its report, from what the stored stages observed.
pub fn next_stage(spec: &LrSweepSpec, observed: &Observed) -> Next {
    let fit = spec.fit.to_string();
    let done = |budget, results, verdict| {
        Next::Done(SweepReport {
            fit: fit.clone(),
            budget,
            results,
            fastest: vec![],
            extensions: vec![],
            verdict,
            suggested_max_train_steps: None,
        })
    };
    let budget = match spec.steps {
        Some(steps) => BudgetSource::Given { steps },
        None => {
            let lr = spec.find_lr();
            match &observed.find_steps {
                None => return Next::Run(Stage::FindSteps { lr, max_steps: spec.max_steps }),
                Some(LrOutcome::Fit { steps: fit_step }) => BudgetSource::Found {
                    lr,
                    fit_step: *fit_step,
                    start_steps: spec.start_steps,
                    steps: spec.found_budget(*fit_step),
                },
                Some(outcome @ LrOutcome::Never { .. }) => {
                    return done(None, vec![(lr, outcome.clone())], Verdict::CannotFit { lr, max_steps: spec.max_steps });
                }
                Some(outcome @ (LrOutcome::Diverged { message } | LrOutcome::Failed { message })) => {
                    return done(None, vec![(lr, outcome.clone())], Verdict::FindStepsFailed { lr, message: message.clone() });
                }
            }
        }
    };
    let steps = budget.steps();
    if observed.grids.is_empty() {
        return Next::Run(Stage::Grid { index: 0, lrs: log_grid(spec.low, spec.high, spec.points), steps });
    }

    let mut results: Vec<(f64, LrOutcome)> = observed.grids.iter().flatten().cloned().collect();
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut extensions: Vec<(Side, Vec<f64>)> = Vec::new();
    for (i, g) in observed.grids.iter().enumerate().skip(1) {
        let before = observed.grids[..i].iter().flatten().map(|(lr, _)| *lr).fold(f64::INFINITY, f64::min);
        let below: Vec<f64> = g.iter().map(|(lr, _)| *lr).filter(|lr| *lr < before).collect();
        let above: Vec<f64> = g.iter().map(|(lr, _)| *lr).filter(|lr| *lr >= before).collect();
        extensions.extend([(Side::Low, below), (Side::High, above)].into_iter().filter(|(_, lrs)| !lrs.is_empty()));
    }

    let best = results.iter().filter_map(|(_, o)| if let LrOutcome::Fit { steps } = o { Some(*steps) } else { None }).min();
    let fastest: Vec<f64> = results
        .iter()
        .filter(|(_, o)| matches!(o, LrOutcome::Fit { steps } if Some(*steps) == best))
        .map(|(lr, _)| *lr)
        .collect();
    // The edges of what was swept, among the rates that gave evidence: a trial that failed
    // (crash, timeout) says nothing about its learning rate, so it neither closes an edge nor is one.
    let evidence: Vec<f64> = results.iter().filter(|(_, o)| !matches!(o, LrOutcome::Failed { .. })).map(|(lr, _)| *lr).collect();
    let (Some(&lowest), Some(&highest)) = (evidence.first(), evidence.last()) else {
        return Next::Done(SweepReport {
            fit,
            budget: Some(budget),
            results,
            fastest,
            extensions,
            verdict: Verdict::NothingFit { steps },
            suggested_max_train_steps: None,
        });
    };
    let mut edges = Vec::new();
    if best.is_some() {
        if fastest.contains(&lowest) {
            edges.push(Side::Low);
        }
        if fastest.contains(&highest) {
            edges.push(Side::High);
        }
    } else if let Some(closest) = closest_to_fit(&results, &spec.fit) {
        // Nothing fit: if the rate that came closest is an edge, the fastest may lie beyond it
        // (e.g. every rate too small); if it is inside, the rates bracket it and N is too short.
        if closest == lowest {
            edges.push(Side::Low);
        } else if closest == highest {
            edges.push(Side::High);
        }
    } else if results.iter().find(|(lr, _)| *lr == lowest).is_some_and(|(_, o)| matches!(o, LrOutcome::Diverged { .. })) {
        // Nothing fit and even the smallest rate diverged: they may all be too large.
        edges.push(Side::Low);
    }
    if !edges.is_empty() && observed.grids.len() <= spec.extensions as usize {
        let ratio = grid_ratio(spec);
        let mut lrs = Vec::new();
        for side in &edges {
            for k in 1..=spec.extend_by.max(1) {
                lrs.push(match side {
                    Side::Low => round_sig(lowest / ratio.powi(k as i32)),
                    Side::High => round_sig(highest * ratio.powi(k as i32)),
                });
            }
        }
        lrs.retain(|lr| !results.iter().any(|(swept, _)| swept == lr));
        lrs.sort_by(f64::total_cmp);
        lrs.dedup();
        if !lrs.is_empty() {
            return Next::Run(Stage::Grid { index: observed.grids.len() as u32, lrs, steps });
        }
    }
    let verdict = match best {
        None => Verdict::NothingFit { steps },
        Some(_) if edges.is_empty() => Verdict::Found,
        Some(_) => Verdict::EdgeUnresolved { sides: edges },
    };
    Next::Done(SweepReport {
        fit,
        budget: Some(budget),
        results,
        fastest,
        extensions,
        verdict,
        suggested_max_train_steps: best,
    })
}

/// Why a parameter has its value during the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldBy {
    /// Regularization or augmentation switched off (`[params.NAME] off`, or the workload's).
    Off,
    /// `[lr_sweep] set`.
    Set,
    /// A fixed parameter of the study.
    Fixed,
    /// A searched parameter with neither: the middle of its range in its sampling scale.
    Middle,
    /// A built-in workload's schedule parameters: a constant learning rate, no warmup.
    Constant,
}

/// A parameter held at one value for the whole sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Held {
    pub name: String,
    pub value: ParamValue,
    pub by: HeldBy,
}

/// The value of every parameter other than the learning rate during the sweep, and why.
pub fn held_params(base: &StudySpec, sweep: &LrSweepSpec) -> Vec<Held> {
    let workload = base.trainer.workload.is_some();
    let mut held: Vec<Held> = base
        .space
        .params
        .iter()
        .filter(|p| p.name != sweep.param)
        .map(|p| {
            let (value, by) = if let Some(v) = sweep.set.get(&p.name) {
                (v.clone(), HeldBy::Set)
            } else if let Some(v) = base.off.get(&p.name) {
                (v.clone(), HeldBy::Off)
            } else if workload && p.name == "schedule" {
                (ParamValue::Str("constant".into()), HeldBy::Constant)
            } else if workload && p.name == "warmup_steps" {
                (ParamValue::Int(0), HeldBy::Constant)
            } else if let ParamKind::Fixed { value } = &p.kind {
                (value.clone(), HeldBy::Fixed)
            } else {
                (p.value_at(0.5), HeldBy::Middle)
            };
            Held { name: p.name.clone(), value, by }
        })
        .collect();
    for (name, value) in &sweep.set {
        if base.space.param(name).is_none() {
            held.push(Held { name: name.clone(), value: value.clone(), by: HeldBy::Set });
        }
    }
    held
}

/// The study that runs one stage of the sweep: the base study with the learning rate swept (or
/// fixed), every other parameter held ([`held_params`]), the stage's budget, trials stopped at
/// the fit criterion, and no checkpoints kept. Its directory is the caller's business.
pub fn stage_study(base: &StudySpec, sweep: &LrSweepSpec, stage: &Stage) -> StudySpec {
    let (lr_kind, trials, steps) = match stage {
        Stage::FindSteps { lr, max_steps } => (ParamKind::Fixed { value: ParamValue::Float(*lr) }, 1, *max_steps),
        Stage::Grid { lrs, steps, .. } if lrs.len() == 1 => (ParamKind::Fixed { value: ParamValue::Float(lrs[0]) }, 1, *steps),
        Stage::Grid { lrs, steps, .. } => {
            (ParamKind::Discrete { values: lrs.iter().map(|x| ParamValue::Float(*x)).collect() }, lrs.len() as u64, *steps)
        }
    };
    let held = held_params(base, sweep);
    let mut params: Vec<ParamDef> = base
        .space
        .params
        .iter()
        .map(|p| match held.iter().find(|h| h.name == p.name) {
            Some(h) => ParamDef { name: p.name.clone(), kind: ParamKind::Fixed { value: h.value.clone() } },
            None => ParamDef { name: p.name.clone(), kind: lr_kind.clone() },
        })
        .collect();
    if base.space.param(&sweep.param).is_none() {
        params.push(ParamDef { name: sweep.param.clone(), kind: lr_kind.clone() });
    }
    for h in &held {
        if base.space.param(&h.name).is_none() {
            params.push(ParamDef { name: h.name.clone(), kind: ParamKind::Fixed { value: h.value.clone() } });
        }
    }
    let space = SearchSpace { params };
    let mut spec = base.clone();
    spec.name = format!("{}.lr-sweep.{}", base.name, stage.name());
    spec.directory = None;
    spec.notes = format!("learning-rate sweep of study {}: stage {}", base.name, stage.name());
    spec.trials = trials;
    spec.max_train_steps = steps;
    spec.eval_every = sweep.eval_every.min(steps);
    spec.sampler = if space.dims() == 0 { SamplerSpec::default() } else { SamplerSpec::Grid { points: 2 } };
    spec.space = space;
    spec.trainer.stop_when = Some(sweep.fit.clone());
    // A longer budget than the study's gets a proportionally longer timeout.
    spec.trainer.timeout = base.trainer.timeout.map(|t| t.mul_f64((steps as f64 / base.max_train_steps as f64).max(1.0)));
    spec.checkpoints = CheckpointSpec { keep_best: 0, keep_latest: false, every: None };
    spec.off = BTreeMap::new();
    spec.lr_sweep = None;
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LrSweepSpec {
        LrSweepSpec {
            param: "learning_rate".into(),
            low: 0.001,
            high: 1.0,
            points: 4,
            fit: Criterion::parse("train/error <= 0").unwrap(),
            steps: None,
            start_steps: 100,
            max_steps: 3200,
            find_lr: None,
            extensions: 2,
            extend_by: 2,
            eval_every: 10,
            set: BTreeMap::new(),
        }
    }

    fn fit(steps: u64) -> LrOutcome {
        LrOutcome::Fit { steps }
    }

    fn never(best: f64) -> LrOutcome {
        LrOutcome::Never { best: Some(best) }
    }

    #[test]
    fn grids_are_log_spaced_rounded_and_include_both_ends() {
        assert_eq!(log_grid(0.001, 1.0, 4), vec![0.001, 0.01, 0.1, 1.0]);
        assert_eq!(log_grid(0.01, 1.0, 5), vec![0.01, 0.0316, 0.1, 0.316, 1.0]);
        assert_eq!(round_sig(0.031622776601683784), 0.0316);
        assert_eq!(round_sig(1234.5), 1230.0);
    }

    #[test]
    fn doubling_budget_is_the_first_that_contains_the_fit() {
        assert_eq!(doubled_budget(100, 1), 100);
        assert_eq!(doubled_budget(100, 100), 100);
        assert_eq!(doubled_budget(100, 101), 200);
        assert_eq!(doubled_budget(100, 730), 800);
    }

    #[test]
    fn finds_steps_first_then_runs_the_grid_at_that_budget() {
        let s = spec();
        // The middle of the grid 0.001, 0.01, 0.1, 1.0 (the lower one of two).
        assert_eq!(next_stage(&s, &Observed::default()), Next::Run(Stage::FindSteps { lr: 0.01, max_steps: 3200 }));
        let obs = Observed { find_steps: Some(fit(250)), grids: vec![] };
        assert_eq!(next_stage(&s, &obs), Next::Run(Stage::Grid { index: 0, lrs: vec![0.001, 0.01, 0.1, 1.0], steps: 400 }));
        let given = LrSweepSpec { steps: Some(700), ..spec() };
        assert!(matches!(next_stage(&given, &Observed::default()), Next::Run(Stage::Grid { steps: 700, .. })));
    }

    #[test]
    fn an_interior_fastest_rate_ends_the_sweep() {
        let s = LrSweepSpec { steps: Some(400), ..spec() };
        let obs = Observed {
            find_steps: None,
            grids: vec![vec![(0.001, never(0.2)), (0.01, fit(300)), (0.1, fit(120)), (1.0, LrOutcome::Diverged { message: "nan".into() })]],
        };
        let Next::Done(r) = next_stage(&s, &obs) else { panic!("expected a report") };
        assert_eq!(r.verdict, Verdict::Found);
        assert_eq!(r.fastest, vec![0.1]);
        assert_eq!(r.suggested_max_train_steps, Some(120));
        assert!(r.extensions.is_empty());
    }

    #[test]
    fn an_edge_fastest_rate_extends_the_grid_in_its_direction_until_the_limit() {
        let s = LrSweepSpec { steps: Some(400), ..spec() };
        let first = vec![(0.001, never(0.2)), (0.01, fit(300)), (0.1, fit(200)), (1.0, fit(100))];
        let obs = Observed { find_steps: None, grids: vec![first.clone()] };
        assert_eq!(next_stage(&s, &obs), Next::Run(Stage::Grid { index: 1, lrs: vec![10.0, 100.0], steps: 400 }));
        // Still fastest at the new edge: extend again.
        let second = vec![(10.0, fit(50)), (100.0, fit(40))];
        let obs = Observed { find_steps: None, grids: vec![first.clone(), second.clone()] };
        assert_eq!(next_stage(&s, &obs), Next::Run(Stage::Grid { index: 2, lrs: vec![1000.0, 10000.0], steps: 400 }));
        // The limit reached: report it as unresolved, with the best seen.
        let third = vec![(1000.0, fit(30)), (10000.0, fit(20))];
        let obs = Observed { find_steps: None, grids: vec![first, second, third] };
        let Next::Done(r) = next_stage(&s, &obs) else { panic!("expected a report") };
        assert_eq!(r.verdict, Verdict::EdgeUnresolved { sides: vec![Side::High] });
        assert_eq!(r.suggested_max_train_steps, Some(20));
        assert_eq!(r.extensions.len(), 2);
        assert!(r.extensions.iter().all(|(side, _)| *side == Side::High));
        assert_eq!(r.results.len(), 8);
        assert!(r.results.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn an_extension_that_diverges_closes_the_edge() {
        let s = LrSweepSpec { steps: Some(400), ..spec() };
        let obs = Observed {
            find_steps: None,
            grids: vec![
                vec![(0.001, fit(390)), (0.01, fit(300)), (0.1, fit(200)), (1.0, fit(100))],
                vec![(10.0, LrOutcome::Diverged { message: "nan".into() }), (100.0, LrOutcome::Diverged { message: "nan".into() })],
            ],
        };
        let Next::Done(r) = next_stage(&s, &obs) else { panic!("expected a report") };
        assert_eq!(r.verdict, Verdict::Found);
        assert_eq!(r.fastest, vec![1.0]);
        assert_eq!(r.extensions, vec![(Side::High, vec![10.0, 100.0])]);
    }

    #[test]
    fn a_tie_across_the_whole_grid_extends_both_ways() {
        let s = LrSweepSpec { steps: Some(400), ..spec() };
        let obs = Observed { find_steps: None, grids: vec![vec![(0.001, fit(100)), (0.01, fit(100)), (0.1, fit(100)), (1.0, fit(100))]] };
        assert_eq!(
            next_stage(&s, &obs),
            Next::Run(Stage::Grid { index: 1, lrs: vec![0.00001, 0.0001, 10.0, 100.0], steps: 400 })
        );
    }

    #[test]
    fn nothing_fitting_is_reported_not_guessed() {
        let s = spec();
        let Next::Done(r) = next_stage(&s, &Observed { find_steps: Some(never(0.01)), grids: vec![] }) else { panic!() };
        assert_eq!(r.verdict, Verdict::CannotFit { lr: 0.01, max_steps: 3200 });
        assert_eq!(r.suggested_max_train_steps, None);
        let failed = Observed { find_steps: Some(LrOutcome::Diverged { message: "train/loss was NaN".into() }), grids: vec![] };
        let Next::Done(r) = next_stage(&s, &failed) else { panic!() };
        assert!(matches!(r.verdict, Verdict::FindStepsFailed { .. }));
        let s = LrSweepSpec { steps: Some(400), ..spec() };
        let none = Observed { find_steps: None, grids: vec![vec![(0.001, LrOutcome::Never { best: None }), (1.0, LrOutcome::Failed { message: "exit 1".into() })]] };
        assert!(matches!(next_stage(&s, &none), Next::Done(_)), "a failed top rate is no evidence that rates are too small");
        let Next::Done(r) = next_stage(&s, &none) else { panic!() };
        assert_eq!(r.verdict, Verdict::NothingFit { steps: 400 });
        assert!(r.fastest.is_empty());
    }

    #[test]
    fn when_nothing_fits_the_grid_moves_towards_stable_larger_or_smaller_rates() {
        let s = LrSweepSpec { steps: Some(400), extensions: 1, ..spec() };
        let small = Observed { find_steps: None, grids: vec![vec![(0.001, never(0.5)), (1.0, never(0.1))]] };
        assert_eq!(next_stage(&s, &small), Next::Run(Stage::Grid { index: 1, lrs: vec![10.0, 100.0], steps: 400 }));
        let nan = || LrOutcome::Diverged { message: "nan".into() };
        let large = Observed { find_steps: None, grids: vec![vec![(0.001, nan()), (1.0, nan())]] };
        assert_eq!(next_stage(&s, &large), Next::Run(Stage::Grid { index: 1, lrs: vec![0.00001, 0.0001], steps: 400 }));
        // The closest rate inside the grid: the grid brackets it, N is too short.
        let inside = Observed { find_steps: None, grids: vec![vec![(0.001, never(0.5)), (0.01, never(0.05)), (1.0, never(0.3))]] };
        let Next::Done(r) = next_stage(&s, &inside) else { panic!() };
        assert_eq!(r.verdict, Verdict::NothingFit { steps: 400 });
        // After the last extension, still nothing: report it.
        let after = Observed { find_steps: None, grids: vec![small.grids[0].clone(), vec![(10.0, never(0.3)), (100.0, nan())]] };
        let Next::Done(r) = next_stage(&s, &after) else { panic!() };
        assert_eq!(r.verdict, Verdict::NothingFit { steps: 400 });
        assert_eq!(r.extensions, vec![(Side::High, vec![10.0, 100.0])]);
    }

    #[test]
    fn a_single_rate_grid_is_its_own_edge() {
        let s = LrSweepSpec { steps: Some(400), points: 1, extensions: 0, ..spec() };
        let obs = Observed { find_steps: None, grids: vec![vec![(0.001, fit(100))]] };
        let Next::Done(r) = next_stage(&s, &obs) else { panic!() };
        assert_eq!(r.verdict, Verdict::EdgeUnresolved { sides: vec![Side::Low, Side::High] });
    }

    #[test]
    fn the_found_budget_never_exceeds_the_cap() {
        let s = LrSweepSpec { start_steps: 1000, max_steps: 48_000, ..spec() };
        // 40,000 doubles past the cap (64,000): N is the cap, which still contains the fit.
        let obs = Observed { find_steps: Some(fit(40_000)), grids: vec![] };
        let Next::Run(Stage::Grid { steps, .. }) = next_stage(&s, &obs) else { panic!() };
        assert_eq!(steps, 48_000);
        assert_eq!(s.found_budget(48_000), 48_000);
        assert_eq!(s.found_budget(3_000), 4_000);
    }

    #[test]
    fn a_failed_rate_neither_is_an_edge_nor_closes_one() {
        let s = LrSweepSpec { steps: Some(400), ..spec() };
        let failed = || LrOutcome::Failed { message: "killed by SIGKILL".into() };
        // The low edge crashed; the fastest real evidence is the lowest informative rate, so the
        // grid extends below the crashed rate, not from it.
        let obs = Observed { find_steps: None, grids: vec![vec![(0.001, failed()), (0.01, fit(100)), (0.1, fit(200)), (1.0, never(0.2))]] };
        let Next::Run(Stage::Grid { index: 1, lrs, .. }) = next_stage(&s, &obs) else { panic!("{:?}", next_stage(&s, &obs)) };
        assert!(lrs.iter().all(|lr| *lr < 0.01 && *lr != 0.001), "{lrs:?}");
        // Only failures: no evidence at all.
        let none = Observed { find_steps: None, grids: vec![vec![(0.01, failed()), (0.1, failed())]] };
        let Next::Done(r) = next_stage(&s, &none) else { panic!() };
        assert_eq!(r.verdict, Verdict::NothingFit { steps: 400 });
    }

    const DIGITS: &str = r#"
        [study]
        name = "digits"
        trials = 20
        max_train_steps = 3000
        eval_every = 100
        [objective]
        metric = "valid/error"
        direction = "minimize"
        [trainer]
        workload = "digits-mlp"
        timeout = "10m"
        [params.learning_rate]
        type = "float"
        low = 1e-3
        high = 3.0
        scale = "log"
        [params.momentum]
        type = "float"
        low = 0.0
        high = 0.98
        [params.weight_decay]
        type = "float"
        low = 1e-6
        high = 1e-2
        scale = "log"
        [params.schedule]
        type = "categorical"
        choices = ["cosine", "linear"]
        [params.batch_size]
        type = "fixed"
        value = 64
    "#;

    #[test]
    fn defaults_come_from_the_study() {
        let base = StudySpec::parse(DIGITS, "digits.toml").unwrap();
        let sweep = base.lr_sweep_spec("digits.toml").unwrap();
        assert_eq!((sweep.param.as_str(), sweep.low, sweep.high, sweep.points), ("learning_rate", 1e-3, 3.0, 5));
        assert_eq!(sweep.fit.to_string(), "train/error <= 0");
        assert_eq!((sweep.eval_every, sweep.start_steps, sweep.max_steps, sweep.steps), (100, 1000, 48000, None));
        // The built-in workload's weight decay has a known "off" value.
        assert_eq!(base.off.get("weight_decay"), Some(&ParamValue::Float(0.0)));
    }

    #[test]
    fn stage_studies_hold_everything_but_the_learning_rate() {
        let text = format!("{DIGITS}\n[lr_sweep]\nset = {{ momentum = 0.9 }}\nfit = \"train/loss <= 0.01\"\n");
        let base = StudySpec::parse(&text, "digits.toml").unwrap();
        let sweep = base.lr_sweep.clone().unwrap();
        let stage = Stage::Grid { index: 0, lrs: vec![0.01, 0.1, 1.0], steps: 800 };
        let study = stage_study(&base, &sweep, &stage);
        assert_eq!(study.name, "digits.lr-sweep.grid-0");
        assert_eq!((study.trials, study.max_train_steps, study.eval_every), (3, 800, 100));
        assert_eq!(study.trainer.stop_when.as_ref().map(|c| c.to_string()).as_deref(), Some("train/loss <= 0.01"));
        assert_eq!(study.checkpoints.keep_best, 0);
        assert_eq!(study.space.dims(), 1);
        let sampler = study.sampler.build(&study.space, study.seed).unwrap();
        let lrs: Vec<f64> = (0..3).map(|i| sampler.sample(i).unwrap().get("learning_rate").unwrap().as_f64().unwrap()).collect();
        assert_eq!(lrs, vec![0.01, 0.1, 1.0]);
        let first = sampler.sample(0).unwrap();
        assert_eq!(first.get("momentum"), Some(&ParamValue::Float(0.9)));
        assert_eq!(first.get("weight_decay"), Some(&ParamValue::Float(0.0)));
        assert_eq!(first.get("schedule"), Some(&ParamValue::Str("constant".into())));
        assert_eq!(first.get("batch_size"), Some(&ParamValue::Int(64)));
        let held = held_params(&base, &sweep);
        let by = |n: &str| held.iter().find(|h| h.name == n).unwrap().by;
        assert_eq!((by("momentum"), by("weight_decay"), by("schedule"), by("batch_size")),
            (HeldBy::Set, HeldBy::Off, HeldBy::Constant, HeldBy::Fixed));
        // A 16x longer budget gets a 16x longer timeout.
        let find = stage_study(&base, &sweep, &Stage::FindSteps { lr: 0.1, max_steps: 48000 });
        assert_eq!(find.trials, 1);
        assert_eq!(find.trainer.timeout, Some(std::time::Duration::from_secs(600 * 16)));
        // Without `set`, a searched parameter is held at the middle of its range.
        let plain = StudySpec::parse(DIGITS, "digits.toml").unwrap();
        let held = held_params(&plain, &plain.lr_sweep_spec("digits.toml").unwrap());
        let m = held.iter().find(|h| h.name == "momentum").unwrap();
        assert_eq!((m.by, m.value.as_f64().map(|x| (x * 100.0).round())), (HeldBy::Middle, Some(49.0)));
    }

    #[test]
    fn a_fixed_schedule_of_a_workload_still_becomes_constant() {
        let text = DIGITS.replace("type = \"categorical\"\n        choices = [\"cosine\", \"linear\"]", "type = \"fixed\"\n        value = \"cosine\"")
            + "[params.warmup_steps]\ntype = \"fixed\"\nvalue = 200\n";
        let base = StudySpec::parse(&text, "digits.toml").unwrap();
        assert!(matches!(base.space.param("schedule").unwrap().kind, ParamKind::Fixed { .. }), "the test must fix the schedule");
        let held = held_params(&base, &base.lr_sweep_spec("digits.toml").unwrap());
        let get = |n: &str| held.iter().find(|h| h.name == n).map(|h| (h.value.clone(), h.by)).unwrap();
        assert_eq!(get("schedule"), (ParamValue::Str("constant".into()), HeldBy::Constant));
        assert_eq!(get("warmup_steps"), (ParamValue::Int(0), HeldBy::Constant));
    }

    #[test]
    fn bad_sweep_sections_name_the_field_and_the_fix() {
        let bad = |extra: &str| StudySpec::parse(&format!("{DIGITS}\n[lr_sweep]\n{extra}\n"), "d.toml").unwrap_err();
        let e = bad("fit = \"valid/nonsense <= 0\"");
        assert_eq!(e.field, "lr_sweep.fit");
        let e = bad("param = \"lr\"");
        assert_eq!(e.field, "lr_sweep.param");
        let e = bad("low = 0.0");
        assert!(e.problem.contains("0 < low < high"), "{e}");
        let e = bad("set = { learning_rate = 0.1 }");
        assert_eq!(e.field, "lr_sweep.set.learning_rate");
        let e = bad("max_steps = 10\nstart_steps = 100");
        assert_eq!(e.field, "lr_sweep.max_steps");
        let e = bad("colour = 1");
        assert!(e.problem.contains("colour"), "{e}");
        // `off` applies to fixed parameters too: the sweep switches a fixed regularizer off.
        let fixed_off = StudySpec::parse(&DIGITS.replace("value = 64", "value = 64\noff = 1"), "d.toml").unwrap();
        assert_eq!(fixed_off.off.get("batch_size"), Some(&ParamValue::Int(1)));
        let e = StudySpec::parse(&DIGITS.replace("value = 64", "value = 64\noff = [1]"), "d.toml").unwrap_err();
        assert_eq!(e.field, "params.batch_size.off");
    }
}
