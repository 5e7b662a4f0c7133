//! `replay`: a built-in workload that trains nothing. Each trial answers from a learning curve
//! recorded elsewhere, one run of a JSON Lines file in horizon's import format
//! (docs/analysis.md, "Import formats"; read by [`horizon_import::parse_jsonl`], the parser
//! `horizon import` uses), so that studies and ladders over real curves cost nothing.
//!
//! Parameters (the catalog's `replay` entry): `runs`, the file (relative to the trainer's
//! working directory, where `horizon run` starts the process: `trainer.working_dir`, by default
//! the study file's directory), and `run`, which run of it: a 0-based index among the file's
//! runs (blank lines do not count), or a run's `name`.
//!
//! What a replay writes to the metrics file (trial protocol v1, docs/protocol.md), in order:
//!
//! 1. `{"event":"budget_independent","step":B}` with `B = HORIZON_MAX_TRAIN_STEPS`: a recorded
//!    curve is the same whatever the budget it is read to, so a ladder resumes a promoted replay
//!    where its rung ended (one recorded schedule per run, read truncated at each rung);
//! 2. when resuming from a checkpoint of step `S`, the recorded evaluation of step `S` again;
//! 3. every recorded evaluation up to the budget, one line per step and split (the part of the
//!    name before its first `/`), values exactly as recorded, non-finite ones as `"nan"`,
//!    `"inf"`, `"-inf"`. The run ends after the first step with a non-finite loss (a metric
//!    whose name ends in `loss`), as a trainer that diverged does. A run recorded as
//!    `diverged` whose curve holds no non-finite loss (its curve stops where training blew up,
//!    as in the AlexNet data) reports `train/loss = "nan"` at the step after its last
//!    evaluation, when that step is within both budgets, so that horizon records it diverged
//!    where it diverged;
//! 4. after a step's metrics, `{"event":"checkpoint","step":S,"path":"replay-S.json"}` at every
//!    step horizon asks for (`HORIZON_CHECKPOINT_EVERY`, `HORIZON_CHECKPOINT_STEPS`) that the
//!    recorded run reached, and when stopped.
//!
//! A run shorter than the budget (a smaller recorded budget, or a curve that ends early) just
//! ends where its record ends: horizon records what the data says (incomplete, or complete
//! when it reached 90% of the budget). `HORIZON_EVAL_EVERY` and `HORIZON_SEED` are not used: the
//! evaluations are the recorded ones.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use horizon_core::protocol::is_loss_like;
use horizon_core::{MetricPoint, ParamValue, TrialState};
use horizon_import::Run;
use serde::{Deserialize, Serialize};

use crate::config::ParamSet;
use crate::report::Reporter;
use crate::{RunEnd, TrialEnv, WorkloadError};

/// The workload's name in the catalog.
pub const NAME: &str = "replay";

/// The recorded run a trial replays.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The runs file, absolute.
    pub path: PathBuf,
    /// The run's 0-based index among the file's runs.
    pub index: usize,
    /// How many runs the file holds.
    pub count: usize,
    pub run: Run,
}

impl Selected {
    /// `run 3 ("iteration-3", line 4 of /data/runs.jsonl)`.
    fn describe(&self) -> String {
        let line = self.run.trial.origin.rsplit(':').next().unwrap_or("?");
        match &self.run.name {
            Some(name) => format!("run {} ({name:?}, line {line} of {})", self.index, self.path.display()),
            None => format!("run {} (line {line} of {})", self.index, self.path.display()),
        }
    }
}

/// Read the runs file named by the parameter `runs` and pick the run named by `run`. Every
/// problem is an error naming the parameter, the file and the fix.
pub fn select(params: &ParamSet) -> Result<Selected, WorkloadError> {
    let fail = |reason: String| WorkloadError::Replay { reason };
    let runs = match params.values.get("runs") {
        Some(ParamValue::Str(s)) if !s.trim().is_empty() => s.clone(),
        Some(ParamValue::Str(_)) | None => {
            return Err(fail(
                "parameter runs is not set: the replay workload needs the JSON Lines file of recorded runs to replay\n  \
                 fix: add to the study [params.runs] type = \"fixed\" value = \"runs.jsonl\" (a path relative to the \
                 trainer's working directory, by default the study file's directory)"
                    .into(),
            ));
        }
        Some(other) => {
            return Err(WorkloadError::invalid("runs", other, "the path of a JSON Lines file of recorded runs (a string)"));
        }
    };
    // Relative to the working directory the trainer runs in (`trainer.working_dir`); made
    // absolute here so that every message and checkpoint names the file it means.
    let path = std::path::absolute(Path::new(&runs)).unwrap_or_else(|_| PathBuf::from(&runs));
    let all =
        horizon_import::parse_jsonl(&path).map_err(|e| fail(format!("parameter runs = {runs:?}: cannot replay from it: {e}")))?;
    let count = all.len();
    let last = count - 1;
    let index = match params.values.get("run") {
        Some(ParamValue::Int(i)) => {
            usize::try_from(*i).ok().filter(|&i| i < count).ok_or_else(|| out_of_range(*i, &path, count))?
        }
        Some(ParamValue::Float(x)) if x.fract() == 0.0 && x.abs() < 9e15 => {
            let i = *x as i64;
            usize::try_from(i).ok().filter(|&i| i < count).ok_or_else(|| out_of_range(i, &path, count))?
        }
        Some(ParamValue::Str(name)) => all.iter().position(|r| r.name.as_deref() == Some(name.as_str())).ok_or_else(|| {
            let names: Vec<&str> = all.iter().filter_map(|r| r.name.as_deref()).collect();
            let known = match names.len() {
                0 => "its runs have no names".to_string(),
                n if n <= 5 => format!("its run names: {}", names.join(", ")),
                n => format!("its run names: {}, ... ({n} in all)", names[..5].join(", ")),
            };
            fail(format!(
                "parameter run = {name:?}: no run in {} is named {name:?} ({count} runs; {known})\n  \
                 fix: name a run by its \"name\" in the file, or give its 0-based index in 0..={last}",
                path.display()
            ))
        })?,
        Some(other) => {
            return Err(WorkloadError::invalid("run", other, format!("a run's 0-based index in 0..={last}, or a run's name")));
        }
        None => 0,
    };
    let run = all.into_iter().nth(index).expect("index checked");
    Ok(Selected { path, index, count, run })
}

fn out_of_range(i: i64, path: &Path, count: usize) -> WorkloadError {
    let last = count - 1;
    WorkloadError::Replay {
        reason: format!(
            "parameter run = {i} is out of range: {} has {count} runs, numbered 0 to {last}\n  \
             fix: sample the run within the file, e.g. [params.run] type = \"int\" low = 0 high = {last}",
            path.display()
        ),
    }
}

/// One step of a replay: the recorded values to report (full names, `valid/error`; may be
/// empty), then whether to write and announce a checkpoint of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub step: u64,
    pub values: Vec<(String, f64)>,
    pub checkpoint: bool,
}

/// What a replay of `run` under `budget` writes after its declaration, as data, step by step:
/// the recorded evaluations from `resumed` on (that step's again, then the later ones; from the
/// start when `None`), and a checkpoint at each later step for which `checkpoint(step)` holds
/// and that the recorded run reached. The rules are in the module docs.
pub fn plan(
    run: &horizon_import::ImportedTrial,
    budget: u64,
    resumed: Option<u64>,
    checkpoint: impl Fn(u64) -> bool,
) -> Vec<Step> {
    let mut points: Vec<&MetricPoint> = run.metrics.iter().filter(|m| m.step <= budget).collect();
    points.sort_by_key(|m| m.step);
    let diverged_at = points.iter().find(|m| !m.value.is_finite() && is_loss_like(&m.name, "")).map(|m| m.step);
    let last = run.metrics.iter().map(|m| m.step).max();
    // A run recorded as diverged with no non-finite loss stopped where its loss became NaN:
    // say so at the next step, when both budgets reach it.
    let silent_divergence = match (diverged_at, run.state) {
        (None, TrialState::Diverged) => {
            let next = last.map_or(1, |l| l + 1);
            (next <= budget && next <= run.max_train_steps).then_some(next)
        }
        _ => None,
    };
    // The last step the recorded run reached within the budget: a complete run trained to its
    // own budget; any other got as far as its last evaluation (or diverged there).
    let reached = match (diverged_at, silent_divergence) {
        (Some(d), _) => d,
        (None, Some(next)) => next - 1,
        (None, None) if run.state == TrialState::Complete => budget.min(run.max_train_steps),
        (None, None) => budget.min(last.unwrap_or(0)),
    };
    let start = resumed.unwrap_or(0);
    let mut steps: Vec<Step> = Vec::new();
    let mut at = points.iter().peekable();
    for step in start..=reached {
        let mut values = Vec::new();
        while let Some(m) = at.next_if(|m| m.step <= step) {
            if m.step == step {
                values.push((m.name.clone(), m.value));
            }
        }
        let checkpoint = step > start && checkpoint(step);
        if !values.is_empty() || checkpoint {
            steps.push(Step { step, values, checkpoint });
        }
    }
    if let Some(next) = silent_divergence
        && next > start
    {
        steps.push(Step { step: next, values: vec![("train/loss".into(), f64::NAN)], checkpoint: false });
    }
    steps
}

/// What a replay's checkpoint holds: which run, and how far it was read. Written as
/// `replay-<step>.json` in the trial directory (first as `replay-<step>.json.tmp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayCheckpoint {
    pub workload: String,
    pub step: u64,
    /// The run's 0-based index in the file.
    pub run: usize,
    pub name: Option<String>,
    /// The run's fingerprint (parameters, budget, curve: `ImportedTrial::run_key`), so that a
    /// resume notices a file that changed under it.
    pub run_key: String,
    /// The runs file, absolute, for the record.
    pub runs: PathBuf,
}

/// The checkpoint file's name for a step, as announced (relative to the trial directory).
pub fn checkpoint_name(step: u64) -> String {
    format!("replay-{step}.json")
}

fn save(trial_dir: &Path, selected: &Selected, step: u64) -> Result<String, WorkloadError> {
    let name = checkpoint_name(step);
    let path = trial_dir.join(&name);
    let tmp = trial_dir.join(format!("{name}.tmp"));
    let fail = |reason: String| WorkloadError::Checkpoint { path: path.clone(), reason };
    let state = ReplayCheckpoint {
        workload: NAME.into(),
        step,
        run: selected.index,
        name: selected.run.name.clone(),
        run_key: selected.run.trial.run_key.clone(),
        runs: selected.path.clone(),
    };
    let json = serde_json::to_string_pretty(&state).expect("the checkpoint is JSON");
    std::fs::write(&tmp, json).map_err(|e| fail(format!("writing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(|e| fail(format!("renaming {} into place: {e}", tmp.display())))?;
    Ok(name)
}

fn load(path: &Path, selected: &Selected, budget: u64) -> Result<u64, WorkloadError> {
    let fail = |reason: String| WorkloadError::Resume { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path)
        .map_err(|e| fail(format!("reading it: {e} (a replay's checkpoints are replay-<step>.json files)")))?;
    let c: ReplayCheckpoint = serde_json::from_slice(&bytes).map_err(|e| fail(format!("it is not a replay checkpoint: {e}")))?;
    if c.workload != NAME {
        return Err(fail(format!("it is a checkpoint of workload {}, not {NAME}", c.workload)));
    }
    if c.run != selected.index {
        return Err(fail(format!("it was written replaying run {} but this trial replays {}", c.run, selected.describe())));
    }
    if c.run_key != selected.run.trial.run_key {
        return Err(fail(format!(
            "{} is not the run the checkpoint was written from (its parameters, budget or curve changed since): the runs \
             file changed under the study; restore it, or start a new study",
            selected.describe()
        )));
    }
    if c.step > budget {
        return Err(fail(format!(
            "it is at step {}, past this run's budget HORIZON_MAX_TRAIN_STEPS = {budget} (a checkpoint resumes only a run at \
             least as long as its step)",
            c.step
        )));
    }
    Ok(c.step)
}

/// Replay the run `params` select as the trial `env` describes.
pub fn run(params: &ParamSet, env: &TrialEnv, stop: &AtomicBool) -> Result<RunEnd, WorkloadError> {
    let selected = select(params)?;
    let budget = env.max_train_steps;
    let resumed = env.resume_from.as_deref().map(|p| load(p, &selected, budget)).transpose()?;
    let trial = &selected.run.trial;
    let mut note = format!(
        "replay: {} of {} runs, recorded {} at a budget of {} steps; reading it to step {budget}",
        selected.describe(),
        selected.count,
        trial.state.as_str(),
        trial.max_train_steps
    );
    if trial.max_train_steps > budget {
        note.push_str(" (the start of a longer recorded schedule)");
    }
    if let Some(m) = &trial.message {
        note.push_str(&format!("; recorded message: {m}"));
    }
    if let Some(s) = resumed {
        note.push_str(&format!("; resuming after step {s}"));
    }
    eprintln!("{note}");

    let mut reporter = Reporter::open(&env.metrics_file)?;
    reporter.budget_independent(budget)?;
    let steps = plan(trial, budget, resumed, |s| env.is_checkpoint_step(s));
    let end = steps.last().map(|s| s.step);
    for s in &steps {
        for (split, group) in by_split(&s.values) {
            reporter.metrics(s.step, split, &group)?;
        }
        if s.checkpoint {
            reporter.checkpoint(s.step, &save(&env.trial_dir, &selected, s.step)?)?;
        }
        if stop.load(Ordering::SeqCst) && Some(s.step) != end {
            if !s.checkpoint {
                reporter.checkpoint(s.step, &save(&env.trial_dir, &selected, s.step)?)?;
            }
            return Ok(RunEnd::Stopped { step: s.step });
        }
    }
    Ok(RunEnd::Finished)
}

/// A step's values as protocol lines: grouped by split (the name before its first `/`), in the
/// order the splits first appear; names without a split (or with an empty part: `lr`, `/x`)
/// go as they are on a line without one.
fn by_split(values: &[(String, f64)]) -> Vec<(&str, Vec<(&str, f64)>)> {
    let mut groups: Vec<(&str, Vec<(&str, f64)>)> = Vec::new();
    for (name, value) in values {
        let (split, short) = match name.split_once('/') {
            Some((split, short)) if !split.is_empty() && !short.is_empty() => (split, short),
            _ => ("", name.as_str()),
        };
        match groups.iter_mut().find(|(s, _)| *s == split) {
            Some((_, group)) => group.push((short, *value)),
            None => groups.push((split, vec![(short, *value)])),
        }
    }
    groups
}
