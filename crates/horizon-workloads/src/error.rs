use std::path::PathBuf;

/// Why a workload could not run. Each message names the variable, parameter or file at fault
/// and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("unknown workload {name:?}; the built-in workloads are: {known}")]
    UnknownWorkload { name: String, known: String },

    #[error(
        "environment variable {var} is not set; `horizon workload run` is meant to be started by `horizon run`, which sets it (trial protocol v1, docs/protocol.md)"
    )]
    MissingEnv { var: &'static str },

    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    InvalidEnv { var: &'static str, value: String, reason: String },

    #[error("workload {workload} has no parameter {name:?}; it accepts: {accepted}")]
    UnknownParam { workload: String, name: String, accepted: String },

    #[error("parameter {name} = {value} is invalid: expected {expected}")]
    InvalidParam { name: String, value: String, expected: String },

    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot resume from checkpoint {}: {reason}", path.display())]
    Resume { path: PathBuf, reason: String },

    #[error("could not write checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },

    #[error("built-in data set {name} is corrupt: {reason}")]
    Data { name: &'static str, reason: String },

    /// The `replay` workload's runs file (parameter `runs`) or run (`run`) cannot be replayed;
    /// the reason names the parameter, the file and the fix.
    #[error("{reason}")]
    Replay { reason: String },
}

impl WorkloadError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WorkloadError::Io { action, path: path.into(), source }
    }

    pub(crate) fn invalid(name: &str, value: impl std::fmt::Display, expected: impl Into<String>) -> Self {
        WorkloadError::InvalidParam { name: name.to_string(), value: value.to_string(), expected: expected.into() }
    }
}
