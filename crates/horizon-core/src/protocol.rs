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

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// Evaluations at one step; names carry their split (`valid/loss`).
    Metrics { step: u64, values: Vec<(String, f64)> },
    /// A checkpoint was written at `step`; `path` is relative to the trial directory or absolute.
    Checkpoint { step: u64, path: String },
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
        Some(other) => return Err(bad(format!("unknown event {other}; protocol v1 knows \"checkpoint\""))),
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
