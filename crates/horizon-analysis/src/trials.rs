//! Per-trial reading: retrospective best, best fraction, and feasibility.

use horizon_core::selection::select;
use horizon_core::{Direction, MetricPoint, Params, TrialState};
use serde::Serialize;

use crate::config::AnalysisConfig;
use crate::stats::{self, Summary};
use crate::{StudyData, TrialData};

/// Why a finished trial is infeasible (docs/method.md section 4: "diverged, NaN, uncharacteristically
/// high loss, or failed to run").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InfeasibleReason {
    /// The program failed (exit status, timeout) with no retries left.
    Failed,
    /// The objective or a loss became NaN or infinite.
    Diverged,
    /// Finished but its best value is far from the study's typical values (see `HighLossRule`).
    HighLoss,
    /// Finished without a single finite evaluation of the objective.
    NoObjective,
    /// The trainer exited successfully well short of its budget (`TrialState::Incomplete`): its
    /// best step says nothing about the budget, and its value is not comparable.
    Incomplete,
}

impl InfeasibleReason {
    pub const ALL: [InfeasibleReason; 5] = [
        InfeasibleReason::Failed,
        InfeasibleReason::Diverged,
        InfeasibleReason::HighLoss,
        InfeasibleReason::NoObjective,
        InfeasibleReason::Incomplete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InfeasibleReason::Failed => "failed",
            InfeasibleReason::Diverged => "diverged",
            InfeasibleReason::HighLoss => "high_loss",
            InfeasibleReason::NoObjective => "no_objective",
            InfeasibleReason::Incomplete => "incomplete",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            InfeasibleReason::Failed => "failed",
            InfeasibleReason::Diverged => "diverged",
            InfeasibleReason::HighLoss => "high loss",
            InfeasibleReason::NoObjective => "no objective",
            InfeasibleReason::Incomplete => "incomplete",
        }
    }
}

/// One trial, as the analysis reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialAnalysis {
    pub number: u64,
    pub state: TrialState,
    pub params: Params,
    /// This trial's own budget: every fraction below is relative to it.
    pub max_train_steps: u64,
    /// Evaluations of the objective (finite or not).
    pub evaluations: usize,
    /// First finite evaluation of the objective.
    pub first_step: Option<u64>,
    pub first_value: Option<f64>,
    /// Retrospectively selected best evaluation (ties: earliest step).
    pub best_step: Option<u64>,
    pub best_value: Option<f64>,
    /// best_step / max_train_steps.
    pub best_fraction: Option<f64>,
    /// Last evaluation of the objective (`null` in JSON when not finite).
    pub final_step: Option<u64>,
    pub final_value: Option<f64>,
    /// Complete, diverged or failed (not waiting or running).
    pub finished: bool,
    pub feasible: bool,
    /// Why not, for a finished infeasible trial.
    pub infeasible: Option<InfeasibleReason>,
    /// The numbers behind `infeasible`, or why an unfinished trial is not judged.
    pub detail: Option<String>,
    /// 1 = best feasible trial.
    pub rank: Option<usize>,
}

/// How "uncharacteristically high loss" was decided for this study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HighLossRule {
    pub rule: String,
    /// The objective's value where training starts (chance level or median first evaluation).
    pub start_level: Option<f64>,
    /// "chance_level" or "median_first_evaluation"; `None` when the progress rule was not applied.
    pub start_level_source: Option<String>,
    /// The best value of any candidate trial.
    pub study_best: Option<f64>,
    /// Best values worse than this made less than `min_progress` of the progress.
    pub progress_limit: Option<f64>,
    /// Tukey's far-out fence over the candidates' best values.
    pub fence: Option<f64>,
    /// The effective limit: a best value worse than this is high loss.
    pub limit: Option<f64>,
    pub notes: Vec<String>,
}

/// Objective value oriented so that lower is better.
pub(crate) fn oriented(direction: Direction, v: f64) -> f64 {
    match direction {
        Direction::Minimize => v,
        Direction::Maximize => -v,
    }
}

/// The finite `(step, value)` evaluations of one metric, sorted by step (last write wins).
pub(crate) fn series(metrics: &[MetricPoint], name: &str) -> Vec<(u64, f64)> {
    let mut out: Vec<(u64, f64)> = Vec::new();
    let mut pts: Vec<&MetricPoint> = metrics.iter().filter(|m| m.name == name).collect();
    pts.sort_by_key(|m| m.step);
    for m in pts {
        if !m.value.is_finite() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.0 == m.step => last.1 = m.value,
            _ => out.push((m.step, m.value)),
        }
    }
    out
}

fn is_loss_like(name: &str, objective: &str, train_metric: &str) -> bool {
    name == objective || name == train_metric || name.to_ascii_lowercase().contains("loss")
}

/// Judge every trial: selection, best fraction, feasibility, rank.
pub(crate) fn judge(input: &StudyData, config: &AnalysisConfig) -> (Vec<TrialAnalysis>, HighLossRule) {
    let dir = input.direction;
    let mut out: Vec<TrialAnalysis> = input.trials.iter().map(|t| read_trial(t, input, config)).collect();

    // Candidates for the high-loss rule: finished, not diverged/failed, with a best value.
    let candidates: Vec<usize> =
        (0..out.len()).filter(|&i| out[i].finished && out[i].infeasible.is_none() && out[i].best_value.is_some()).collect();
    let rule = high_loss_rule(&out, &candidates, input, config);
    if let Some(limit) = rule.limit {
        let limit_y = oriented(dir, limit);
        for &i in &candidates {
            let best = out[i].best_value.unwrap();
            if oriented(dir, best) > limit_y {
                out[i].infeasible = Some(InfeasibleReason::HighLoss);
                out[i].detail = Some(high_loss_detail(best, &rule, dir, config));
            }
        }
    }
    for &i in &candidates {
        out[i].feasible = out[i].infeasible.is_none();
    }

    // Rank the feasible trials: best value, then earliest best step, then number.
    let mut ranked: Vec<usize> = (0..out.len()).filter(|&i| out[i].feasible).collect();
    ranked.sort_by(|&a, &b| {
        let (ta, tb) = (&out[a], &out[b]);
        oriented(dir, ta.best_value.unwrap())
            .total_cmp(&oriented(dir, tb.best_value.unwrap()))
            .then(ta.best_step.cmp(&tb.best_step))
            .then(ta.number.cmp(&tb.number))
    });
    for (r, &i) in ranked.iter().enumerate() {
        out[i].rank = Some(r + 1);
    }
    (out, rule)
}

fn read_trial(t: &TrialData, input: &StudyData, config: &AnalysisConfig) -> TrialAnalysis {
    let rec = &t.record;
    let raw: Vec<(u64, f64)> = t.metrics.iter().filter(|m| m.name == input.objective).map(|m| (m.step, m.value)).collect();
    let finite = series(&t.metrics, &input.objective);
    let sel = select(&raw, input.direction);
    let (best_step, best_value, final_step, final_value) = match sel {
        Some(s) => (Some(s.best_step), Some(s.best_value), Some(s.final_step), Some(s.final_value)),
        // No finite evaluation in the metrics: fall back to what the record says.
        None if raw.is_empty() => (rec.best_step, rec.best_value, rec.final_step, rec.final_value),
        None => (None, None, raw.iter().map(|p| p.0).max(), raw.iter().max_by_key(|p| p.0).map(|p| p.1)),
    };
    let best_value = best_value.filter(|v| v.is_finite());
    let best_step = best_value.and(best_step);
    let best_fraction = best_step.filter(|_| rec.max_train_steps > 0).map(|s| s as f64 / rec.max_train_steps as f64);
    let first = finite.first().copied();

    let non_finite =
        t.metrics.iter().find(|m| !m.value.is_finite() && is_loss_like(&m.name, &input.objective, &config.train_metric));

    let finished = rec.state.is_finished();
    let (infeasible, detail) = match rec.state {
        TrialState::Waiting | TrialState::Running => (None, Some(format!("{}: not judged until it finishes", rec.state))),
        TrialState::Incomplete => (
            Some(InfeasibleReason::Incomplete),
            Some(rec.message.clone().unwrap_or_else(|| {
                format!("ended at step {} of {}", final_step.map_or("?".into(), |s| s.to_string()), rec.max_train_steps)
            })),
        ),
        TrialState::Failed => {
            (Some(InfeasibleReason::Failed), Some(rec.message.clone().unwrap_or_else(|| "the trial failed".into())))
        }
        TrialState::Diverged => (
            Some(InfeasibleReason::Diverged),
            Some(match (&rec.message, non_finite) {
                (Some(m), _) => m.clone(),
                (None, Some(m)) => format!("{} was {} at step {}", m.name, m.value, m.step),
                (None, None) => "the trial diverged".into(),
            }),
        ),
        TrialState::Complete => match non_finite {
            Some(m) => (
                Some(InfeasibleReason::Diverged),
                Some(format!("{} was {} at step {} (non-finite: diverged)", m.name, m.value, m.step)),
            ),
            None if best_value.is_none() => (
                Some(InfeasibleReason::NoObjective),
                Some(format!("finished without a finite evaluation of {}", input.objective)),
            ),
            None => (None, None),
        },
    };

    TrialAnalysis {
        number: rec.number,
        state: rec.state,
        params: rec.params.clone(),
        max_train_steps: rec.max_train_steps,
        evaluations: raw.len(),
        first_step: first.map(|p| p.0),
        first_value: first.map(|p| p.1),
        best_step,
        best_value,
        best_fraction,
        final_step,
        final_value: final_value.filter(|v| v.is_finite()),
        finished,
        feasible: false,
        infeasible,
        detail,
        rank: None,
    }
}

fn high_loss_rule(out: &[TrialAnalysis], candidates: &[usize], input: &StudyData, config: &AnalysisConfig) -> HighLossRule {
    let dir = input.direction;
    let worse = match dir {
        Direction::Minimize => "above",
        Direction::Maximize => "below",
    };
    let mut notes = Vec::new();
    let ys: Vec<f64> = candidates.iter().map(|&i| oriented(dir, out[i].best_value.unwrap())).collect();
    let best_y = ys.iter().copied().min_by(|a, b| a.total_cmp(b));

    // 1. The progress rule.
    let mut start: Option<(f64, &str)> = config.chance_level.map(|c| (oriented(dir, c), "chance_level"));
    if start.is_none() {
        let with_first: Vec<&TrialAnalysis> = out.iter().filter(|t| t.first_value.is_some() && t.max_train_steps > 0).collect();
        let fractions: Vec<f64> = with_first.iter().map(|t| t.first_step.unwrap() as f64 / t.max_train_steps as f64).collect();
        let firsts: Vec<f64> = with_first.iter().map(|t| oriented(dir, t.first_value.unwrap())).collect();
        match stats::median(&fractions) {
            None => notes.push("progress rule not applied: no trial has a finite evaluation".into()),
            Some(f) if f > config.start_window => notes.push(format!(
                "progress rule not applied: the median first evaluation comes at {:.0}% of the budget (> {:.0}%), \
                 so it is no start level; give chance_level to apply it",
                100.0 * f,
                100.0 * config.start_window
            )),
            Some(_) => start = stats::median(&firsts).map(|s| (s, "median_first_evaluation")),
        }
    }
    let mut progress_limit_y = None;
    if let (Some((s, _)), Some(b)) = (start, best_y) {
        if s > b {
            progress_limit_y = Some(s - config.min_progress * (s - b));
        } else {
            notes.push(format!(
                "progress rule not applied: the start level {} is not worse than the study's best {}",
                crate::text::num(oriented(dir, s)),
                crate::text::num(oriented(dir, b))
            ));
        }
    }

    // 2. Tukey's far-out fence.
    let mut fence_y = None;
    if let Some(k) = config.high_loss_iqr_factor {
        if ys.len() < config.fence_min_trials {
            notes.push(format!("fence not applied: {} candidate trials (needs {})", ys.len(), config.fence_min_trials));
        } else if let Some(s) = Summary::of(&ys) {
            if s.iqr() > 0.0 {
                fence_y = Some(s.q3 + k * s.iqr());
            } else {
                notes.push("fence not applied: the interquartile range of best values is zero".into());
            }
        }
    }

    let limit_y = match (progress_limit_y, fence_y) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let back = |y: Option<f64>| y.map(|y| oriented(dir, y));
    HighLossRule {
        rule: format!(
            "a finished trial is infeasible (high loss) when its best value is {worse} the limit: the stricter of \
             (a) the start level moved by only {:.0}% of the way to the study's best value (no real progress), \
             and (b) Q3 + {} x IQR of all candidates' best values (Tukey's far-out fence, needs {} trials)",
            100.0 * config.min_progress,
            config.high_loss_iqr_factor.map_or("(disabled)".to_string(), |k| format!("{k}")),
            config.fence_min_trials,
        ),
        start_level: back(start.map(|s| s.0)),
        start_level_source: start.filter(|_| progress_limit_y.is_some()).map(|s| s.1.to_string()),
        study_best: back(best_y),
        progress_limit: back(progress_limit_y),
        fence: back(fence_y),
        limit: back(limit_y),
        notes,
    }
}

fn high_loss_detail(best: f64, rule: &HighLossRule, dir: Direction, config: &AnalysisConfig) -> String {
    use crate::text::num;
    let mut parts = Vec::new();
    if let (Some(s), Some(b), Some(p)) = (rule.start_level, rule.study_best, rule.progress_limit)
        && oriented(dir, best) > oriented(dir, p)
    {
        let progress = if s != b { (s - best) / (s - b) } else { 0.0 };
        parts.push(format!(
            "best {} made {:.0}% of the progress from the start level {} to the study's best {} (needs {:.0}%)",
            num(best),
            100.0 * progress,
            num(s),
            num(b),
            100.0 * config.min_progress
        ));
    }
    if let Some(f) = rule.fence
        && oriented(dir, best) > oriented(dir, f)
    {
        parts.push(format!("best {} is beyond the far-out fence {}", num(best), num(f)));
    }
    parts.join("; ")
}
