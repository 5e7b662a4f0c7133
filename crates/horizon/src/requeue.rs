//! `horizon requeue`: put failed (or chosen) trials back in the queue, in one transaction
//! (`Storage::requeue_trials`), so that the next `horizon run` runs them again.

use std::io::Write;

use anyhow::Result;
use horizon_core::trial::TrialState;
use horizon_store::{Requeue, Storage};

use crate::cli::RequeueArgs;
use crate::table::shell_quote;
use crate::target;

pub fn requeue(args: RequeueArgs) -> Result<()> {
    let t = target::open_writable(&args.study, args.name.as_deref())?;
    let states: &[TrialState] = if args.failed { &[TrialState::Failed] } else { &[] };
    let message = "requeued by `horizon requeue`; runs again on the next `horizon run`";
    let requeued = t.storage.requeue_trials(t.study.id, &Requeue { numbers: &args.trials, states, message })?;
    let mut out = std::io::stdout().lock();
    if requeued.is_empty() {
        writeln!(out, "no trial to requeue: study {:?} has no failed trial (imported runs are never requeued)", t.study.name)?;
        return Ok(());
    }
    let numbers: Vec<String> = requeued.iter().map(|tr| tr.number.to_string()).collect();
    writeln!(
        out,
        "requeued {} trial(s) of study {:?}: {}; they keep their attempts, warnings and files, and their failures count from 0 again",
        requeued.len(),
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
