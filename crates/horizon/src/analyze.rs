//! `horizon analyze`: the study's trials and curves, judged by the method's rules.

use std::io::Write;

use anyhow::Result;
use horizon_analysis::{AnalysisConfig, StudyData, TrialData, analyze as run_analysis, render_text};
use horizon_core::space::SearchSpace;
use horizon_store::Storage;

use crate::cli::ShowArgs;
use crate::target;

pub fn analyze(args: ShowArgs) -> Result<()> {
    let t = target::open(&args.study, args.name.as_deref())?;
    let space: Option<SearchSpace> = serde_json::from_value(t.spec["space"].clone()).ok();
    let trials = t
        .storage
        .trials(t.study.id)?
        .into_iter()
        .map(|record| Ok(TrialData { metrics: t.storage.metrics(record.id)?, record }))
        .collect::<Result<Vec<_>>>()?;
    let data = StudyData { objective: t.objective.clone(), direction: t.direction, space, trials };
    let analysis = run_analysis(&data, &AnalysisConfig::default());
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&analysis)?)?;
    } else {
        write!(out, "{}", render_text(&analysis))?;
    }
    Ok(())
}
