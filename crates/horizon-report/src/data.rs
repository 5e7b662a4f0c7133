//! What the report shows, extracted from a study's analysis and records into plain structs
//! ([`extract`]): every number a plot draws is here, so it can be tested (and snapshot) apart
//! from the drawing.

use serde::Serialize;

use horizon_analysis::boundary::Edge;
use horizon_analysis::ladder::LadderReport;
use horizon_analysis::rounds::RoundFindings;
use horizon_analysis::{Analysis, StudyData};
use horizon_core::lr_sweep::{LrOutcome, SweepReport, Verdict};
use horizon_core::schedule::Schedule;
use horizon_core::space::{ParamKind, Scale};

/// Points kept per drawn curve: a longer curve is cut into `MAX_CURVE_POINTS / 2` buckets,
/// each kept as its lowest and highest point (so spikes and the best value survive), with the
/// selected checkpoint always kept.
pub const MAX_CURVE_POINTS: usize = 400;
/// Trials whose curves are drawn: the best few.
pub const CURVE_TRIALS: usize = 5;
/// Bins of the budget histogram (`best_step / max_train_steps` in [0, 1]).
pub const HISTOGRAM_BINS: usize = 20;
/// Points of an axis plot that carry their own tooltip (the best ones); the rest are drawn as
/// one compact path.
pub const LABELLED_POINTS: usize = 300;
/// Buckets of an isolation plot, along the parameter's sampling scale.
pub const ISOLATION_BUCKETS: usize = 10;

/// The study card's facts, gathered by the caller (they come from storage and the study file).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyCard {
    pub name: String,
    pub objective: String,
    /// "minimize" or "maximize".
    pub direction: String,
    /// The study file's text, when the report was made from it (else the stored spec).
    pub study_file: Option<String>,
    /// Trials by state, in the states' order, only those with trials.
    pub states: Vec<(String, usize)>,
    /// The best checkpoint: trial, value, step, budget.
    pub best: Option<(u64, f64, u64, u64)>,
    /// The shell line that reproduces the best trial.
    pub reproduce: Option<String>,
    /// For an imported study: where its runs came from.
    pub imported_from: Option<String>,
}

/// Everything [`extract`] reads.
pub struct ReportInput<'a> {
    pub card: StudyCard,
    pub data: &'a StudyData,
    pub analysis: &'a Analysis,
    /// The ladder's (or the rounds') report, with its heading ("Ladder of 4 rungs", "2 rounds").
    pub stages: Option<(&'a LadderReport, String)>,
    pub rounds: &'a [RoundFindings],
    /// The schedule the best trial ran at each budget it reached (built-in trainers).
    pub schedules: Vec<(u64, Schedule)>,
    /// A learning-rate sweep of the study: its parameter and report.
    pub sweep: Option<(String, &'a SweepReport)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub card: StudyCard,
    pub budget: Option<BudgetSection>,
    pub curves: Vec<CurvePanel>,
    pub axes: Vec<AxisPlot>,
    pub sweep: Option<SweepPlot>,
    pub stages: Option<StagesSection>,
    /// How the report reduced what it draws (downsampled curves, unlabelled points).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// "feasible" or "top".
    pub group: String,
    /// Trials per bin of `best_step / max_train_steps`, [`HISTOGRAM_BINS`] bins over [0, 1].
    pub bins: Vec<usize>,
    pub trials: usize,
    pub verdict: String,
    pub confidence: String,
    pub suggested_max_train_steps: Option<u64>,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetSection {
    /// The bands the method reads: best steps in the first `early` share say the budget is too
    /// high, in the last `1 - late` share that it is too low.
    pub early: f64,
    pub late: f64,
    pub feasible: Histogram,
    pub top: Histogram,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurvePanel {
    pub number: u64,
    pub rank: usize,
    /// The trial's parameters in one line.
    pub params: String,
    pub max_train_steps: u64,
    pub objective: Vec<(u64, f64)>,
    pub train: Vec<(u64, f64)>,
    pub train_metric: String,
    /// The retrospectively selected checkpoint.
    pub best: Option<(u64, f64)>,
    /// The flagged curve diagnostics, with their evidence.
    pub diagnostics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AxisPoint {
    pub x: f64,
    pub y: f64,
    pub number: u64,
    /// Its tooltip (the trial's parameters and value) for the best [`LABELLED_POINTS`].
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeMark {
    /// "low" or "high".
    pub edge: String,
    /// The band's inner limit, in the parameter's units.
    pub band_limit: Option<f64>,
    pub advice: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AxisPlot {
    pub param: String,
    pub log: bool,
    pub low: f64,
    pub high: f64,
    /// Feasible trials: the parameter against the best objective, best first.
    pub points: Vec<AxisPoint>,
    /// Infeasible trials' parameter values (drawn as crosses along the top).
    pub infeasible: Vec<(f64, u64)>,
    /// Flagged edges.
    pub edges: Vec<EdgeMark>,
    /// The isolation plot: the best trial in each bucket of the sampling scale, as (its value
    /// of the parameter, its objective), in bucket order.
    pub isolation: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPoint {
    pub lr: f64,
    /// Steps to fit, for a rate that fit.
    pub steps: Option<u64>,
    /// "fit", "never", "slower", "stalled", "diverged" or "failed".
    pub outcome: String,
    pub fastest: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPlot {
    pub param: String,
    pub fit: String,
    pub points: Vec<SweepPoint>,
    /// The rates each extension past an edge added.
    pub extensions: Vec<Vec<f64>>,
    pub suggested_max_train_steps: Option<u64>,
    /// The budget the grid ran against (the cap, or the given N).
    pub budget: u64,
    /// The sweep's answer in a sentence.
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RungRow {
    pub rung: u32,
    pub budget: u64,
    pub reached: usize,
    pub finished: usize,
    pub infeasible: usize,
    pub promoted: usize,
    pub resumed: usize,
    pub steps_run: u64,
    pub steps_saved: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StagesSection {
    pub title: String,
    pub rounds: bool,
    pub rungs: Vec<RungRow>,
    pub steps_run: u64,
    pub from_scratch_steps: u64,
    /// Rank agreement lines, consecutive then to the top.
    pub agreement: Vec<String>,
    pub flags: Vec<String>,
    /// The best trial's learning rate over training at each budget: (budget, points).
    pub schedules: Vec<(u64, Vec<(u64, f64)>)>,
    /// Each round's end-of-round checks, as text.
    pub round_checks: Vec<String>,
}

/// The report's data. Pure: the same input gives the same report.
pub fn extract(input: &ReportInput<'_>) -> Report {
    let mut notes = Vec::new();
    Report {
        card: input.card.clone(),
        budget: budget_section(input.analysis),
        curves: curve_panels(input, &mut notes),
        axes: axis_plots(input, &mut notes),
        sweep: input.sweep.as_ref().map(|(param, r)| sweep_plot(param, r)),
        stages: stages_section(input),
        notes,
    }
}

fn histogram(v: &horizon_analysis::BudgetVerdict, analysis: &Analysis) -> Histogram {
    let mut bins = vec![0; HISTOGRAM_BINS];
    for n in &v.trial_numbers {
        if let Some(f) = analysis.trials.iter().find(|t| t.number == *n).and_then(|t| t.best_fraction) {
            let i = ((f * HISTOGRAM_BINS as f64).floor() as usize).min(HISTOGRAM_BINS - 1);
            bins[i] += 1;
        }
    }
    Histogram {
        group: v.group.clone(),
        bins,
        trials: v.trials,
        verdict: v.verdict.label().to_string(),
        confidence: v.confidence.label().to_string(),
        suggested_max_train_steps: v.suggested_max_train_steps,
        evidence: v.evidence.clone(),
    }
}

fn budget_section(a: &Analysis) -> Option<BudgetSection> {
    if a.budget.feasible.trials == 0 {
        return None;
    }
    Some(BudgetSection {
        early: a.config.early_fraction,
        late: a.config.late_fraction,
        feasible: histogram(&a.budget.feasible, a),
        top: histogram(&a.budget.top, a),
    })
}

/// A curve reduced to at most [`MAX_CURVE_POINTS`] points, keeping `keep`'s step.
pub fn downsample(points: &[(u64, f64)], keep: Option<u64>) -> Vec<(u64, f64)> {
    if points.len() <= MAX_CURVE_POINTS {
        return points.to_vec();
    }
    let buckets = MAX_CURVE_POINTS / 2;
    let per = points.len().div_ceil(buckets);
    let mut out: Vec<(u64, f64)> = Vec::with_capacity(MAX_CURVE_POINTS + 1);
    for chunk in points.chunks(per) {
        let finite = || chunk.iter().filter(|p| p.1.is_finite());
        let lo = finite().min_by(|a, b| a.1.total_cmp(&b.1));
        let hi = finite().max_by(|a, b| a.1.total_cmp(&b.1));
        let mut pick: Vec<(u64, f64)> = lo.into_iter().chain(hi).copied().collect();
        if let Some(k) = keep
            && let Some(p) = chunk.iter().find(|p| p.0 == k)
        {
            pick.push(*p);
        }
        pick.sort_by_key(|p| p.0);
        pick.dedup_by_key(|p| p.0);
        out.extend(pick);
    }
    out
}

fn curve_panels(input: &ReportInput<'_>, notes: &mut Vec<String>) -> Vec<CurvePanel> {
    let a = input.analysis;
    // The objective's training counterpart (valid/error -> train/error) when the trials report
    // it, else the training metric the analysis diagnoses.
    let counterpart = a.objective.split_once('/').map(|(_, rest)| format!("train/{rest}"));
    let train_metric = counterpart
        .filter(|m| *m != a.objective && input.data.trials.iter().any(|t| t.metrics.iter().any(|p| &p.name == m)))
        .unwrap_or_else(|| a.curves.train_metric.clone());
    let mut longest = 0;
    let panels: Vec<CurvePanel> = a
        .ranking
        .iter()
        .take(CURVE_TRIALS)
        .enumerate()
        .filter_map(|(i, &number)| {
            let trial = input.data.trials.iter().find(|t| t.record.number == number)?;
            let judged = a.trials.iter().find(|t| t.number == number)?;
            let curve = |name: &str| {
                let mut c: Vec<(u64, f64)> = trial.metrics.iter().filter(|m| m.name == name).map(|m| (m.step, m.value)).collect();
                c.sort_by_key(|p| p.0);
                c
            };
            let objective = curve(&a.objective);
            let train = curve(&train_metric);
            longest = longest.max(objective.len()).max(train.len());
            let diagnostics = a
                .curves
                .trials
                .iter()
                .find(|d| d.number == number)
                .map(|d| {
                    [
                        ("still improving", &d.still_improving),
                        ("saturated early", &d.saturated_early),
                        ("overfitting", &d.overfitting),
                        ("training loss rising", &d.train_loss_rising),
                        ("late noise", &d.late_noise),
                    ]
                    .into_iter()
                    .filter(|(_, s)| s.flagged)
                    .map(|(name, s)| format!("{name}: {}", s.evidence))
                    .collect()
                })
                .unwrap_or_default();
            Some(CurvePanel {
                number,
                rank: i + 1,
                params: params_line(&judged.params),
                max_train_steps: judged.max_train_steps,
                objective: downsample(&objective, judged.best_step),
                train: downsample(&train, None),
                train_metric: train_metric.clone(),
                best: judged.best_step.zip(judged.best_value),
                diagnostics,
            })
        })
        .collect();
    if longest > MAX_CURVE_POINTS {
        notes.push(format!(
            "curves of up to {longest} evaluations are drawn with at most {MAX_CURVE_POINTS} points each: the lowest and highest of each of {} buckets, and the selected checkpoint",
            MAX_CURVE_POINTS / 2
        ));
    }
    panels
}

/// Parameters in one line, numbers in 4 significant digits (the study file and `trials --json`
/// have them exactly).
fn params_line(p: &horizon_core::Params) -> String {
    p.iter()
        .map(|(k, v)| match v {
            horizon_core::ParamValue::Float(x) => format!("{k} = {}", horizon_core::numfmt::num(*x)),
            v => format!("{k} = {v}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn axis_plots(input: &ReportInput<'_>, notes: &mut Vec<String>) -> Vec<AxisPlot> {
    let a = input.analysis;
    let mut plots = Vec::new();
    let mut unlabelled = 0;
    for b in &a.space.parameters {
        // The parameter's values: numbers for ranges; list positions for discrete lists.
        let def = input.data.space.as_ref().and_then(|s| s.params.iter().find(|p| p.name == b.name));
        let (log, index) = match def.map(|d| &d.kind) {
            Some(ParamKind::Float { scale, .. }) | Some(ParamKind::Int { scale, .. }) => (*scale == Scale::Log, None),
            // A list of numbers is drawn at its values, any other list at its positions.
            Some(ParamKind::Discrete { values }) if values.iter().all(|v| v.as_f64().is_some()) => (false, None),
            Some(ParamKind::Discrete { values }) => (false, Some(values.clone())),
            _ => (b.scale == "log", None),
        };
        let x_of = |t: &horizon_analysis::TrialAnalysis| -> Option<f64> {
            let v = t.params.get(&b.name)?;
            match &index {
                Some(values) => values.iter().position(|x| x == v).map(|i| i as f64),
                None => v.as_f64(),
            }
        };
        let mut points: Vec<AxisPoint> = Vec::new();
        for &n in &a.ranking {
            let Some(t) = a.trials.iter().find(|t| t.number == n) else { continue };
            let (Some(x), Some(y)) = (x_of(t), t.best_value) else { continue };
            let label = (points.len() < LABELLED_POINTS)
                .then(|| format!("trial {n}: {} = {}\n{}", a.objective, horizon_core::numfmt::num(y), params_line(&t.params)));
            points.push(AxisPoint { x, y, number: n, label });
        }
        unlabelled = unlabelled.max(points.len().saturating_sub(LABELLED_POINTS));
        let infeasible: Vec<(f64, u64)> =
            a.trials.iter().filter(|t| t.finished && !t.feasible).filter_map(|t| x_of(t).map(|x| (x, t.number))).collect();
        let edges = [(&b.low_edge, Edge::Low), (&b.high_edge, Edge::High)]
            .into_iter()
            .filter(|(e, _)| e.flagged)
            .map(|(e, side)| EdgeMark { edge: side.as_str().into(), band_limit: e.band_limit, advice: b.advice.clone() })
            .collect();
        let (low, high) = (b.low, b.high);
        let isolation = isolation(&points, low, high, log, a.direction);
        plots.push(AxisPlot { param: b.name.clone(), log, low, high, points, infeasible, edges, isolation });
    }
    if unlabelled > 0 {
        notes.push(format!(
            "axis plots: the best {LABELLED_POINTS} trials of each carry a tooltip; the other {unlabelled} are drawn without one"
        ));
    }
    plots
}

/// The best trial per bucket of the parameter's sampling scale.
fn isolation(points: &[AxisPoint], low: f64, high: f64, log: bool, direction: horizon_core::Direction) -> Vec<(f64, f64)> {
    let pos = |x: f64| {
        if log && x > 0.0 && low > 0.0 { (x.ln() - low.ln()) / (high.ln() - low.ln()) } else { (x - low) / (high - low) }
    };
    if high <= low {
        return Vec::new();
    }
    let mut best: Vec<Option<(f64, f64)>> = vec![None; ISOLATION_BUCKETS];
    for p in points {
        let u = pos(p.x);
        if !u.is_finite() {
            continue;
        }
        let i = ((u * ISOLATION_BUCKETS as f64).floor().max(0.0) as usize).min(ISOLATION_BUCKETS - 1);
        if best[i].is_none_or(|(_, b)| direction.better(p.y, b)) {
            best[i] = Some((p.x, p.y));
        }
    }
    best.into_iter().flatten().collect()
}

fn sweep_plot(param: &str, r: &SweepReport) -> SweepPlot {
    let points = r
        .results
        .iter()
        .map(|(lr, o)| {
            let (steps, outcome) = match o {
                LrOutcome::Fit { steps } => (Some(*steps), "fit"),
                LrOutcome::Never { .. } => (None, "never"),
                LrOutcome::Slower { .. } => (None, "slower"),
                LrOutcome::Stalled { .. } => (None, "stalled"),
                LrOutcome::Diverged { .. } => (None, "diverged"),
                LrOutcome::Failed { .. } => (None, "failed"),
            };
            SweepPoint { lr: *lr, steps, outcome: outcome.into(), fastest: r.fastest.contains(lr) }
        })
        .collect();
    let budget = match r.budget {
        horizon_core::lr_sweep::BudgetSource::Given { steps } | horizon_core::lr_sweep::BudgetSource::Cap { steps } => steps,
    };
    let verdict = match &r.verdict {
        Verdict::Found => format!(
            "the fastest rate is inside the swept range: initial max_train_steps {}",
            r.suggested_max_train_steps.unwrap_or(0)
        ),
        Verdict::EdgeUnresolved { sides } => format!(
            "the fastest rate is still at the {} edge after every extension: {} steps is an upper bound",
            sides.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" and "),
            r.suggested_max_train_steps.unwrap_or(0)
        ),
        Verdict::NothingFit { steps } => {
            format!("no learning rate fit the training set ({}) within {steps} steps", r.fit)
        }
    };
    SweepPlot {
        verdict,
        param: param.to_string(),
        fit: r.fit.clone(),
        points,
        extensions: r.extensions.iter().map(|(_, lrs)| lrs.clone()).collect(),
        suggested_max_train_steps: r.suggested_max_train_steps,
        budget,
    }
}

fn stages_section(input: &ReportInput<'_>) -> Option<StagesSection> {
    let (r, title) = input.stages.as_ref()?;
    let rungs = r
        .rungs
        .iter()
        .map(|g| RungRow {
            rung: g.rung,
            budget: g.budget,
            reached: g.reached,
            finished: g.finished,
            infeasible: g.infeasible,
            promoted: g.promoted,
            resumed: g.resumed,
            steps_run: g.steps_run,
            steps_saved: g.steps_saved,
        })
        .collect();
    let agreement = r.consecutive.iter().chain(&r.to_top).map(horizon_analysis::ladder::RankAgreement::line).collect();
    let schedules = input
        .schedules
        .iter()
        .map(|(budget, s)| {
            let n = (*budget).clamp(1, 200);
            let points = (0..=n).map(|i| i * budget / n).map(|step| (step, s.lr(step))).collect();
            (*budget, points)
        })
        .collect();
    Some(StagesSection {
        title: title.clone(),
        rounds: !input.rounds.is_empty(),
        rungs,
        steps_run: r.totals.steps_run,
        from_scratch_steps: r.totals.from_scratch_steps,
        agreement,
        flags: r.flags.clone(),
        schedules,
        round_checks: input.rounds.iter().map(RoundFindings::render).collect(),
    })
}
