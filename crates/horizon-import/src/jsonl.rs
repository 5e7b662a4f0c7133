//! JSON Lines: one run per line.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::curve::{Rows, STATES, assemble, default_state, non_finite_word, parse_state};
use crate::params::{Flat, json_object};
use crate::{At, ImportError, Run, as_read, read};

const FIELDS: &[&str] = &["name", "params", "max_train_steps", "curve", "state", "message", "source"];

/// Read a JSON Lines file: one run per line (blank lines ignored).
pub fn parse_jsonl(path: impl AsRef<Path>) -> Result<Vec<Run>, ImportError> {
    let path = path.as_ref();
    let text = read(path)?;
    let mut runs = Vec::new();
    let mut names: HashMap<String, u64> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let lineno = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = At { file: path, line: Some(lineno) };
        let value: Value = serde_json::from_str(line).map_err(|e| {
            at.err(
                format!("column {}", e.column()),
                format!("not valid JSON: {e}"),
                "write one JSON object per line (NaN and Infinity are not JSON: write them as the strings \"nan\", \"inf\", \"-inf\")",
            )
        })?;
        let Value::Object(obj) = value else {
            return Err(at.err(
                None,
                "a line must be a JSON object",
                "write one object per line: {\"params\": {...}, \"max_train_steps\": N, \"curve\": [...]}",
            ));
        };
        let run = run(&obj, &at)?;
        if let Some(name) = &run.name
            && let Some(first) = names.insert(name.clone(), lineno)
        {
            return Err(at.err(
                "name".to_string(),
                format!("duplicate run name {name:?} (first on line {first})"),
                "give every run a unique name, or remove the duplicate line",
            ));
        }
        runs.push(run);
    }
    if runs.is_empty() {
        return Err(At { file: path, line: None }.err(
            None,
            "no runs in the file",
            "write one JSON object per line: {\"params\": {...}, \"max_train_steps\": N, \"curve\": [...]}",
        ));
    }
    Ok(runs)
}

fn run(obj: &Map<String, Value>, at: &At) -> Result<Run, ImportError> {
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            return Err(at.err(key.clone(), "unknown field", format!("the fields are {}", FIELDS.join(", "))));
        }
    }
    let opt_string = |key: &str| -> Result<Option<String>, ImportError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(at.err(key.to_string(), format!("must be a string, found {other}"), "write it as a JSON string")),
        }
    };
    let name = opt_string("name")?;
    if name.as_deref() == Some("") {
        return Err(at.err("name".to_string(), "empty name", "give a non-empty name or leave it out"));
    }
    let message = opt_string("message")?;
    let source = opt_string("source")?;

    let max_train_steps = match obj.get("max_train_steps") {
        None => {
            return Err(at.err("max_train_steps".to_string(), "missing", "give the run's step budget: \"max_train_steps\": N"));
        }
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => n,
            _ => {
                return Err(at.err(
                    "max_train_steps".to_string(),
                    format!("must be a positive integer, found {v}"),
                    "give the run's step budget as a whole number of steps (or epochs, consistently with the curve's steps)",
                ));
            }
        },
    };

    let mut params = Flat::default();
    match obj.get("params") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            json_object(m, "", &mut params).map_err(|(name, r)| at.err(format!("params.{name}"), r.problem, r.fix))?;
        }
        Some(other) => {
            return Err(at.err(
                "params".to_string(),
                format!("must be an object, found {other}"),
                "write \"params\": {\"name\": value, ...}",
            ));
        }
    }

    let points = match obj.get("curve") {
        None => {
            return Err(at.err(
                "curve".to_string(),
                "missing",
                "give the evaluations: \"curve\": [{\"step\": S, \"valid/loss\": v}, ...] (an empty list is allowed)",
            ));
        }
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(at.err(
                "curve".to_string(),
                format!("must be a list, found {other}"),
                "write \"curve\": [{\"step\": S, \"metric\": v}, ...]",
            ));
        }
    };
    let mut rows: Rows = Vec::new();
    for (j, p) in points.iter().enumerate() {
        let field = |k: &str| format!("curve[{j}]{}", if k.is_empty() { String::new() } else { format!(".{k}") });
        let Value::Object(p) = p else {
            return Err(at.err(field(""), "an evaluation must be an object", "write {\"step\": S, \"metric\": value, ...}"));
        };
        let step = match p.get("step") {
            None => return Err(at.err(field("step"), "missing", "every evaluation needs its \"step\"")),
            Some(v) => v.as_u64().ok_or_else(|| {
                at.err(
                    field("step"),
                    format!("must be a non-negative integer, found {v}"),
                    "steps are whole numbers (use 1-based epochs if you count epochs)",
                )
            })?,
        };
        if step > max_train_steps {
            return Err(at.err(
                field("step"),
                format!("step {step} is beyond max_train_steps {max_train_steps}"),
                format!("raise max_train_steps to at least {step}, or drop the evaluation"),
            ));
        }
        let mut values = Vec::new();
        for (k, v) in p {
            if k == "step" {
                continue;
            }
            if k.is_empty() {
                return Err(at.err(field(""), "empty metric name", "name every metric, e.g. \"valid/loss\""));
            }
            let x = match v {
                Value::Null => continue,
                Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                Value::String(s) => non_finite_word(s).ok_or_else(|| {
                    at.err(
                        field(k),
                        format!("not a number: {s:?}"),
                        "write numbers as JSON numbers; only \"nan\", \"inf\" and \"-inf\" are accepted as text",
                    )
                })?,
                other => {
                    return Err(at.err(
                        field(k),
                        format!("must be a number, found {other}"),
                        "write a JSON number, null, or \"nan\"/\"inf\"/\"-inf\"",
                    ));
                }
            };
            values.push((k.clone(), x));
        }
        rows.push((step, j, values));
    }
    let curve = assemble(rows, |j, other| {
        at.err(
            format!("curve[{j}].step"),
            format!("duplicate step (also in curve[{other}])"),
            "give each step once, with all its metrics",
        )
    })?;
    let state = match obj.get("state") {
        None | Some(Value::Null) => default_state(&curve),
        Some(Value::String(s)) => parse_state(s, at, "state")?,
        Some(other) => {
            return Err(at.err("state".to_string(), format!("must be a string, found {other}"), format!("use {STATES}")));
        }
    };
    let origin = format!("{}:{}", at.file.display(), at.line.unwrap_or(0));
    Ok(Run { name, trial: as_read(origin, params.into_params(), max_train_steps, state, curve, message, source) })
}
