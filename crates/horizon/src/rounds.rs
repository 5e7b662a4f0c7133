//! The end-of-round checks of a study tuned in rounds, read from storage: what `horizon run`
//! prints when a round ends and `horizon analyze` reports per round. The checks themselves are
//! `horizon_analysis::rounds::round_findings`; the round's space is the rounds policy's
//! (`horizon_core::claim::RoundsPolicy::space_for`), so what is checked is what was sampled.

use anyhow::Result;
use horizon_analysis::rounds::{RoundData, RoundFindings, round_findings};
use horizon_analysis::{AnalysisConfig, TrialData};
use horizon_core::claim::RoundsPolicy;
use horizon_core::rounds::Transfer;
use horizon_core::trial::RungEntry;
use horizon_core::{Direction, TrialRecord};
use horizon_store::{Storage, StudyRecord};

/// The checks of every round the study has reached, in order (a round still running is
/// checked on what it has so far, and says how many of its runs finished).
pub fn findings(
    storage: &dyn Storage,
    record: &StudyRecord,
    policy: &RoundsPolicy,
    objective: &str,
    direction: Direction,
    config: &AnalysisConfig,
) -> Result<Vec<RoundFindings>> {
    let view = horizon_runner::stages::stored_view(storage, record.id)?;
    let budgets: Vec<u64> = policy.rounds.iter().map(|r| r.max_train_steps).collect();
    let ladder = horizon_analysis::ladder::ladder_report(&view.rungs, &budgets, direction);
    let reached = view.rungs.iter().map(|g| g.rung as usize + 1).max().unwrap_or(0).min(policy.rounds.len());
    let mut out: Vec<RoundFindings> = Vec::new();
    for r in 0..reached {
        let space = policy.space_for(&view, r);
        let narrowed = space
            .params
            .iter()
            .filter(|p| r > 0 && policy.transfer(r, &p.name) == Transfer::Narrow)
            .filter(|p| policy.space.params.iter().any(|o| o.name == p.name && o.kind != p.kind))
            .map(|p| p.name.clone())
            .collect();
        let mut runs = Vec::new();
        let mut carried = Vec::new();
        for g in view.rungs.iter().filter(|g| g.rung as usize == r) {
            let Some(t) = view.trials.iter().find(|t| t.id == g.trial) else { continue };
            if g.entry != RungEntry::Started {
                carried.push(t.number);
            }
            let record = TrialRecord {
                params: g.params.clone(),
                max_train_steps: g.budget,
                state: g.state,
                best_step: g.best_step,
                best_value: g.best_value,
                final_step: g.final_step,
                final_value: g.final_value,
                message: g.message.clone(),
                rung: g.rung,
                ..t.clone()
            };
            runs.push(TrialData { metrics: storage.rung_metrics(t.id, g.rung)?, record });
        }
        let data = RoundData {
            round: r,
            budget: policy.rounds[r].max_train_steps,
            space,
            original: policy.space.clone(),
            narrowed,
            trials: runs,
            carried,
        };
        let previous = out.last().and_then(|f| f.winner.number.zip(f.winner.value));
        let ranking = r.checked_sub(1).and_then(|k| ladder.consecutive.get(k).cloned());
        out.push(round_findings(&data, previous, ranking, objective, direction, config));
    }
    Ok(out)
}
