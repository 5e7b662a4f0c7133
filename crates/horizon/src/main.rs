//! The `horizon` command: a thin layer over the library crates, one function per subcommand.
//!
//! Exit codes: 0 the command did its work (a study whose trials failed still ran); 1 horizon
//! could not do it (bad study file, storage error); 2 bad command-line usage; 130 a run was
//! stopped by Ctrl-C or SIGTERM before the study finished (`horizon run` again resumes it).

mod analyze;
mod check;
mod cli;
mod import;
mod inspect;
mod progress;
mod report;
mod repro;
mod requeue;
mod rounds;
mod run;
mod show;
mod storage;
mod sweep;
mod table;
mod target;
mod watch;
mod worker;
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
        cli::Command::Trial(a) => inspect::trial(a).map(|()| ExitCode::SUCCESS),
        cli::Command::Export(a) => inspect::export(a).map(|()| ExitCode::SUCCESS),
        cli::Command::Requeue(a) => requeue::requeue(a).map(|()| ExitCode::SUCCESS),
        cli::Command::Check(a) => check::check(&a.study, a.points, a.json).map(|()| ExitCode::SUCCESS),
        cli::Command::Analyze(a) => analyze::analyze(a).map(|()| ExitCode::SUCCESS),
        cli::Command::Report(a) => report::report(a).map(|()| ExitCode::SUCCESS),
        cli::Command::Watch(a) => watch::watch(a).map(|()| ExitCode::SUCCESS),
        cli::Command::Worker(a) => worker::worker(a),
        cli::Command::Import(a) => import::import(a).map(|()| ExitCode::SUCCESS),
        cli::Command::SweepLr(a) => sweep::sweep_lr(a),
        cli::Command::Storage { command: cli::StorageCommand::Copy(a) } => storage::copy(a).map(|()| ExitCode::SUCCESS),
        cli::Command::Workload { command } => workload::workload(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", render_error(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes on one line, each said once (an I/O error wrapped with its path
/// would otherwise repeat itself), with the fix lines last; a permission problem that names
/// no fix gets one.
fn render_error(e: &anyhow::Error) -> String {
    let mut head = String::new();
    let mut fixes: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let (main, fix) = match text.find("\n  fix:") {
            Some(i) => (text[..i].to_string(), Some(text[i + 1..].to_string())),
            None => (text, None),
        };
        let main = main.trim();
        // A cause that only restates what is said already (`Error code 8: attempt to write a
        // readonly database` under `attempt to write a readonly database`) is left out.
        let gist = main.rsplit(": ").next().unwrap_or(main);
        let restated = head.contains(main) || (gist.len() > 8 && head.contains(gist));
        if !main.is_empty() && !restated {
            if !head.is_empty() {
                head.push_str(": ");
            }
            head.push_str(main);
        }
        if let Some(fix) = fix
            && !fixes.contains(&fix)
        {
            fixes.push(fix);
        }
    }
    if fixes.is_empty() && is_permission_problem(e) {
        fixes.push(
            "  fix: horizon needs write access to the study directory to run or change a study: check its owner and \
             permissions (`ls -ld`), or set [study] directory to a place you may write. Reading commands (status, \
             trials, trial, best, analyze, export, check) need read access only"
                .to_string(),
        );
    }
    for fix in fixes {
        head.push('\n');
        head.push_str(&fix);
    }
    head
}

fn is_permission_problem(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
            || cause.downcast_ref::<horizon_store::StoreError>().is_some_and(horizon_store::StoreError::is_permission_problem)
            || cause
                .downcast_ref::<horizon_runner::RunError>()
                .is_some_and(|r| matches!(r, horizon_runner::RunError::Store(s) if s.is_permission_problem()))
    })
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
