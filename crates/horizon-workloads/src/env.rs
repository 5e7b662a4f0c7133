use std::path::{Path, PathBuf};

use horizon_core::Params;
use horizon_core::protocol::{EnvError, TrialEnvironment, env};

use crate::WorkloadError;

/// What horizon tells a trial process (trial protocol v1, docs/protocol.md section 3).
#[derive(Debug, Clone)]
pub struct TrialEnv {
    /// `HORIZON_PARAMS`: the trial's parameters; the catalog's defaults fill in the rest.
    pub params: Params,
    /// `HORIZON_MAX_TRAIN_STEPS`: train for exactly this many steps.
    pub max_train_steps: u64,
    /// `HORIZON_EVAL_EVERY`: evaluate at every multiple of this (and at `max_train_steps`).
    pub eval_every: u64,
    /// `HORIZON_SEED`: the trial's seed (initialization, data order, dropout).
    pub seed: u64,
    /// `HORIZON_TRIAL_DIR`: where checkpoints go.
    pub trial_dir: PathBuf,
    /// `HORIZON_METRICS_FILE`: where metric lines and checkpoint announcements are appended.
    pub metrics_file: PathBuf,
    /// `HORIZON_CHECKPOINT_EVERY`: write and announce a checkpoint at every multiple of this
    /// step count; 0 = none.
    pub checkpoint_every: u64,
    /// `HORIZON_CHECKPOINT_STEPS`: further steps at which to write and announce a checkpoint.
    pub checkpoint_steps: Vec<u64>,
    /// `HORIZON_RESUME_FROM`: a checkpoint to continue from, already resolved against the trial
    /// directory when it was relative.
    pub resume_from: Option<PathBuf>,
}

impl TrialEnv {
    /// Read the `HORIZON_*` variables of the process environment.
    pub fn from_env() -> Result<TrialEnv, WorkloadError> {
        TrialEnv::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Read the variables through `lookup` (for tests and embedding), with the protocol's one
    /// decoder (`horizon_core::protocol::TrialEnvironment`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<TrialEnv, WorkloadError> {
        let e = TrialEnvironment::from_lookup(lookup).map_err(|e| match e {
            EnvError::Missing { var } => WorkloadError::MissingEnv { var },
            EnvError::Invalid { var, value, expected } => WorkloadError::InvalidEnv { var, value, reason: expected.to_string() },
        })?;
        let invalid = |var: &'static str, value: &str, reason: &str| WorkloadError::InvalidEnv {
            var,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let params: Params = if e.params_json.trim().is_empty() {
            Params::default()
        } else {
            serde_json::from_str(&e.params_json).map_err(|err| {
                invalid(
                    env::PARAMS,
                    &e.params_json,
                    &format!("expected a JSON object of parameter names to numbers, booleans or strings ({err})"),
                )
            })?
        };
        let trial_dir = PathBuf::from(&e.trial_dir);
        if !trial_dir.is_dir() {
            return Err(invalid(env::TRIAL_DIR, &e.trial_dir, "not an existing directory; create it first"));
        }
        let resume_from = e.resume_from.as_deref().map(|p| resolve(&trial_dir, Path::new(p)));
        Ok(TrialEnv {
            params,
            max_train_steps: e.max_train_steps,
            eval_every: e.eval_every,
            seed: e.seed,
            trial_dir,
            metrics_file: PathBuf::from(e.metrics_file),
            checkpoint_every: e.checkpoint_every.unwrap_or(0),
            checkpoint_steps: e.checkpoint_steps,
            resume_from,
        })
    }

    /// Whether horizon asked for a checkpoint at `step`.
    pub fn is_checkpoint_step(&self, step: u64) -> bool {
        (self.checkpoint_every > 0 && step.is_multiple_of(self.checkpoint_every)) || self.checkpoint_steps.contains(&step)
    }

    /// Whether step `step` is evaluated: every multiple of `eval_every`, and the last step.
    pub fn is_eval_step(&self, step: u64) -> bool {
        step > 0 && (step.is_multiple_of(self.eval_every) || step == self.max_train_steps)
    }
}

/// A path relative to the trial directory, or an absolute one.
fn resolve(trial_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { trial_dir.join(p) }
}
