//! Analysis of a study's trials: is `max_train_steps` right, what do the best curves say, and
//! are the best trials at an edge of the search space (docs/method.md sections 1, 2 and 4).
//!
//! Everything here is a pure function of its input: no file is read or written (runs made
//! without horizon are read by `horizon-import`, which gives them to [`analyze`] as a
//! [`StudyData`]).
//!
//! - [`analyze`]: [`StudyData`] in, [`Analysis`] out. The analysis is `Serialize` with a
//!   versioned schema ([`SCHEMA`], documented field by field in `docs/analysis.md`).
//! - [`render_text`]: the terminal summary of an analysis.
//! - [`ladder::ladder_report`]: a ladder's rungs (who reached each, how they ended, what resuming
//!   saved) and whether each rung's ranking held at the longer budgets above it (docs/method.md
//!   section 3), with [`ladder::LadderReport::render`] for the terminal.
//! - [`rounds::round_findings`]: the checks at the end of a round of a study tuned in rounds
//!   (did the carried ranking hold, did the winner change, the round's budget verdict, narrowed
//!   ranges at an edge).
//!
//! Every threshold lives in [`AnalysisConfig`], with defaults argued in `docs/analysis.md`.
//!
//! ```
//! use horizon_analysis::{analyze, render_text, AnalysisConfig, StudyData, TrialData};
//! use horizon_core::{Direction, MetricPoint, Params, TrialRecord, TrialState};
//!
//! let trial = |number: u64, best_at: u64| {
//!     let metrics = (1..=10)
//!         .map(|i| MetricPoint {
//!             step: i * 100,
//!             name: "valid/loss".into(),
//!             value: 1.0 + (i as f64 - best_at as f64).abs() / 10.0,
//!         })
//!         .collect();
//!     let record = TrialRecord {
//!         id: number as i64, number, sample_index: None, params: Params::default(),
//!         max_train_steps: 1000, state: TrialState::Complete, attempt: 1, failures: 0,
//!         best_step: None, best_value: None, final_step: None, final_value: None,
//!         message: None, created_at: 0.0, started_at: None, finished_at: None, lease: None,
//!         rung: 0,
//!     };
//!     TrialData { record, metrics }
//! };
//! let study = StudyData {
//!     objective: "valid/loss".into(),
//!     direction: Direction::Minimize,
//!     space: None,
//!     trials: (0..6).map(|n| trial(n, 10)).collect(),
//! };
//! let analysis = analyze(&study, &AnalysisConfig::default());
//! assert_eq!(analysis.budget.feasible.verdict, horizon_analysis::budget::Verdict::TooLow);
//! assert!(render_text(&analysis).contains("too low"));
//! ```

pub mod boundary;
pub mod budget;
/// The analysis settings live in `horizon-core` (a study file's `[analysis]` table is checked
/// with the rest of the file); re-exported here.
pub mod config {
    pub use horizon_core::analysis_config::*;
}
pub mod curves;
pub mod ladder;
pub mod rounds;
pub mod stats;
pub mod text;
pub mod trials;

use horizon_core::space::SearchSpace;
use horizon_core::{Direction, MetricPoint, TrialRecord};
use serde::Serialize;

pub use boundary::SpaceReport;
pub use budget::{BudgetVerdict, Confidence, Verdict};
pub use config::AnalysisConfig;
pub use curves::CurveReport;
pub use text::render_text;
pub use trials::{HighLossRule, InfeasibleReason, TrialAnalysis};

/// The schema identifier of [`Analysis`]'s JSON. Bumped on any incompatible change.
pub const SCHEMA: &str = "horizon.analysis/1";

/// What the analysis reads: a study's objective, its search space when known, and its trials
/// with their metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyData {
    /// The objective's metric name (e.g. `valid/loss`).
    pub objective: String,
    pub direction: Direction,
    /// The study's search space; `None` for imported runs (ranges are then inferred).
    pub space: Option<SearchSpace>,
    pub trials: Vec<TrialData>,
}

/// One trial and every metric it reported.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialData {
    pub record: TrialRecord,
    pub metrics: Vec<MetricPoint>,
}

/// How many trials are in each state of judgement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counts {
    pub trials: usize,
    /// Complete, diverged or failed.
    pub finished: usize,
    /// Waiting or running: shown, never judged.
    pub unfinished: usize,
    pub feasible: usize,
    pub infeasible: usize,
    pub failed: usize,
    pub diverged: usize,
    pub high_loss: usize,
    pub no_objective: usize,
    /// Ended well short of their budget (the trainer stopped early): kept out of the verdicts.
    pub incomplete: usize,
    /// Whether the trials' budgets differ (each is judged against its own).
    pub mixed_budgets: bool,
}

/// The two budget verdicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetReport {
    /// Over every feasible trial.
    pub feasible: BudgetVerdict,
    /// Over the top trials: the best quarter by objective, at least 5 when there are that many.
    pub top: BudgetVerdict,
    /// When the budget is itself a tuned parameter: the verdict about that parameter, in its
    /// unit. `None` when no parameter sets the budget.
    pub parameter: Option<budget::BudgetParam>,
}

/// The result of [`analyze`]; its JSON is documented in `docs/analysis.md`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// Always [`SCHEMA`].
    pub schema: String,
    pub objective: String,
    pub direction: Direction,
    /// The thresholds this analysis ran with.
    pub config: AnalysisConfig,
    pub counts: Counts,
    pub high_loss: HighLossRule,
    /// Every trial, in input order.
    pub trials: Vec<TrialAnalysis>,
    /// Feasible trial numbers, best first.
    pub ranking: Vec<u64>,
    /// The top group (numbers, best first): the best quarter, at least `top_min`.
    pub top_trials: Vec<u64>,
    pub budget: BudgetReport,
    pub curves: CurveReport,
    pub space: SpaceReport,
    /// Things the reader should know that are not verdicts.
    pub notes: Vec<String>,
}

/// Analyze a study. Pure: the same input gives the same analysis.
pub fn analyze(input: &StudyData, config: &AnalysisConfig) -> Analysis {
    let (trials, high_loss) = trials::judge(input, config);
    let mut ranked: Vec<usize> = (0..trials.len()).filter(|&i| trials[i].rank.is_some()).collect();
    ranked.sort_by_key(|&i| trials[i].rank);
    let top_n = budget::top_size(ranked.len(), config);
    let top = &ranked[..top_n];

    let feasible_refs: Vec<&TrialAnalysis> = ranked.iter().map(|&i| &trials[i]).collect();
    let excluded = budget::excluded(&trials);
    let mut budget = BudgetReport {
        feasible: budget::verdict("feasible", &feasible_refs, config),
        top: budget::verdict("top", &feasible_refs[..top_n], config),
        parameter: None,
    };
    budget.feasible.excluded = excluded.clone();
    budget.top.excluded = excluded;
    let curves = curves::report(input, &trials, top, &budget.top, config);
    let space = boundary::report(input, &trials, &ranked, config);
    budget.parameter = budget::budget_param(&trials, &feasible_refs[..top_n], &budget.top, &space, config);

    let count = |r: InfeasibleReason| trials.iter().filter(|t| t.infeasible == Some(r)).count();
    let finished = trials.iter().filter(|t| t.finished).count();
    let mixed_budgets = trials.windows(2).any(|w| w[0].max_train_steps != w[1].max_train_steps);
    let counts = Counts {
        trials: trials.len(),
        finished,
        unfinished: trials.len() - finished,
        feasible: ranked.len(),
        infeasible: finished - ranked.len(),
        failed: count(InfeasibleReason::Failed),
        diverged: count(InfeasibleReason::Diverged),
        high_loss: count(InfeasibleReason::HighLoss),
        no_objective: count(InfeasibleReason::NoObjective),
        incomplete: count(InfeasibleReason::Incomplete),
        mixed_budgets,
    };

    let mut notes = Vec::new();
    if counts.unfinished > 0 {
        notes.push(format!(
            "{} {} waiting or running: shown, not judged",
            crate::text::plural(counts.unfinished, "trial"),
            if counts.unfinished == 1 { "is" } else { "are" }
        ));
    }
    if mixed_budgets {
        notes.push(match &budget.parameter {
            Some(p) => format!(
                "trials have different budgets, set by {} ({}): each is judged against its own max_train_steps, and the verdict about {} is under Budget",
                p.name, p.relation, p.name
            ),
            None => "trials have different budgets: each is judged against its own max_train_steps".into(),
        });
    }
    if finished > 0 && ranked.is_empty() {
        notes.push(format!("no feasible trial among {finished} finished: the search space needs adjusting, or there is a bug"));
    }
    if input.space.is_none() && !space.parameters.is_empty() {
        notes.push("no search space given: parameter ranges are inferred from the observed values".into());
    }

    Analysis {
        schema: SCHEMA.to_string(),
        objective: input.objective.clone(),
        direction: input.direction,
        config: config.clone(),
        counts,
        high_loss,
        ranking: ranked.iter().map(|&i| trials[i].number).collect(),
        top_trials: top.iter().map(|&i| trials[i].number).collect(),
        trials,
        budget,
        curves,
        space,
        notes,
    }
}
