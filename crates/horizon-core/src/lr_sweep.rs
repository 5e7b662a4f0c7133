//! The constant-learning-rate sweep that picks an initial `max_train_steps` (docs/method.md,
//! section 2, "Initial `max_train_steps` from a learning-rate sweep"), as pure policy.
//!
//! The sweep runs in stages, each an ordinary study that the runner executes:
//! 1. **grid-0**: a log-spaced grid of constant learning rates, every other parameter held at
//!    one value ([`held_params`]: regularization and augmentation off, the schedule constant),
//!    each trial run against one budget: `[lr_sweep] steps` when given, else the cap
//!    `max_steps`. A trial is stopped at its fit (`trainer.stop_when`).
//! 2. **grid-1, grid-2, ...**: when the fastest learning rate is an edge of everything swept so
//!    far, more learning rates beyond that edge (the same spacing), a bounded number of times.
//!
//! While a stage runs, [`stops`] ends trials that cannot change the answer (trials run in
//! parallel, so this is decided on what storage holds at the time, again and again):
//! - once some rate has fit at step `s`, a trial that has reached `s` without fitting cannot be
//!   the fastest (**slower**);
//! - a trial whose fit metric has not come 1% closer to the criterion in the second half of its
//!   steps so far, after `patience` steps, is not going to (**stalled**).
//!
//! There is no separate search for the budget: the fastest rate bounds every other, so a grid
//! run against the cap costs about what a grid run against a found `N` would, without the run
//! that finds `N`.
//!
//! [`next_stage`] takes what the stored stages observed and returns the next stage to run or
//! the finished [`SweepReport`]; it never runs anything. What each trial showed is read from its
//! stored curve, cut at the bound ([`stage_outcomes`]), never from when a stop happened to land,
//! so the report is the same however the trials interleaved, and after a resume. The report's
//! `suggested_max_train_steps` is the step at which the fastest learning rate first met the fit
//! criterion.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::criterion::{Criterion, Op};
use crate::decision::{Decision, StudyView};
use crate::params::ParamValue;
use crate::sampler::SamplerSpec;
use crate::space::{ParamDef, ParamKind, SearchSpace};
use crate::spec::{CheckpointSpec, SpecError, StudySpec};
use crate::trial::TrialState;

/// A checked `[lr_sweep]` section (or its defaults); see docs/lr-sweep.md.
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
    /// `N`, the budget of every grid trial, when given; otherwise the trials run against
    /// `max_steps`.
    pub steps: Option<u64>,
    /// The cap: the budget of every grid trial when `steps` is not given.
    pub max_steps: u64,
    /// Steps a trial trains before it can be called stalled.
    pub patience: u64,
    /// Stop trials that cannot change the answer (slower than a fit, or stalled). Off, every
    /// trial trains until it fits or reaches the budget.
    pub prune: bool,
    /// How many times the grid may be extended past an edge.
    pub extensions: u32,
    /// Learning rates added per extension.
    pub extend_by: u32,
    /// Evaluation interval of the sweep's trials.
    pub eval_every: u64,
    /// Values for the other parameters.
    pub set: BTreeMap<String, ParamValue>,
}

impl LrSweepSpec {
    /// The budget of every grid trial: `steps` when given, else the cap.
    pub fn budget(&self) -> u64 {
        self.steps.unwrap_or(self.max_steps)
    }
}

/// A trial has stalled when its fit metric came less than this share closer to the criterion
/// in the second half of its steps than it was at the end of the first half.
pub const MIN_PROGRESS: f64 = 0.01;

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
    /// Reached step `than`, where a faster rate had fit, without fitting: it cannot be the
    /// fastest. `best` is its closest value up to that step.
    Slower { than: u64, best: Option<f64> },
    /// Made no progress (less than [`MIN_PROGRESS`] in the second half of its steps) by step
    /// `at`, before anything had fit by then; `best` is its closest value up to that step.
    Stalled { at: u64, best: Option<f64> },
    /// A loss became NaN or infinite.
    Diverged { message: String },
    /// The trial failed (crash, timeout) or has not finished.
    Failed { message: String },
}

impl LrOutcome {
    /// The fit metric's closest value, for the outcomes that have one.
    fn best(&self) -> Option<f64> {
        match self {
            LrOutcome::Never { best } | LrOutcome::Slower { best, .. } | LrOutcome::Stalled { best, .. } => *best,
            _ => None,
        }
    }
}

/// A stage of the sweep: a study to run. Grid `index` (0 is the first grid, then extensions):
/// one trial per learning rate, each against the budget `steps`, stopped at its fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub index: u32,
    /// Ascending.
    pub lrs: Vec<f64>,
    pub steps: u64,
}

impl Stage {
    /// The stage's name: its study's name suffix and its directory.
    pub fn name(&self) -> String {
        format!("grid-{}", self.index)
    }
}

/// One stored trial of a stage, as the sweep reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTrial {
    pub number: u64,
    pub lr: f64,
    pub state: TrialState,
    /// Why it failed, diverged or was stopped.
    pub message: Option<String>,
    /// The fit metric's evaluations, in step order.
    pub curve: Vec<(u64, f64)>,
    /// The first step at which a loss was non-finite (a diverged trial).
    pub diverged_at: Option<u64>,
    /// The last step it reported (of any metric): what it trained.
    pub last_step: Option<u64>,
}

/// What the stored stages observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Each grid stage that ran, in order, with its trials.
    pub grids: Vec<Vec<StageTrial>>,
}

/// The budget the grid trials ran against.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum BudgetSource {
    /// `[lr_sweep] steps`.
    Given { steps: u64 },
    /// `[lr_sweep] max_steps` (default 16 x `max_train_steps`): no `N` was given, so every rate
    /// ran against the cap, bounded by the fastest fit.
    Cap { steps: u64 },
}

impl BudgetSource {
    pub fn steps(&self) -> u64 {
        match self {
            BudgetSource::Given { steps } | BudgetSource::Cap { steps } => *steps,
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
    /// No learning rate met the criterion within `steps`. Against the cap, the training set
    /// cannot be fit perfectly under this setup.
    NothingFit { steps: u64 },
}

/// The result of the sweep, with the evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepReport {
    pub fit: String,
    /// The budget the grids ran against.
    pub budget: BudgetSource,
    /// Every swept learning rate, ascending, with its outcome.
    pub results: Vec<(f64, LrOutcome)>,
    /// The learning rates that met the criterion in the fewest steps (several when tied).
    pub fastest: Vec<f64>,
    /// Each extension, in order: the side and the learning rates it added.
    pub extensions: Vec<(Side, Vec<f64>)>,
    pub verdict: Verdict,
    /// The initial `max_train_steps`: the fastest learning rate's steps-to-fit.
    pub suggested_max_train_steps: Option<u64>,
    /// What the sweep cost: the sum over every stage's trials of the last step each reported.
    pub trained_steps: u64,
}

/// What to do next: the next grid to run, or the finished report.
pub type Next = crate::stages::Next<Stage, SweepReport>;

/// The learning rate whose unfit outcome came closest to the fit (the largest of ties).
fn closest_to_fit(results: &[(f64, LrOutcome)], fit: &Criterion) -> Option<f64> {
    let mut best: Option<(f64, f64)> = None;
    for (lr, o) in results {
        if let Some(v) = o.best() {
            let d = fit.distance(v);
            if best.is_none_or(|(_, bd)| d <= bd) {
                best = Some((*lr, d));
            }
        }
    }
    best.map(|(lr, _)| lr)
}

/// How far a value is from meeting the criterion, as a non-negative gap (0 at the threshold,
/// infinite for NaN): what "progress" is measured in.
fn gap(fit: &Criterion, value: f64) -> f64 {
    let g = match fit.op {
        Op::Le | Op::Lt => value - fit.threshold,
        Op::Ge | Op::Gt => fit.threshold - value,
        Op::Eq => (value - fit.threshold).abs(),
    };
    if g.is_nan() { f64::INFINITY } else { g.max(0.0) }
}

/// What reading one curve in step order showed, when it showed something.
#[derive(Debug, Clone, PartialEq)]
enum Scan {
    Fit(u64),
    Slower { than: u64, best: Option<f64> },
    Stalled { at: u64, best: Option<f64> },
    Diverged,
}

/// Read a curve (fit-metric evaluations in step order) as the sweep does: at each evaluation,
/// a fit ends it (when at or before `bound`); then having reached `bound` makes it slower; then
/// a stall ends it (when pruning; not at the budget's end, where it simply never fit). A point at
/// or after `diverged_at` ends it as diverged. None when the curve ends first.
fn scan(spec: &LrSweepSpec, bound: Option<u64>, curve: &[(u64, f64)], diverged_at: Option<u64>) -> Option<Scan> {
    let fit = &spec.fit;
    let mut closest: Option<f64> = None;
    // prefix[i]: the smallest gap over the first i + 1 points; `half` walks to the last point
    // at or before half the current step.
    let mut prefix: Vec<f64> = Vec::with_capacity(curve.len());
    let (mut half, mut next): (Option<usize>, usize) = (None, 0);
    for (i, &(step, value)) in curve.iter().enumerate() {
        if diverged_at.is_some_and(|d| step >= d) {
            return Some(Scan::Diverged);
        }
        if fit.holds(value) && bound.is_none_or(|b| step <= b) {
            return Some(Scan::Fit(step));
        }
        if let Some(b) = bound
            && step >= b
        {
            if step == b && value.is_finite() && closest.is_none_or(|c| fit.distance(value) < fit.distance(c)) {
                closest = Some(value);
            }
            return Some(Scan::Slower { than: b, best: closest });
        }
        if value.is_finite() && closest.is_none_or(|c| fit.distance(value) < fit.distance(c)) {
            closest = Some(value);
        }
        let g = gap(fit, value);
        prefix.push(prefix.last().map_or(g, |p: &f64| p.min(g)));
        while next < i && curve[next].0 <= step / 2 {
            half = Some(next);
            next += 1;
        }
        if spec.prune
            && step >= spec.patience
            && step < spec.budget()
            && let Some(h) = half
            && prefix[i] >= (1.0 - MIN_PROGRESS) * prefix[h]
        {
            return Some(Scan::Stalled { at: step, best: closest });
        }
    }
    None
}

/// The first step at which a curve fits, counting only fits before it stalled.
fn effective_fit(spec: &LrSweepSpec, curve: &[(u64, f64)], diverged_at: Option<u64>) -> Option<u64> {
    match scan(spec, None, curve, diverged_at) {
        Some(Scan::Fit(step)) => Some(step),
        _ => None,
    }
}

/// Each trial's outcome in one stage, from its stored curve. `prior` is the fastest fit of the
/// earlier stages. The bound is the fastest fit of the earlier stages and of this one; every
/// curve is read up to it, so a trial that happened to run past it (its stop landed late, or it
/// ran before the fastest had fit) reads the same as one stopped on time.
pub fn stage_outcomes(spec: &LrSweepSpec, prior: Option<u64>, trials: &[StageTrial]) -> Vec<(f64, LrOutcome)> {
    let bound = if spec.prune {
        trials.iter().filter_map(|t| effective_fit(spec, &t.curve, t.diverged_at)).chain(prior).min()
    } else {
        None
    };
    trials
        .iter()
        .map(|t| {
            let message = || t.message.clone().unwrap_or_else(|| t.state.to_string());
            let finished = t.state.is_finished();
            let outcome = match scan(spec, bound, &t.curve, t.diverged_at) {
                _ if !finished => LrOutcome::Failed { message: message() },
                Some(Scan::Fit(steps)) => LrOutcome::Fit { steps },
                Some(Scan::Slower { than, best }) => LrOutcome::Slower { than, best },
                Some(Scan::Stalled { at, best }) => LrOutcome::Stalled { at, best },
                Some(Scan::Diverged) => LrOutcome::Diverged { message: message() },
                None => match t.state {
                    TrialState::Diverged => LrOutcome::Diverged { message: message() },
                    TrialState::Complete => LrOutcome::Never { best: spec.fit.closest(&t.curve) },
                    _ => LrOutcome::Failed { message: message() },
                },
            };
            (t.lr, outcome)
        })
        .collect()
}

/// The fastest fit among outcomes: its learning rate and step.
fn fastest_of(outcomes: &[(f64, LrOutcome)]) -> Option<(f64, u64)> {
    outcomes
        .iter()
        .filter_map(|(lr, o)| if let LrOutcome::Fit { steps } = o { Some((*lr, *steps)) } else { None })
        .min_by_key(|(_, steps)| *steps)
}

/// Every stage's outcomes, in order, each read with the bound of the stages before it.
pub fn classified(spec: &LrSweepSpec, observed: &Observed) -> Vec<Vec<(f64, LrOutcome)>> {
    let mut prior: Option<u64> = None;
    let mut out = Vec::new();
    for g in &observed.grids {
        let outcomes = stage_outcomes(spec, prior, g);
        if let Some((_, steps)) = fastest_of(&outcomes) {
            prior = Some(prior.map_or(steps, |p| p.min(steps)));
        }
        out.push(outcomes);
    }
    out
}

/// The fastest fit of the stages observed so far (its rate and step): the bound the next stage
/// starts with.
pub fn fastest_so_far(spec: &LrSweepSpec, observed: &Observed) -> Option<(f64, u64)> {
    let all: Vec<(f64, LrOutcome)> = classified(spec, observed).into_iter().flatten().collect();
    fastest_of(&all)
}

/// The decisions for a stage's running trials, from what storage holds now: stop each one that
/// cannot change the answer, with the reason. `prior` is the fastest fit of the earlier stages.
/// A trial's own fit is left to `trainer.stop_when`.
pub fn stops(spec: &LrSweepSpec, prior: Option<(f64, u64)>, view: &StudyView) -> Vec<Decision> {
    if !spec.prune {
        return Vec::new();
    }
    let metric = &spec.fit.metric;
    let lr_of = |t: &crate::TrialRecord| t.params.get(&spec.param).and_then(ParamValue::as_f64);
    // The fastest fit: (step, rate, trial of this stage).
    let mut fastest: Option<(u64, Option<f64>, Option<u64>)> = prior.map(|(lr, step)| (step, Some(lr), None));
    for t in &view.trials {
        if let Some(step) = effective_fit(spec, view.curve(metric, t.number), None)
            && fastest.is_none_or(|(b, ..)| step < b)
        {
            fastest = Some((step, lr_of(t), Some(t.number)));
        }
    }
    let mut decisions = Vec::new();
    for t in view.trials.iter().filter(|t| t.state == TrialState::Running) {
        let reason = match scan(spec, fastest.map(|f| f.0), view.curve(metric, t.number), None) {
            Some(Scan::Slower { than, .. }) => {
                let (_, lr, trial) = fastest.expect("a bound comes from a fit");
                let rate = lr.map(|lr| format!("{} = {lr}", spec.param)).unwrap_or_else(|| "another learning rate".into());
                let whose = match trial {
                    Some(n) => format!("trial {n}"),
                    None => "an earlier stage".into(),
                };
                format!("cannot be the fastest: {rate} ({whose}) fit ({}) at step {than}, and this trial had not", spec.fit)
            }
            Some(Scan::Stalled { at, best }) => format!(
                "stalled: {metric} came less than {:.0}% closer to {} between steps {} and {at} (closest {})",
                100.0 * MIN_PROGRESS,
                spec.fit,
                at / 2,
                best.map(crate::numfmt::num).unwrap_or_else(|| "none finite".into())
            ),
            _ => continue,
        };
        decisions.push(Decision::Stop { trial: t.number, reason });
    }
    decisions
}

/// The sweep's next stage, or its report, from what the stored stages observed.
pub fn next_stage(spec: &LrSweepSpec, observed: &Observed) -> Next {
    let trained_steps = observed.grids.iter().flatten().map(|t| t.last_step.unwrap_or(0)).fold(0u64, u64::saturating_add);
    next_from_outcomes(spec, &classified(spec, observed), trained_steps)
}

/// [`next_stage`] from each stage's outcomes (as [`classified`] reads them) and what the stages
/// trained.
pub fn next_from_outcomes(spec: &LrSweepSpec, stages: &[Vec<(f64, LrOutcome)>], trained_steps: u64) -> Next {
    let fit = spec.fit.to_string();
    let steps = spec.budget();
    let budget = match spec.steps {
        Some(steps) => BudgetSource::Given { steps },
        None => BudgetSource::Cap { steps: spec.max_steps },
    };
    if stages.is_empty() {
        return Next::Run(Stage { index: 0, lrs: log_grid(spec.low, spec.high, spec.points), steps });
    }

    let mut results: Vec<(f64, LrOutcome)> = stages.iter().flatten().cloned().collect();
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut extensions: Vec<(Side, Vec<f64>)> = Vec::new();
    for (i, g) in stages.iter().enumerate().skip(1) {
        let before = stages[..i].iter().flatten().map(|(lr, _)| *lr).fold(f64::INFINITY, f64::min);
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
    let report = |results, fastest, extensions, verdict| {
        Next::Done(SweepReport {
            fit: fit.clone(),
            budget: budget.clone(),
            results,
            fastest,
            extensions,
            verdict,
            suggested_max_train_steps: best,
            trained_steps,
        })
    };
    // The edges of what was swept, among the rates that gave evidence: a trial that failed
    // (crash, timeout) says nothing about its learning rate, so it neither closes an edge nor is one.
    let evidence: Vec<f64> = results.iter().filter(|(_, o)| !matches!(o, LrOutcome::Failed { .. })).map(|(lr, _)| *lr).collect();
    let (Some(&lowest), Some(&highest)) = (evidence.first(), evidence.last()) else {
        return report(results, fastest, extensions, Verdict::NothingFit { steps });
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
    if !edges.is_empty() && stages.len() <= spec.extensions as usize {
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
            return Next::Run(Stage { index: stages.len() as u32, lrs, steps });
        }
    }
    let verdict = match best {
        None => Verdict::NothingFit { steps },
        Some(_) if edges.is_empty() => Verdict::Found,
        Some(_) => Verdict::EdgeUnresolved { sides: edges },
    };
    report(results, fastest, extensions, verdict)
}

/// Why a parameter has its value during the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldBy {
    /// `[lr_sweep] set`.
    Set,
    /// Regularization or augmentation switched off (`[params.NAME] off`, or the workload's).
    Off,
    /// The value that keeps the learning rate constant (`[params.NAME] constant`, or the
    /// workload's: a constant schedule, no warmup).
    Constant,
    /// A fixed parameter of the study.
    Fixed,
    /// A searched parameter of a built-in workload: the workload's default.
    Default,
}

/// A parameter held at one value for the whole sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Held {
    pub name: String,
    pub value: ParamValue,
    pub by: HeldBy,
}

/// The built-in workloads' schedule parameters and the values that keep the learning rate
/// constant (what `[params.NAME] constant` says for a trainer of one's own).
pub const WORKLOAD_CONSTANT: &[(&str, crate::workloads::Default)] = &[
    ("schedule", crate::workloads::Default::Str("constant")),
    ("warmup_steps", crate::workloads::Default::Int(0)),
    ("decay_steps", crate::workloads::Default::Int(0)),
];

/// The value of a built-in workload's schedule parameter that keeps the learning rate constant.
pub fn workload_constant(name: &str) -> Option<ParamValue> {
    WORKLOAD_CONSTANT.iter().find(|(n, _)| *n == name).map(|(_, v)| v.value())
}

/// Whether a parameter's name says it shapes the learning rate over training (a schedule, a
/// warmup, a decay, annealing), so that the sweep must know its constant value. Weight decay
/// is regularization, not a schedule.
pub fn shapes_the_schedule(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace(['-', '.'], "_");
    if n.contains("weight_decay") || n.contains("weightdecay") {
        return false;
    }
    ["sched", "warmup", "decay", "anneal", "cooldown", "cosine"].iter().any(|w| n.contains(w))
}

/// A fixed value that already reads as "no schedule": `"constant"`, `"none"`, 0 or false.
fn reads_as_constant(value: &ParamValue) -> bool {
    match value {
        ParamValue::Str(s) => matches!(s.to_ascii_lowercase().as_str(), "constant" | "none"),
        ParamValue::Int(i) => *i == 0,
        ParamValue::Float(x) => *x == 0.0,
        ParamValue::Bool(b) => !b,
    }
}

/// The value of every parameter other than the learning rate during the sweep, and why: the
/// first of `[lr_sweep] set`, the parameter's `off` value, its `constant` value, its fixed
/// value, and for a built-in workload its default. Refused, naming the parameter and the fix,
/// when a parameter that shapes the schedule has no constant value (the sweep would not be of
/// constant learning rates), or a searched parameter has no value at all (horizon does not
/// guess one: the middle of a range is rarely what anyone would choose). `origin` names the
/// study file in the error.
pub fn held_params(base: &StudySpec, sweep: &LrSweepSpec, origin: &str) -> Result<Vec<Held>, SpecError> {
    let workload = base.trainer.workload.as_deref().and_then(crate::workloads::workload);
    let err = |field: String, problem: String, fix: String| SpecError { origin: origin.to_string(), field, problem, fix };
    let mut held = Vec::new();
    let mut missing = Vec::new();
    for p in base.space.params.iter().filter(|p| p.name != sweep.param) {
        let fixed = match &p.kind {
            ParamKind::Fixed { value } => Some(value),
            _ => None,
        };
        let (value, by) = if let Some(v) = sweep.set.get(&p.name) {
            (v.clone(), HeldBy::Set)
        } else if let Some(v) = base.off.get(&p.name) {
            (v.clone(), HeldBy::Off)
        } else if let Some(v) = base.constant.get(&p.name) {
            (v.clone(), HeldBy::Constant)
        } else if shapes_the_schedule(&p.name) && !fixed.is_some_and(reads_as_constant) {
            let now = match fixed {
                Some(v) => format!("fixed at {v}"),
                None => "searched".into(),
            };
            return Err(err(
                format!("params.{}", p.name),
                format!(
                    "the learning-rate sweep is of constant learning rates, and {} ({now}) may change {} over training; horizon does not know which of its values keeps it constant",
                    p.name, sweep.param
                ),
                format!(
                    "say which: add constant = VALUE to [params.{}] (e.g. constant = \"constant\" for a schedule, constant = 0 for a warmup), or hold it with [lr_sweep] set = {{ {} = VALUE }}",
                    p.name, p.name
                ),
            ));
        } else if let Some(v) = fixed {
            (v.clone(), HeldBy::Fixed)
        } else if let Some(d) = workload.and_then(|w| crate::workloads::workload_param(w, &p.name)) {
            (d.default.value(), HeldBy::Default)
        } else {
            missing.push(p.name.clone());
            continue;
        };
        held.push(Held { name: p.name.clone(), value, by });
    }
    if !missing.is_empty() {
        let list = missing.join(", ");
        let example = missing.iter().map(|n| format!("{n} = VALUE")).collect::<Vec<_>>().join(", ");
        return Err(err(
            "lr_sweep.set".into(),
            format!(
                "the sweep holds every parameter but {} at one value, and {list} {} none (not fixed, no off value, not a built-in workload's parameter); horizon does not guess one",
                sweep.param,
                if missing.len() == 1 { "has" } else { "have" }
            ),
            format!(
                "give the value you would train with: [lr_sweep] set = {{ {example} }} (for a regularizer, declare its off = VALUE under [params.NAME] instead)"
            ),
        ));
    }
    for (name, value) in &sweep.set {
        if base.space.param(name).is_none() {
            held.push(Held { name: name.clone(), value: value.clone(), by: HeldBy::Set });
        }
    }
    Ok(held)
}

/// The order in which a stage's rates (ascending) are run: from the middle outwards, the
/// larger of two neighbours first. The grid is meant to bracket the fastest rate (the edge rule
/// extends it when it does not), so its middle is the best first guess, and the first fit
/// bounds every rate that starts after it; the edges, where a rate is too small to fit soon or
/// too large to train at all, come last, when a bound already limits them.
pub fn run_order(lrs: &[f64]) -> Vec<f64> {
    let center = (lrs.len() as f64 - 1.0) / 2.0;
    let mut order: Vec<usize> = (0..lrs.len()).collect();
    order.sort_by(|a, b| (*a as f64 - center).abs().total_cmp(&(*b as f64 - center).abs()).then(b.cmp(a)));
    order.into_iter().map(|i| lrs[i]).collect()
}

/// The study that runs one stage of the sweep: the base study with the learning rate swept (or
/// fixed), every other parameter held (`held`, from [`held_params`]), the stage's budget,
/// trials stopped at the fit criterion, and no checkpoints kept. The rates are sampled in
/// [`run_order`]. Its directory is the caller's business.
pub fn stage_study(base: &StudySpec, sweep: &LrSweepSpec, held: &[Held], stage: &Stage) -> StudySpec {
    let steps = stage.steps;
    let (lr_kind, trials) = if stage.lrs.len() == 1 {
        (ParamKind::Fixed { value: ParamValue::Float(stage.lrs[0]) }, 1)
    } else {
        (
            ParamKind::Discrete { values: run_order(&stage.lrs).into_iter().map(ParamValue::Float).collect() },
            stage.lrs.len() as u64,
        )
    };
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
    for h in held {
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
    spec.constant = BTreeMap::new();
    spec.lr_sweep = None;
    spec.ladder = None;
    spec.rounds = Vec::new();
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Params;
    use crate::trial::TrialRecord;

    fn spec() -> LrSweepSpec {
        LrSweepSpec {
            param: "learning_rate".into(),
            low: 0.001,
            high: 1.0,
            points: 4,
            fit: Criterion::parse("train/error <= 0").unwrap(),
            steps: None,
            max_steps: 3200,
            patience: 100,
            prune: true,
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

    /// `next_stage` over outcomes: one stage per inner list.
    fn next(s: &LrSweepSpec, stages: &[Vec<(f64, LrOutcome)>]) -> Next {
        next_from_outcomes(s, stages, 0)
    }

    /// A curve evaluated every 10 steps from 10 to `last`, from `value(step)`.
    fn curve(last: u64, value: impl Fn(u64) -> f64) -> Vec<(u64, f64)> {
        (1..=last / 10).map(|i| (i * 10, value(i * 10))).collect()
    }

    fn trial(number: u64, lr: f64, state: TrialState, curve: Vec<(u64, f64)>) -> StageTrial {
        let last_step = curve.last().map(|(s, _)| *s);
        StageTrial { number, lr, state, message: None, curve, diverged_at: None, last_step }
    }

    /// Falls linearly from 0.9 to 0 at `fit_step`.
    fn falling(fit_step: u64) -> impl Fn(u64) -> f64 {
        move |s| if s >= fit_step { 0.0 } else { 0.9 * (1.0 - s as f64 / fit_step as f64) }
    }

    #[test]
    fn grids_are_log_spaced_rounded_and_include_both_ends() {
        assert_eq!(log_grid(0.001, 1.0, 4), vec![0.001, 0.01, 0.1, 1.0]);
        assert_eq!(log_grid(0.01, 1.0, 5), vec![0.01, 0.0316, 0.1, 0.316, 1.0]);
        assert_eq!(round_sig(0.031622776601683784), 0.0316);
        assert_eq!(round_sig(1234.5), 1230.0);
    }

    #[test]
    fn the_grid_runs_against_the_cap_unless_n_is_given() {
        // No separate run to find N: the first stage is the grid, against the cap.
        assert_eq!(
            next_stage(&spec(), &Observed::default()),
            Next::Run(Stage { index: 0, lrs: vec![0.001, 0.01, 0.1, 1.0], steps: 3200 })
        );
        let given = LrSweepSpec { steps: Some(700), ..spec() };
        assert_eq!(
            next_stage(&given, &Observed::default()),
            Next::Run(Stage { index: 0, lrs: vec![0.001, 0.01, 0.1, 1.0], steps: 700 })
        );
    }

    #[test]
    fn an_interior_fastest_rate_ends_the_sweep() {
        let s = LrSweepSpec { steps: Some(400), ..spec() };
        let stages = vec![vec![
            (0.001, never(0.2)),
            (0.01, fit(300)),
            (0.1, fit(120)),
            (1.0, LrOutcome::Diverged { message: "nan".into() }),
        ]];
        let Next::Done(r) = next_from_outcomes(&s, &stages, 1234) else { panic!("expected a report") };
        assert_eq!(r.verdict, Verdict::Found);
        assert_eq!(r.fastest, vec![0.1]);
        assert_eq!(r.suggested_max_train_steps, Some(120));
        assert_eq!(r.trained_steps, 1234);
        assert!(r.extensions.is_empty());
    }

    #[test]
    fn an_edge_fastest_rate_extends_the_grid_in_its_direction_until_the_limit() {
        let s = LrSweepSpec { steps: Some(400), ..spec() };
        let first = vec![(0.001, never(0.2)), (0.01, fit(300)), (0.1, fit(200)), (1.0, fit(100))];
        assert_eq!(next(&s, std::slice::from_ref(&first)), Next::Run(Stage { index: 1, lrs: vec![10.0, 100.0], steps: 400 }));
        // Still fastest at the new edge: extend again.
        let second = vec![(10.0, fit(50)), (100.0, fit(40))];
        assert_eq!(
            next(&s, &[first.clone(), second.clone()]),
            Next::Run(Stage { index: 2, lrs: vec![1000.0, 10000.0], steps: 400 })
        );
        // The limit reached: report it as unresolved, with the best seen.
        let third = vec![(1000.0, fit(30)), (10000.0, fit(20))];
        let Next::Done(r) = next(&s, &[first, second, third]) else { panic!("expected a report") };
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
        let stages = vec![
            vec![(0.001, fit(390)), (0.01, fit(300)), (0.1, fit(200)), (1.0, fit(100))],
            vec![(10.0, LrOutcome::Diverged { message: "nan".into() }), (100.0, LrOutcome::Diverged { message: "nan".into() })],
        ];
        let Next::Done(r) = next(&s, &stages) else { panic!("expected a report") };
        assert_eq!(r.verdict, Verdict::Found);
        assert_eq!(r.fastest, vec![1.0]);
        assert_eq!(r.extensions, vec![(Side::High, vec![10.0, 100.0])]);
    }

    #[test]
    fn a_tie_across_the_whole_grid_extends_both_ways() {
        let s = LrSweepSpec { steps: Some(400), ..spec() };
        let stages = vec![vec![(0.001, fit(100)), (0.01, fit(100)), (0.1, fit(100)), (1.0, fit(100))]];
        assert_eq!(next(&s, &stages), Next::Run(Stage { index: 1, lrs: vec![0.00001, 0.0001, 10.0, 100.0], steps: 400 }));
    }

    #[test]
    fn nothing_fitting_is_reported_not_guessed() {
        let s = LrSweepSpec { steps: Some(400), ..spec() };
        let none = vec![vec![(0.001, LrOutcome::Never { best: None }), (1.0, LrOutcome::Failed { message: "exit 1".into() })]];
        let Next::Done(r) = next(&s, &none) else { panic!("a failed top rate is no evidence that rates are too small") };
        assert_eq!(r.verdict, Verdict::NothingFit { steps: 400 });
        assert!(r.fastest.is_empty());
        assert_eq!(r.suggested_max_train_steps, None);
        // Against the cap, the budget says so.
        let Next::Done(r) = next(&spec(), &none) else { panic!() };
        assert_eq!((r.budget, r.verdict), (BudgetSource::Cap { steps: 3200 }, Verdict::NothingFit { steps: 3200 }));
    }

    #[test]
    fn when_nothing_fits_the_grid_moves_towards_stable_larger_or_smaller_rates() {
        let s = LrSweepSpec { steps: Some(400), extensions: 1, ..spec() };
        let small = vec![(0.001, never(0.5)), (1.0, never(0.1))];
        assert_eq!(next(&s, std::slice::from_ref(&small)), Next::Run(Stage { index: 1, lrs: vec![10.0, 100.0], steps: 400 }));
        // A stalled rate counts by how close it came, like one that never fit.
        let stalled = vec![(0.001, never(0.5)), (1.0, LrOutcome::Stalled { at: 200, best: Some(0.1) })];
        assert_eq!(next(&s, &[stalled]), Next::Run(Stage { index: 1, lrs: vec![10.0, 100.0], steps: 400 }));
        let nan = || LrOutcome::Diverged { message: "nan".into() };
        let large = vec![(0.001, nan()), (1.0, nan())];
        assert_eq!(next(&s, &[large]), Next::Run(Stage { index: 1, lrs: vec![0.00001, 0.0001], steps: 400 }));
        // The closest rate inside the grid: the grid brackets it, N is too short.
        let inside = vec![(0.001, never(0.5)), (0.01, never(0.05)), (1.0, never(0.3))];
        let Next::Done(r) = next(&s, &[inside]) else { panic!() };
        assert_eq!(r.verdict, Verdict::NothingFit { steps: 400 });
        // After the last extension, still nothing: report it.
        let Next::Done(r) = next(&s, &[small, vec![(10.0, never(0.3)), (100.0, nan())]]) else { panic!() };
        assert_eq!(r.verdict, Verdict::NothingFit { steps: 400 });
        assert_eq!(r.extensions, vec![(Side::High, vec![10.0, 100.0])]);
    }

    #[test]
    fn a_single_rate_grid_is_its_own_edge() {
        let s = LrSweepSpec { steps: Some(400), points: 1, extensions: 0, ..spec() };
        let Next::Done(r) = next(&s, &[vec![(0.001, fit(100))]]) else { panic!() };
        assert_eq!(r.verdict, Verdict::EdgeUnresolved { sides: vec![Side::Low, Side::High] });
    }

    #[test]
    fn a_failed_rate_neither_is_an_edge_nor_closes_one() {
        let s = LrSweepSpec { steps: Some(400), ..spec() };
        let failed = || LrOutcome::Failed { message: "killed by SIGKILL".into() };
        // The low edge crashed; the fastest real evidence is the lowest informative rate, so the
        // grid extends below the crashed rate, not from it.
        let stages = vec![vec![(0.001, failed()), (0.01, fit(100)), (0.1, fit(200)), (1.0, never(0.2))]];
        let Next::Run(Stage { index: 1, lrs, .. }) = next(&s, &stages) else { panic!("{:?}", next(&s, &stages)) };
        assert!(lrs.iter().all(|lr| *lr < 0.01 && *lr != 0.001), "{lrs:?}");
        // Only failures: no evidence at all.
        let Next::Done(r) = next(&s, &[vec![(0.01, failed()), (0.1, failed())]]) else { panic!() };
        assert_eq!(r.verdict, Verdict::NothingFit { steps: 400 });
    }

    #[test]
    fn a_slower_rate_is_evidence_and_a_stop_never_moves_the_answer() {
        let s = spec();
        // 0.1 fit at 200; 0.01 reached 200 without fitting (it was stopped, or ran on, which
        // reads the same); 1.0 stalled at 150, before the fit.
        let stage = vec![
            trial(0, 1.0, TrialState::Complete, curve(150, |_| 0.9)),
            trial(1, 0.1, TrialState::Complete, curve(200, falling(200))),
            trial(2, 0.01, TrialState::Complete, curve(230, falling(400))),
            trial(3, 0.001, TrialState::Complete, curve(200, falling(2000))),
        ];
        let out = stage_outcomes(&s, None, &stage);
        assert_eq!(out[1], (0.1, fit(200)));
        assert!(matches!(out[0].1, LrOutcome::Stalled { at: 100, .. }), "{:?}", out[0]);
        assert_eq!(
            out[2],
            (0.01, LrOutcome::Slower { than: 200, best: Some(0.9 * 0.5) }),
            "read up to the bound, not to step 230"
        );
        assert!(matches!(out[3].1, LrOutcome::Slower { than: 200, .. }));
        let Next::Done(r) = next_stage(&s, &Observed { grids: vec![stage] }) else { panic!() };
        assert_eq!((r.verdict, r.fastest, r.suggested_max_train_steps), (Verdict::Found, vec![0.1], Some(200)));
        assert_eq!(r.trained_steps, 150 + 200 + 230 + 200);
    }

    #[test]
    fn a_fit_after_the_bound_of_an_earlier_stage_is_slower() {
        let s = spec();
        let grid0 = vec![
            trial(0, 1.0, TrialState::Complete, curve(100, falling(100))),
            trial(1, 0.1, TrialState::Complete, curve(100, falling(300))),
        ];
        let grid1 = vec![trial(0, 10.0, TrialState::Complete, curve(150, falling(150)))];
        let obs = Observed { grids: vec![grid0.clone(), grid1] };
        assert_eq!(fastest_so_far(&s, &Observed { grids: vec![grid0] }), Some((1.0, 100)));
        let stages = classified(&s, &obs);
        assert_eq!(stages[1], vec![(10.0, LrOutcome::Slower { than: 100, best: Some(0.9 * (1.0 - 100.0 / 150.0)) })]);
    }

    #[test]
    fn without_pruning_every_curve_is_read_to_its_end() {
        let s = LrSweepSpec { prune: false, ..spec() };
        let stage = vec![
            trial(0, 1.0, TrialState::Complete, curve(3200, |_| 0.9)),
            trial(1, 0.1, TrialState::Complete, curve(200, falling(200))),
            trial(2, 0.01, TrialState::Complete, curve(400, falling(400))),
        ];
        let out = stage_outcomes(&s, None, &stage);
        assert_eq!(out, vec![(1.0, never(0.9)), (0.1, fit(200)), (0.01, fit(400))]);
        let view = StudyView {
            trials: vec![record(0, 1.0, TrialState::Running), record(1, 0.1, TrialState::Complete)],
            curves: [("train/error".to_string(), [(0, curve(3000, |_| 0.9)), (1, curve(200, falling(200)))].into())].into(),
        };
        assert!(stops(&s, None, &view).is_empty());
    }

    #[test]
    fn a_diverged_trial_reads_as_what_it_showed_before_its_loss_was_nan() {
        let s = spec();
        let mut late = trial(1, 1.0, TrialState::Diverged, curve(260, falling(1000)));
        late.diverged_at = Some(250);
        let mut early = trial(2, 3.0, TrialState::Diverged, curve(60, |_| 0.9));
        early.diverged_at = Some(50);
        let out = stage_outcomes(&s, None, &[trial(0, 0.1, TrialState::Complete, curve(200, falling(200))), late, early]);
        assert!(matches!(out[1].1, LrOutcome::Slower { than: 200, .. }), "it reached the bound before it diverged: {out:?}");
        assert!(matches!(out[2].1, LrOutcome::Diverged { .. }), "{out:?}");
    }

    #[test]
    fn stalling_is_no_progress_in_the_second_half_after_the_patience() {
        let s = spec();
        // Flat: stalled at the patience (100), not before.
        assert_eq!(scan(&s, None, &curve(500, |_| 0.5), None), Some(Scan::Stalled { at: 100, best: Some(0.5) }));
        // Not at the end of the budget: there it simply never fit.
        let short = LrSweepSpec { steps: Some(100), ..spec() };
        assert_eq!(scan(&short, None, &curve(100, |_| 0.5), None), None);
        // A slow but steady decline is progress, however slow the rate.
        assert_eq!(scan(&s, None, &curve(3000, |st| 0.9 * (-(st as f64) / 2000.0).exp()), None), None);
        // A plateau after early progress: stalled once the plateau is half the run.
        let plateau = curve(1000, |st| if st <= 100 { 0.9 - 0.004 * st as f64 } else { 0.5 });
        assert_eq!(scan(&s, None, &plateau, None), Some(Scan::Stalled { at: 200, best: Some(0.5) }));
        // Noise around a dead level is not progress (less than 1%).
        let noisy = curve(1000, |st| 0.9 - 0.001 * ((st / 10) % 3) as f64);
        assert!(matches!(scan(&s, None, &noisy, None), Some(Scan::Stalled { at: 100, .. })));
        // Only finite values count; a curve of NaN makes no progress.
        assert!(matches!(scan(&s, None, &curve(200, |_| f64::NAN), None), Some(Scan::Stalled { at: 100, best: None })));
        // Criteria in the other direction measure the gap the other way.
        let up = LrSweepSpec { fit: Criterion::parse("train/accuracy >= 1").unwrap(), ..spec() };
        assert_eq!(scan(&up, None, &curve(400, |st| 1.0 - 0.5 * (-(st as f64) / 100.0).exp()), None), None);
        assert!(matches!(scan(&up, None, &curve(400, |_| 0.2), None), Some(Scan::Stalled { at: 100, .. })));
    }

    fn record(number: u64, lr: f64, state: TrialState) -> TrialRecord {
        let mut params = Params::default();
        params.set("learning_rate", ParamValue::Float(lr));
        TrialRecord { id: number as i64 + 100, ..TrialRecord::new(number, params, 3200, state) }
    }

    #[test]
    fn running_trials_that_cannot_be_the_fastest_are_stopped_with_the_reason() {
        let s = spec();
        let view = |curves: Vec<(u64, Vec<(u64, f64)>)>, states: &[TrialState]| StudyView {
            trials: [1.0, 0.1, 0.01].iter().zip(states).enumerate().map(|(n, (lr, st))| record(n as u64, *lr, *st)).collect(),
            curves: [("train/error".to_string(), curves.into_iter().collect())].into(),
        };
        use TrialState::{Complete, Running};
        // Nothing has fit and every curve is progressing: nothing to stop.
        let v = view(
            vec![(0, curve(60, falling(100))), (1, curve(50, falling(200))), (2, curve(40, falling(400)))],
            &[Running, Running, Running],
        );
        assert!(stops(&s, None, &v).is_empty());
        // Trial 0 fit at 100 (still running: stop_when ends it); trial 1 is at 110 without a
        // fit: stopped; trial 2 is at 90: not yet.
        let v = view(
            vec![(0, curve(100, falling(100))), (1, curve(110, falling(200))), (2, curve(90, falling(400)))],
            &[Running, Running, Running],
        );
        let d = stops(&s, None, &v);
        assert_eq!(d.len(), 1, "{d:?}");
        let Decision::Stop { trial, reason } = &d[0];
        assert_eq!(*trial, 1);
        assert_eq!(
            reason,
            "cannot be the fastest: learning_rate = 1 (trial 0) fit (train/error <= 0) at step 100, and this trial had not"
        );
        // A bound from an earlier stage applies from the start; finished trials are left alone.
        let v = view(
            vec![(0, curve(40, falling(100))), (1, curve(30, falling(200))), (2, curve(400, falling(400)))],
            &[Running, Running, Complete],
        );
        let d = stops(&s, Some((3.0, 30)), &v);
        let why = "cannot be the fastest: learning_rate = 3 (an earlier stage) fit (train/error <= 0) at step 30, and this trial had not";
        assert_eq!(d, vec![Decision::Stop { trial: 0, reason: why.into() }, Decision::Stop { trial: 1, reason: why.into() }]);
        // A dead network stalls.
        let v = view(
            vec![(0, curve(120, |_| 0.9)), (1, curve(50, falling(200))), (2, curve(40, falling(400)))],
            &[Running, Running, Running],
        );
        let d = stops(&s, None, &v);
        assert_eq!(d.len(), 1);
        let Decision::Stop { trial, reason } = &d[0];
        assert_eq!(*trial, 0);
        assert!(
            reason.starts_with("stalled: train/error came less than 1% closer to train/error <= 0 between steps 50 and 100"),
            "{reason}"
        );
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
        [params.optimizer]
        type = "categorical"
        choices = ["sgd", "adam"]
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
        assert_eq!((sweep.eval_every, sweep.max_steps, sweep.steps, sweep.patience, sweep.prune), (100, 48000, None, 2000, true));
        assert_eq!(sweep.budget(), 48000);
        // The built-in workload's weight decay has a known "off" value, its schedule a constant one.
        assert_eq!(base.off.get("weight_decay"), Some(&ParamValue::Float(0.0)));
        assert_eq!(base.constant.get("schedule"), Some(&ParamValue::Str("constant".into())));
    }

    #[test]
    fn stage_studies_hold_everything_but_the_learning_rate() {
        let text = format!("{DIGITS}\n[lr_sweep]\nset = {{ momentum = 0.5 }}\nfit = \"train/loss <= 0.01\"\n");
        let base = StudySpec::parse(&text, "digits.toml").unwrap();
        let sweep = base.lr_sweep.clone().unwrap();
        let held = held_params(&base, &sweep, "digits.toml").unwrap();
        let stage = Stage { index: 0, lrs: vec![0.01, 0.1, 1.0], steps: 800 };
        let study = stage_study(&base, &sweep, &held, &stage);
        assert_eq!(study.name, "digits.lr-sweep.grid-0");
        assert_eq!((study.trials, study.max_train_steps, study.eval_every), (3, 800, 100));
        assert_eq!(study.trainer.stop_when.as_ref().map(|c| c.to_string()).as_deref(), Some("train/loss <= 0.01"));
        assert_eq!(study.checkpoints.keep_best, 0);
        assert_eq!(study.space.dims(), 1);
        let sampler = study.sampler.build(&study.space, study.seed).unwrap();
        let lrs: Vec<f64> = (0..3).map(|i| sampler.sample(i).unwrap().get("learning_rate").unwrap().as_f64().unwrap()).collect();
        assert_eq!(lrs, vec![0.1, 1.0, 0.01], "the middle first, then outwards, larger first");
        assert_eq!(run_order(&[1.0, 2.0, 3.0, 4.0, 5.0]), vec![3.0, 4.0, 2.0, 5.0, 1.0]);
        assert_eq!(run_order(&[1.0, 2.0, 3.0, 4.0]), vec![3.0, 2.0, 4.0, 1.0]);
        assert_eq!(run_order(&[1.0, 2.0]), vec![2.0, 1.0]);
        let first = sampler.sample(0).unwrap();
        assert_eq!(first.get("momentum"), Some(&ParamValue::Float(0.5)));
        assert_eq!(first.get("weight_decay"), Some(&ParamValue::Float(0.0)));
        assert_eq!(first.get("schedule"), Some(&ParamValue::Str("constant".into())));
        assert_eq!(first.get("optimizer"), Some(&ParamValue::Str("sgd".into())));
        assert_eq!(first.get("batch_size"), Some(&ParamValue::Int(64)));
        let by = |n: &str| held.iter().find(|h| h.name == n).unwrap().by;
        assert_eq!(
            (by("momentum"), by("weight_decay"), by("schedule"), by("batch_size"), by("optimizer")),
            (HeldBy::Set, HeldBy::Off, HeldBy::Constant, HeldBy::Fixed, HeldBy::Default)
        );
        // A 16x longer budget gets a 16x longer timeout.
        let capped = stage_study(&base, &sweep, &held, &Stage { index: 0, lrs: vec![0.1], steps: 48000 });
        assert_eq!(capped.trials, 1);
        assert_eq!(capped.trainer.timeout, Some(std::time::Duration::from_secs(600 * 16)));
    }

    #[test]
    fn searched_parameters_are_held_at_a_practitioners_value_never_the_middle() {
        // Without `set`, a built-in workload's searched parameter takes the workload's default:
        // momentum 0.9, not 0.49 (the middle of [0, 0.98]); a two-choice categorical takes the
        // default choice, not its "middle".
        let plain = StudySpec::parse(DIGITS, "digits.toml").unwrap();
        let held = held_params(&plain, &plain.lr_sweep_spec("digits.toml").unwrap(), "digits.toml").unwrap();
        let get = |n: &str| held.iter().find(|h| h.name == n).map(|h| (h.value.clone(), h.by)).unwrap();
        assert_eq!(get("momentum"), (ParamValue::Float(0.9), HeldBy::Default));
        assert_eq!(get("optimizer"), (ParamValue::Str("sgd".into()), HeldBy::Default));
        // A trainer of one's own has no catalog: every searched parameter without a value is
        // refused, all named in one message with the way to give them.
        let own = r#"
            [study]
            name = "own"
            trials = 4
            max_train_steps = 100
            eval_every = 10
            [objective]
            metric = "valid/loss"
            direction = "minimize"
            [trainer]
            command = ["python3", "train.py"]
            metrics = ["train/loss", "valid/loss"]
            [params.lr]
            type = "float"
            low = 0.001
            high = 1.0
            scale = "log"
            [params.momentum]
            type = "float"
            low = 0.0
            high = 0.99
            [params.act]
            type = "categorical"
            choices = ["relu", "gelu"]
            [params.dropout]
            type = "float"
            low = 0.0
            high = 0.5
            off = 0.0
            [lr_sweep]
            param = "lr"
            fit = "train/loss <= 0.01"
        "#;
        let base = StudySpec::parse(own, "own.toml").unwrap();
        let e = held_params(&base, base.lr_sweep.as_ref().unwrap(), "own.toml").unwrap_err();
        assert_eq!(e.field, "lr_sweep.set");
        assert!(e.problem.contains("momentum, act have none"), "{e}");
        assert!(
            e.fix.starts_with("give the value you would train with: [lr_sweep] set = { momentum = VALUE, act = VALUE }"),
            "{e}"
        );
        let fixed =
            StudySpec::parse(&own.replace("fit = ", "set = { momentum = 0.9, act = \"gelu\" }\n            fit = "), "own.toml")
                .unwrap();
        let held = held_params(&fixed, fixed.lr_sweep.as_ref().unwrap(), "own.toml").unwrap();
        let by: Vec<(&str, HeldBy)> = held.iter().map(|h| (h.name.as_str(), h.by)).collect();
        assert_eq!(by, vec![("momentum", HeldBy::Set), ("act", HeldBy::Set), ("dropout", HeldBy::Off)]);
    }

    #[test]
    fn a_fixed_schedule_of_a_workload_still_becomes_constant() {
        let text = DIGITS.replace(
            "type = \"categorical\"\n        choices = [\"cosine\", \"linear\"]",
            "type = \"fixed\"\n        value = \"cosine\"",
        ) + "[params.warmup_steps]\ntype = \"fixed\"\nvalue = 200\n";
        let base = StudySpec::parse(&text, "digits.toml").unwrap();
        assert!(matches!(base.space.param("schedule").unwrap().kind, ParamKind::Fixed { .. }), "the test must fix the schedule");
        let held = held_params(&base, &base.lr_sweep_spec("digits.toml").unwrap(), "digits.toml").unwrap();
        let get = |n: &str| held.iter().find(|h| h.name == n).map(|h| (h.value.clone(), h.by)).unwrap();
        assert_eq!(get("schedule"), (ParamValue::Str("constant".into()), HeldBy::Constant));
        assert_eq!(get("warmup_steps"), (ParamValue::Int(0), HeldBy::Constant));
    }

    #[test]
    fn a_schedule_of_ones_own_trainer_must_say_its_constant_value() {
        let own = |schedule: &str| {
            format!(
                r#"
            [study]
            name = "own"
            trials = 4
            max_train_steps = 100
            eval_every = 10
            [objective]
            metric = "valid/loss"
            direction = "minimize"
            [trainer]
            command = ["python3", "train.py"]
            metrics = ["train/loss", "valid/loss"]
            [params.lr]
            type = "float"
            low = 0.001
            high = 1.0
            scale = "log"
            {schedule}
            [lr_sweep]
            param = "lr"
            fit = "train/loss <= 0.01"
            "#
            )
        };
        let held = |schedule: &str| {
            let base = StudySpec::parse(&own(schedule), "own.toml").unwrap();
            held_params(&base, base.lr_sweep.as_ref().unwrap(), "own.toml")
        };
        // Fixed at "cosine": the sweep would not be of constant rates. Refused, with the fix.
        let e = held("[params.schedule]\ntype = \"fixed\"\nvalue = \"cosine\"").unwrap_err();
        assert_eq!(e.field, "params.schedule");
        assert!(e.problem.contains("schedule (fixed at cosine) may change lr over training"), "{e}");
        assert!(e.fix.starts_with("say which: add constant = VALUE to [params.schedule]"), "{e}");
        let e = held("[params.lr_warmup]\ntype = \"int\"\nlow = 0\nhigh = 50").unwrap_err();
        assert_eq!(e.field, "params.lr_warmup");
        // Declared: held there.
        let h = held("[params.schedule]\ntype = \"fixed\"\nvalue = \"cosine\"\nconstant = \"flat\"").unwrap();
        assert_eq!((h[0].value.clone(), h[0].by), (ParamValue::Str("flat".into()), HeldBy::Constant));
        // Fixed at a value that already says "constant", or held by `set`: accepted.
        let h = held("[params.schedule]\ntype = \"fixed\"\nvalue = \"constant\"").unwrap();
        assert_eq!(h[0].by, HeldBy::Fixed);
        let h = held("[params.warmup_steps]\ntype = \"fixed\"\nvalue = 0").unwrap();
        assert_eq!(h[0].by, HeldBy::Fixed);
        // Weight decay is regularization, not a schedule.
        assert!(!shapes_the_schedule("weight_decay") && shapes_the_schedule("lr_decay") && shapes_the_schedule("LR-Scheduler"));
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
        let e = bad("max_steps = 10");
        assert_eq!(e.field, "lr_sweep.eval_every");
        let e = bad("patience = 0");
        assert_eq!(e.field, "lr_sweep.patience");
        let e = bad("colour = 1");
        assert!(e.problem.contains("colour"), "{e}");
        // The settings of the run that found N are gone, with the reason.
        let e = bad("find_lr = 0.1");
        assert_eq!(e.field, "lr_sweep.find_lr");
        assert!(e.problem.contains("no separate run finds N"), "{e}");
        let e = bad("start_steps = 100");
        assert_eq!(e.field, "lr_sweep.start_steps");
        // `off` applies to fixed parameters too: the sweep switches a fixed regularizer off.
        let fixed_off = StudySpec::parse(&DIGITS.replace("value = 64", "value = 64\noff = 1"), "d.toml").unwrap();
        assert_eq!(fixed_off.off.get("batch_size"), Some(&ParamValue::Int(1)));
        let e = StudySpec::parse(&DIGITS.replace("value = 64", "value = 64\noff = [1]"), "d.toml").unwrap_err();
        assert_eq!(e.field, "params.batch_size.off");
        let e = StudySpec::parse(&DIGITS.replace("value = 64", "value = 64\nconstant = [1]"), "d.toml").unwrap_err();
        assert_eq!(e.field, "params.batch_size.constant");
    }
}
