//! Trial protocol v1: the lines a trainer writes to `$HORIZON_METRICS_FILE`.
//!
//! Each line is one JSON object (`docs/protocol.md` is the reference):
//!
//! ```text
//! {"step": 200, "split": "valid", "metrics": {"loss": 0.41, "error": 0.12}}
//! {"event": "checkpoint", "step": 200, "path": "ckpt/step-200"}
//! ```
//!
//! Metric values are JSON numbers, or the strings `"nan"`, `"inf"`, `"-inf"`; the bare tokens
//! `NaN`, `Infinity` and `-Infinity` that Python's `json` module writes are accepted too. A line
//! that does not parse is a [`LineError`]: the runner records it as a warning and goes on.

use std::borrow::Cow;

use serde_json::Value;

/// The protocol version horizon speaks, as passed in `HORIZON_PROTOCOL`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Limits on what one attempt may report, so that whatever a trainer writes, horizon's time
/// and memory stay bounded (docs/protocol.md section 9). Past each, the excess is skipped with
/// a warning and the attempt goes on.
pub mod limits {
    /// A metrics line longer than this (without its newline) is skipped unread.
    pub const MAX_LINE_BYTES: usize = 1 << 20;
    /// A metric name longer than this rejects its line.
    pub const MAX_METRIC_NAME_BYTES: usize = 200;
    /// Distinct metric names per attempt; values of further names are not stored.
    pub const MAX_METRIC_NAMES: usize = 1_000;
    /// Metric values stored per attempt; further values are not stored.
    pub const MAX_METRIC_VALUES: u64 = 10_000_000;
    /// Checkpoint announcements per attempt; further ones are ignored (their files are kept).
    pub const MAX_CHECKPOINTS: u64 = 100_000;
}

/// The environment variables of protocol v1 (docs/protocol.md section 3), named once.
pub mod env {
    pub const PROTOCOL: &str = "HORIZON_PROTOCOL";
    pub const STUDY: &str = "HORIZON_STUDY";
    pub const TRIAL_NUMBER: &str = "HORIZON_TRIAL_NUMBER";
    pub const ATTEMPT: &str = "HORIZON_ATTEMPT";
    pub const TRIAL_DIR: &str = "HORIZON_TRIAL_DIR";
    pub const PARAMS: &str = "HORIZON_PARAMS";
    pub const MAX_TRAIN_STEPS: &str = "HORIZON_MAX_TRAIN_STEPS";
    pub const EVAL_EVERY: &str = "HORIZON_EVAL_EVERY";
    pub const SEED: &str = "HORIZON_SEED";
    pub const METRICS_FILE: &str = "HORIZON_METRICS_FILE";
    pub const CHECKPOINT_EVERY: &str = "HORIZON_CHECKPOINT_EVERY";
    pub const CHECKPOINT_STEPS: &str = "HORIZON_CHECKPOINT_STEPS";
    pub const RESUME_FROM: &str = "HORIZON_RESUME_FROM";
    /// The ladder rung this attempt runs (0 for studies without a ladder).
    pub const RUNG: &str = "HORIZON_RUNG";
}

/// What horizon tells one attempt through the environment: encoded by [`TrialEnvironment::vars`]
/// (the runner, `horizon best`'s reproduction), decoded by [`TrialEnvironment::from_lookup`]
/// (the built-in workloads), so both ends read one definition.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialEnvironment {
    pub study: String,
    pub trial_number: u64,
    pub attempt: u32,
    pub trial_dir: String,
    /// The parameters as one JSON object, in the study's order.
    pub params_json: String,
    pub max_train_steps: u64,
    pub eval_every: u64,
    pub seed: u64,
    pub metrics_file: String,
    /// Periodic checkpoints; `None` when the study asks for none (the variable is then empty).
    pub checkpoint_every: Option<u64>,
    /// Further checkpoint steps, written comma-separated.
    pub checkpoint_steps: Vec<u64>,
    /// A checkpoint to resume from (set only when horizon wants a resume): on a ladder, a
    /// checkpoint of the trial's previous rung, taken under a shorter budget.
    pub resume_from: Option<String>,
    /// The ladder rung (0 without a ladder); `max_train_steps` is that rung's budget.
    pub rung: u32,
}

/// Why a protocol environment does not read: the variable, its value, and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvError {
    #[error("{var} is not set: this program is meant to be started by horizon (trial protocol v1)")]
    Missing { var: &'static str },
    #[error("{var}={value:?}: {expected}")]
    Invalid { var: &'static str, value: String, expected: &'static str },
}

impl TrialEnvironment {
    /// The variables, in the order docs/protocol.md lists them.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let steps: Vec<String> = self.checkpoint_steps.iter().map(u64::to_string).collect();
        let mut vars = vec![
            (env::PROTOCOL, PROTOCOL_VERSION.to_string()),
            (env::STUDY, self.study.clone()),
            (env::TRIAL_NUMBER, self.trial_number.to_string()),
            (env::ATTEMPT, self.attempt.to_string()),
            (env::TRIAL_DIR, self.trial_dir.clone()),
            (env::PARAMS, self.params_json.clone()),
            (env::MAX_TRAIN_STEPS, self.max_train_steps.to_string()),
            (env::EVAL_EVERY, self.eval_every.to_string()),
            (env::SEED, self.seed.to_string()),
            (env::METRICS_FILE, self.metrics_file.clone()),
            // Periodic checkpoints as one number: a list of every multiple would outgrow the
            // kernel's limit on one environment string (128 KiB) for long runs.
            (env::CHECKPOINT_EVERY, self.checkpoint_every.map(|e| e.to_string()).unwrap_or_default()),
            (env::CHECKPOINT_STEPS, steps.join(",")),
            (env::RUNG, self.rung.to_string()),
        ];
        if let Some(r) = &self.resume_from {
            vars.push((env::RESUME_FROM, r.clone()));
        }
        vars
    }

    /// Read the variables through `lookup` (`std::env::var` in a trainer). `HORIZON_STUDY` and
    /// the trial number and attempt may be missing (a trainer run by hand); the rest may not.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<TrialEnvironment, EnvError> {
        let required = |var: &'static str| lookup(var).ok_or(EnvError::Missing { var });
        let invalid = |var: &'static str, value: &str, expected: &'static str| EnvError::Invalid {
            var,
            value: value.to_string(),
            expected,
        };
        let positive = |var: &'static str| -> Result<u64, EnvError> {
            let v = required(var)?;
            match v.trim().parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(invalid(var, &v, "expected an integer >= 1")),
            }
        };
        let optional_u64 = |var: &'static str, default: u64| -> Result<u64, EnvError> {
            match lookup(var) {
                None => Ok(default),
                Some(v) => v.trim().parse::<u64>().map_err(|_| invalid(var, &v, "expected a non-negative integer")),
            }
        };
        let seed_text = required(env::SEED)?;
        let seed =
            seed_text.trim().parse::<u64>().map_err(|_| invalid(env::SEED, &seed_text, "expected a non-negative integer"))?;
        let metrics_file = required(env::METRICS_FILE)?;
        if metrics_file.is_empty() {
            return Err(invalid(env::METRICS_FILE, &metrics_file, "expected the path of the file to append metric lines to"));
        }
        let checkpoint_every = match lookup(env::CHECKPOINT_EVERY) {
            None => None,
            Some(text) if text.trim().is_empty() => None,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    return Err(invalid(
                        env::CHECKPOINT_EVERY,
                        &text,
                        "expected an integer >= 1, or nothing for no periodic checkpoints",
                    ));
                }
            },
        };
        let checkpoint_steps = match lookup(env::CHECKPOINT_STEPS) {
            None => Vec::new(),
            Some(text) => parse_steps(&text).ok_or_else(|| {
                invalid(
                    env::CHECKPOINT_STEPS,
                    &text,
                    "expected comma-separated integers >= 1, such as \"100,200,300\", or nothing",
                )
            })?,
        };
        Ok(TrialEnvironment {
            study: lookup(env::STUDY).unwrap_or_default(),
            trial_number: optional_u64(env::TRIAL_NUMBER, 0)?,
            attempt: optional_u64(env::ATTEMPT, 1)?.min(u32::MAX as u64) as u32,
            trial_dir: required(env::TRIAL_DIR)?,
            params_json: required(env::PARAMS)?,
            max_train_steps: positive(env::MAX_TRAIN_STEPS)?,
            eval_every: positive(env::EVAL_EVERY)?,
            seed,
            metrics_file,
            checkpoint_every,
            checkpoint_steps,
            resume_from: lookup(env::RESUME_FROM).filter(|p| !p.trim().is_empty()),
            rung: optional_u64(env::RUNG, 0)?.min(u32::MAX as u64) as u32,
        })
    }
}

/// `"100, 200,300"` as sorted, distinct steps >= 1; `None` when a part is not such a step.
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

/// A metrics line (without its newline): `{"step": S, "split": SPLIT, "metrics": {...}}`, or
/// without `split` when it is empty. Non-finite values are written as `"nan"`, `"inf"`,
/// `"-inf"`; [`parse_line`] reads the line back to the same report.
pub fn encode_metrics(step: u64, split: &str, metrics: &[(&str, f64)]) -> String {
    let mut m = serde_json::Map::new();
    for (name, x) in metrics {
        m.insert(name.to_string(), encode_value(*x));
    }
    let mut obj = serde_json::Map::new();
    obj.insert("step".into(), step.into());
    if !split.is_empty() {
        obj.insert("split".into(), split.into());
    }
    obj.insert("metrics".into(), Value::Object(m));
    Value::Object(obj).to_string()
}

/// A declaration (without its newline) that the run's schedule, up to and including the update
/// of `step`, is the same under any longer budget: `{"event": "budget_independent", "step": S}`.
/// A ladder resumes a promoted trial from a checkpoint at or before that step.
pub fn encode_budget_independent(step: u64) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("event".into(), "budget_independent".into());
    obj.insert("step".into(), step.into());
    Value::Object(obj).to_string()
}

/// A checkpoint announcement (without its newline): `{"event": "checkpoint", "step": S, "path": P}`.
pub fn encode_checkpoint(step: u64, path: &str) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("event".into(), "checkpoint".into());
    obj.insert("step".into(), step.into());
    obj.insert("path".into(), path.into());
    Value::Object(obj).to_string()
}

fn encode_value(x: f64) -> Value {
    if x.is_nan() {
        "nan".into()
    } else if x == f64::INFINITY {
        "inf".into()
    } else if x == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        Value::from(x)
    }
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// Evaluations at one step; names carry their split (`valid/loss`).
    Metrics { step: u64, values: Vec<(String, f64)> },
    /// A checkpoint was written at `step`; `path` is relative to the trial directory or absolute.
    Checkpoint { step: u64, path: String },
    /// The schedule up to and including `step` does not depend on the budget: the state after
    /// `step` updates is the same under any longer budget (docs/protocol.md, ladders).
    BudgetIndependent { step: u64 },
}

/// Why a line was not understood.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LineError(pub String);

fn bad(msg: impl Into<String>) -> LineError {
    LineError(msg.into())
}

/// Parse one line (without its newline).
pub fn parse_line(line: &str) -> Result<Report, LineError> {
    let text = normalize_non_finite(line.trim());
    let value: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(bad("not a JSON object"));
    };
    let step = match obj.get("step") {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| bad(format!("\"step\" must be a non-negative integer, got {n}")))?,
        Some(other) => return Err(bad(format!("\"step\" must be a non-negative integer, got {other}"))),
        None => return Err(bad("missing \"step\"")),
    };
    match obj.get("event") {
        Some(Value::String(e)) if e == "checkpoint" => {
            let path = match obj.get("path") {
                Some(Value::String(p)) if !p.is_empty() => p.clone(),
                _ => return Err(bad("a checkpoint event needs a non-empty string \"path\"")),
            };
            return Ok(Report::Checkpoint { step, path });
        }
        Some(Value::String(e)) if e == "budget_independent" => return Ok(Report::BudgetIndependent { step }),
        Some(other) => {
            return Err(bad(format!("unknown event {other}; protocol v1 knows \"checkpoint\" and \"budget_independent\"")));
        }
        None => {}
    }
    let prefix = match obj.get("split") {
        None => String::new(),
        Some(Value::String(s)) if !s.is_empty() && !s.contains('/') => format!("{s}/"),
        Some(other) => return Err(bad(format!("\"split\" must be a name like \"valid\", got {other}"))),
    };
    let Some(Value::Object(metrics)) = obj.get("metrics") else {
        return Err(bad("missing \"metrics\" object (or \"event\")"));
    };
    if metrics.is_empty() {
        return Err(bad("\"metrics\" is empty"));
    }
    let mut values = Vec::with_capacity(metrics.len());
    for (name, v) in metrics {
        if name.is_empty() {
            return Err(bad("empty metric name"));
        }
        let x = match v {
            Value::Number(n) => n.as_f64().ok_or_else(|| bad(format!("{name}: {n} is not a float")))?,
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "nan" => f64::NAN,
                "inf" | "+inf" | "infinity" => f64::INFINITY,
                "-inf" | "-infinity" => f64::NEG_INFINITY,
                _ => return Err(bad(format!("{name}: {s:?} is not a number"))),
            },
            other => return Err(bad(format!("{name}: {other} is not a number"))),
        };
        values.push((format!("{prefix}{name}"), x));
    }
    Ok(Report::Metrics { step, values })
}

/// Quote the bare `NaN`, `Infinity` and `-Infinity` tokens (outside strings) that Python writes,
/// so that a strict JSON parser reads them as strings.
fn normalize_non_finite(line: &str) -> Cow<'_, str> {
    if !(line.contains("NaN") || line.contains("Infinity")) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        let token = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t));
        match token {
            Some(t) => {
                out.push('"');
                out.push_str(t);
                out.push('"');
                rest = &rest[t.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    Cow::Owned(out)
}

/// Whether a metric counts as a loss for divergence detection: the objective, or any metric
/// whose name ends in `loss`.
pub fn is_loss_like(name: &str, objective: &str) -> bool {
    name == objective || name.rsplit('/').next().is_some_and(|last| last.ends_with("loss"))
}

#[cfg(test)]
mod tests {
    use super::*;

    mod round_trip {
        use super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = f64> {
            prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(0.0), any::<f64>()]
        }

        proptest! {
            #[test]
            fn metric_lines_read_back_as_written(
                step in any::<u64>(),
                split in "(|[a-z]{1,8})",
                metrics in proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_.-]{0,12}", value()), 1..5),
            ) {
                let mut seen = std::collections::HashSet::new();
                let metrics: Vec<(String, f64)> = metrics.into_iter().filter(|(n, _)| seen.insert(n.clone())).collect();
                let borrowed: Vec<(&str, f64)> = metrics.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                let Report::Metrics { step: s, values } = parse_line(&encode_metrics(step, &split, &borrowed)).unwrap() else {
                    panic!("not a metrics line")
                };
                prop_assert_eq!(s, step);
                prop_assert_eq!(values.len(), metrics.len());
                for ((name, x), (got_name, y)) in metrics.iter().zip(&values) {
                    let want = if split.is_empty() { name.clone() } else { format!("{split}/{name}") };
                    prop_assert_eq!(got_name, &want);
                    prop_assert!(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()) || (*x == 0.0 && *y == 0.0), "{} vs {}", x, y);
                }
            }

            #[test]
            fn checkpoint_lines_read_back_as_written(step in any::<u64>(), path in "[^\\x00]{1,40}") {
                prop_assert_eq!(parse_line(&encode_checkpoint(step, &path)).unwrap(), Report::Checkpoint { step, path });
            }

            #[test]
            fn the_environment_reads_back_as_written(
                trial_number in any::<u64>(),
                attempt in 1u32..,
                max_train_steps in 1u64..,
                eval_every in 1u64..,
                seed in any::<u64>(),
                every in proptest::option::of(1u64..),
                steps in proptest::collection::btree_set(1u64.., 0..4),
                resume in proptest::option::of("[a-z/]{1,12}"),
                rung in 0u32..10,
            ) {
                let e = TrialEnvironment {
                    study: "s".into(),
                    trial_number,
                    attempt,
                    trial_dir: "/study/trials/00001".into(),
                    params_json: r#"{"lr":0.1}"#.into(),
                    max_train_steps,
                    eval_every,
                    seed,
                    metrics_file: "/study/trials/00001/attempt-1.metrics.jsonl".into(),
                    checkpoint_every: every,
                    checkpoint_steps: steps.into_iter().collect(),
                    resume_from: resume,
                    rung,
                };
                let vars = e.vars();
                let back = TrialEnvironment::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
                prop_assert_eq!(back, e);
            }
        }
    }

    #[test]
    fn budget_independence_is_declared_by_step() {
        assert_eq!(parse_line(&encode_budget_independent(2400)).unwrap(), Report::BudgetIndependent { step: 2400 });
        assert_eq!(parse_line(r#"{"event": "budget_independent", "step": 0}"#).unwrap(), Report::BudgetIndependent { step: 0 });
        assert!(parse_line(r#"{"event": "budget_independent"}"#).unwrap_err().0.contains("step"));
        assert!(parse_line(r#"{"event": "prefix", "step": 3}"#).unwrap_err().0.contains("budget_independent"));
    }

    #[test]
    fn metric_lines_get_their_split() {
        let r = parse_line(r#"{"step": 200, "split": "valid", "metrics": {"loss": 0.5, "error": 0}}"#).unwrap();
        assert_eq!(r, Report::Metrics { step: 200, values: vec![("valid/loss".into(), 0.5), ("valid/error".into(), 0.0)] });
        let r = parse_line(r#"{"step": 1, "metrics": {"lr": 0.1}}"#).unwrap();
        assert_eq!(r, Report::Metrics { step: 1, values: vec![("lr".into(), 0.1)] });
    }

    #[test]
    fn python_non_finite_tokens_are_understood() {
        let r = parse_line(r#"{"step": 3, "split": "train", "metrics": {"loss": NaN, "x": -Infinity, "y": "inf"}}"#).unwrap();
        let Report::Metrics { values, .. } = r else { panic!() };
        assert!(values[0].1.is_nan());
        assert_eq!(values[1].1, f64::NEG_INFINITY);
        assert_eq!(values[2].1, f64::INFINITY);
        // A token inside a string is left alone.
        let r = parse_line(r#"{"event": "checkpoint", "step": 5, "path": "NaN-dir"}"#).unwrap();
        assert_eq!(r, Report::Checkpoint { step: 5, path: "NaN-dir".into() });
    }

    #[test]
    fn malformed_lines_say_why() {
        for (line, why) in [
            ("loss=0.3", "not JSON"),
            ("[1, 2]", "not a JSON object"),
            (r#"{"metrics": {"loss": 1}}"#, "missing \"step\""),
            (r#"{"step": -1, "metrics": {"loss": 1}}"#, "non-negative"),
            (r#"{"step": 1}"#, "missing \"metrics\""),
            (r#"{"step": 1, "metrics": {"loss": "low"}}"#, "not a number"),
            (r#"{"step": 1, "event": "party"}"#, "unknown event"),
            (r#"{"step": 1, "event": "checkpoint"}"#, "path"),
        ] {
            let e = parse_line(line).unwrap_err();
            assert!(e.0.contains(why), "{line}: {e}");
        }
    }

    #[test]
    fn loss_like_names() {
        assert!(is_loss_like("train/loss", "valid/error"));
        assert!(is_loss_like("valid/error", "valid/error"));
        assert!(!is_loss_like("train/lr", "valid/loss"));
    }
}
