//! Curve diagnostics of the top trials (docs/method.md sections 1 and 4): still improving at the end,
//! saturated long before the end, validation objective rising after its best, training loss
//! rising, high step-to-step noise late in training; then compute-bound or not.

use horizon_core::Direction;
use serde::Serialize;

use crate::budget::{BudgetVerdict, Verdict};
use crate::config::AnalysisConfig;
use crate::stats;
use crate::text::{num, pct};
use crate::trials::{TrialAnalysis, oriented, series};
use crate::{StudyData, TrialData};

/// One diagnostic sign on one trial: whether it shows, the measure behind it, and the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sign {
    pub flagged: bool,
    /// `None` when it cannot be computed (too few evaluations, metric missing).
    pub measure: Option<f64>,
    pub threshold: f64,
    pub evidence: String,
}

impl Sign {
    fn not_computed(threshold: f64, why: impl Into<String>) -> Sign {
        Sign { flagged: false, measure: None, threshold, evidence: why.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveDiagnostics {
    pub number: u64,
    pub rank: Option<usize>,
    pub max_train_steps: u64,
    pub evaluations: usize,
    pub train_evaluations: usize,
    /// Total improvement of the objective over training (first evaluation to best), in its units.
    pub total_improvement: Option<f64>,
    /// Share of the total improvement gained in the final window; flagged at >= `improving_min_gain`.
    pub still_improving: Sign,
    /// Fraction of the budget at which the curve came within tolerance of its best; flagged at
    /// <= `saturation_fraction`.
    pub saturated_early: Sign,
    /// Rise of the objective after its best, as a share of the total improvement.
    pub overfitting: Sign,
    /// Rise of the training loss after its minimum, as a share of its total decrease.
    pub train_loss_rising: Sign,
    /// Late step-to-step noise, as a share of the total improvement.
    pub late_noise: Sign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeKind {
    ComputeBound,
    NotComputeBound,
    Unclear,
    InsufficientEvidence,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    pub kind: ComputeKind,
    /// The one-line classification with its evidence.
    pub line: String,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SignCounts {
    /// Top trials whose objective curve could be diagnosed.
    pub diagnosed: usize,
    pub still_improving: usize,
    pub saturated_early: usize,
    pub overfitting: usize,
    pub train_loss_rising: usize,
    pub late_noise: usize,
    /// Top trials without a training-loss curve.
    pub train_metric_missing: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveReport {
    pub metric: String,
    pub train_metric: String,
    pub trials: Vec<CurveDiagnostics>,
    pub counts: SignCounts,
    pub classification: Classification,
}

pub(crate) fn report(
    input: &StudyData,
    trials: &[TrialAnalysis],
    top: &[usize],
    top_verdict: &BudgetVerdict,
    config: &AnalysisConfig,
) -> CurveReport {
    let diagnostics: Vec<CurveDiagnostics> =
        top.iter().map(|&i| diagnose(&input.trials[i], &trials[i], input.direction, &input.objective, config)).collect();
    let mut counts = SignCounts::default();
    for d in &diagnostics {
        counts.diagnosed += usize::from(d.still_improving.measure.is_some());
        counts.still_improving += usize::from(d.still_improving.flagged);
        counts.saturated_early += usize::from(d.saturated_early.flagged);
        counts.overfitting += usize::from(d.overfitting.flagged);
        counts.train_loss_rising += usize::from(d.train_loss_rising.flagged);
        counts.late_noise += usize::from(d.late_noise.flagged);
        counts.train_metric_missing += usize::from(d.train_evaluations == 0);
    }
    let classification = classify(&diagnostics, &counts, top_verdict, config);
    CurveReport {
        metric: input.objective.clone(),
        train_metric: config.train_metric.clone(),
        trials: diagnostics,
        counts,
        classification,
    }
}

/// A curve oriented so that lower is better.
struct Curve {
    steps: Vec<u64>,
    y: Vec<f64>,
}

impl Curve {
    fn new(points: Vec<(u64, f64)>, orient: impl Fn(f64) -> f64) -> Curve {
        Curve { steps: points.iter().map(|p| p.0).collect(), y: points.iter().map(|p| orient(p.1)).collect() }
    }

    fn len(&self) -> usize {
        self.y.len()
    }

    fn best_index(&self) -> usize {
        let mut b = 0;
        for i in 1..self.len() {
            if self.y[i] < self.y[b] {
                b = i;
            }
        }
        b
    }

    fn running_best(&self) -> Vec<f64> {
        let mut m = f64::INFINITY;
        self.y
            .iter()
            .map(|&v| {
                m = m.min(v);
                m
            })
            .collect()
    }

    /// Total improvement (first to best) and the scale rises and noise are measured against:
    /// the improvement, or |first value| for a curve that never improved.
    fn scale(&self) -> (f64, f64, bool) {
        let improvement = self.y[0] - self.y[self.best_index()];
        if improvement > 0.0 { (improvement, improvement, true) } else { (0.0, self.y[0].abs().max(1e-12), false) }
    }

    /// The level at the end: the median of the last (up to) 3 evaluations.
    fn end_level(&self) -> f64 {
        let k = self.len().min(3);
        stats::median(&self.y[self.len() - k..]).unwrap()
    }

    /// Noise level late in training: std of step-to-step changes over the late window / sqrt 2.
    fn late_noise(&self, budget: f64, window: f64) -> Option<(f64, usize)> {
        let end = *self.steps.last()? as f64;
        let from = end - window * budget;
        let idx: Vec<usize> = (0..self.len()).filter(|&i| self.steps[i] as f64 >= from).collect();
        if idx.len() < 4 {
            return None;
        }
        let diffs: Vec<f64> = idx.windows(2).map(|w| self.y[w[1]] - self.y[w[0]]).collect();
        Some((stats::std_dev(&diffs)? / std::f64::consts::SQRT_2, idx.len()))
    }
}

fn diagnose(data: &TrialData, t: &TrialAnalysis, dir: Direction, objective: &str, config: &AnalysisConfig) -> CurveDiagnostics {
    let budget = t.max_train_steps.max(1) as f64;
    let obj = Curve::new(series(&data.metrics, objective), |v| oriented(dir, v));
    let train = Curve::new(series(&data.metrics, &config.train_metric), |v| v);
    let few = |c: &Curve, name: &str| format!("{} evaluations of {name} (needs 3)", c.len());

    let mut d = CurveDiagnostics {
        number: t.number,
        rank: t.rank,
        max_train_steps: t.max_train_steps,
        evaluations: obj.len(),
        train_evaluations: train.len(),
        total_improvement: None,
        still_improving: Sign::not_computed(config.improving_min_gain, few(&obj, objective)),
        saturated_early: Sign::not_computed(config.saturation_fraction, few(&obj, objective)),
        overfitting: Sign::not_computed(config.overfit_tolerance, few(&obj, objective)),
        train_loss_rising: Sign::not_computed(config.train_rise_tolerance, few(&train, &config.train_metric)),
        late_noise: Sign::not_computed(config.late_noise_threshold, few(&obj, objective)),
    };
    if train.len() >= 3 {
        d.train_loss_rising = rising(&train, config.train_rise_tolerance, None, &config.train_metric, "minimum", "decrease");
    } else if train.len() == 0 {
        d.train_loss_rising.evidence = format!("no {} curve", config.train_metric);
    }
    if obj.len() < 3 {
        return d;
    }

    let (improvement, scale, improved) = obj.scale();
    d.total_improvement = Some(improvement);
    let noise = obj.late_noise(budget, config.late_window);

    // Late noise.
    d.late_noise = match noise {
        None => Sign::not_computed(
            config.late_noise_threshold,
            format!("fewer than 4 evaluations in the last {} of the budget", pct(config.late_window)),
        ),
        Some((sd, k)) => {
            let m = sd / scale;
            Sign {
                flagged: m >= config.late_noise_threshold,
                measure: Some(m),
                threshold: config.late_noise_threshold,
                evidence: format!(
                    "step-to-step noise {} over the last {} evaluations = {} of the total {}",
                    num(sd),
                    k,
                    pct(m),
                    if improved { "improvement" } else { "|first value| (no improvement)" }
                ),
            }
        }
    };
    let noise_sd = noise.map(|n| n.0);

    // Still improving at the end.
    let best = obj.running_best();
    let n = obj.len();
    let end = obj.steps[n - 1] as f64;
    let window_start = end - config.final_window * budget;
    let before = (0..n).rev().find(|&i| obj.steps[i] as f64 <= window_start).map(|i| i.min(n - 2));
    d.still_improving = match before {
        None => Sign::not_computed(config.improving_min_gain, "no evaluation before the final window"),
        Some(b) => {
            let gain = best[b] - best[n - 1];
            let m = if improved { gain / improvement } else { 0.0 };
            let above_noise = noise_sd.is_none_or(|sd| gain > sd);
            Sign {
                flagged: improved && m >= config.improving_min_gain && above_noise,
                measure: Some(m),
                threshold: config.improving_min_gain,
                evidence: if improved {
                    format!(
                        "best-so-far improved by {} between step {} and the last evaluation at step {} \
                         ({} of the total improvement {}){}",
                        num(gain),
                        obj.steps[b],
                        obj.steps[n - 1],
                        pct(m),
                        num(improvement),
                        if above_noise { String::new() } else { " but not above the late noise".into() }
                    )
                } else {
                    "no improvement over training".into()
                },
            }
        }
    };

    // Saturated long before the end.
    let target = best[n - 1] + config.saturation_tolerance * improvement;
    let sat = (0..n).find(|&i| best[i] <= target).unwrap_or(n - 1);
    let sat_frac = obj.steps[sat] as f64 / budget;
    let reaches_end = end >= (1.0 - config.final_window) * budget;
    d.saturated_early = if !reaches_end {
        Sign::not_computed(config.saturation_fraction, format!("the curve ends at {} of the budget", pct(end / budget)))
    } else {
        Sign {
            flagged: sat_frac <= config.saturation_fraction,
            measure: Some(sat_frac),
            threshold: config.saturation_fraction,
            evidence: if improved {
                format!(
                    "within {} of its total improvement of the best by step {} ({} of the budget); {} gained after",
                    pct(config.saturation_tolerance),
                    obj.steps[sat],
                    pct(sat_frac),
                    num(best[sat] - best[n - 1])
                )
            } else {
                format!("no improvement after the first evaluation at step {} ({} of the budget)", obj.steps[0], pct(sat_frac))
            },
        }
    };

    // Objective rising after its best.
    d.overfitting = rising(&obj, config.overfit_tolerance, noise_sd, objective, "best", "improvement");
    d
}

/// The "rising after its best" rule, shared by overfitting (objective) and training loss.
fn rising(c: &Curve, tolerance: f64, noise_sd: Option<f64>, name: &str, best_word: &str, scale_word: &str) -> Sign {
    let (_, scale, improved) = c.scale();
    let b = c.best_index();
    let rise = c.end_level() - c.y[b];
    let m = rise / scale;
    let above_noise = noise_sd.is_none_or(|sd| rise > sd);
    let flagged = b < c.len() - 1 && m >= tolerance && above_noise;
    Sign {
        flagged,
        measure: Some(m),
        threshold: tolerance,
        evidence: format!(
            "{name}: {best_word} at step {}, end level (median of the last 3 evaluations) worse by {} = {} of its total {}{}",
            c.steps[b],
            num(rise),
            pct(m),
            if improved { scale_word.to_string() } else { "|first value| (it never improved)".into() },
            if above_noise { "" } else { " (within the late noise)" }
        ),
    }
}

fn classify(d: &[CurveDiagnostics], counts: &SignCounts, top_verdict: &BudgetVerdict, config: &AnalysisConfig) -> Classification {
    let n = counts.diagnosed;
    let mut evidence = Vec::new();
    if n == 0 {
        return Classification {
            kind: ComputeKind::InsufficientEvidence,
            line: "insufficient evidence: no top trial has a diagnosable curve (needs 3 evaluations)".into(),
            evidence,
        };
    }
    let gains: Vec<f64> = d.iter().filter_map(|x| x.still_improving.measure).collect();
    let sats: Vec<f64> = d.iter().filter_map(|x| x.saturated_early.measure).collect();
    let improving = format!(
        "{} of {n} top trials still improving at the end (median gain in the last {} of the budget: {} of their total improvement)",
        counts.still_improving,
        pct(config.final_window),
        pct(stats::median(&gains).unwrap_or(0.0))
    );
    let saturated = format!(
        "{} of {n} saturated by {} of the budget (median saturation point: {} of the budget)",
        counts.saturated_early,
        pct(config.saturation_fraction),
        stats::median(&sats).map_or("n/a".into(), pct)
    );
    evidence.push(improving.clone());
    evidence.push(saturated.clone());
    let budget = match (top_verdict.verdict, top_verdict.late_share, top_verdict.early_share) {
        (Verdict::InsufficientEvidence, ..) => None,
        (v, Some(late), Some(early)) => Some(format!(
            "top-group budget verdict {}: best step in the last {} for {}, in the first {} for {}",
            v.label(),
            pct(1.0 - config.late_fraction),
            pct(late),
            pct(config.early_fraction),
            pct(early)
        )),
        _ => None,
    };
    if let Some(b) = &budget {
        evidence.push(b.clone());
    }
    let share = |c: usize| c as f64 / n as f64;
    let (kind, head, main) = if share(counts.still_improving) >= config.classify_share {
        (ComputeKind::ComputeBound, "compute-bound (train longer or change the schedule)", improving)
    } else if share(counts.saturated_early) >= config.classify_share {
        (ComputeKind::NotComputeBound, "not compute-bound (the budget can shrink)", saturated)
    } else {
        (ComputeKind::Unclear, "unclear (mixed signs)", format!("{improving}; {saturated}"))
    };
    let line = match budget {
        Some(b) => format!("{head}: {main}; {b}"),
        None => format!("{head}: {main}"),
    };
    Classification { kind, line, evidence }
}
