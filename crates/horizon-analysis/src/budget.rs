//! The budget verdict (docs/method.md section 2): where the retrospectively selected best steps fall
//! relative to each trial's own `max_train_steps`.

use serde::Serialize;

use crate::config::AnalysisConfig;
use crate::stats::{self, Summary};
use crate::text::{num, pct};
use crate::trials::TrialAnalysis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Best steps essentially always in the first 10% of training: max_train_steps is far too high.
    TooHigh,
    /// Best steps consistently in the last 25%: train longer and re-tune the decay schedule.
    TooLow,
    Adequate,
    InsufficientEvidence,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::TooHigh => "too high",
            Verdict::TooLow => "too low",
            Verdict::Adequate => "adequate",
            Verdict::InsufficientEvidence => "insufficient evidence",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn label(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// The verdict over one group of trials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetVerdict {
    /// "feasible" or "top".
    pub group: String,
    /// Trial numbers in the group, best first.
    pub trial_numbers: Vec<u64>,
    pub trials: usize,
    pub verdict: Verdict,
    /// Trials whose best step is within the first `early_fraction` of their budget.
    pub early: usize,
    pub early_share: Option<f64>,
    /// Trials whose best step is within the last `1 - late_fraction` of their budget.
    pub late: usize,
    pub late_share: Option<f64>,
    pub best_fraction: Option<Summary>,
    pub best_step: Option<Summary>,
    pub max_train_steps: Option<Summary>,
    /// The group's budget the suggestion starts from: the median of its trials' budgets.
    pub reference_max_train_steps: Option<u64>,
    pub rule: String,
    pub suggested_max_train_steps: Option<u64>,
    pub suggestion_rule: String,
    pub confidence: Confidence,
    pub confidence_reason: String,
    pub evidence: Vec<String>,
    /// Finished trials kept out of the group, by reason, with their numbers.
    pub excluded: Vec<Excluded>,
}

/// Finished trials kept out of a budget verdict for one reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Excluded {
    /// An `InfeasibleReason` name: `incomplete`, `diverged`, `failed`, `high_loss`, `no_objective`.
    pub reason: String,
    pub trials: usize,
    /// Up to 10 trial numbers.
    pub examples: Vec<u64>,
    pub why: String,
}

/// The finished trials that no budget verdict counts, grouped by reason.
pub(crate) fn excluded(trials: &[TrialAnalysis]) -> Vec<Excluded> {
    use crate::trials::InfeasibleReason as R;
    R::ALL
        .iter()
        .filter_map(|&r| {
            let numbers: Vec<u64> = trials.iter().filter(|t| t.infeasible == Some(r)).map(|t| t.number).collect();
            (!numbers.is_empty()).then(|| Excluded {
                reason: r.as_str().to_string(),
                trials: numbers.len(),
                examples: numbers.iter().copied().take(10).collect(),
                why: match r {
                    R::Incomplete => {
                        "ended well short of their budget (the trainer stopped early), so their best step says nothing about it"
                    }
                    R::Diverged => "the loss became NaN or infinite",
                    R::Failed => "the program failed",
                    R::HighLoss => "best value far from the study's typical values (high loss)",
                    R::NoObjective => "no finite evaluation of the objective",
                }
                .to_string(),
            })
        })
        .collect()
}

/// Size of the top group: the best `top_share` of `n`, at least `top_min` when there are that many.
pub(crate) fn top_size(n: usize, config: &AnalysisConfig) -> usize {
    ((config.top_share * n as f64).ceil() as usize).max(config.top_min.min(n)).min(n)
}

pub(crate) fn verdict(group: &str, members: &[&TrialAnalysis], config: &AnalysisConfig) -> BudgetVerdict {
    let n = members.len();
    let fractions: Vec<f64> = members.iter().filter_map(|t| t.best_fraction).collect();
    let steps: Vec<f64> = members.iter().filter_map(|t| t.best_step).map(|s| s as f64).collect();
    let budgets: Vec<f64> = members.iter().map(|t| t.max_train_steps as f64).collect();
    let early = fractions.iter().filter(|&&f| f <= config.early_fraction).count();
    let late = fractions.iter().filter(|&&f| f >= config.late_fraction).count();
    let share = |c: usize| (n > 0).then(|| c as f64 / n as f64);
    let (early_share, late_share) = (share(early), share(late));
    let reference = stats::median(&budgets).map(|b| b.round() as u64);
    let mixed = budgets.iter().any(|&b| b != budgets[0]);

    let rule = format!(
        "too_high when >= {} of the group has best_step <= {} x max_train_steps (\"always in the first {}\"); \
         too_low when >= {} has best_step >= {} x max_train_steps (\"consistently in the last {}\"); \
         otherwise adequate; insufficient_evidence below {} trials. Each trial is judged against its own budget.",
        pct(config.too_high_share),
        config.early_fraction,
        pct(config.early_fraction),
        pct(config.too_low_share),
        config.late_fraction,
        pct(1.0 - config.late_fraction),
        config.min_group
    );

    let verdict = if n < config.min_group {
        Verdict::InsufficientEvidence
    } else if early_share.unwrap() >= config.too_high_share {
        Verdict::TooHigh
    } else if late_share.unwrap() >= config.too_low_share {
        Verdict::TooLow
    } else {
        Verdict::Adequate
    };

    let budget_word = if mixed { "median budget" } else { "budget" };
    let (suggested, suggestion_rule) = match (verdict, reference) {
        (Verdict::TooHigh, Some(r)) => {
            let q = stats::nearest_rank(&steps, config.too_high_quantile).unwrap_or(0.0);
            let s = stats::round_up_2sig(config.too_high_safety * q).min(r).max(1);
            (
                Some(s),
                format!(
                    "{} x the {} percentile of the group's best steps ({}), rounded up to 2 significant digits, \
                     at most the current {budget_word} {r}",
                    config.too_high_safety,
                    ordinal(config.too_high_quantile),
                    q as u64
                ),
            )
        }
        (Verdict::TooLow, Some(r)) => (
            Some(stats::round_up_2sig(config.too_low_factor * r as f64)),
            format!(
                "{} x the group's {budget_word} ({r}), rounded up to 2 significant digits; re-tune the learning-rate \
                 decay schedule for the new budget",
                config.too_low_factor
            ),
        ),
        (Verdict::Adequate, Some(r)) => (Some(r), format!("keep the group's {budget_word} ({r})")),
        _ => (None, "no suggestion without enough trials".to_string()),
    };

    // Confidence: the smaller of what the group size and the spread of best fractions allow.
    let fs = Summary::of(&fractions);
    let size_level = match n {
        n if n < 5 => Confidence::Low,
        n if n < 10 => Confidence::Medium,
        _ => Confidence::High,
    };
    let size_text = format!("{} ({} for this size)", crate::text::plural(n, "trial"), size_level.label());
    let (confidence, confidence_reason) = match verdict {
        Verdict::InsufficientEvidence => {
            (Confidence::Low, format!("only {} (needs {})", crate::text::plural(n, "trial"), config.min_group))
        }
        Verdict::TooHigh | Verdict::TooLow => {
            let iqr = fs.map_or(1.0, |s| s.iqr());
            let spread_level = if iqr <= 0.10 {
                Confidence::High
            } else if iqr <= 0.25 {
                Confidence::Medium
            } else {
                Confidence::Low
            };
            (
                size_level.min(spread_level),
                format!(
                    "{size_text}; interquartile range of best fractions {:.2} ({} for <= 0.10, medium for <= 0.25)",
                    iqr,
                    spread_level.label()
                ),
            )
        }
        Verdict::Adequate => {
            let near_high = early_share.unwrap() >= config.too_high_share - 0.15;
            let near_low = late_share.unwrap() >= config.too_low_share - 0.15;
            if near_high || near_low {
                (
                    Confidence::Low,
                    format!(
                        "{size_text}; but within 15 points of the {} threshold",
                        if near_high { "too_high" } else { "too_low" }
                    ),
                )
            } else {
                (size_level, size_text)
            }
        }
    };

    let mut evidence = Vec::new();
    if n > 0 {
        evidence.push(format!(
            "{early} of {} ({}) with the best step in the first {} of the budget",
            crate::text::plural(n, "trial"),
            pct(early_share.unwrap()),
            pct(config.early_fraction)
        ));
        evidence.push(format!(
            "{late} of {} ({}) with the best step in the last {} of the budget",
            crate::text::plural(n, "trial"),
            pct(late_share.unwrap()),
            pct(1.0 - config.late_fraction)
        ));
    }
    if let Some(s) = fs {
        evidence.push(format!(
            "best_step / max_train_steps: median {:.2}, quartiles {:.2}..{:.2}, range {:.2}..{:.2}",
            s.median, s.q1, s.q3, s.min, s.max
        ));
    }
    if let Some(s) = Summary::of(&budgets)
        && mixed
    {
        evidence.push(format!(
            "budgets differ (max_train_steps {}..{}, median {}): each trial is judged against its own",
            num(s.min),
            num(s.max),
            num(s.median)
        ));
    }
    // Resolution: with coarse evaluations the first 10% may contain no evaluation at all.
    let mut confidence = confidence;
    let mut confidence_reason = confidence_reason;
    let first_fracs: Vec<f64> =
        members.iter().filter_map(|t| t.first_step.map(|s| s as f64 / t.max_train_steps.max(1) as f64)).collect();
    if let Some(f) = stats::median(&first_fracs)
        && f > config.early_fraction
    {
        evidence.push(format!(
            "caution: the first evaluation comes at {} of the budget (median), so a best step in the first {} \
                 cannot be seen: evaluate more often",
            pct(f),
            pct(config.early_fraction)
        ));
        if verdict == Verdict::Adequate {
            confidence = Confidence::Low;
            confidence_reason.push_str("; evaluations too coarse to see a too-high budget");
        }
    }

    BudgetVerdict {
        group: group.to_string(),
        trial_numbers: members.iter().map(|t| t.number).collect(),
        trials: n,
        verdict,
        early,
        early_share,
        late,
        late_share,
        best_fraction: fs,
        best_step: Summary::of(&steps),
        max_train_steps: Summary::of(&budgets),
        reference_max_train_steps: reference,
        rule,
        suggested_max_train_steps: suggested,
        suggestion_rule,
        confidence,
        confidence_reason,
        evidence,
        excluded: Vec::new(),
    }
}

fn ordinal(q: f64) -> String {
    let p = (q * 100.0).round() as u64;
    let suffix = match (p % 10, p % 100) {
        (1, x) if x != 11 => "st",
        (2, x) if x != 12 => "nd",
        (3, x) if x != 13 => "rd",
        _ => "th",
    };
    format!("{p}{suffix}")
}

/// The verdict about a parameter that sets the budget, when the budget is itself tuned
/// (`epochs` in many real studies): the method's question "is the budget right?" asked of that
/// parameter, with its range edge, and answered in its unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetParam {
    pub name: String,
    /// How it was recognised: "equals max_train_steps in every trial", "max_train_steps = 390 x
    /// epochs in every trial", or "declared (analysis.budget_param)".
    pub relation: String,
    /// The range it was read on (the study's space, or the observed values).
    pub low: f64,
    pub high: f64,
    /// Its values over the top trials.
    pub top_values: Option<Summary>,
    /// The boundary reading flags its upper edge: the best trials use the most that was tried.
    pub at_upper_edge: bool,
    /// The top group's per-trial verdict (best checkpoints late means too low).
    pub checkpoints: Verdict,
    pub verdict: Verdict,
    /// In the parameter's unit.
    pub suggested: Option<f64>,
    /// The one-line verdict, with the fix.
    pub line: String,
    pub evidence: Vec<String>,
}

/// Recognise the parameter that sets the budget and judge it. A declared `budget_param` is
/// used as is; otherwise a numeric parameter, varied, that is proportional to
/// `max_train_steps` (the same ratio within 1%) in every finished trial that has it.
pub(crate) fn budget_param(
    trials: &[TrialAnalysis],
    top: &[&TrialAnalysis],
    top_verdict: &BudgetVerdict,
    space: &crate::boundary::SpaceReport,
    config: &AnalysisConfig,
) -> Option<BudgetParam> {
    let finished: Vec<&TrialAnalysis> = trials.iter().filter(|t| t.finished).collect();
    let value = |t: &TrialAnalysis, name: &str| t.params.get(name).and_then(|v| v.as_f64());
    let (name, relation) = match &config.budget_param {
        Some(name) => (name.clone(), "declared (analysis.budget_param)".to_string()),
        None => {
            let mut names: Vec<&str> = Vec::new();
            for t in &finished {
                for (n, _) in t.params.iter() {
                    if !names.contains(&n) {
                        names.push(n);
                    }
                }
            }
            names.into_iter().find_map(|name| {
                let pairs: Vec<(f64, f64)> =
                    finished.iter().filter_map(|t| value(t, name).map(|v| (v, t.max_train_steps as f64))).collect();
                if pairs.len() < 3 || pairs.len() < finished.len() || pairs.iter().any(|(v, _)| *v <= 0.0) {
                    return None;
                }
                let varied = pairs.iter().any(|(v, _)| *v != pairs[0].0);
                let ratio = pairs[0].1 / pairs[0].0;
                let proportional = pairs.iter().all(|(v, b)| ((b / v) - ratio).abs() <= 0.01 * ratio);
                (varied && proportional).then(|| {
                    let relation = if (ratio - 1.0).abs() <= 0.01 {
                        "equals max_train_steps in every trial".to_string()
                    } else {
                        format!("max_train_steps = {} x {name} in every trial", num(ratio))
                    };
                    (name.to_string(), relation)
                })
            })?
        }
    };
    let tops: Vec<f64> = top.iter().filter_map(|t| value(t, &name)).collect();
    let all: Vec<f64> = finished.iter().filter_map(|t| value(t, &name)).collect();
    let boundary = space.parameters.iter().find(|p| p.name == name);
    let (low, high) = match boundary {
        Some(b) => (b.low, b.high),
        None => all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x))),
    };
    if !low.is_finite() {
        return None;
    }
    let at_upper_edge = boundary.is_some_and(|b| b.high_edge.flagged);
    let integral = all.iter().all(|v| v.fract() == 0.0);
    let round = |x: f64| if integral { stats::round_up_2sig(x) as f64 } else { round_2sig(x) };
    let median_top = stats::median(&tops);
    let checkpoints = top_verdict.verdict;
    let late_text = format!(
        "{} of the top {} select a checkpoint in the last {} of their run",
        top_verdict.late,
        top_verdict.trials,
        pct(1.0 - config.late_fraction)
    );
    let mut evidence = vec![format!("{name} {relation}; read on {}..{}", num(low), num(high))];
    if let Some(m) = median_top {
        evidence.push(format!("the top trials' {name}: median {}", num(m)));
    }
    if let Some(b) = boundary {
        evidence.push(format!(
            "the upper edge of {name}: {} of the top {} in the highest {} of the range (p = {:.3}){}",
            b.high_edge.top_in_band,
            b.high_edge.top_count,
            pct(config.edge_margin),
            b.high_edge.p_value,
            if at_upper_edge { ", flagged" } else { "" }
        ));
    }
    evidence.push(late_text.clone());
    let (verdict, suggested, line) = if at_upper_edge || checkpoints == Verdict::TooLow {
        let base = if at_upper_edge { high } else { median_top.unwrap_or(high) };
        let x = round(config.too_low_factor * base);
        let line = match (at_upper_edge, checkpoints == Verdict::TooLow) {
            (true, true) => format!(
                "train longer: widen {name} upward to {} (the best trials sit at the upper edge of {name}, and {late_text})",
                num(x)
            ),
            (true, false) => format!(
                "train longer: widen {name} upward to {} (the best trials sit at the upper edge of {name}, although the per-trial verdict is {})",
                num(x),
                checkpoints.label()
            ),
            _ => {
                format!("train longer: raise {name} to about {} ({late_text}; {name}'s best values are inside its range)", num(x))
            }
        };
        (Verdict::TooLow, Some(x), line)
    } else {
        match (checkpoints, median_top) {
            (Verdict::TooHigh, Some(m)) => {
                let scale = match (top_verdict.suggested_max_train_steps, top_verdict.reference_max_train_steps) {
                    (Some(s), Some(r)) if r > 0 => s as f64 / r as f64,
                    _ => 0.5,
                };
                let x = round(m * scale);
                (
                    Verdict::TooHigh,
                    Some(x),
                    format!("shorter runs suffice: {name} about {} (the top trials' best checkpoints come early)", num(x)),
                )
            }
            (Verdict::Adequate, Some(m)) => (
                Verdict::Adequate,
                Some(m),
                format!("keep {name} around {} (the top trials' median; not at the upper edge, checkpoints not late)", num(m)),
            ),
            _ => (Verdict::InsufficientEvidence, None, format!("no verdict about {name}: too few top trials")),
        }
    };
    Some(BudgetParam {
        name,
        relation,
        low,
        high,
        top_values: Summary::of(&tops),
        at_upper_edge,
        checkpoints,
        verdict,
        suggested,
        line,
        evidence,
    })
}

/// Round up to 2 significant digits, for values that need not be whole.
fn round_2sig(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let unit = 10f64.powi(x.abs().log10().floor() as i32 - 1);
    (x / unit - 1e-9).ceil() * unit
}
