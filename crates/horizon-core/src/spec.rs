//! Study files: TOML parsed into a checked [`StudySpec`].
//!
//! Parsing has two layers, as in ripgrep's flags: serde reads the file's shape (unknown fields
//! and wrong types are refused with the line and column), then [`StudySpec::parse`] checks every
//! value and returns a [`SpecError`] that names the file, the field and the fix. The format is
//! documented field by field in `docs/study-spec.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::analysis_config::AnalysisConfig;
use crate::criterion::Criterion;
use crate::lr_sweep::LrSweepSpec;
use crate::params::ParamValue;
use crate::sampler::{DEFAULT_GRID_POINTS, DEFAULT_HALTON_SKIP, SamplerSpec};
use crate::space::{ParamDef, ParamKind, Scale, SearchSpace};

/// A problem in a study file: where it is, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{origin}: {field}: {problem}{}", if fix.is_empty() { String::new() } else { format!("\n  fix: {fix}") })]
pub struct SpecError {
    /// The file (or other origin) the text came from.
    pub origin: String,
    /// The dotted field path, e.g. `params.learning_rate.low`, or `(syntax)`.
    pub field: String,
    pub problem: String,
    pub fix: String,
}

/// Whether the objective is minimized or maximized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Minimize,
    Maximize,
}

impl Direction {
    /// `"minimize"` or `"maximize"`, as written in a study file.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Minimize => "minimize",
            Direction::Maximize => "maximize",
        }
    }

    /// The direction written as [`Direction::as_str`] writes it.
    pub fn parse(text: &str) -> Option<Direction> {
        [Direction::Minimize, Direction::Maximize].into_iter().find(|d| d.as_str() == text)
    }

    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }
}

/// The metric a study optimizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub metric: String,
    pub direction: Direction,
}

/// One piece of a command-line argument template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Piece {
    Text(String),
    /// `{name}`: a parameter or a built-in placeholder.
    Var(String),
}

/// Placeholders every command template may use besides the parameters.
pub const BUILTIN_PLACEHOLDERS: &[&str] = &["max_train_steps", "eval_every", "trial_dir", "trial_number", "seed", "metrics_file"];

/// How horizon starts a trial's training program.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainerSpec {
    /// A built-in workload (`horizon workload run NAME`) instead of a command.
    pub workload: Option<String>,
    /// The program and its arguments, each a template (`--lr={learning_rate}`), never a shell line.
    /// Empty for a built-in workload.
    pub command: Vec<Vec<Piece>>,
    /// The template text as written, for display.
    pub command_text: Vec<String>,
    /// Working directory, relative to the study file's directory (default: that directory).
    pub working_dir: Option<String>,
    pub env: BTreeMap<String, String>,
    /// The metric names the trainer reports; the objective must be one of them.
    pub metrics: Vec<String>,
    #[serde(with = "duration_opt")]
    pub timeout: Option<Duration>,
    #[serde(with = "duration")]
    pub kill_grace: Duration,
    /// How many times a failed trial is run again before it counts as failed.
    pub retries: u32,
    /// Devices handed out through `CUDA_VISIBLE_DEVICES`, one per running trial.
    pub gpus: Vec<String>,
    /// Stop a trial as soon as it reports a non-finite loss.
    pub stop_on_divergence: bool,
    /// Stop a trial (as complete) as soon as this holds, e.g. the LR sweep's fit criterion.
    pub stop_when: Option<Criterion>,
}

/// Which checkpoints horizon keeps, and when it asks the trainer for them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointSpec {
    /// Keep the `keep_best` checkpoints with the best objective value at their step.
    pub keep_best: usize,
    /// Also keep the most recent checkpoint (needed to resume).
    pub keep_latest: bool,
    /// Ask for a checkpoint every this many steps (`HORIZON_CHECKPOINT_EVERY`).
    pub every: Option<u64>,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        CheckpointSpec { keep_best: 1, keep_latest: true, every: None }
    }
}

/// A checked study file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudySpec {
    pub name: String,
    /// Where the study's database and trial directories live, relative to the study file.
    pub directory: Option<String>,
    pub notes: String,
    /// How many trials the study runs.
    pub trials: u64,
    /// The one fixed budget every trial trains for.
    pub max_train_steps: u64,
    /// Evaluate every this many steps.
    pub eval_every: u64,
    pub seed: u64,
    pub objective: Objective,
    pub trainer: TrainerSpec,
    pub sampler: SamplerSpec,
    pub checkpoints: CheckpointSpec,
    pub space: SearchSpace,
    /// The "off" value of each regularization or augmentation parameter (`[params.NAME] off`,
    /// or the built-in workload's), used by the learning-rate sweep.
    pub off: BTreeMap<String, ParamValue>,
    /// The value of each parameter that shapes the learning rate over training (a schedule, a
    /// warmup) under which the rate stays constant (`[params.NAME] constant`, or the built-in
    /// workload's), used by the learning-rate sweep.
    pub constant: BTreeMap<String, ParamValue>,
    /// The `[lr_sweep]` section, checked; `None` when the file has none (see
    /// [`StudySpec::lr_sweep_spec`] for the defaults).
    pub lr_sweep: Option<LrSweepSpec>,
    /// The `[analysis]` section: the settings `horizon analyze` judges the study with (defaults
    /// for what the file leaves out). Not part of the study's identity: changing them changes
    /// the reading, never the trials.
    pub analysis: AnalysisConfig,
    /// The `[ladder]` section: trials start at a short budget and the best go on to longer
    /// ones (docs/ladder.md); `None` runs every trial at `max_train_steps`.
    pub ladder: Option<LadderSpec>,
    /// The `[[round]]` tables: tuning in rounds of growing budgets (docs/method.md section 3);
    /// empty for a study without rounds.
    pub rounds: Vec<RoundSpec>,
    /// What each parameter is for the rounds' transfer table: `[params.NAME] role`, or the
    /// built-in workload's catalog; parameters not named are [`crate::rounds::ParamRole::Other`].
    pub roles: BTreeMap<String, crate::rounds::ParamRole>,
}

/// One round of a study tuned in rounds, checked (and read back from a stored spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundSpec {
    /// The per-trial budget of the round.
    pub max_train_steps: u64,
    /// New configurations sampled in this round (from the space the transfer table makes).
    pub trials: u64,
    /// How many of the previous round's best go on to this one (with their schedule carried
    /// over by rule); 0 in the first round.
    pub carry: u64,
    /// Per-parameter overrides of the transfer table for this round.
    pub transfer: BTreeMap<String, crate::rounds::Transfer>,
}

/// A study's ladder, checked: the rung budgets (the last is `max_train_steps`) and whether
/// promoted trials resume from a checkpoint where their schedule allows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LadderSpec {
    #[serde(flatten)]
    pub ladder: crate::ladder::Ladder,
    pub resume: bool,
}

/// The shortest `trainer.timeout`: no trainer starts and trains in less.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest `trainer.timeout` (a year); a longer one is no limit, and leaving it out says so.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// The shortest `trainer.kill_grace`: one tick of the attempt loop, so SIGTERM comes first.
pub const MIN_KILL_GRACE: Duration = Duration::from_millis(100);
/// The longest `trainer.kill_grace`: every stop, Ctrl-C included, may wait this long.
pub const MAX_KILL_GRACE: Duration = Duration::from_secs(3600);
/// The most `trainer.retries`.
pub const MAX_RETRIES: i64 = 1000;
/// The most `sampler.points` of a grid.
pub const MAX_GRID_POINTS: i64 = 1000;

/// Top-level fields whose change would make earlier trials incomparable with new ones.
pub const IDENTITY_FIELDS: &[&str] = &[
    "max_train_steps",
    "eval_every",
    "seed",
    "objective",
    "sampler",
    "space",
    "trainer.workload",
    "trainer.command",
    "trainer.env",
    "trainer.stop_when",
    "ladder",
    "rounds",
];

impl StudySpec {
    /// Parse and check a study file's text. `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<StudySpec, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| SpecError {
            origin: origin.to_string(),
            field: e
                .span()
                .map(|s| format!("line {}", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_else(|| "(syntax)".into()),
            problem: e.message().trim().to_string(),
            fix: "see docs/study-spec.md for every field and a complete example".into(),
        })?;
        Checker { origin }.check(raw)
    }

    /// The fields that identify the study's results, as JSON, for comparing a study file with
    /// the one a stored study was started from.
    pub fn identity(&self) -> serde_json::Value {
        let mut full = serde_json::to_value(self).expect("a spec is always representable in JSON");
        let trainer = full["trainer"].take();
        let mut id = serde_json::Map::new();
        for field in IDENTITY_FIELDS {
            let value = match field.strip_prefix("trainer.") {
                Some(f) => trainer[f].clone(),
                None => full[*field].take(),
            };
            id.insert(field.to_string(), value);
        }
        serde_json::Value::Object(id)
    }

    /// The identity fields that differ between two [`StudySpec::identity`] values.
    pub fn identity_changes<'a>(stored: &'a serde_json::Value, new: &'a serde_json::Value) -> Vec<String> {
        // A field that an older horizon did not store reads as null: studies stored before a
        // field joined the identity keep resuming while the field is unset.
        let get = |v: &'a serde_json::Value, f: &str| v.get(f).unwrap_or(&serde_json::Value::Null);
        IDENTITY_FIELDS.iter().filter(|f| get(stored, f) != get(new, f)).map(|f| f.to_string()).collect()
    }

    /// The learning-rate sweep's settings: the `[lr_sweep]` section as checked, or the defaults
    /// it implies when the file has none (`origin` names the file in errors).
    pub fn lr_sweep_spec(&self, origin: &str) -> Result<LrSweepSpec, SpecError> {
        match &self.lr_sweep {
            Some(sweep) => Ok(sweep.clone()),
            None => Checker { origin }.lr_sweep(&RawLrSweep::default(), self),
        }
    }

    fn with_lr_sweep(mut self, raw: Option<&RawLrSweep>, checker: &Checker) -> Result<StudySpec, SpecError> {
        if let Some(raw) = raw {
            self.lr_sweep = Some(checker.lr_sweep(raw, &self)?);
        }
        Ok(self)
    }

    /// The names a command template may use: every parameter and the built-in placeholders.
    pub fn placeholder_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.space.params.iter().map(|p| p.name.clone()).collect();
        names.extend(BUILTIN_PLACEHOLDERS.iter().map(|s| s.to_string()));
        names
    }
}

/// The search space and analysis settings of a study made elsewhere (`horizon import --space`):
/// a file's `[params.NAME]` tables, checked exactly as in a study file, and its optional
/// `[analysis]` table. A whole study file is accepted too; its other tables are not read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpaceFile {
    pub space: SearchSpace,
    pub analysis: AnalysisConfig,
}

impl SpaceFile {
    /// Parse and check a space file's text. `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<SpaceFile, SpecError> {
        let raw: RawSpaceFile = toml::from_str(text).map_err(|e| SpecError {
            origin: origin.to_string(),
            field: e
                .span()
                .map(|s| format!("line {}", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_else(|| "(syntax)".into()),
            problem: e.message().trim().to_string(),
            fix: "a space file holds [params.NAME] tables as in a study file (docs/study-spec.md), and optionally [analysis]"
                .into(),
        })?;
        let checker = Checker { origin };
        if raw.params.is_empty() {
            return Err(checker.err("params", "no [params.NAME] table: the file declares no parameter",
                "declare each parameter the runs varied, e.g. [params.lr] type = \"float\", low = 1e-4, high = 1.0, scale = \"log\""));
        }
        Ok(SpaceFile { space: checker.space(&raw.params)?, analysis: checker.analysis(raw.analysis.as_ref())? })
    }
}

// ---------------------------------------------------------------------------------------------
// The file's shape, as serde reads it.

/// A space file: `[params]` and `[analysis]`; any other table (a whole study file's) is ignored.
#[derive(Deserialize)]
struct RawSpaceFile {
    #[serde(default)]
    params: IndexMap<String, RawParam>,
    #[serde(default)]
    analysis: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    study: RawStudy,
    objective: RawObjective,
    trainer: RawTrainer,
    #[serde(default)]
    sampler: Option<RawSampler>,
    #[serde(default)]
    checkpoints: Option<RawCheckpoints>,
    #[serde(default)]
    params: IndexMap<String, RawParam>,
    #[serde(default)]
    lr_sweep: Option<RawLrSweep>,
    #[serde(default)]
    analysis: Option<toml::Value>,
    #[serde(default)]
    ladder: Option<RawLadder>,
    #[serde(default)]
    round: Vec<RawRound>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRound {
    max_train_steps: Option<i64>,
    budget_fraction: Option<f64>,
    #[serde(default)]
    trials: i64,
    carry: Option<i64>,
    carry_fraction: Option<f64>,
    #[serde(default)]
    transfer: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLadder {
    min_steps: Option<i64>,
    eta: Option<i64>,
    rungs: Option<Vec<i64>>,
    resume: Option<bool>,
    min_rank_correlation: Option<f64>,
    calibration: Option<i64>,
    grow: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLrSweep {
    param: Option<String>,
    low: Option<f64>,
    high: Option<f64>,
    points: Option<i64>,
    fit: Option<String>,
    steps: Option<i64>,
    max_steps: Option<i64>,
    patience: Option<i64>,
    prune: Option<bool>,
    /// Settings of the run that used to find N; refused with the reason.
    start_steps: Option<toml::Value>,
    find_lr: Option<toml::Value>,
    extensions: Option<i64>,
    extend_by: Option<i64>,
    eval_every: Option<i64>,
    #[serde(default)]
    set: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStudy {
    name: String,
    directory: Option<String>,
    #[serde(default)]
    notes: String,
    trials: i64,
    max_train_steps: i64,
    eval_every: i64,
    #[serde(default)]
    seed: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObjective {
    metric: String,
    direction: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrainer {
    workload: Option<String>,
    command: Option<Vec<String>>,
    working_dir: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    metrics: Option<Vec<String>>,
    timeout: Option<String>,
    kill_grace: Option<String>,
    #[serde(default)]
    retries: i64,
    #[serde(default)]
    gpus: Vec<toml::Value>,
    stop_on_divergence: Option<bool>,
    stop_when: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSampler {
    kind: String,
    skip: Option<i64>,
    points: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckpoints {
    keep_best: Option<i64>,
    keep_latest: Option<bool>,
    every: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    #[serde(rename = "type")]
    kind: String,
    low: Option<toml::Value>,
    high: Option<toml::Value>,
    scale: Option<String>,
    values: Option<Vec<toml::Value>>,
    choices: Option<Vec<toml::Value>>,
    value: Option<toml::Value>,
    off: Option<toml::Value>,
    constant: Option<toml::Value>,
    role: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The checks.

struct Checker<'a> {
    origin: &'a str,
}

impl Checker<'_> {
    fn err(&self, field: &str, problem: impl Into<String>, fix: impl Into<String>) -> SpecError {
        SpecError { origin: self.origin.to_string(), field: field.into(), problem: problem.into(), fix: fix.into() }
    }

    fn positive(&self, field: &str, v: i64) -> Result<u64, SpecError> {
        if v < 1 {
            return Err(self.err(field, format!("must be at least 1, got {v}"), "use a positive integer"));
        }
        Ok(v as u64)
    }

    fn duration(&self, field: &str, text: &str) -> Result<Duration, SpecError> {
        humantime::parse_duration(text).map_err(|e| {
            self.err(field, format!("{text:?} is not a duration ({e})"), "write e.g. \"90s\", \"10m\" or \"2h 30m\"")
        })
    }

    /// `trainer.timeout`: long enough for a trainer to start, short enough to be a limit.
    fn timeout(&self, text: &str) -> Result<Duration, SpecError> {
        const FIELD: &str = "trainer.timeout";
        let d = self.duration(FIELD, text)?;
        let fix = "give the longest an attempt may take, e.g. timeout = \"10m\", or leave timeout out for no limit";
        if d.is_zero() {
            return Err(self.err(FIELD, format!("{text:?} is zero: every attempt would time out as it starts"), fix));
        }
        if d < MIN_TIMEOUT {
            return Err(self.err(
                FIELD,
                format!("{text:?} is under a second: no trainer starts and trains in that time, so every attempt would time out"),
                fix,
            ));
        }
        if d > MAX_TIMEOUT {
            return Err(self.err(
                FIELD,
                format!("{text:?} is longer than a year, which is no limit at all"),
                "leave timeout out for no limit, or give the longest an attempt may take, e.g. \"2d\"",
            ));
        }
        Ok(d)
    }

    /// `trainer.kill_grace`: time to act on SIGTERM, without holding up a stop for hours.
    fn kill_grace(&self, text: &str) -> Result<Duration, SpecError> {
        const FIELD: &str = "trainer.kill_grace";
        let d = self.duration(FIELD, text)?;
        if d < MIN_KILL_GRACE {
            let what = if d.is_zero() { "is zero" } else { "is shorter than horizon's 100 ms tick" };
            return Err(self.err(
                FIELD,
                format!("{text:?} {what}: the trainer would be killed right after SIGTERM, with no time to save or exit"),
                "give it time to write a checkpoint and exit, e.g. kill_grace = \"10s\" (the default)",
            ));
        }
        if d > MAX_KILL_GRACE {
            return Err(self.err(FIELD,
                format!("{text:?} is longer than an hour: a trainer that ignores SIGTERM would hold up every stop (and Ctrl-C) that long"),
                "use seconds to minutes, e.g. kill_grace = \"30s\"; a trainer that needs longer should checkpoint more often"));
        }
        Ok(d)
    }

    fn check(&self, raw: RawSpec) -> Result<StudySpec, SpecError> {
        let s = &raw.study;
        if s.name.trim().is_empty() || s.name.contains(['/', '\\']) {
            return Err(self.err(
                "study.name",
                format!("{:?} is not a usable study name", s.name),
                "use a non-empty name without slashes, e.g. \"digits-lr-sweep\"",
            ));
        }
        let trials = self.positive("study.trials", s.trials)?;
        let max_train_steps = self.positive("study.max_train_steps", s.max_train_steps)?;
        let eval_every = self.positive("study.eval_every", s.eval_every)?;
        if eval_every > max_train_steps {
            return Err(self.err(
                "study.eval_every",
                format!("{eval_every} is larger than max_train_steps ({max_train_steps}): no evaluation would happen"),
                "evaluate at least a few times per run, e.g. max_train_steps / 20",
            ));
        }
        if s.seed < 0 {
            return Err(self.err("study.seed", format!("must be >= 0, got {}", s.seed), "use a non-negative integer"));
        }

        let space = self.space(&raw.params)?;

        let t = &raw.trainer;
        let builtin = match (&t.workload, &t.command) {
            (Some(_), Some(_)) => return Err(self.err("trainer.workload", "is set together with trainer.command",
                "use either a built-in workload or your own command, not both")),
            (None, None) => return Err(self.err("trainer.command", "is missing",
                "give the program and its arguments, e.g. [\"python3\", \"train.py\", \"--lr={learning_rate}\"], or a built-in workload = \"digits-mlp\"")),
            (Some(name), None) => Some(crate::workloads::workload(name).ok_or_else(|| self.err("trainer.workload",
                format!("{name:?} is not a built-in workload"),
                format!("use one of: {}", crate::workloads::WORKLOADS.iter().map(|w| w.name).collect::<Vec<_>>().join(", "))))?),
            (None, Some(_)) => None,
        };
        let metrics: Vec<String> = match (&t.metrics, builtin) {
            (Some(m), _) => m.clone(),
            (None, Some(w)) => w.metrics.iter().map(|m| m.to_string()).collect(),
            (None, None) => {
                return Err(self.err(
                    "trainer.metrics",
                    "is missing",
                    "list the metric names the trainer reports, e.g. [\"train/loss\", \"valid/loss\"]",
                ));
            }
        };
        if metrics.is_empty() {
            return Err(self.err(
                "trainer.metrics",
                "is empty",
                "list the metric names the trainer reports, e.g. [\"train/loss\", \"valid/loss\"]",
            ));
        }
        for (i, m) in metrics.iter().enumerate() {
            if m.is_empty() || m.chars().any(char::is_whitespace) {
                return Err(self.err(
                    &format!("trainer.metrics[{i}]"),
                    format!("{m:?} is not a metric name"),
                    "use names without spaces, with their split, e.g. \"valid/loss\"",
                ));
            }
            if let Some(w) = builtin
                && !w.metrics.contains(&m.as_str())
            {
                return Err(self.err(
                    &format!("trainer.metrics[{i}]"),
                    format!("workload {} does not report {m:?}", w.name),
                    format!("it reports: {}", w.metrics.join(", ")),
                ));
            }
        }
        if let Some(w) = builtin {
            for p in &space.params {
                if crate::workloads::workload_param(w, &p.name).is_none() {
                    return Err(self.err(
                        &format!("params.{}", p.name),
                        format!("workload {} has no parameter {:?}", w.name, p.name),
                        format!("it takes: {}", crate::workloads::workload_param_names(w).join(", ")),
                    ));
                }
            }
        }
        let Some(direction) = Direction::parse(&raw.objective.direction) else {
            return Err(self.err(
                "objective.direction",
                format!("{:?} is not a direction", raw.objective.direction),
                "write \"minimize\" (losses, error rates) or \"maximize\" (accuracies)",
            ));
        };
        if !metrics.contains(&raw.objective.metric) {
            return Err(self.err(
                "objective.metric",
                format!("{:?} is not among the metrics the trainer reports ({})", raw.objective.metric, metrics.join(", ")),
                "name one of trainer.metrics, or add the metric to trainer.metrics",
            ));
        }

        let command_text = t.command.clone().unwrap_or_default();
        if builtin.is_none() && (command_text.is_empty() || command_text[0].is_empty()) {
            return Err(self.err(
                "trainer.command",
                "is empty",
                "give the program and its arguments as a list, e.g. [\"python3\", \"train.py\", \"--lr={learning_rate}\"]",
            ));
        }
        let mut allowed: Vec<&str> = space.params.iter().map(|p| p.name.as_str()).collect();
        allowed.extend(BUILTIN_PLACEHOLDERS);
        let mut command = Vec::new();
        for (i, arg) in command_text.iter().enumerate() {
            let field = format!("trainer.command[{i}]");
            let pieces = parse_template(arg)
                .map_err(|p| self.err(&field, p, "write {name} for a value and {{ or }} for a literal brace"))?;
            for piece in &pieces {
                if let Piece::Var(v) = piece
                    && !allowed.contains(&v.as_str())
                {
                    return Err(self.err(
                        &field,
                        format!("placeholder {{{v}}} is neither a parameter nor a built-in"),
                        format!("use one of: {}", allowed.join(", ")),
                    ));
                }
            }
            command.push(pieces);
        }
        for key in t.env.keys() {
            if key.is_empty() || key.contains('=') || key.starts_with("HORIZON_") {
                return Err(self.err(
                    &format!("trainer.env.{key}"),
                    "is not a variable horizon can set",
                    "use a name without '=' that does not start with HORIZON_ (horizon sets those itself)",
                ));
            }
        }
        let timeout = t.timeout.as_deref().map(|x| self.timeout(x)).transpose()?;
        let kill_grace = self.kill_grace(t.kill_grace.as_deref().unwrap_or("10s"))?;
        if t.retries < 0 {
            return Err(self.err("trainer.retries", format!("must be >= 0, got {}", t.retries), "use 0 to never retry"));
        }
        if t.retries > MAX_RETRIES {
            return Err(self.err(
                "trainer.retries",
                format!("{} re-runs of a failed trial is more than horizon allows ({MAX_RETRIES})", t.retries),
                "a trial that fails this often has a bug, not bad luck; use a few, e.g. retries = 2",
            ));
        }
        let mut gpus = Vec::new();
        for (i, g) in t.gpus.iter().enumerate() {
            gpus.push(match g {
                toml::Value::Integer(n) if *n >= 0 => n.to_string(),
                toml::Value::String(s) if !s.is_empty() && !s.contains(',') => s.clone(),
                other => {
                    return Err(self.err(
                        &format!("trainer.gpus[{i}]"),
                        format!("{other} is not a device id"),
                        "list device indices or UUIDs, e.g. gpus = [0, 1]",
                    ));
                }
            });
        }

        let stop_when = match &t.stop_when {
            None => None,
            Some(text) => {
                let c =
                    Criterion::parse(text).map_err(|p| self.err("trainer.stop_when", p, "write e.g. \"train/error <= 0\""))?;
                if !metrics.contains(&c.metric) {
                    return Err(self.err(
                        "trainer.stop_when",
                        format!("{:?} is not among trainer.metrics", c.metric),
                        format!("use one of: {}", metrics.join(", ")),
                    ));
                }
                Some(c)
            }
        };
        let mut off = BTreeMap::new();
        for (name, p) in &raw.params {
            if let Some(v) = &p.off {
                off.insert(name.clone(), self.scalar(&format!("params.{name}.off"), v)?);
            } else if let Some(v) = builtin.and_then(|_| crate::workloads::regularization_off(name)) {
                off.insert(name.clone(), v);
            }
        }
        let mut constant = BTreeMap::new();
        for (name, p) in &raw.params {
            if let Some(v) = &p.constant {
                constant.insert(name.clone(), self.scalar(&format!("params.{name}.constant"), v)?);
            } else if let Some(v) = builtin.and_then(|_| crate::lr_sweep::workload_constant(name)) {
                constant.insert(name.clone(), v);
            }
        }

        let sampler = match &raw.sampler {
            None => SamplerSpec::default(),
            Some(rs) => self.sampler(rs, &space)?,
        };
        if let Some(cap) = sampler
            .build(&space, 0)
            .map_err(|e| self.err("sampler.kind", e, "use kind = \"halton\" for more than two dimensions"))?
            .capacity()
            && trials > cap
        {
            return Err(self.err(
                "study.trials",
                format!("{trials} trials but the grid has only {cap} points"),
                format!("set trials = {cap} or raise sampler.points"),
            ));
        }

        let mut checkpoints = CheckpointSpec::default();
        if let Some(c) = &raw.checkpoints {
            if let Some(k) = c.keep_best {
                if k < 0 {
                    return Err(self.err(
                        "checkpoints.keep_best",
                        format!("must be >= 0, got {k}"),
                        "use 0 to keep only the latest",
                    ));
                }
                checkpoints.keep_best = k as usize;
            }
            if let Some(l) = c.keep_latest {
                checkpoints.keep_latest = l;
            }
            if let Some(e) = c.every {
                let every = self.positive("checkpoints.every", e)?;
                if every > max_train_steps {
                    return Err(self.err(
                        "checkpoints.every",
                        format!("{every} is larger than max_train_steps ({max_train_steps}): no checkpoint would be asked for"),
                        format!(
                            "use at most {max_train_steps}, e.g. every = {}, or leave every out",
                            (max_train_steps / 5).max(1)
                        ),
                    ));
                }
                checkpoints.every = Some(every);
            }
        }

        let rounds = self.rounds(&raw.round, raw.ladder.is_some(), max_train_steps, &space)?;
        StudySpec {
            name: s.name.clone(),
            directory: s.directory.clone(),
            notes: s.notes.clone(),
            trials,
            max_train_steps,
            eval_every,
            seed: s.seed as u64,
            objective: Objective { metric: raw.objective.metric.clone(), direction },
            trainer: TrainerSpec {
                workload: builtin.map(|w| w.name.to_string()),
                command,
                command_text,
                working_dir: t.working_dir.clone(),
                env: t.env.clone(),
                metrics,
                timeout,
                kill_grace,
                retries: t.retries as u32,
                gpus,
                stop_on_divergence: t.stop_on_divergence.unwrap_or(true),
                stop_when,
            },
            sampler,
            checkpoints,
            space,
            off,
            constant,
            lr_sweep: None,
            analysis: self.analysis(raw.analysis.as_ref())?,
            ladder: self.ladder(raw.ladder.as_ref(), max_train_steps)?,
            rounds,
            roles: self.roles(&raw.params, builtin.map(|w| w.name))?,
        }
        .with_lr_sweep(raw.lr_sweep.as_ref(), self)
    }

    /// The `[ladder]` table: `min_steps` and `eta` (rungs `min_steps * eta^k` up to
    /// `max_train_steps`), or an explicit list of `rungs` ending at `max_train_steps`.
    fn ladder(&self, raw: Option<&RawLadder>, max_train_steps: u64) -> Result<Option<LadderSpec>, SpecError> {
        use crate::ladder::Ladder;
        let Some(r) = raw else { return Ok(None) };
        let eta = match r.eta {
            None => 3,
            Some(e) if e >= 2 => e as u64,
            Some(e) => {
                return Err(self.err(
                    "ladder.eta",
                    format!("must be at least 2, got {e}"),
                    "use eta = 3 (the best third of each rung goes on)",
                ));
            }
        };
        let ladder = match (&r.rungs, r.min_steps) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    "ladder",
                    "both rungs and min_steps are set",
                    "give either min_steps (geometric rungs) or the list of rungs, not both",
                ));
            }
            (None, None) => {
                return Err(self.err(
                    "ladder",
                    "neither min_steps nor rungs is set",
                    format!("add min_steps = {} (rungs min_steps * eta^k up to max_train_steps)", (max_train_steps / 27).max(1)),
                ));
            }
            (None, Some(min)) => {
                let min = self.positive("ladder.min_steps", min)?;
                Ladder::geometric(min, eta, max_train_steps).map_err(|e| {
                    self.err(
                        "ladder.min_steps",
                        e.0,
                        format!(
                            "use a min_steps below max_train_steps ({max_train_steps}), e.g. {}",
                            (max_train_steps / 27).max(1)
                        ),
                    )
                })?
            }
            (Some(list), None) => {
                let mut rungs = Vec::with_capacity(list.len());
                for (i, &b) in list.iter().enumerate() {
                    rungs.push(self.positive(&format!("ladder.rungs[{i}]"), b)?);
                }
                if rungs.last() != Some(&max_train_steps) {
                    return Err(self.err(
                        "ladder.rungs",
                        format!("the last rung is {:?}, not max_train_steps ({max_train_steps})", rungs.last()),
                        format!("end the list with {max_train_steps}: the top rung is the study's budget"),
                    ));
                }
                Ladder::explicit(rungs, eta)
                    .map_err(|e| self.err("ladder.rungs", e.0, "list increasing budgets, at least two"))?
            }
        };
        let mut ladder = ladder;
        if let Some(c) = r.min_rank_correlation {
            if !(c.is_finite() && (-1.0..=1.0).contains(&c)) {
                return Err(self.err(
                    "ladder.min_rank_correlation",
                    format!("must be a rank correlation in -1..1, got {c}"),
                    format!(
                        "use e.g. {} (the default), or -1 for a rung that always decides",
                        crate::ladder::DEFAULT_MIN_RANK_CORRELATION
                    ),
                ));
            }
            ladder.min_rank_correlation = c;
        }
        if let Some(c) = r.calibration {
            if c < 0 {
                return Err(self.err(
                    "ladder.calibration",
                    format!("must be >= 0, got {c}"),
                    "use 0 for plain ASHA (no measurement), or leave it out for 2 * eta^2",
                ));
            }
            ladder.calibration = Some(c as u64);
        }
        ladder.grow = r.grow.unwrap_or(false);
        Ok(Some(LadderSpec { ladder, resume: r.resume.unwrap_or(true) }))
    }

    /// `[params.NAME] role`, checked, and the built-in workload's roles for the rest.
    fn roles(
        &self,
        raw: &IndexMap<String, RawParam>,
        workload: Option<&str>,
    ) -> Result<BTreeMap<String, crate::rounds::ParamRole>, SpecError> {
        let mut roles = BTreeMap::new();
        for (name, p) in raw {
            let role = match &p.role {
                Some(text) => Some(serde_json::from_value(serde_json::Value::String(text.clone())).map_err(|_| {
                    self.err(
                        &format!("params.{name}.role"),
                        format!("{text:?} is not a role"),
                        "use one of: warmup, initialization, architecture, optimizer, augmentation, regularization, schedule, other",
                    )
                })?),
                None => workload.and_then(|w| crate::workloads::param_role(w, name)),
            };
            if let Some(role) = role {
                roles.insert(name.clone(), role);
            }
        }
        Ok(roles)
    }

    /// The `[[round]]` tables: budgets that grow (each `max_train_steps`, or `budget_fraction`
    /// of the study's), new trials and the previous round's best carried on, transfer overrides.
    fn rounds(&self, raw: &[RawRound], ladder: bool, production: u64, space: &SearchSpace) -> Result<Vec<RoundSpec>, SpecError> {
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        if ladder {
            return Err(self.err("round", "a study has either rounds or a [ladder], not both", "remove one of them"));
        }
        if raw.len() < 2 {
            return Err(self.err("round", "a single round is a plain study", "add a second [[round]], or remove [[round]]"));
        }
        let mut rounds: Vec<RoundSpec> = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let at = |field: &str| format!("round[{i}].{field}");
            let budget = match (r.max_train_steps, r.budget_fraction) {
                (Some(_), Some(_)) => {
                    return Err(self.err(&format!("round[{i}]"), "both max_train_steps and budget_fraction are set", "give one"));
                }
                (Some(b), None) => self.positive(&at("max_train_steps"), b)?,
                (None, Some(f)) if f.is_finite() && f > 0.0 && f <= 1.0 => ((production as f64 * f).round() as u64).max(1),
                (None, Some(f)) => {
                    return Err(self.err(
                        &at("budget_fraction"),
                        format!("must be in (0, 1], got {f}"),
                        "e.g. 0.25 of [study] max_train_steps",
                    ));
                }
                (None, None) => {
                    return Err(self.err(
                        &format!("round[{i}]"),
                        "has no budget",
                        "set max_train_steps, or budget_fraction (of [study] max_train_steps)",
                    ));
                }
            };
            if budget > production {
                return Err(self.err(
                    &at("max_train_steps"),
                    format!("{budget} is beyond the study's max_train_steps ({production}), the production budget"),
                    format!("use at most {production}"),
                ));
            }
            if let Some(prev) = rounds.last()
                && budget <= prev.max_train_steps
            {
                return Err(self.err(
                    &at("max_train_steps"),
                    format!("{budget} does not grow from round {}'s {}", i - 1, prev.max_train_steps),
                    "give every round a longer budget than the one before",
                ));
            }
            if r.trials < 0 {
                return Err(self.err(
                    &at("trials"),
                    format!("must be >= 0, got {}", r.trials),
                    "the number of new configurations",
                ));
            }
            let carry = match (r.carry, r.carry_fraction, rounds.last()) {
                (Some(_), Some(_), _) => {
                    return Err(self.err(&format!("round[{i}]"), "both carry and carry_fraction are set", "give one"));
                }
                (None, None, _) => 0,
                (_, _, None) => {
                    return Err(self.err(&at("carry"), "the first round has no previous round to carry from", "remove carry"));
                }
                (Some(k), None, Some(_)) if k >= 0 => k as u64,
                (Some(k), None, Some(_)) => {
                    return Err(self.err(&at("carry"), format!("must be >= 0, got {k}"), "the number to carry on"));
                }
                (None, Some(f), Some(prev)) if f.is_finite() && f > 0.0 && f <= 1.0 => {
                    (((prev.trials + prev.carry) as f64 * f).round() as u64).max(1)
                }
                (None, Some(f), Some(_)) => {
                    return Err(self.err(
                        &at("carry_fraction"),
                        format!("must be in (0, 1], got {f}"),
                        "e.g. 0.1 of the previous round",
                    ));
                }
            };
            let trials = r.trials as u64;
            if trials + carry == 0 {
                return Err(self.err(
                    &format!("round[{i}]"),
                    "runs nothing (no trials and nothing carried)",
                    "set trials, or carry",
                ));
            }
            let mut transfer = BTreeMap::new();
            for (name, how) in &r.transfer {
                if space.param(name).is_none() {
                    return Err(self.err(
                        &at(&format!("transfer.{name}")),
                        "is not a parameter of the study",
                        "name a [params.NAME]",
                    ));
                }
                let t: crate::rounds::Transfer =
                    serde_json::from_value(serde_json::Value::String(how.clone())).map_err(|_| {
                        self.err(
                            &at(&format!("transfer.{name}")),
                            format!("{how:?} is not a transfer"),
                            "use freeze, narrow or search",
                        )
                    })?;
                transfer.insert(name.clone(), t);
            }
            rounds.push(RoundSpec { max_train_steps: budget, trials, carry, transfer });
        }
        Ok(rounds)
    }

    /// The `[analysis]` table: `AnalysisConfig`'s fields, each checked.
    fn analysis(&self, raw: Option<&toml::Value>) -> Result<AnalysisConfig, SpecError> {
        let Some(raw) = raw else { return Ok(AnalysisConfig::default()) };
        let config: AnalysisConfig = raw.clone().try_into().map_err(|e: toml::de::Error| {
            self.err(
                "analysis",
                e.message().trim().to_string(),
                "see docs/analysis.md section 5 for every setting and its default",
            )
        })?;
        config.check().map_err(|p| SpecError {
            origin: self.origin.to_string(),
            field: format!("analysis.{}", p.field),
            problem: p.problem,
            fix: p.fix,
        })?;
        Ok(config)
    }

    fn lr_sweep(&self, r: &RawLrSweep, spec: &StudySpec) -> Result<LrSweepSpec, SpecError> {
        let builtin = spec.trainer.workload.as_deref().and_then(crate::workloads::workload);
        let known = |name: &str| {
            spec.space.param(name).is_some() || builtin.is_some_and(|w| crate::workloads::workload_param(w, name).is_some())
        };
        let param = r.param.clone().unwrap_or_else(|| "learning_rate".into());
        if !known(&param) {
            return Err(self.err(
                "lr_sweep.param",
                format!("{param:?} is not a parameter of this study"),
                "name the learning-rate parameter (param = \"learning_rate\") and declare it under [params]",
            ));
        }
        let range = spec.space.param(&param).and_then(|d| match &d.kind {
            ParamKind::Float { low, high, .. } => Some((*low, *high)),
            ParamKind::Int { low, high, .. } => Some((*low as f64, *high as f64)),
            ParamKind::Discrete { values } => {
                let xs: Vec<f64> = values.iter().filter_map(ParamValue::as_f64).collect();
                Some((xs.iter().copied().fold(f64::INFINITY, f64::min), xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)))
            }
            _ => None,
        });
        let (low, high) = match (r.low, r.high, range) {
            (Some(l), Some(h), _) => (l, h),
            (l, h, Some((a, b))) => (l.unwrap_or(a), h.unwrap_or(b)),
            (l, _, None) => {
                return Err(self.err(
                    if l.is_none() { "lr_sweep.low" } else { "lr_sweep.high" },
                    format!("is missing, and params.{param} has no range to take it from"),
                    "give the grid's range, e.g. low = 0.001 and high = 1.0",
                ));
            }
        };
        if !(low > 0.0 && high > low && high.is_finite()) {
            return Err(self.err(
                "lr_sweep.low",
                format!("the grid needs 0 < low < high, got low = {low}, high = {high}"),
                "give a positive range, e.g. low = 0.001 and high = 1.0 (learning rates are swept in log scale)",
            ));
        }
        let count = |field: &str, v: Option<i64>, default: i64, min: i64| -> Result<u32, SpecError> {
            let v = v.unwrap_or(default);
            if v < min || v > 1000 {
                return Err(self.err(
                    &format!("lr_sweep.{field}"),
                    format!("must be between {min} and 1000, got {v}"),
                    format!("use e.g. {field} = {default}"),
                ));
            }
            Ok(v as u32)
        };
        let points = count("points", r.points, 5, 1)?;
        let extensions = count("extensions", r.extensions, 2, 0)?;
        let extend_by = count("extend_by", r.extend_by, 2, 1)?;
        let fit = match &r.fit {
            Some(text) => Criterion::parse(text)
                .map_err(|p| self.err("lr_sweep.fit", p, "write e.g. fit = \"train/error <= 0\" or \"train/loss <= 0.001\""))?,
            None if spec.trainer.metrics.iter().any(|m| m == "train/error") => {
                Criterion::parse("train/error <= 0").expect("a valid criterion")
            }
            None => {
                return Err(self.err(
                    "lr_sweep.fit",
                    "is missing, and the trainer reports no train/error to default to",
                    "say when the training set counts as fit, e.g. fit = \"train/loss <= 0.001\"",
                ));
            }
        };
        if !spec.trainer.metrics.contains(&fit.metric) {
            return Err(self.err(
                "lr_sweep.fit",
                format!("{:?} is not among the metrics the trainer reports ({})", fit.metric, spec.trainer.metrics.join(", ")),
                "use a training metric the trainer reports, e.g. train/error or train/loss",
            ));
        }
        for (field, given) in [("start_steps", &r.start_steps), ("find_lr", &r.find_lr)] {
            if given.is_some() {
                return Err(self.err(&format!("lr_sweep.{field}"),
                    "no separate run finds N any more: the grid runs against max_steps, and the fastest fit stops the other rates",
                    format!("remove {field} (docs/lr-sweep.md); give N as steps if you know it")));
            }
        }
        let eval_every = r.eval_every.map(|v| self.positive("lr_sweep.eval_every", v)).transpose()?.unwrap_or(spec.eval_every);
        let steps = r.steps.map(|v| self.positive("lr_sweep.steps", v)).transpose()?;
        let max_steps = r
            .max_steps
            .map(|v| self.positive("lr_sweep.max_steps", v))
            .transpose()?
            .unwrap_or(spec.max_train_steps.saturating_mul(16));
        let patience =
            r.patience.map(|v| self.positive("lr_sweep.patience", v)).transpose()?.unwrap_or(eval_every.saturating_mul(20));
        // The sweep's studies scale the timeout with their budget (`lr_sweep::stage_study`).
        if let Some(t) = spec.trainer.timeout {
            let longest = steps.unwrap_or(max_steps);
            let factor = (longest as f64 / spec.max_train_steps as f64).max(1.0);
            if Duration::try_from_secs_f64(t.as_secs_f64() * factor).is_err() {
                return Err(self.err(
                    if steps.is_some() { "lr_sweep.steps" } else { "lr_sweep.max_steps" },
                    format!(
                        "{longest} steps, {}x max_train_steps, would scale trainer.timeout past the longest duration there is",
                        longest / spec.max_train_steps
                    ),
                    "cap the sweep's budget at a reasonable multiple of max_train_steps (the default is 16)",
                ));
            }
        }
        let budget = steps.unwrap_or(max_steps);
        if eval_every > budget {
            return Err(self.err(
                "lr_sweep.eval_every",
                format!("{eval_every} is larger than the sweep's budget ({budget})"),
                "evaluate often enough to see the step of the fit, e.g. every 1-5% of the budget",
            ));
        }
        let mut set = BTreeMap::new();
        for (name, v) in &r.set {
            let field = format!("lr_sweep.set.{name}");
            if *name == param {
                return Err(self.err(&field, "sets the swept learning rate", format!("remove it; the sweep varies {param}")));
            }
            if !known(name) {
                return Err(self.err(
                    &field,
                    format!("{name:?} is not a parameter of this study"),
                    "set only parameters declared under [params] (or the workload's)",
                ));
            }
            set.insert(name.clone(), self.scalar(&field, v)?);
        }
        Ok(LrSweepSpec {
            param,
            low,
            high,
            points,
            fit,
            steps,
            max_steps,
            patience,
            prune: r.prune.unwrap_or(true),
            extensions,
            extend_by,
            eval_every,
            set,
        })
    }

    fn sampler(&self, rs: &RawSampler, space: &SearchSpace) -> Result<SamplerSpec, SpecError> {
        let unused = |field: &str, kind: &str| {
            self.err(
                &format!("sampler.{field}"),
                format!("does not apply to kind = \"{kind}\""),
                format!("remove sampler.{field}"),
            )
        };
        match rs.kind.as_str() {
            "halton" => {
                if rs.points.is_some() {
                    return Err(unused("points", "halton"));
                }
                let skip = rs.skip.unwrap_or(DEFAULT_HALTON_SKIP as i64);
                if skip < 0 {
                    return Err(self.err(
                        "sampler.skip",
                        format!("must be >= 0, got {skip}"),
                        "use the default (100) unless you know why",
                    ));
                }
                Ok(SamplerSpec::Halton { skip: skip as u64 })
            }
            "random" => {
                if rs.points.is_some() {
                    return Err(unused("points", "random"));
                }
                if rs.skip.is_some() {
                    return Err(unused("skip", "random"));
                }
                Ok(SamplerSpec::Random)
            }
            "grid" => {
                if rs.skip.is_some() {
                    return Err(unused("skip", "grid"));
                }
                let points = rs.points.unwrap_or(DEFAULT_GRID_POINTS as i64);
                if points < 2 {
                    return Err(self.err("sampler.points", format!("must be >= 2, got {points}"), "use e.g. points = 5"));
                }
                if points > MAX_GRID_POINTS {
                    return Err(self.err(
                        "sampler.points",
                        format!("{points} points per parameter is more than horizon allows ({MAX_GRID_POINTS})"),
                        "use e.g. points = 5 to 20; for a finer search use kind = \"halton\"",
                    ));
                }
                if space.dims() == 0 || space.dims() > 2 {
                    return Err(self.err(
                        "sampler.kind",
                        format!("grid search needs one or two varied parameters, this space varies {}", space.dims()),
                        "use kind = \"halton\" (quasi-random search) for more dimensions",
                    ));
                }
                Ok(SamplerSpec::Grid { points: points as u32 })
            }
            other => Err(self.err(
                "sampler.kind",
                format!("{other:?} is not a sampler"),
                "use \"halton\" (default), \"random\" or \"grid\"",
            )),
        }
    }

    fn space(&self, raw: &IndexMap<String, RawParam>) -> Result<SearchSpace, SpecError> {
        let mut params = Vec::new();
        for (name, p) in raw {
            let f = |field: &str| format!("params.{name}.{field}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
                return Err(self.err(
                    &format!("params.{name}"),
                    "is not a usable parameter name",
                    "use letters, digits, '_', '-' and '.' only",
                ));
            }
            if BUILTIN_PLACEHOLDERS.contains(&name.as_str()) {
                return Err(self.err(
                    &format!("params.{name}"),
                    "is the name of a built-in placeholder",
                    "rename the parameter; the built-ins are set by horizon",
                ));
            }
            let allowed: &[&str] = match p.kind.as_str() {
                "float" | "int" => &["low", "high", "scale"],
                "discrete" => &["values"],
                "categorical" => &["choices"],
                "fixed" => &["value"],
                other => {
                    return Err(self.err(
                        &f("type"),
                        format!("{other:?} is not a parameter type"),
                        "use \"float\", \"int\", \"discrete\", \"categorical\" or \"fixed\"",
                    ));
                }
            };
            let present = [
                ("low", p.low.is_some()),
                ("high", p.high.is_some()),
                ("scale", p.scale.is_some()),
                ("values", p.values.is_some()),
                ("choices", p.choices.is_some()),
                ("value", p.value.is_some()),
            ];
            for (field, is_set) in present {
                if is_set && !allowed.contains(&field) {
                    return Err(self.err(
                        &f(field),
                        format!("does not apply to type = \"{}\"", p.kind),
                        format!("a {} parameter takes {}", p.kind, allowed.join(", ")),
                    ));
                }
            }
            let kind = match p.kind.as_str() {
                "float" | "int" => {
                    let scale = match p.scale.as_deref() {
                        None | Some("linear") => Scale::Linear,
                        Some("log") => Scale::Log,
                        Some(other) => {
                            return Err(self.err(
                                &f("scale"),
                                format!("{other:?} is not a scale"),
                                "use \"linear\" (default) or \"log\"",
                            ));
                        }
                    };
                    if p.kind == "int" {
                        let (low, high) =
                            (self.int_bound(&f("low"), p.low.as_ref())?, self.int_bound(&f("high"), p.high.as_ref())?);
                        self.range_order(&f("low"), low, high, |x| x.to_string())?;
                        if scale == Scale::Log && low < 1 {
                            return Err(self.err(
                                &f("low"),
                                format!("a log scale needs low >= 1, got {low}"),
                                "use low = 1 or more, or scale = \"linear\"",
                            ));
                        }
                        if high.checked_sub(low).is_none() {
                            return Err(self.err(
                                &f("high"),
                                format!("the range from {low} to {high} is wider than the largest integer ({})", i64::MAX),
                                "narrow the range, e.g. so that low and high have the same sign",
                            ));
                        }
                        ParamKind::Int { low, high, scale }
                    } else {
                        let (low, high) =
                            (self.float_bound(&f("low"), p.low.as_ref())?, self.float_bound(&f("high"), p.high.as_ref())?);
                        self.range_order(&f("low"), low, high, |x| format!("{x:?}"))?;
                        if scale == Scale::Log && low <= 0.0 {
                            return Err(self.err(
                                &f("low"),
                                format!("a log scale needs low > 0, got {low:?}"),
                                "use a small positive low (e.g. 1e-6), or scale = \"linear\"",
                            ));
                        }
                        if !(high - low).is_finite() {
                            return Err(self.err(
                                &f("high"),
                                format!("the range from {low:?} to {high:?} is wider than the largest float ({:?})", f64::MAX),
                                "narrow the range; for values over many orders of magnitude use scale = \"log\" with low > 0",
                            ));
                        }
                        ParamKind::Float { low, high, scale }
                    }
                }
                "discrete" => {
                    let values = self.list(&f("values"), p.values.as_deref())?;
                    if values.iter().any(|v| v.as_f64().is_none()) {
                        return Err(self.err(
                            &f("values"),
                            "discrete values must be numbers",
                            "use type = \"categorical\" for strings or booleans",
                        ));
                    }
                    for (i, v) in values.iter().enumerate() {
                        if let Some(earlier) = values[..i].iter().find(|e| e.as_f64() == v.as_f64()) {
                            return Err(self.err(
                                &format!("{}[{i}]", f("values")),
                                format!("{v} is the same number as {earlier}, listed earlier"),
                                "list each value once",
                            ));
                        }
                    }
                    ParamKind::Discrete { values }
                }
                "categorical" => ParamKind::Categorical { choices: self.list(&f("choices"), p.choices.as_deref())? },
                _ => {
                    let v = p
                        .value
                        .as_ref()
                        .ok_or_else(|| self.err(&f("value"), "is missing", "give the value, e.g. value = 0.9"))?;
                    ParamKind::Fixed { value: self.scalar(&f("value"), v)? }
                }
            };
            params.push(ParamDef { name: name.clone(), kind });
        }
        Ok(SearchSpace { params })
    }

    /// One end of an int parameter's range: an integer, exactly as written (never via f64).
    fn int_bound(&self, field: &str, v: Option<&toml::Value>) -> Result<i64, SpecError> {
        let whole = "write a whole number such as 1 or 100";
        match v {
            None => Err(self.err(field, "is missing", "give both ends of the range, e.g. low = 1 and high = 100")),
            Some(toml::Value::Integer(i)) => Ok(*i),
            Some(toml::Value::Float(x)) if x.is_nan() => Err(self.err(field, "nan is not a number", whole)),
            Some(toml::Value::Float(x)) if x.is_infinite() => Err(self.err(
                field,
                format!("{x} is not a whole number"),
                format!("write a whole number between {} and {}", i64::MIN, i64::MAX),
            )),
            Some(toml::Value::Float(x)) if x.fract() != 0.0 => Err(self.err(
                field,
                format!("{x:?} is not an integer"),
                format!("write a whole number such as {} or {}", x.floor() as i64, x.ceil() as i64),
            )),
            Some(toml::Value::Float(x)) if *x < -(2f64.powi(63)) || *x >= 2f64.powi(63) => Err(self.err(
                field,
                format!("{x:?} is beyond the integers an int parameter holds ({} to {})", i64::MIN, i64::MAX),
                "write a whole number in that range, or use type = \"float\"",
            )),
            Some(toml::Value::Float(x)) => Err(self.err(
                field,
                format!("{x:?} is a float, and an int parameter's bounds are integers"),
                format!("write {} (without the decimal point)", *x as i64),
            )),
            Some(toml::Value::String(text)) => Err(self.err(
                field,
                format!("{text:?} is a string, not an integer"),
                match text.trim().parse::<i64>() {
                    Ok(i) => format!("remove the quotes: {i}"),
                    Err(_) => whole.to_string(),
                },
            )),
            Some(other) => Err(self.err(field, format!("{other} is {}, not an integer", a_type(other)), whole)),
        }
    }

    /// One end of a float parameter's range: a finite number (integers are widened).
    fn float_bound(&self, field: &str, v: Option<&toml::Value>) -> Result<f64, SpecError> {
        let number = "write a number such as 0.001 or 10";
        match v {
            None => Err(self.err(field, "is missing", "give both ends of the range, e.g. low = 0.001 and high = 1.0")),
            Some(toml::Value::Integer(i)) => Ok(*i as f64),
            Some(toml::Value::Float(x)) if x.is_finite() => Ok(*x),
            Some(toml::Value::Float(x)) if x.is_nan() => Err(self.err(field, "nan is not a number", number)),
            Some(toml::Value::Float(x)) => Err(self.err(
                field,
                format!("{x} is not a finite number"),
                format!(
                    "a range needs finite ends: write the most extreme value worth trying, e.g. {}",
                    if *x < 0.0 { "-1e6" } else { "1e6" }
                ),
            )),
            Some(toml::Value::String(text)) => Err(self.err(
                field,
                format!("{text:?} is a string, not a number"),
                match text.trim().parse::<f64>() {
                    Ok(x) if x.is_finite() => format!("remove the quotes: {x:?}"),
                    _ => number.to_string(),
                },
            )),
            Some(other) => Err(self.err(field, format!("{other} is {}, not a number", a_type(other)), number)),
        }
    }

    /// `low` must be below `high`; `text` writes a bound as messages show it.
    fn range_order<T: PartialOrd + Copy>(
        &self,
        field: &str,
        low: T,
        high: T,
        text: impl Fn(T) -> String,
    ) -> Result<(), SpecError> {
        if low == high {
            return Err(self.err(
                field,
                format!("{} equals high: the range holds a single value", text(low)),
                format!("widen the range, or use type = \"fixed\" with value = {}", text(low)),
            ));
        }
        if low > high {
            return Err(self.err(field, format!("{} must be below high ({})", text(low), text(high)), "swap low and high"));
        }
        Ok(())
    }

    fn list(&self, field: &str, values: Option<&[toml::Value]>) -> Result<Vec<ParamValue>, SpecError> {
        let values = values.ok_or_else(|| self.err(field, "is missing", "give the list, e.g. values = [32, 64, 128]"))?;
        if values.is_empty() {
            return Err(self.err(field, "is empty", "give at least one value"));
        }
        let out =
            values.iter().enumerate().map(|(i, v)| self.scalar(&format!("{field}[{i}]"), v)).collect::<Result<Vec<_>, _>>()?;
        for i in 0..out.len() {
            if out[..i].contains(&out[i]) {
                return Err(self.err(field, format!("{} appears twice", out[i]), "list each value once"));
            }
        }
        Ok(out)
    }

    fn scalar(&self, field: &str, v: &toml::Value) -> Result<ParamValue, SpecError> {
        Ok(match v {
            toml::Value::Integer(i) => ParamValue::Int(*i),
            toml::Value::Float(x) if x.is_finite() => ParamValue::Float(*x),
            toml::Value::String(s) => ParamValue::Str(s.clone()),
            toml::Value::Boolean(b) => ParamValue::Bool(*b),
            other => return Err(self.err(field, format!("{other} is not a scalar value"), "use a number, string or boolean")),
        })
    }
}

/// "a string", "an array", ...: the kind of a TOML value, for messages.
fn a_type(v: &toml::Value) -> String {
    let kind = v.type_str();
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {kind}")
}

/// Split an argument template into text and `{placeholders}`; `{{` and `}}` are literal braces.
pub fn parse_template(arg: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unclosed '{{' in {arg:?}")),
                    }
                }
                if name.is_empty() {
                    return Err(format!("empty placeholder {{}} in {arg:?}"));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Var(name));
            }
            '}' => return Err(format!("unmatched '}}' in {arg:?}")),
            c => text.push(c),
        }
    }
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The values of the built-in placeholders for one attempt.
#[derive(Debug, Clone)]
pub struct Builtins {
    pub max_train_steps: u64,
    pub eval_every: u64,
    pub trial_dir: String,
    pub trial_number: u64,
    pub seed: u64,
    pub metrics_file: String,
}

impl Builtins {
    /// The text of placeholder `name`: a built-in, else the trial's parameter (empty if absent).
    pub fn value(&self, name: &str, params: &crate::Params) -> String {
        match name {
            "max_train_steps" => self.max_train_steps.to_string(),
            "eval_every" => self.eval_every.to_string(),
            "trial_dir" => self.trial_dir.clone(),
            "trial_number" => self.trial_number.to_string(),
            "seed" => self.seed.to_string(),
            "metrics_file" => self.metrics_file.clone(),
            param => params.get(param).map(|v| v.to_string()).unwrap_or_default(),
        }
    }
}

/// Expand a parsed template with `lookup` (which knows every name the checker allowed).
pub fn expand_template(pieces: &[Piece], lookup: &dyn Fn(&str) -> String) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.clone(),
            Piece::Var(v) => lookup(v),
        })
        .collect()
}

mod duration {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

mod duration_opt {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[study]
name = "t"
trials = 10
max_train_steps = 1000
eval_every = 100

[objective]
metric = "valid/loss"
direction = "minimize"

[trainer]
command = ["python3", "train.py", "--lr={learning_rate}", "--steps={max_train_steps}", "{{literal}}"]
metrics = ["train/loss", "valid/loss"]
timeout = "5m"
retries = 2

[params.learning_rate]
type = "float"
low = 1e-4
high = 1
scale = "log"

[params.width]
type = "int"
low = 16
high = 256

[params.batch_size]
type = "discrete"
values = [32, 64]

[params.optimizer]
type = "categorical"
choices = ["sgd", "adam"]

[params.epochs]
type = "fixed"
value = 3
"#;

    fn err(text: &str) -> SpecError {
        StudySpec::parse(text, "study.toml").unwrap_err()
    }

    #[test]
    fn a_complete_file_parses() {
        let s = StudySpec::parse(GOOD, "study.toml").unwrap();
        assert_eq!(s.trials, 10);
        assert_eq!(s.space.dims(), 4);
        assert_eq!(s.space.params[0].name, "learning_rate", "declaration order is kept");
        assert_eq!(s.trainer.timeout, Some(Duration::from_secs(300)));
        assert_eq!(s.trainer.kill_grace, Duration::from_secs(10));
        assert_eq!(s.trainer.command[4], vec![Piece::Text("{literal}".into())]);
        assert_eq!(s.sampler, SamplerSpec::Halton { skip: DEFAULT_HALTON_SKIP });
    }

    #[test]
    fn the_ladder_table_is_checked_and_part_of_the_identity() {
        let s = StudySpec::parse(GOOD, "study.toml").unwrap();
        assert_eq!(s.ladder, None);
        let with = |table: &str| StudySpec::parse(&format!("{GOOD}\n[ladder]\n{table}\n"), "study.toml");
        let l = with("min_steps = 40").unwrap().ladder.unwrap();
        assert_eq!((l.ladder.rungs.as_slice(), l.ladder.eta, l.resume), (&[40u64, 120, 360, 1000][..], 3, true));
        let l = with("rungs = [100, 400, 1000]\neta = 4\nresume = false").unwrap().ladder.unwrap();
        assert_eq!((l.ladder.rungs.as_slice(), l.ladder.eta, l.resume), (&[100u64, 400, 1000][..], 4, false));
        for (table, field, says) in [
            ("eta = 3", "ladder", "neither min_steps nor rungs"),
            ("min_steps = 10\nrungs = [10, 1000]", "ladder", "both"),
            ("min_steps = 1000", "ladder.min_steps", "below max_train_steps"),
            ("min_steps = 0", "ladder.min_steps", "at least 1"),
            ("min_steps = 10\neta = 1", "ladder.eta", "at least 2"),
            ("rungs = [100, 500]", "ladder.rungs", "not max_train_steps (1000)"),
            ("rungs = [500, 100, 1000]", "ladder.rungs", "increase"),
            ("rungs = [1000]", "ladder.rungs", "two rungs"),
            ("rungs = [0, 1000]", "ladder.rungs[0]", "at least 1"),
            ("min_steps = 10\nsteps = 3", "line", "unknown field"),
        ] {
            let e = with(table).unwrap_err();
            assert!(e.field.starts_with(field), "{table}: {e}");
            assert!(e.to_string().contains(says), "{table}: {e}");
        }
        let l = with("min_steps = 40\nmin_rank_correlation = 0.5\ncalibration = 0\ngrow = true").unwrap().ladder.unwrap();
        assert_eq!((l.ladder.min_rank_correlation, l.ladder.calibration, l.ladder.grow), (0.5, Some(0), true));
        let l = with("min_steps = 40").unwrap().ladder.unwrap();
        assert_eq!((l.ladder.min_rank_correlation, l.ladder.calibration, l.ladder.grow), (0.7, None, false), "the defaults");
        for (table, field) in [
            ("min_steps = 40\nmin_rank_correlation = 1.5", "ladder.min_rank_correlation"),
            ("min_steps = 40\ncalibration = -1", "ladder.calibration"),
        ] {
            assert_eq!(with(table).unwrap_err().field, field);
        }
        // Changing the ladder changes what the trials are: it is part of the identity.
        let a = with("min_steps = 40").unwrap().identity();
        let b = with("min_steps = 50").unwrap().identity();
        assert_eq!(StudySpec::identity_changes(&a, &b), ["ladder"]);
        assert!(StudySpec::identity_changes(&s.identity(), &s.identity()).is_empty());
    }

    #[test]
    fn rounds_are_checked_and_roles_come_from_the_file() {
        let s = StudySpec::parse(GOOD, "study.toml").unwrap();
        assert!(s.rounds.is_empty() && s.roles.is_empty());
        let with = |tables: &str| StudySpec::parse(&format!("{GOOD}\n{tables}\n"), "study.toml");
        let two = "[[round]]\nbudget_fraction = 0.25\ntrials = 20\n[[round]]\nmax_train_steps = 1000\ncarry_fraction = 0.1\ntrials = 2\n[round.transfer]\nwidth = \"freeze\"";
        let s = with(two).unwrap();
        assert_eq!(s.rounds.len(), 2);
        assert_eq!((s.rounds[0].max_train_steps, s.rounds[0].trials, s.rounds[0].carry), (250, 20, 0));
        assert_eq!((s.rounds[1].max_train_steps, s.rounds[1].trials, s.rounds[1].carry), (1000, 2, 2));
        assert_eq!(s.rounds[1].transfer.get("width"), Some(&crate::rounds::Transfer::Freeze));
        for (tables, field, says) in [
            ("[[round]]\nmax_train_steps = 100\ntrials = 3", "round", "single round"),
            (
                "[[round]]\nmax_train_steps = 500\ntrials = 3\n[[round]]\nmax_train_steps = 400\ncarry = 1",
                "round[1].max_train_steps",
                "does not grow",
            ),
            (
                "[[round]]\nmax_train_steps = 500\ntrials = 3\n[[round]]\nmax_train_steps = 2000\ncarry = 1",
                "round[1].max_train_steps",
                "production budget",
            ),
            (
                "[[round]]\nmax_train_steps = 100\ncarry = 2\n[[round]]\nmax_train_steps = 1000\ncarry = 1",
                "round[0].carry",
                "first round",
            ),
            ("[[round]]\ntrials = 3\n[[round]]\nmax_train_steps = 1000\ncarry = 1", "round[0]", "no budget"),
            ("[[round]]\nmax_train_steps = 100\ntrials = 3\n[[round]]\nmax_train_steps = 1000", "round[1]", "runs nothing"),
            (
                "[[round]]\nmax_train_steps = 100\ntrials = 3\n[[round]]\nmax_train_steps = 1000\ncarry = 1\n[round.transfer]\nnope = \"freeze\"",
                "round[1].transfer.nope",
                "not a parameter",
            ),
            (
                "[[round]]\nmax_train_steps = 100\ntrials = 3\n[[round]]\nmax_train_steps = 1000\ncarry = 1\n[round.transfer]\nwidth = \"melt\"",
                "round[1].transfer.width",
                "freeze, narrow or search",
            ),
            (
                "[ladder]\nmin_steps = 10\n[[round]]\nmax_train_steps = 100\ntrials = 3\n[[round]]\nmax_train_steps = 1000\ncarry = 1",
                "round",
                "not both",
            ),
        ] {
            let e = with(tables).unwrap_err();
            assert_eq!(e.field, field, "{tables}: {e}");
            assert!(e.to_string().contains(says), "{tables}: {e}");
        }
        // A parameter's role, from the file; a bad one names the choices.
        let text = GOOD.replace("[params.width]\ntype = \"int\"", "[params.width]\nrole = \"architecture\"\ntype = \"int\"");
        let s = StudySpec::parse(&text, "study.toml").unwrap();
        assert_eq!(s.roles.get("width"), Some(&crate::rounds::ParamRole::Architecture));
        let text = GOOD.replace("[params.width]\ntype = \"int\"", "[params.width]\nrole = \"size\"\ntype = \"int\"");
        assert_eq!(err(&text).field, "params.width.role");
    }

    #[test]
    fn the_analysis_table_sets_analyze_and_is_checked() {
        let s = StudySpec::parse(GOOD, "study.toml").unwrap();
        assert_eq!(s.analysis, AnalysisConfig::default());
        let with = format!("{GOOD}\n[analysis]\nchance_level = 0.999\nbudget_param = \"epochs\"\n");
        let s = StudySpec::parse(&with, "study.toml").unwrap();
        assert_eq!(s.analysis.chance_level, Some(0.999));
        assert_eq!(s.analysis.budget_param.as_deref(), Some("epochs"));
        assert_eq!(s.analysis.min_group, AnalysisConfig::default().min_group, "the rest keeps its defaults");
        // Not part of the identity: a changed reading keeps the study's trials comparable.
        assert_eq!(s.identity(), StudySpec::parse(GOOD, "study.toml").unwrap().identity());
        let e = err(&format!("{GOOD}\n[analysis]\nchance = 0.5\n"));
        assert_eq!(e.field, "analysis");
        assert!(e.problem.contains("unknown field `chance`"), "{e}");
        let e = err(&format!("{GOOD}\n[analysis]\nearly_fraction = 2.0\n"));
        assert_eq!(e.field, "analysis.early_fraction");
        assert!(e.problem.contains("between 0 and 1"), "{e}");
        let e = err(&format!("{GOOD}\n[analysis]\nmin_group = \"three\"\n"));
        assert_eq!(e.field, "analysis");
        assert!(e.problem.contains("invalid type"), "{e}");
    }

    #[test]
    fn a_space_file_is_checked_as_a_study_files_params() {
        let f = SpaceFile::parse(
            "[params.dropout]\ntype = \"float\"\nlow = 0.0\nhigh = 0.3\n[analysis]\nchance_level = 0.9\n",
            "space.toml",
        )
        .unwrap();
        assert_eq!(f.space.params[0].name, "dropout");
        assert_eq!(f.analysis.chance_level, Some(0.9));
        // A whole study file works too.
        let f = SpaceFile::parse(GOOD, "study.toml").unwrap();
        assert_eq!(f.space, StudySpec::parse(GOOD, "study.toml").unwrap().space);
        // The same errors as in a study file.
        let e = SpaceFile::parse("[params.lr]\ntype = \"float\"\nlow = 2.0\nhigh = 1.0\n", "space.toml").unwrap_err();
        assert_eq!(e.field, "params.lr.low");
        assert!(e.problem.contains("below high") && e.to_string().starts_with("space.toml:"), "{e}");
        let e =
            SpaceFile::parse("[params.lr]\ntype = \"float\"\nlow = 1e-4\nhigh = 1.0\nscale = \"logarithmic\"\n", "space.toml")
                .unwrap_err();
        assert!(e.to_string().starts_with("space.toml:"), "{e}");
        let e = SpaceFile::parse("[trainer]\ncommand = []\n", "space.toml").unwrap_err();
        assert_eq!(e.field, "params");
    }

    #[test]
    fn unknown_fields_are_refused_with_their_line() {
        let e = err(&GOOD.replace("retries = 2", "retires = 2"));
        assert!(e.to_string().contains("retires"), "{e}");
        assert!(e.field.starts_with("line "), "{e:?}");
        assert!(e.to_string().starts_with("study.toml:"), "{e}");
        let e = err(&GOOD.replace("scale = \"log\"", "scale = \"log\"\nstep = 2"));
        assert!(e.to_string().contains("step"), "{e}");
    }

    #[test]
    fn bad_ranges_name_the_field_and_the_fix() {
        let e = err(&GOOD.replace("low = 1e-4", "low = 2"));
        assert_eq!(e.field, "params.learning_rate.low");
        assert!(e.problem.contains("below high"));
        let e = err(&GOOD.replace("low = 1e-4", "low = 0"));
        assert_eq!(e.field, "params.learning_rate.low");
        assert!(e.problem.contains("log scale"), "{e}");
        assert!(e.fix.contains("linear"));
        let e = err(&GOOD.replace("low = 16", "low = 16.5"));
        assert_eq!(e.field, "params.width.low");
    }

    #[test]
    fn objective_must_be_a_reported_metric() {
        let e = err(&GOOD.replace("metric = \"valid/loss\"", "metric = \"valid/acc\""));
        assert_eq!(e.field, "objective.metric");
        assert!(e.problem.contains("train/loss, valid/loss"), "{e}");
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        let e = err(&GOOD.replace("--lr={learning_rate}", "--lr={lr}"));
        assert_eq!(e.field, "trainer.command[2]");
        assert!(e.fix.contains("learning_rate"));
    }

    #[test]
    fn eval_interval_and_counts_are_checked() {
        assert_eq!(err(&GOOD.replace("eval_every = 100", "eval_every = 5000")).field, "study.eval_every");
        assert_eq!(err(&GOOD.replace("trials = 10", "trials = 0")).field, "study.trials");
        assert_eq!(err(&GOOD.replace("timeout = \"5m\"", "timeout = \"soon\"")).field, "trainer.timeout");
    }

    #[test]
    fn grid_is_limited_to_two_dimensions_and_its_size() {
        let e = err(&format!("{GOOD}\n[sampler]\nkind = \"grid\"\n"));
        assert_eq!(e.field, "sampler.kind");
        let small = GOOD.split("[params.width]").next().unwrap().to_string() + "\n[sampler]\nkind = \"grid\"\npoints = 4\n";
        let e = err(&small);
        assert_eq!(e.field, "study.trials");
        assert!(e.fix.contains("trials = 4"), "{e}");
    }

    #[test]
    fn identity_ignores_operational_fields() {
        let a = StudySpec::parse(GOOD, "a").unwrap();
        let b = StudySpec::parse(&GOOD.replace("trials = 10", "trials = 20").replace("retries = 2", "retries = 0"), "b").unwrap();
        assert_eq!(StudySpec::identity_changes(&a.identity(), &b.identity()), Vec::<String>::new());
        let c = StudySpec::parse(&GOOD.replace("max_train_steps = 1000", "max_train_steps = 2000"), "c").unwrap();
        assert_eq!(StudySpec::identity_changes(&a.identity(), &c.identity()), vec!["max_train_steps"]);
    }

    #[test]
    fn built_in_workloads_are_checked_against_the_catalog() {
        let base = GOOD.split("[params.width]").next().unwrap()
            .replace("command = [\"python3\", \"train.py\", \"--lr={learning_rate}\", \"--steps={max_train_steps}\", \"{{literal}}\"]\n", "workload = \"digits-mlp\"\n")
            .replace("metrics = [\"train/loss\", \"valid/loss\"]\n", "");
        let s = StudySpec::parse(&base, "w.toml").unwrap();
        assert_eq!(s.trainer.workload.as_deref(), Some("digits-mlp"));
        assert!(s.trainer.metrics.contains(&"valid/error".to_string()), "metrics default to the workload's");
        assert!(s.trainer.command.is_empty());
        let e = err(&base.replace("digits-mlp", "imagenet"));
        assert_eq!(e.field, "trainer.workload");
        assert!(e.fix.contains("digits-mlp"));
        let e = err(&base.replace("[params.learning_rate]", "[params.lr]"));
        assert_eq!(e.field, "params.lr");
        assert!(e.fix.contains("learning_rate"), "{e}");
        let e = err(&base.replace("workload = \"digits-mlp\"\n", "workload = \"digits-mlp\"\ncommand = [\"x\"]\n"));
        assert_eq!(e.field, "trainer.workload");
    }

    /// The error for GOOD with `old` replaced by `new`, checked to be about `field`.
    fn refused(old: &str, new: &str, field: &str) -> SpecError {
        assert!(GOOD.contains(old), "GOOD has no {old:?}");
        let e = err(&GOOD.replacen(old, new, 1));
        assert_eq!(e.field, field, "{e}");
        assert!(e.to_string().starts_with(&format!("study.toml: {field}: ")), "{e}");
        assert!(!e.fix.is_empty() && e.fix != e.problem, "{e}");
        e
    }

    #[test]
    fn timeouts_must_be_a_real_limit() {
        let e = refused("timeout = \"5m\"", "timeout = \"0s\"", "trainer.timeout");
        assert_eq!(e.problem, "\"0s\" is zero: every attempt would time out as it starts");
        assert_eq!(e.fix, "give the longest an attempt may take, e.g. timeout = \"10m\", or leave timeout out for no limit");
        let e = refused("timeout = \"5m\"", "timeout = \"500ms\"", "trainer.timeout");
        assert!(e.problem.starts_with("\"500ms\" is under a second: "), "{e}");
        let e = refused("timeout = \"5m\"", "timeout = \"400days\"", "trainer.timeout");
        assert_eq!(e.problem, "\"400days\" is longer than a year, which is no limit at all");
        assert!(e.fix.starts_with("leave timeout out for no limit"), "{e}");
        for fine in ["1s", "90s", "2h 30m", "365days"] {
            let s = StudySpec::parse(&GOOD.replace("timeout = \"5m\"", &format!("timeout = {fine:?}")), "t").unwrap();
            assert_eq!(s.trainer.timeout, Some(humantime::parse_duration(fine).unwrap()));
        }
    }

    #[test]
    fn kill_grace_leaves_time_to_exit_without_holding_up_a_stop() {
        let e = refused("retries = 2", "retries = 2\nkill_grace = \"0s\"", "trainer.kill_grace");
        assert_eq!(e.problem, "\"0s\" is zero: the trainer would be killed right after SIGTERM, with no time to save or exit");
        assert_eq!(e.fix, "give it time to write a checkpoint and exit, e.g. kill_grace = \"10s\" (the default)");
        let e = refused("retries = 2", "retries = 2\nkill_grace = \"50ms\"", "trainer.kill_grace");
        assert!(e.problem.starts_with("\"50ms\" is shorter than horizon's 100 ms tick: "), "{e}");
        let e = refused("retries = 2", "retries = 2\nkill_grace = \"2h\"", "trainer.kill_grace");
        assert!(e.problem.starts_with("\"2h\" is longer than an hour: "), "{e}");
        assert!(e.fix.contains("kill_grace = \"30s\""), "{e}");
        for fine in ["100ms", "1s", "1h"] {
            let s = StudySpec::parse(&GOOD.replace("retries = 2", &format!("kill_grace = {fine:?}")), "t").unwrap();
            assert_eq!(s.trainer.kill_grace, humantime::parse_duration(fine).unwrap());
        }
    }

    #[test]
    fn int_bounds_say_what_is_wrong_and_how_to_fix_it() {
        let cases = [
            ("1.5", "1.5 is not an integer", "write a whole number such as 1 or 2"),
            ("-2.5", "-2.5 is not an integer", "write a whole number such as -3 or -2"),
            ("16.0", "16.0 is a float, and an int parameter's bounds are integers", "write 16 (without the decimal point)"),
            ("\"16\"", "\"16\" is a string, not an integer", "remove the quotes: 16"),
            ("\"many\"", "\"many\" is a string, not an integer", "write a whole number such as 1 or 100"),
            ("nan", "nan is not a number", "write a whole number such as 1 or 100"),
            ("inf", "inf is not a whole number", "write a whole number between -9223372036854775808 and 9223372036854775807"),
            (
                "1e30",
                "1e30 is beyond the integers an int parameter holds (-9223372036854775808 to 9223372036854775807)",
                "write a whole number in that range, or use type = \"float\"",
            ),
            ("true", "true is a boolean, not an integer", "write a whole number such as 1 or 100"),
            ("[1, 2]", "[1, 2] is an array, not an integer", "write a whole number such as 1 or 100"),
        ];
        for (value, problem, fix) in cases {
            let e = refused("low = 16", &format!("low = {value}"), "params.width.low");
            assert_eq!((e.problem.as_str(), e.fix.as_str()), (problem, fix), "low = {value}");
        }
        let e = refused("high = 256", "", "params.width.high");
        assert_eq!(
            (e.problem.as_str(), e.fix.as_str()),
            ("is missing", "give both ends of the range, e.g. low = 1 and high = 100")
        );
    }

    #[test]
    fn float_bounds_say_what_is_wrong_and_how_to_fix_it() {
        let cases = [
            ("nan", "nan is not a number", "write a number such as 0.001 or 10"),
            (
                "inf",
                "inf is not a finite number",
                "a range needs finite ends: write the most extreme value worth trying, e.g. 1e6",
            ),
            ("\"1.0\"", "\"1.0\" is a string, not a number", "remove the quotes: 1.0"),
            ("false", "false is a boolean, not a number", "write a number such as 0.001 or 10"),
        ];
        for (value, problem, fix) in cases {
            let e = refused("high = 1\n", &format!("high = {value}\n"), "params.learning_rate.high");
            assert_eq!((e.problem.as_str(), e.fix.as_str()), (problem, fix), "high = {value}");
        }
        let e = refused("low = 1e-4\nhigh = 1\nscale = \"log\"", "low = -inf\nhigh = 1", "params.learning_rate.low");
        assert!(e.fix.ends_with("e.g. -1e6"), "{e}");
    }

    #[test]
    fn ranges_must_hold_more_than_one_value_in_order() {
        let e = refused("low = 16", "low = 256", "params.width.low");
        assert_eq!(e.problem, "256 equals high: the range holds a single value");
        assert_eq!(e.fix, "widen the range, or use type = \"fixed\" with value = 256");
        let e = refused("low = 16", "low = 300", "params.width.low");
        assert_eq!((e.problem.as_str(), e.fix.as_str()), ("300 must be below high (256)", "swap low and high"));
        let e = refused("low = 1e-4", "low = 1", "params.learning_rate.low");
        assert_eq!(e.problem, "1.0 equals high: the range holds a single value");
        let e = refused("low = 16\nhigh = 256", "low = 0\nhigh = 256\nscale = \"log\"", "params.width.low");
        assert_eq!(
            (e.problem.as_str(), e.fix.as_str()),
            ("a log scale needs low >= 1, got 0", "use low = 1 or more, or scale = \"linear\"")
        );
    }

    #[test]
    fn ranges_whose_width_overflows_are_refused() {
        let e = refused("low = 1e-4\nhigh = 1\nscale = \"log\"", "low = -1e308\nhigh = 1e308", "params.learning_rate.high");
        assert_eq!(e.problem, "the range from -1e308 to 1e308 is wider than the largest float (1.7976931348623157e308)");
        assert!(e.fix.contains("scale = \"log\""), "{e}");
        let e = refused("low = 16\nhigh = 256", "low = -9223372036854775808\nhigh = 1", "params.width.high");
        assert_eq!(e.problem, "the range from -9223372036854775808 to 1 is wider than the largest integer (9223372036854775807)");
        assert_eq!(e.fix, "narrow the range, e.g. so that low and high have the same sign");
        // The widest ranges that fit are kept exactly (not through f64) and sampled across.
        for (low, high) in [(0, i64::MAX - 1), (0, i64::MAX), (i64::MIN, -1), (-(1 << 62), (1 << 62) - 1)] {
            let s = StudySpec::parse(&GOOD.replace("low = 16\nhigh = 256", &format!("low = {low}\nhigh = {high}")), "t").unwrap();
            assert_eq!(s.space.param("width").unwrap().kind, ParamKind::Int { low, high, scale: Scale::Linear });
            let sampler = s.sampler.build(&s.space, s.seed).unwrap();
            let xs: Vec<i64> = (0..32)
                .map(|i| match sampler.sample(i).unwrap().get("width") {
                    Some(ParamValue::Int(n)) => *n,
                    other => panic!("{other:?}"),
                })
                .collect();
            let middle = low / 2 + high / 2;
            assert!(xs.iter().all(|x| (low..=high).contains(x)), "{xs:?}");
            assert!(xs.iter().any(|&x| x < middle) && xs.iter().any(|&x| x > middle), "[{low}, {high}]: {xs:?}");
        }
        let s = StudySpec::parse(
            &GOOD
                .replace("low = 1e-4\nhigh = 1\n", "low = -1e307\nhigh = 1e308\n")
                .replace("scale = \"log\"\n\n[params.width]", "\n[params.width]"),
            "t",
        )
        .unwrap();
        assert!(matches!(s.space.param("learning_rate").unwrap().kind, ParamKind::Float { scale: Scale::Linear, .. }));
    }

    #[test]
    fn counts_that_overflow_or_do_nothing_are_refused() {
        let e = refused("retries = 2", "retries = 4294967297", "trainer.retries");
        assert_eq!(e.problem, "4294967297 re-runs of a failed trial is more than horizon allows (1000)");
        assert_eq!(StudySpec::parse(&GOOD.replace("retries = 2", "retries = 1000"), "t").unwrap().trainer.retries, 1000);
        let grid = GOOD.split("[params.width]").next().unwrap().to_string();
        let e = err(&format!("{grid}\n[sampler]\nkind = \"grid\"\npoints = 4294967298\n"));
        assert_eq!(e.field, "sampler.points");
        assert_eq!(e.problem, "4294967298 points per parameter is more than horizon allows (1000)");
        let e = err(&format!("{GOOD}\n[checkpoints]\nevery = 5000\n"));
        assert_eq!(e.field, "checkpoints.every");
        assert_eq!(e.problem, "5000 is larger than max_train_steps (1000): no checkpoint would be asked for");
        assert_eq!(e.fix, "use at most 1000, e.g. every = 200, or leave every out");
        let e = refused("values = [32, 64]", "values = [32, 64, 32.0]", "params.batch_size.values[2]");
        assert_eq!(
            (e.problem.as_str(), e.fix.as_str()),
            ("32.0 is the same number as 32, listed earlier", "list each value once")
        );
    }

    #[test]
    fn the_learning_rate_sweep_never_overflows_its_budgets() {
        // Defaults of 20 x eval_every (patience) and 16 x max_train_steps saturate instead of wrapping.
        let huge = GOOD
            .replace("max_train_steps = 1000", "max_train_steps = 9223372036854775807")
            .replace("eval_every = 100", "eval_every = 9223372036854775807");
        let fit = "\n[lr_sweep]\nfit = \"train/loss <= 0.01\"\n";
        let s = StudySpec::parse(&format!("{huge}{fit}"), "t").unwrap();
        let sweep = s.lr_sweep_spec("t").unwrap();
        assert_eq!((sweep.patience, sweep.max_steps), (u64::MAX, u64::MAX));
        // A budget so long that the timeout scaled to it is no duration at all.
        let long = GOOD.replace("timeout = \"5m\"", "timeout = \"300days\"");
        let e = err(&format!("{long}{fit}max_steps = 9223372036854775807\n"));
        assert_eq!(e.field, "lr_sweep.max_steps");
        assert_eq!(
            e.problem,
            "9223372036854775807 steps, 9223372036854775x max_train_steps, would scale trainer.timeout past the longest duration there is"
        );
        assert!(StudySpec::parse(&format!("{GOOD}{fit}max_steps = 100000000\n"), "t").is_ok());
    }

    #[test]
    fn templates_split_and_expand() {
        let pieces = parse_template("--x={a}/{b}{{z}}").unwrap();
        let out = expand_template(&pieces, &|n| n.to_uppercase());
        assert_eq!(out, "--x=A/B{z}");
        assert!(parse_template("{oops").is_err());
        assert!(parse_template("a}b").is_err());
    }
}
