//! `horizon workload run NAME`: a built-in workload as a trial process (protocol v1), and
//! `horizon workload list`: the catalog.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use horizon_core::workloads::{COMMON_PARAMS, WORKLOADS};
use horizon_workloads::{RunEnd, TrialEnv};

use crate::cli::WorkloadCommand;

/// Exit status of a workload stopped by SIGTERM after writing its checkpoint (128 + SIGTERM).
const EXIT_STOPPED_BY_SIGTERM: u8 = 143;

pub fn workload(command: WorkloadCommand) -> Result<ExitCode> {
    match command {
        WorkloadCommand::List => list(),
        WorkloadCommand::Run { name } => run(&name),
    }
}

fn run(name: &str) -> Result<ExitCode> {
    let env = TrialEnv::from_env()
        .context("`horizon workload run` is started by `horizon run` for a study whose trainer is a built-in workload")?;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    match horizon_workloads::run(name, &env, &stop)? {
        RunEnd::Finished => Ok(ExitCode::SUCCESS),
        RunEnd::Stopped { step } => {
            debug_assert!(stop.load(Ordering::SeqCst));
            eprintln!("stopped by SIGTERM at step {step}; checkpoint written");
            Ok(ExitCode::from(EXIT_STOPPED_BY_SIGTERM))
        }
    }
}

fn list() -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for w in WORKLOADS {
        writeln!(out, "{}\n  {}\n  metrics: {}", w.name, w.summary, w.metrics.join(", "))?;
        for p in w.params {
            writeln!(out, "  {:<16} default {:<10} {}", p.name, p.default.value().to_string(), p.doc)?;
        }
        writeln!(out)?;
    }
    // The trainers share the optimizer and schedule parameters; replay takes none of them.
    let sharing: Vec<&str> = WORKLOADS.iter().filter(|w| !w.common.is_empty()).map(|w| w.name).collect();
    writeln!(out, "{} also take:", sharing.join(", "))?;
    for p in COMMON_PARAMS {
        writeln!(out, "  {:<16} default {:<10} {}", p.name, p.default.value().to_string(), p.doc)?;
    }
    Ok(ExitCode::SUCCESS)
}
