//! Running horizon studies: the side effects around the pure policies of `horizon-core`.
//!
//! - [`resolve::ResolvedStudy`]: a checked study spec bound to paths on disk (study directory,
//!   database, working directory), with the missing-file checks a spec alone cannot make.
//! - [`worker::Worker`]: the dispatcher. It claims trials from storage (atomically, so many
//!   workers can share a study), runs up to `jobs` attempts at once, reacts to the user's
//!   Ctrl-C, and emits one stream of [`worker::Event`]s that every reporter reads.
//! - [`attempt`]: runs one attempt of a trial, either as a subprocess speaking trial protocol v1
//!   (argv only, its own process group, timeout, SIGTERM, grace period, SIGKILL) or as an
//!   in-process closure, and turns what it reports into stored metrics through
//!   [`recorder::AttemptRecorder`].
//! - [`scheduler`]: the policy hook. A worker given a [`scheduler::Scheduler`] hands it what
//!   storage holds of the study while trials run, and stops the trials it decides to stop (as
//!   complete, with its reason).
//! - [`stages`]: the one loop for multi-stage work (a sweep's grids, a study's rounds): a plan
//!   reads storage and names the next stage, the caller runs it.
//!
//! ```no_run
//! use std::sync::{Arc, mpsc};
//! use horizon_runner::{resolve::ResolvedStudy, worker::{Worker, WorkerOptions}};
//! let study = ResolvedStudy::load("examples/logreg.toml".as_ref()).unwrap();
//! let storage = study.open_storage().unwrap();
//! let (events, rx) = mpsc::channel();
//! // Every reporter reads the one event stream; here, a thread that logs finished trials.
//! std::thread::spawn(move || for event in rx {
//!     if let horizon_runner::worker::Event::TrialFinished(r) = event {
//!         println!("trial {} -> {}", r.trial.number, r.state);
//!     }
//! });
//! let worker = Worker::new(study, storage, WorkerOptions { jobs: 2, ..Default::default() }, events).unwrap();
//! let summary = worker.run().unwrap();
//! println!("{} trials ran", summary.attempts);
//! ```

pub mod attempt;
pub mod files;
pub mod launch;
pub mod process;
pub mod recorder;
pub mod resolve;
pub mod scheduler;
pub mod stages;
pub mod worker;

/// Seconds since the Unix epoch, as storage records times.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Errors that stop a worker (a failing trial is not one of them: it is recorded).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] horizon_store::StoreError),
    #[error(transparent)]
    Spec(#[from] horizon_core::spec::SpecError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Incompatible(String),
    /// A multi-stage run cannot go on (a stage that could not finish, a stage's study that does
    /// not read back).
    #[error("{0}")]
    Stage(String),
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io { path: path.display().to_string(), source }
}
