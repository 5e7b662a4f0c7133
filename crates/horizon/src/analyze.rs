//! `horizon analyze`: the study's trials and curves, judged by the method's rules.

use std::io::Write;

use anyhow::{Context, Result};
use horizon_analysis::{AnalysisConfig, StudyData, TrialData, analyze as run_analysis, render_text};
use horizon_core::space::SearchSpace;
use horizon_core::spec::StudySpec;

use crate::cli::ShowArgs;
use crate::target;

/// A study as `analyze` (and the report) read it: the trials judged, the analysis, the ladder's
/// or rounds' report and each round's checks, and a note on what was read.
pub struct Read {
    pub data: StudyData,
    pub analysis: horizon_analysis::Analysis,
    pub ladder: Option<horizon_analysis::ladder::LadderReport>,
    pub rounds: Option<Vec<horizon_analysis::rounds::RoundFindings>>,
    pub note: Option<String>,
}

pub fn read(t: &target::Target) -> Result<Read> {
    let space: Option<SearchSpace> = t.spec.space.clone();
    let mut records = t.storage.trials(t.study.id)?;
    // A ladder's rungs are runs at different budgets: the budget verdict and the rest read the
    // trials at the highest rung reached (complete schedules at one budget); the ladder report
    // covers every rung.
    let ladder = crate::show::ladder_report(t)?;
    let mut note = None;
    if ladder.is_some()
        && let Some(top) = records.iter().map(|r| r.rung).max()
    {
        let all = records.len();
        records.retain(|r| r.rung == top);
        let budget = records.first().map_or(0, |r| r.max_train_steps);
        let reads = horizon_analysis::text::plural(records.len(), "trial");
        note = Some(if t.spec.ladder_rungs.is_none() {
            format!(
                "rounds: the analysis reads the {reads} of round {} ({budget} steps), the last reached, of {all}; each round's checks follow the report below",
                top + 1
            )
        } else {
            format!(
                "ladder: the analysis reads the {reads} at rung {top} ({budget} steps), the highest reached, of {all}; the ladder report below covers every rung"
            )
        });
    }
    let trials = records
        .into_iter()
        .map(|record| Ok(TrialData { metrics: t.storage.metrics(record.id)?, record }))
        .collect::<Result<Vec<_>>>()?;
    let data = StudyData { objective: t.objective.clone(), direction: t.direction, space, trials };
    let config = settings(t)?;
    let analysis = run_analysis(&data, &config);
    // A study in rounds: each round's end-of-round checks.
    let rounds = match t.spec.rounds_policy() {
        Some(policy) => Some(crate::rounds::findings(t.storage.as_ref(), &t.study, &policy, &t.objective, t.direction, &config)?),
        None => None,
    };
    Ok(Read { data, analysis, ladder, rounds, note })
}

pub fn analyze(args: ShowArgs) -> Result<()> {
    let t = target::open(&args.study, args.name.as_deref())?;
    let Read { analysis, ladder, rounds, note, .. } = read(&t)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut doc = serde_json::to_value(&analysis)?;
        if let Some(report) = &ladder {
            doc["ladder"] = serde_json::to_value(report)?;
        }
        if let Some(rounds) = &rounds {
            doc["rounds"] = serde_json::to_value(rounds)?;
        }
        writeln!(out, "{doc}")?;
    } else {
        if let Some(note) = &note {
            writeln!(out, "{note}")?;
        }
        write!(out, "{}", render_text(&analysis))?;
        if let Some(report) = &ladder {
            writeln!(out)?;
            write!(out, "{}", crate::show::render_stages(report, t.spec.ladder_rungs.is_none()))?;
        }
        for f in rounds.iter().flatten() {
            writeln!(out)?;
            write!(out, "{}", f.render())?;
        }
    }
    Ok(())
}

/// The analysis settings: the study file's `[analysis]` table when the command was given the
/// file (it may have been edited since the study ran: the settings change the reading, not the
/// trials), else the ones stored with the study, else the defaults.
fn settings(t: &target::Target) -> Result<AnalysisConfig> {
    if let Some(path) = &t.spec_path {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(StudySpec::parse(&text, &path.display().to_string())?.analysis);
    }
    Ok(t.spec.analysis.clone().unwrap_or_default())
}
