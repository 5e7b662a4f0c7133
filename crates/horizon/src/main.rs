//! The `horizon` command: a thin layer over the library crates, one function per subcommand.
//!
//! Exit codes: 0 the command did its work (a study whose trials failed still ran); 1 horizon
//! could not do it (bad study file, storage error); 2 bad command-line usage; 130 a run was
//! stopped by Ctrl-C or SIGTERM before the study finished (`horizon run` again resumes it).

mod analyze;
mod cli;
mod import;
mod progress;
mod run;
mod show;
mod sweep;
mod table;
mod target;
mod workload;

use std::process::ExitCode;

use clap::Parser;

// mimalloc: the built-in workloads run in this binary (`horizon workload run`) and burn
// allocates for every tensor operation; measured 30% more jargon-lm steps/s than glibc's
// allocator (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code of a run stopped by the user.
pub const EXIT_STOPPED: u8 = 130;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    init_logging(args.verbose);
    let result = match args.command {
        cli::Command::Run(a) => run::run(a),
        cli::Command::Status(a) => show::status(a).map(|()| ExitCode::SUCCESS),
        cli::Command::Trials(a) => show::trials(a).map(|()| ExitCode::SUCCESS),
        cli::Command::Best(a) => show::best(a).map(|()| ExitCode::SUCCESS),
        cli::Command::Analyze(a) => analyze::analyze(a).map(|()| ExitCode::SUCCESS),
        cli::Command::Import(a) => import::import(a).map(|()| ExitCode::SUCCESS),
        cli::Command::SweepLr(a) => sweep::sweep_lr(a),
        cli::Command::Workload { command } => workload::workload(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HORIZON_LOG").unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
