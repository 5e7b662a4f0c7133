//! horizon's built-in training workloads: ordinary trial-protocol-v1 trainers (docs/protocol.md)
//! that `horizon workload run NAME` runs, on burn's `flex` CPU backend, one thread each; and
//! `replay` ([`replay`]), which answers each trial from a recorded learning curve.
//!
//! The catalog (names, parameters with defaults, metrics) is `horizon_core::workloads`; this
//! crate implements it. docs/workloads.md describes each workload.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! let env = horizon_workloads::TrialEnv::from_env()?;
//! let stop = AtomicBool::new(false); // set it from a SIGTERM handler
//! match horizon_workloads::run("digits-mlp", &env, &stop)? {
//!     horizon_workloads::RunEnd::Finished => {}
//!     horizon_workloads::RunEnd::Stopped { step } => eprintln!("stopped at step {step}"),
//! }
//! # Ok::<(), horizon_workloads::WorkloadError>(())
//! ```

use std::sync::atomic::AtomicBool;

pub mod checkpoint;
pub mod classify;
pub mod config;
pub mod data;
mod env;
mod error;
pub mod lm;
pub mod nn;
pub mod optim;
pub mod replay;
mod report;
pub mod rng;
pub mod train;

pub use env::TrialEnv;
pub use error::WorkloadError;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Trained to `max_train_steps`, or stopped early because the loss became NaN or infinite
    /// (reported; horizon marks the trial diverged).
    Finished,
    /// `stop` was set: the step in progress was finished, its checkpoint written and
    /// announced. The process should exit with status 143.
    Stopped { step: u64 },
}

/// Run the built-in workload `name` as the trial `env` describes. Set `stop` (from a SIGTERM
/// handler) to end it after the current step with a checkpoint.
pub fn run(name: &str, env: &TrialEnv, stop: &AtomicBool) -> Result<RunEnd, WorkloadError> {
    let info = horizon_core::workloads::workload(name).ok_or_else(|| WorkloadError::UnknownWorkload {
        name: name.to_string(),
        known: horizon_core::workloads::WORKLOADS.iter().map(|w| w.name).collect::<Vec<_>>().join(", "),
    })?;
    let params = config::ParamSet::new(info, &env.params)?;
    match info.name {
        "digits-mlp" => {
            let task = classify::Classifier::digits(&params, env.max_train_steps)?;
            train::run(&task, &params, &task.common, env, stop)
        }
        "mnist-mlp" => {
            let task = classify::Classifier::mnist(&params, env.max_train_steps)?;
            train::run(&task, &params, &task.common, env, stop)
        }
        "jargon-lm" => {
            let task = lm::LanguageModel::jargon(&params, env.max_train_steps)?;
            train::run(&task, &params, &task.common, env, stop)
        }
        // Recorded curves: no model is built.
        replay::NAME => replay::run(&params, env, stop),
        other => unreachable!("workload {other} is in the catalog but has no implementation"),
    }
}
