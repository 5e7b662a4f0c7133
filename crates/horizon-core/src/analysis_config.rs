//! Every threshold the analysis uses, with its default. `docs/analysis.md` explains each one
//! with the method's reasoning; the analysis echoes the configuration it ran with.

use serde::{Deserialize, Serialize};

/// Thresholds of the analysis. `Default` gives the documented defaults; every field can be
/// overridden (the struct deserializes with missing fields taking their defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    /// The training-loss metric the curve diagnostics read besides the objective.
    pub train_metric: String,
    /// The parameter that sets each trial's budget when the budget is itself tuned (`epochs`,
    /// `num_steps`). `None`: recognised when one parameter is proportional to
    /// `max_train_steps` in every trial (docs/analysis.md, "When the budget is tuned").
    pub budget_param: Option<String>,

    // --- Feasibility: "uncharacteristically high loss" -------------------------------------
    /// The objective's value at chance level (e.g. 0.999 error for 1000 classes, or ln(C) for
    /// a log loss). When given, it is the start level of the progress rule; otherwise the
    /// start level is the median of the trials' first evaluations.
    pub chance_level: Option<f64>,
    /// A trial whose best value covered less than this fraction of the way from the start
    /// level to the study's best value made no real progress: infeasible (high loss).
    pub min_progress: f64,
    /// The median-first-evaluation start level is used only when the trials' first evaluations
    /// come within this fraction of their budget (otherwise it is not a start level).
    pub start_window: f64,
    /// Tukey's far-out fence: a best value worse than Q3 + k * IQR of all candidates' best
    /// values (mirrored for maximize) is infeasible (high loss). `None` disables the fence.
    pub high_loss_iqr_factor: Option<f64>,
    /// The fence needs at least this many candidate trials to estimate quartiles.
    pub fence_min_trials: usize,

    // --- Budget verdict ---------------------------------------------------------------------
    /// "Within the first 10% of training": best_step / max_train_steps <= this.
    pub early_fraction: f64,
    /// "Always": at least this share of the group is early => too_high.
    pub too_high_share: f64,
    /// "Within the last 25% of training": best_step / max_train_steps >= this.
    pub late_fraction: f64,
    /// "Consistently": at least this share of the group is late => too_low.
    pub too_low_share: f64,
    /// Fewer trials than this in a group: insufficient_evidence.
    pub min_group: usize,
    /// The top group is the best `top_share` of the feasible trials ...
    pub top_share: f64,
    /// ... and at least `top_min` of them when there are that many.
    pub top_min: usize,
    /// too_high suggestion: `too_high_safety` x this quantile of the group's best steps.
    pub too_high_quantile: f64,
    pub too_high_safety: f64,
    /// too_low suggestion: this factor x the group's (median) budget.
    pub too_low_factor: f64,

    // --- Curve diagnostics ------------------------------------------------------------------
    /// The final window: the last this-fraction of the budget.
    pub final_window: f64,
    /// Still improving: the best-so-far value improved by at least this fraction of the
    /// trial's total improvement inside the final window.
    pub improving_min_gain: f64,
    /// Saturated: within this fraction of the total improvement of the best value ...
    pub saturation_tolerance: f64,
    /// ... by this fraction of the budget.
    pub saturation_fraction: f64,
    /// Overfitting: the objective at the end (median of the last 3 evaluations) is worse than
    /// its best by at least this fraction of the total improvement.
    pub overfit_tolerance: f64,
    /// Training loss rising: same rule on the training loss.
    pub train_rise_tolerance: f64,
    /// The late window for step-to-step noise: the last this-fraction of the budget.
    pub late_window: f64,
    /// High late noise: the noise level (standard deviation of step-to-step changes / sqrt 2)
    /// is at least this fraction of the total improvement.
    pub late_noise_threshold: f64,
    /// Classification: compute-bound when at least this share of the diagnosed top trials is
    /// still improving at the end; not compute-bound when at least this share saturated early.
    pub classify_share: f64,

    // --- Search-space boundaries ------------------------------------------------------------
    /// The "best trials" of the boundary reading: the best `boundary_top_fraction` of the
    /// feasible trials, at least `boundary_top_min`.
    pub boundary_top_fraction: f64,
    pub boundary_top_min: usize,
    /// The edge band: within this fraction of the range (in sampling scale) of an edge.
    pub edge_margin: f64,
    /// Enrichment test level: flag when the top trials' count in a band has a binomial tail
    /// probability at most this under the band's base share.
    pub edge_alpha: f64,
    /// Inferred ranges use a log scale when all values are positive and span more than this
    /// many decades.
    pub log_decades: f64,
    /// Infeasible trials "cluster" along a parameter when the median position of the
    /// infeasible trials differs from that of the feasible ones by at least this much.
    pub cluster_min_shift: f64,
    /// ... and there are at least this many infeasible trials.
    pub cluster_min_trials: usize,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            train_metric: "train/loss".into(),
            budget_param: None,
            chance_level: None,
            min_progress: 0.10,
            start_window: 0.25,
            high_loss_iqr_factor: Some(3.0),
            fence_min_trials: 8,
            early_fraction: 0.10,
            too_high_share: 0.90,
            late_fraction: 0.75,
            too_low_share: 0.75,
            min_group: 3,
            top_share: 0.25,
            top_min: 5,
            too_high_quantile: 0.90,
            too_high_safety: 2.0,
            too_low_factor: 2.0,
            final_window: 0.10,
            improving_min_gain: 0.02,
            saturation_tolerance: 0.02,
            saturation_fraction: 0.50,
            overfit_tolerance: 0.05,
            train_rise_tolerance: 0.05,
            late_window: 0.25,
            late_noise_threshold: 0.05,
            classify_share: 0.50,
            boundary_top_fraction: 0.10,
            boundary_top_min: 3,
            edge_margin: 0.10,
            edge_alpha: 0.05,
            log_decades: 1.5,
            cluster_min_shift: 0.25,
            cluster_min_trials: 3,
        }
    }
}

/// A setting of [`AnalysisConfig`] that makes no sense: the field, what is wrong, and the fix.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    pub field: &'static str,
    pub problem: String,
    pub fix: String,
}

impl AnalysisConfig {
    /// Check every setting; the first one that makes no sense, with its fix.
    pub fn check(&self) -> Result<(), ConfigProblem> {
        let bad = |field: &'static str, problem: String, fix: &str| Err(ConfigProblem { field, problem, fix: fix.to_string() });
        let open_unit = [
            ("early_fraction", self.early_fraction),
            ("too_high_share", self.too_high_share),
            ("late_fraction", self.late_fraction),
            ("too_low_share", self.too_low_share),
            ("top_share", self.top_share),
            ("too_high_quantile", self.too_high_quantile),
            ("final_window", self.final_window),
            ("saturation_fraction", self.saturation_fraction),
            ("late_window", self.late_window),
            ("classify_share", self.classify_share),
            ("boundary_top_fraction", self.boundary_top_fraction),
            ("edge_alpha", self.edge_alpha),
            ("start_window", self.start_window),
            ("min_progress", self.min_progress),
        ];
        for (field, x) in open_unit {
            if !(x > 0.0 && x < 1.0) {
                return bad(
                    field,
                    format!("{x} is not a fraction strictly between 0 and 1"),
                    "give a value such as 0.1 (see docs/analysis.md section 5 for the default)",
                );
            }
        }
        if !(self.edge_margin > 0.0 && self.edge_margin < 0.5) {
            return bad(
                "edge_margin",
                format!("{} is not between 0 and 0.5 (the two edge bands would overlap)", self.edge_margin),
                "use e.g. 0.1, the default",
            );
        }
        if self.late_fraction <= self.early_fraction {
            return bad(
                "late_fraction",
                format!(
                    "{} is not above early_fraction ({}): a best step could be both early and late",
                    self.late_fraction, self.early_fraction
                ),
                "use e.g. early_fraction = 0.1 and late_fraction = 0.75, the defaults",
            );
        }
        let non_negative = [
            ("improving_min_gain", self.improving_min_gain),
            ("saturation_tolerance", self.saturation_tolerance),
            ("overfit_tolerance", self.overfit_tolerance),
            ("train_rise_tolerance", self.train_rise_tolerance),
            ("late_noise_threshold", self.late_noise_threshold),
            ("cluster_min_shift", self.cluster_min_shift),
        ];
        for (field, x) in non_negative {
            if !(x.is_finite() && x >= 0.0) {
                return bad(
                    field,
                    format!("{x} is not a finite number >= 0"),
                    "give a small non-negative number (see docs/analysis.md section 5 for the default)",
                );
            }
        }
        for (field, x) in [("too_high_safety", self.too_high_safety), ("log_decades", self.log_decades)] {
            if !(x.is_finite() && x > 0.0) {
                return bad(
                    field,
                    format!("{x} is not a positive number"),
                    "give a positive number (see docs/analysis.md section 5 for the default)",
                );
            }
        }
        if !(self.too_low_factor.is_finite() && self.too_low_factor > 1.0) {
            return bad(
                "too_low_factor",
                format!("{} would not lengthen a budget that is too low", self.too_low_factor),
                "use a factor above 1, e.g. 2.0, the default",
            );
        }
        if let Some(k) = self.high_loss_iqr_factor
            && !(k.is_finite() && k > 0.0)
        {
            return bad(
                "high_loss_iqr_factor",
                format!("{k} is not a positive number"),
                "use e.g. 3.0 (Tukey's far-out fence), or leave it out",
            );
        }
        if let Some(c) = self.chance_level
            && !c.is_finite()
        {
            return bad(
                "chance_level",
                format!("{c} is not a finite number"),
                "give the objective's value at chance, e.g. 0.999 error for 1000 classes",
            );
        }
        for (field, n) in [
            ("min_group", self.min_group),
            ("top_min", self.top_min),
            ("fence_min_trials", self.fence_min_trials),
            ("boundary_top_min", self.boundary_top_min),
            ("cluster_min_trials", self.cluster_min_trials),
        ] {
            if n == 0 {
                return bad(
                    field,
                    "0 trials is no evidence".into(),
                    "use at least 1 (see docs/analysis.md section 5 for the default)",
                );
            }
        }
        if self.train_metric.is_empty() {
            return bad("train_metric", "is empty".into(), "name the training loss metric, e.g. \"train/loss\"");
        }
        if self.budget_param.as_deref() == Some("") {
            return bad(
                "budget_param",
                "is empty".into(),
                "name the parameter that sets the budget, e.g. \"epochs\", or leave it out",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_their_own_check() {
        AnalysisConfig::default().check().unwrap();
    }

    #[test]
    fn settings_that_make_no_sense_name_their_field() {
        let check = |c: AnalysisConfig| c.check().unwrap_err().field;
        assert_eq!(check(AnalysisConfig { early_fraction: 1.5, ..Default::default() }), "early_fraction");
        assert_eq!(check(AnalysisConfig { late_fraction: 0.05, ..Default::default() }), "late_fraction");
        assert_eq!(check(AnalysisConfig { edge_margin: 0.6, ..Default::default() }), "edge_margin");
        assert_eq!(check(AnalysisConfig { too_low_factor: 1.0, ..Default::default() }), "too_low_factor");
        assert_eq!(check(AnalysisConfig { chance_level: Some(f64::NAN), ..Default::default() }), "chance_level");
        assert_eq!(check(AnalysisConfig { min_group: 0, ..Default::default() }), "min_group");
        assert_eq!(check(AnalysisConfig { budget_param: Some(String::new()), ..Default::default() }), "budget_param");
    }
}
