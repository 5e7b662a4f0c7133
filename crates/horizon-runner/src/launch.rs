//! The command line and environment of one attempt (trial protocol v1), built without a shell:
//! every argument is one `argv` entry, so a parameter value can never inject a command.

use std::path::{Path, PathBuf};

use horizon_core::protocol::PROTOCOL_VERSION;
use horizon_core::rng::trial_seed;
use horizon_core::spec::expand_template;
use horizon_core::trial::TrialRecord;
use horizon_core::StudySpec;

/// What to execute for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
}

/// Paths of one attempt's files inside its trial directory.
#[derive(Debug, Clone)]
pub struct AttemptFiles {
    pub trial_dir: PathBuf,
    pub metrics: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl AttemptFiles {
    pub fn new(trial_dir: &Path, attempt: u32) -> AttemptFiles {
        AttemptFiles {
            trial_dir: trial_dir.to_path_buf(),
            metrics: trial_dir.join(format!("attempt-{attempt}.metrics.jsonl")),
            stdout: trial_dir.join(format!("attempt-{attempt}.stdout")),
            stderr: trial_dir.join(format!("attempt-{attempt}.stderr")),
        }
    }
}

/// Build the argv and environment for an attempt. `gpu` becomes `CUDA_VISIBLE_DEVICES`.
pub fn plan(spec: &StudySpec, trial: &TrialRecord, files: &AttemptFiles, working_dir: &Path, gpu: Option<&str>) -> LaunchPlan {
    let seed = trial_seed(spec.seed, trial.number);
    let checkpoint_steps: Vec<String> = match spec.checkpoints.every {
        Some(every) => (1..=trial.max_train_steps / every).map(|k| (k * every).to_string()).collect(),
        None => Vec::new(),
    };
    let lookup = |name: &str| -> String {
        match name {
            "max_train_steps" => trial.max_train_steps.to_string(),
            "eval_every" => spec.eval_every.to_string(),
            "trial_dir" => files.trial_dir.display().to_string(),
            "trial_number" => trial.number.to_string(),
            "seed" => seed.to_string(),
            "metrics_file" => files.metrics.display().to_string(),
            param => trial.params.get(param).map(|v| v.to_string()).unwrap_or_default(),
        }
    };
    let argv = spec.trainer.command.iter().map(|pieces| expand_template(pieces, &lookup)).collect();
    let mut env: Vec<(String, String)> = spec.trainer.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    env.extend([
        ("HORIZON_PROTOCOL".to_string(), PROTOCOL_VERSION.to_string()),
        ("HORIZON_STUDY".to_string(), spec.name.clone()),
        ("HORIZON_TRIAL_NUMBER".to_string(), trial.number.to_string()),
        ("HORIZON_ATTEMPT".to_string(), trial.attempt.to_string()),
        ("HORIZON_TRIAL_DIR".to_string(), files.trial_dir.display().to_string()),
        ("HORIZON_PARAMS".to_string(), trial.params.to_json_string()),
        ("HORIZON_MAX_TRAIN_STEPS".to_string(), trial.max_train_steps.to_string()),
        ("HORIZON_EVAL_EVERY".to_string(), spec.eval_every.to_string()),
        ("HORIZON_SEED".to_string(), seed.to_string()),
        ("HORIZON_METRICS_FILE".to_string(), files.metrics.display().to_string()),
        ("HORIZON_CHECKPOINT_STEPS".to_string(), checkpoint_steps.join(",")),
    ]);
    if let Some(gpu) = gpu {
        env.push(("CUDA_VISIBLE_DEVICES".to_string(), gpu.to_string()));
    }
    LaunchPlan { argv, env, working_dir: working_dir.to_path_buf() }
}
