use std::path::{Path, PathBuf};

use horizon_core::Params;

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

    /// Read the variables through `lookup` (for tests and embedding).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<TrialEnv, WorkloadError> {
        let required = |var: &'static str| lookup(var).ok_or(WorkloadError::MissingEnv { var });
        let invalid = |var: &'static str, value: &str, reason: &str| WorkloadError::InvalidEnv {
            var,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let positive = |var: &'static str| -> Result<u64, WorkloadError> {
            let v = required(var)?;
            match v.trim().parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(invalid(var, &v, "expected an integer >= 1")),
            }
        };

        let raw = required("HORIZON_PARAMS")?;
        let params: Params = if raw.trim().is_empty() {
            Params::default()
        } else {
            serde_json::from_str(&raw).map_err(|e| {
                invalid("HORIZON_PARAMS", &raw, &format!("expected a JSON object of parameter names to numbers, booleans or strings ({e})"))
            })?
        };
        let max_train_steps = positive("HORIZON_MAX_TRAIN_STEPS")?;
        let eval_every = positive("HORIZON_EVAL_EVERY")?;
        let seed_text = required("HORIZON_SEED")?;
        let seed = seed_text.trim().parse::<u64>().map_err(|_| invalid("HORIZON_SEED", &seed_text, "expected a non-negative integer"))?;

        let trial_dir = PathBuf::from(required("HORIZON_TRIAL_DIR")?);
        if !trial_dir.is_dir() {
            return Err(invalid("HORIZON_TRIAL_DIR", &trial_dir.display().to_string(), "not an existing directory; create it first"));
        }
        let metrics = required("HORIZON_METRICS_FILE")?;
        if metrics.is_empty() {
            return Err(invalid("HORIZON_METRICS_FILE", &metrics, "expected the path of the file to append metric lines to"));
        }
        let metrics_file = PathBuf::from(metrics);

        let checkpoint_every = match lookup("HORIZON_CHECKPOINT_EVERY") {
            None => 0,
            Some(text) if text.trim().is_empty() => 0,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(n) if n >= 1 => n,
                _ => return Err(invalid("HORIZON_CHECKPOINT_EVERY", &text, "expected an integer >= 1, or nothing for no periodic checkpoints")),
            },
        };
        let checkpoint_steps = match lookup("HORIZON_CHECKPOINT_STEPS") {
            None => Vec::new(),
            Some(text) => parse_steps(&text).ok_or_else(|| {
                invalid("HORIZON_CHECKPOINT_STEPS", &text, "expected comma-separated integers >= 1, such as \"100,200,300\", or nothing")
            })?,
        };
        let resume_from = match lookup("HORIZON_RESUME_FROM") {
            Some(p) if !p.trim().is_empty() => Some(resolve(&trial_dir, Path::new(&p))),
            _ => None,
        };
        Ok(TrialEnv { params, max_train_steps, eval_every, seed, trial_dir, metrics_file, checkpoint_every, checkpoint_steps, resume_from })
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

fn parse_steps(text: &str) -> Option<Vec<u64>> {
    let mut steps = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.parse::<u64>() {
            Ok(s) if s >= 1 => steps.push(s),
            _ => return None,
        }
    }
    steps.sort_unstable();
    steps.dedup();
    Some(steps)
}
