//! The command line and environment of one attempt (trial protocol v1), built without a shell:
//! every argument is one `argv` entry, so a parameter value can never inject a command.

use std::path::{Path, PathBuf};

use horizon_core::StudySpec;
use horizon_core::protocol::TrialEnvironment;
use horizon_core::rng::trial_seed;
use horizon_core::spec::{Builtins, expand_template};
use horizon_core::trial::TrialRecord;

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
    /// The trainer's process group id, while it runs.
    pub pgid: PathBuf,
}

impl AttemptFiles {
    pub fn new(trial_dir: &Path, attempt: u32) -> AttemptFiles {
        AttemptFiles {
            trial_dir: trial_dir.to_path_buf(),
            metrics: trial_dir.join(format!("attempt-{attempt}.metrics.jsonl")),
            stdout: trial_dir.join(format!("attempt-{attempt}.stdout")),
            stderr: trial_dir.join(format!("attempt-{attempt}.stderr")),
            pgid: trial_dir.join(format!("attempt-{attempt}.pgid")),
        }
    }
}

/// Build the argv and environment for an attempt. `gpu` becomes `CUDA_VISIBLE_DEVICES`; a
/// built-in workload runs as `<horizon> workload run NAME`.
pub fn plan(
    spec: &StudySpec,
    trial: &TrialRecord,
    files: &AttemptFiles,
    working_dir: &Path,
    gpu: Option<&str>,
    horizon: &Path,
    start: &crate::attempt::AttemptStart,
) -> LaunchPlan {
    let seed = trial_seed(spec.seed, trial.number);
    let builtins = Builtins {
        max_train_steps: trial.max_train_steps,
        eval_every: spec.eval_every,
        trial_dir: files.trial_dir.display().to_string(),
        trial_number: trial.number,
        seed,
        metrics_file: files.metrics.display().to_string(),
    };
    let lookup = |name: &str| builtins.value(name, &trial.params);
    let argv = match &spec.trainer.workload {
        Some(name) => vec![horizon.display().to_string(), "workload".into(), "run".into(), name.clone()],
        None => spec.trainer.command.iter().map(|pieces| expand_template(pieces, &lookup)).collect(),
    };
    let mut env: Vec<(String, String)> = spec.trainer.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let protocol = TrialEnvironment {
        study: spec.name.clone(),
        trial_number: trial.number,
        attempt: trial.attempt,
        trial_dir: files.trial_dir.display().to_string(),
        params_json: trial.params.to_json_string(),
        max_train_steps: trial.max_train_steps,
        eval_every: spec.eval_every,
        seed,
        metrics_file: files.metrics.display().to_string(),
        checkpoint_every: spec.checkpoints.every,
        // The claim policy's: a ladder asks for the checkpoint its next rung resumes from.
        checkpoint_steps: start.checkpoint_steps.clone(),
        resume_from: start.resume_from.clone(),
        rung: trial.rung,
    };
    env.extend(protocol.vars().into_iter().map(|(k, v)| (k.to_string(), v)));
    if let Some(gpu) = gpu {
        env.push(("CUDA_VISIBLE_DEVICES".to_string(), gpu.to_string()));
    }
    LaunchPlan { argv, env, working_dir: working_dir.to_path_buf() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use horizon_core::params::{ParamValue, Params};
    use horizon_core::trial::{TrialRecord, TrialState};

    #[test]
    fn argv_and_environment_follow_protocol_v1() {
        let spec = StudySpec::parse(
            r#"
[study]
name = "p"
trials = 1
max_train_steps = 100
eval_every = 10
seed = 3
[objective]
metric = "valid/loss"
direction = "minimize"
[trainer]
command = ["prog", "--lr={lr}", "--steps={max_train_steps}", "{trial_dir}/x", "{{lit}}"]
metrics = ["valid/loss"]
env = { EXTRA = "1" }
[checkpoints]
every = 40
[params.lr]
type = "float"
low = 0.001
high = 1.0
"#,
            "p.toml",
        )
        .unwrap();
        let params = Params(vec![("lr".into(), ParamValue::Float(0.05))]);
        let trial = TrialRecord { id: 1, attempt: 2, failures: 1, ..TrialRecord::new(7, params, 100, TrialState::Running) };
        let files = AttemptFiles::new(Path::new("/s/trials/00007"), 2);
        let p = plan(&spec, &trial, &files, Path::new("/w"), Some("1"), Path::new("/bin/horizon"), &Default::default());
        assert_eq!(p.argv, ["prog", "--lr=0.05", "--steps=100", "/s/trials/00007/x", "{lit}"]);
        let env = |k: &str| p.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(env("HORIZON_PROTOCOL"), Some("1"));
        assert_eq!(env("HORIZON_PARAMS"), Some(r#"{"lr":0.05}"#));
        assert_eq!(env("HORIZON_TRIAL_NUMBER"), Some("7"));
        assert_eq!(env("HORIZON_ATTEMPT"), Some("2"));
        assert_eq!(env("HORIZON_CHECKPOINT_EVERY"), Some("40"));
        assert_eq!(env("HORIZON_CHECKPOINT_STEPS"), Some(""));
        assert_eq!(env("HORIZON_METRICS_FILE"), Some("/s/trials/00007/attempt-2.metrics.jsonl"));
        assert_eq!(env("HORIZON_SEED"), Some(horizon_core::rng::trial_seed(3, 7).to_string().as_str()));
        assert_eq!(env("CUDA_VISIBLE_DEVICES"), Some("1"));
        assert_eq!(env("EXTRA"), Some("1"));
    }
}
