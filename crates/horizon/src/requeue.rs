//! `horizon requeue`: put failed (or chosen) trials back in the queue, in one transaction
//! (`Storage::requeue_trials`), so that the next `horizon run` runs them again.

use std::io::Write;

use anyhow::Result;
use horizon_core::trial::TrialState;
use horizon_store::Requeue;

use crate::cli::RequeueArgs;
use crate::table::shell_quote;
use crate::target;

pub fn requeue(args: RequeueArgs) -> Result<()> {
    let t = target::open_writable(&args.study, args.name.as_deref())?;
    let mut states = Vec::new();
    if args.failed {
        states.push(TrialState::Failed);
    }
    if args.incomplete {
        states.push(TrialState::Incomplete);
    }
    let states = &states[..];
    let message = "requeued by `horizon requeue`; runs again on the next `horizon run`";
    let requeued = t.storage.requeue_trials(t.study.id, &Requeue { numbers: &args.trials, states, message })?;
    let mut out = std::io::stdout().lock();
    if requeued.is_empty() {
        let which: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        writeln!(
            out,
            "no trial to requeue: study {:?} has no {} trial (imported runs are never requeued)",
            t.study.name,
            if which.is_empty() { "such".to_string() } else { which.join(" or ") }
        )?;
        return Ok(());
    }
    let numbers: Vec<String> = requeued.iter().map(|tr| tr.number.to_string()).collect();
    writeln!(
        out,
        "requeued {} of study {:?}: {}; they keep their attempts, warnings and files, and their failures count from 0 again",
        horizon_analysis::text::plural(requeued.len(), "trial"),
        t.study.name,
        numbers.join(", ")
    )?;
    let run = match &t.spec_path {
        Some(_) => format!("horizon run {}", shell_quote(&args.study.display().to_string())),
        None => "horizon run STUDY.toml".to_string(),
    };
    writeln!(out, "next: `{run}` runs them (attempt numbers continue from the last one)")?;
    Ok(())
}
