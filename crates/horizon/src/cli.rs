//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use horizon_core::trial::TrialState;

/// horizon: how long to train. Runs tuning studies with one fixed step budget per trial,
/// quasi-random search and retrospective best-checkpoint selection.
#[derive(Parser, Debug)]
#[command(name = "horizon", version, about, propagate_version = true)]
pub struct Args {
    /// More logging (-v info, -vv debug); HORIZON_LOG=<filter> overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run (or resume) a study: launch its trials and record everything in its database.
    Run(RunArgs),
    /// Work on a study in a shared database until it is done: claim trials, run them, record
    /// them; any number of workers, on any machines that see the database and the study's
    /// files (docs/distributed.md).
    Worker(WorkerArgs),
    /// Summarize a study: trials by state, the best trial, where the data lives.
    Status(ShowArgs),
    /// List every trial: parameters, retrospectively selected best step and value, final value.
    Trials(TrialsArgs),
    /// Show the best trial and the exact command (environment included) that reproduces it.
    Best(ShowArgs),
    /// One trial in full: parameters, state and reason, attempts, warnings, every metric's
    /// curve, its files and kept checkpoints.
    Trial(TrialArgs),
    /// Export the metrics of a study (or of some trials) as CSV or JSON Lines, one row per
    /// trial, step and metric, for plotting elsewhere.
    Export(ExportArgs),
    /// Put failed (or chosen) trials back in the queue, keeping their history; the next
    /// `horizon run` runs them again with the study's retries.
    Requeue(RequeueArgs),
    /// Check a study file without running anything: resolved paths, the first sampled points,
    /// and the exact command and environment of one trial. Writes nothing.
    Check(CheckArgs),
    /// Is max_train_steps right? Budget verdicts, curve diagnostics and search-space edges,
    /// with the numbers behind each (docs/analysis.md).
    Analyze(ShowArgs),
    /// One self-contained HTML file with the method's plots: budget histogram, best curves,
    /// axis and isolation plots, the learning-rate sweep, ladders and rounds (docs/report.md).
    Report(ReportArgs),
    /// A live view of a study while it runs (here or on other machines): running trials with
    /// their step and objective, the best so far, where best steps fall, rungs, failures.
    Watch(WatchArgs),
    /// Store runs made without horizon (JSON Lines, CSV, TensorBoard) in a study database,
    /// all or nothing, to analyze them (docs/analysis.md section 7).
    Import(ImportArgs),
    /// Pick an initial max_train_steps: a constant-learning-rate grid sweep, regularization off,
    /// to the step of a perfect fit of the training set, extended past its edges (docs/method.md section 2).
    SweepLr(SweepArgs),
    /// Move studies between databases: from SQLite on a laptop to PostgreSQL on a cluster, and
    /// back (docs/distributed.md).
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
    /// Built-in workloads: list them, or run one as a trial (what `horizon run` launches).
    Workload {
        #[command(subcommand)]
        command: WorkloadCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum StorageCommand {
    /// Copy a study, every row of it, to another database (any backend), in one transaction;
    /// its study directory then belongs to the new database.
    Copy(StorageCopyArgs),
}

#[derive(clap::Args, Debug)]
pub struct StorageCopyArgs {
    /// Where the study is: its study file, its study directory, its SQLite database file, or a
    /// postgres:// URL.
    pub from: PathBuf,
    /// The database to copy it to: a postgres:// URL, a path or a sqlite:// URL.
    pub to: String,
    /// The study, when FROM holds several.
    #[arg(long)]
    pub name: Option<String>,
    /// Replace a study of the same name in the destination (its rows are deleted first, in
    /// the same transaction): moving a study back where it came from.
    #[arg(long)]
    pub replace: bool,
}

#[derive(Subcommand, Debug)]
pub enum WorkloadCommand {
    /// The built-in workloads, their parameters (with defaults) and metrics.
    List,
    /// Run a built-in workload as a trial process (trial protocol v1; started by `horizon run`).
    Run {
        /// The workload's name (see `horizon workload list`).
        #[arg(value_parser = parse_workload)]
        name: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The study file (TOML; see docs/study-spec.md).
    pub study: PathBuf,
    /// Trials to run at once in this process.
    #[arg(short, long, default_value_t = 1)]
    pub jobs: usize,
    /// No progress bar (a line per finished trial is still printed).
    #[arg(long)]
    pub no_progress: bool,
    /// Run nothing: check the study file as `horizon check` does.
    #[arg(long)]
    pub dry_run: bool,
    /// Stream the run's events to stdout as JSON lines (docs/json.md) instead of the progress
    /// and the final table.
    #[arg(long)]
    pub json: bool,
    /// The study's database, instead of horizon.db in its study directory: a postgres:// URL,
    /// a path or a sqlite:// URL (docs/distributed.md).
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The database holding the study: a postgres:// URL, a path or a sqlite:// URL
    /// (docs/distributed.md).
    #[arg(long, value_name = "URL")]
    pub storage: String,
    /// The study to work on, by name, as stored (its study file is stored with it).
    #[arg(long, value_name = "NAME", conflicts_with = "file")]
    pub study: Option<String>,
    /// Or a study file: the study is created in the database if it is not there yet.
    #[arg(required_unless_present = "study")]
    pub file: Option<PathBuf>,
    /// Trials to run at once in this worker.
    #[arg(short, long, default_value_t = 1)]
    pub jobs: usize,
    /// This machine's GPUs (comma-separated indices or UUIDs), instead of the study file's
    /// `trainer.gpus`: each running trial gets one as CUDA_VISIBLE_DEVICES, and --jobs is capped
    /// at their number.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub gpus: Vec<String>,
    /// A worker on another machine whose lease was last renewed longer ago than this is
    /// presumed dead and its trial requeued (seconds).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub lease_timeout: f64,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// The events as JSON lines on stdout (docs/json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// A study file, or a study directory (the one holding horizon.db).
    pub study: PathBuf,
    /// Which study, when the database holds several.
    #[arg(long)]
    pub name: Option<String>,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// A study file, or a study directory (the one holding horizon.db).
    pub study: PathBuf,
    /// Which study, when the database holds several.
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    pub every: f64,
    /// Print the view once and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// A study file, or a study directory (the one holding horizon.db).
    pub study: PathBuf,
    /// Which study, when the database holds several.
    #[arg(long)]
    pub name: Option<String>,
    /// Where to write the report (default: report.html in the study directory).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct TrialsArgs {
    #[command(flatten)]
    pub show: ShowArgs,
    /// Only trials in this state (waiting, running, complete, incomplete, diverged, failed).
    #[arg(long, value_parser = parse_state)]
    pub state: Option<TrialState>,
}

/// A built-in workload's name; another is a usage error (exit 2) listing them.
pub fn parse_workload(text: &str) -> Result<String, String> {
    let names: Vec<&str> = horizon_core::workloads::WORKLOADS.iter().map(|w| w.name).collect();
    if names.contains(&text) {
        Ok(text.to_string())
    } else {
        Err(format!("unknown workload; the built-in workloads are {} (`horizon workload list` describes them)", names.join(", ")))
    }
}

/// A trial state by name; a bad one is a usage error (exit 2) listing the states.
pub fn parse_state(text: &str) -> Result<TrialState, String> {
    TrialState::parse(text).ok_or_else(|| {
        let all: Vec<&str> = TrialState::ALL.iter().map(|s| s.as_str()).collect();
        format!("not a trial state; use one of {}", all.join(", "))
    })
}

#[derive(clap::Args, Debug)]
pub struct TrialArgs {
    #[command(flatten)]
    pub show: ShowArgs,
    /// The trial's number (as `horizon trials` lists it).
    pub number: u64,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A study file, or a study directory (the one holding horizon.db).
    pub study: PathBuf,
    /// Which study, when the database holds several.
    #[arg(long)]
    pub name: Option<String>,
    /// Only this trial (repeat for several); default: every trial.
    #[arg(long = "trial", value_name = "N")]
    pub trials: Vec<u64>,
    /// csv: a header `trial,step,metric,value`; jsonl: one object per line with those keys.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Write to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["failed", "incomplete", "trials"])))]
pub struct RequeueArgs {
    /// A study file, or a study directory (the one holding horizon.db).
    pub study: PathBuf,
    /// Which study, when the database holds several.
    #[arg(long)]
    pub name: Option<String>,
    /// Every failed trial (imported runs excepted).
    #[arg(long)]
    pub failed: bool,
    /// Every incomplete trial (the trainer exited 0 well short of its budget), once the
    /// trainer is fixed (imported runs excepted).
    #[arg(long)]
    pub incomplete: bool,
    /// This trial, by number (repeat for several); any state but running.
    #[arg(long = "trial", value_name = "N")]
    pub trials: Vec<u64>,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The study file (TOML; see docs/study-spec.md).
    pub study: PathBuf,
    /// How many sampled points to show (at most the study's trials).
    #[arg(long, default_value_t = 5)]
    pub points: u64,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// The study file; its [lr_sweep] section (optional) sets the grid and the fit criterion.
    pub study: PathBuf,
    /// Trials to run at once.
    #[arg(short, long, default_value_t = 1)]
    pub jobs: usize,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the report as JSON (schema horizon.lr-sweep/2) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The runs: a JSON Lines file (.jsonl), a directory of CSV files (runs.csv and one curve
    /// per run), or a directory with TensorBoard event files below it. Without it, `--space`
    /// sets the search space and analysis settings of the runs already imported into DIR.
    #[arg(required_unless_present = "space")]
    pub source: Option<PathBuf>,
    /// The study directory to store them in; its horizon.db is created if missing.
    #[arg(long, value_name = "DIR")]
    pub into: PathBuf,
    /// The study's name in the database (default: SOURCE's name without its extension).
    #[arg(long)]
    pub name: Option<String>,
    /// The metric to judge the runs by (retrospective selection and analysis), e.g. valid/loss.
    #[arg(long, value_name = "METRIC", required_unless_present = "space")]
    pub objective: Option<String>,
    /// The search space the runs were sampled from: a file with the [params.NAME] tables of a
    /// study file (a whole study file will do), and optionally an [analysis] table. Without it,
    /// ranges and scales are inferred from the values, and marked as inferred.
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    /// Whether the objective is minimized or maximized (default: the existing study's, else
    /// minimize).
    #[arg(long, value_enum)]
    pub direction: Option<DirectionArg>,
    /// The source's format (default: detected: a .jsonl file, a directory holding *.csv, a
    /// directory with events.out.tfevents.* files below it).
    #[arg(long, value_enum)]
    pub format: Option<ImportFormat>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectionArg {
    Minimize,
    Maximize,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    Jsonl,
    Csv,
    Tensorboard,
}
