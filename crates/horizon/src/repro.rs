//! How to run one stored trial again by hand: its exact argv, the environment horizon gives it
//! (trial protocol v1, section 3, and `trainer.env`), and its working directory, rebuilt from
//! the spec the study was stored with. `horizon best` prints it as a shell line and in `--json`.

use std::path::{Path, PathBuf};

use horizon_core::protocol::TrialEnvironment;
use horizon_core::rng::trial_seed;
use horizon_core::spec::{Builtins, expand_template, parse_template};
use horizon_core::trial::TrialRecord;

use crate::table::shell_quote;
use crate::target::Target;

/// One trial's launch, for a person to repeat.
#[derive(Debug, Clone)]
pub struct Reproduction {
    pub argv: Vec<String>,
    /// What horizon adds to its own environment, in the order it sets them.
    pub env: Vec<(String, String)>,
    /// Where the trainer ran; `None` when it cannot be known (a study directory was given and
    /// the study file's location cannot be inferred from it).
    pub working_dir: Option<PathBuf>,
    /// A fresh directory standing in for the trial directory, so that the original trial's
    /// files and kept checkpoints are never overwritten.
    pub trial_dir: PathBuf,
    pub metrics_file: PathBuf,
}

impl Reproduction {
    /// A POSIX shell line: create the fresh trial directory and an empty metrics file, change
    /// to the working directory, and run argv under the environment.
    pub fn shell_line(&self) -> String {
        let q = |p: &Path| shell_quote(&p.display().to_string());
        let mut line = format!("mkdir -p {} && : > {} && ", q(&self.trial_dir), q(&self.metrics_file));
        if let Some(w) = &self.working_dir {
            line.push_str(&format!("cd {} && ", q(w)));
        }
        line.push_str("env");
        for (k, v) in &self.env {
            line.push(' ');
            line.push_str(&shell_quote(&format!("{k}={v}")));
        }
        for a in &self.argv {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        line
    }

    pub fn env_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.env.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect())
    }
}

/// Rebuild the launch of `trial`'s last attempt (as `horizon_runner::launch::plan` built it),
/// with a fresh trial directory below the system's temporary directory. `None` for a study
/// without a trainer (imported runs).
pub fn reproduce(t: &Target, trial: &TrialRecord) -> Option<Reproduction> {
    let spec = &t.spec.raw;
    let trainer = &spec["trainer"];
    let workload = trainer["workload"].as_str();
    let templates = trainer["command_text"].as_array().filter(|a| !a.is_empty());
    if workload.is_none() && templates.is_none() {
        return None;
    }
    let trial_dir =
        std::env::temp_dir().join("horizon-reproduce").join(safe_name(&t.study.name)).join(format!("{:05}", trial.number));
    let metrics_file = trial_dir.join("metrics.jsonl");
    let seed = trial_seed(spec["seed"].as_u64().unwrap_or(0), trial.number);
    let eval_every = spec["eval_every"].as_u64().unwrap_or(0);
    let builtins = Builtins {
        max_train_steps: trial.max_train_steps,
        eval_every,
        trial_dir: trial_dir.display().to_string(),
        trial_number: trial.number,
        seed,
        metrics_file: metrics_file.display().to_string(),
    };
    let lookup = |name: &str| builtins.value(name, &trial.params);
    let argv: Vec<String> = match workload {
        Some(name) => {
            let exe = std::env::current_exe().map_or_else(|_| "horizon".to_string(), |p| p.display().to_string());
            vec![exe, "workload".into(), "run".into(), name.to_string()]
        }
        None => templates?
            .iter()
            .map(|a| {
                let text = a.as_str().unwrap_or_default();
                parse_template(text).map(|p| expand_template(&p, &lookup)).unwrap_or_else(|_| text.to_string())
            })
            .collect(),
    };
    let mut env: Vec<(String, String)> = trainer["env"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    let protocol = TrialEnvironment {
        study: t.study.name.clone(),
        trial_number: trial.number,
        attempt: trial.attempt.max(1),
        trial_dir: trial_dir.display().to_string(),
        params_json: trial.params.to_json_string(),
        max_train_steps: trial.max_train_steps,
        eval_every,
        seed,
        metrics_file: metrics_file.display().to_string(),
        checkpoint_every: spec["checkpoints"]["every"].as_u64(),
        checkpoint_steps: Vec::new(),
        resume_from: None,
        rung: 0,
    };
    env.extend(protocol.vars().into_iter().map(|(k, v)| (k.to_string(), v)));
    let working_dir = t.spec_base().map(|base| match trainer["working_dir"].as_str() {
        Some(w) => base.join(w),
        None => base,
    });
    Some(Reproduction { argv, env, working_dir, trial_dir, metrics_file })
}

/// A study name as one path component.
fn safe_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}
