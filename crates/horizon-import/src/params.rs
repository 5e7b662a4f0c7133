//! The one conversion of a parameter's value, whatever the format: a JSON Lines run's `params`,
//! a CSV index's cells, a TensorBoard run's `params.json`, `hparams.yaml` or `key=value`
//! directory name. The readers only say what kind of scalar the source wrote ([`Scalar`]);
//! [`value`] types it, so the same scalar gives the same `ParamValue` in every format.
//!
//! - **Plain text** (a JSON number, a CSV cell, a YAML plain scalar, a directory name's value) is
//!   typed by its spelling: `true`/`True`/`TRUE` and `false`/`False`/`FALSE` a boolean; digits
//!   with an optional sign an integer (refused past 64 bits); any other number a float, refused
//!   when not finite (`nan`, `inf`, YAML's `.inf`, `.nan`); anything else text. So integers
//!   stay integers (`128`), floats stay floats (`1.0`, `1e-4`).
//! - **Quoted text** (a JSON string, a quoted or block YAML scalar) is text: `'0.1'` is the
//!   string `0.1`.
//! - **Null** (JSON's and YAML's null, an empty CSV cell) is no value: the run has none for
//!   that parameter.
//! - **Nesting.** A nested JSON object or YAML mapping gives dotted names:
//!   `optimizer: {lr: 0.1}` is the parameter `optimizer.lr`. A name given twice (also as a
//!   dotted key and a nested one: `"a.b"` and `"a": {"b"}`) is refused.
//! - **A list of scalars** is one text parameter: its values, each typed as above, as a compact
//!   JSON list (`[0.9,0.999]`, `["relu","tanh"]`). Two runs with the same list have the same
//!   value, whatever file they came from, and the analysis treats it as a choice. A list holding
//!   a list or a mapping is refused.

use std::collections::HashSet;

use horizon_core::{ParamValue, Params};
use serde_json::{Map, Value};

/// A parameter's value as a source wrote it, before it is typed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    /// No value: JSON's or YAML's null, an empty CSV cell.
    Null,
    Bool(bool),
    /// Text whose spelling gives its type: a JSON number, a CSV cell, a YAML plain scalar, a
    /// `key=value` directory name's value.
    Plain(&'a str),
    /// Text by its syntax: a JSON string, a quoted or block YAML scalar.
    Quoted(&'a str),
}

/// Why a value cannot be a parameter, and the fix; the reader adds the file, line and key.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub problem: String,
    pub fix: String,
}

impl Refused {
    fn new(problem: impl Into<String>, fix: impl Into<String>) -> Refused {
        Refused { problem: problem.into(), fix: fix.into() }
    }
}

/// The parameter value of a scalar; `None` for no value (null).
pub fn value(scalar: Scalar<'_>) -> Result<Option<ParamValue>, Refused> {
    Ok(Some(match scalar {
        Scalar::Null => return Ok(None),
        Scalar::Bool(b) => ParamValue::Bool(b),
        Scalar::Quoted(s) => ParamValue::Str(s.to_string()),
        Scalar::Plain(v) => plain(v)?,
    }))
}

fn plain(v: &str) -> Result<ParamValue, Refused> {
    match v {
        "true" | "True" | "TRUE" => return Ok(ParamValue::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(ParamValue::Bool(false)),
        _ => {}
    }
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return v
            .parse::<i64>()
            .map(ParamValue::Int)
            .map_err(|_| Refused::new(format!("number {v} out of range"), "use a value that fits a 64-bit integer or float"));
    }
    let not_finite = || {
        Refused::new(
            format!("parameter value {v:?} is not finite"),
            "give a finite number; to mean the word itself, quote it (in JSON or YAML)",
        )
    };
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(ParamValue::Float(f)),
        Ok(_) => Err(not_finite()),
        // YAML spells infinity and NaN `.inf` and `.nan`.
        Err(_) if matches!(digits.to_ascii_lowercase().as_str(), ".inf" | ".nan") => Err(not_finite()),
        Err(_) => Ok(ParamValue::Str(v.to_string())),
    }
}

/// A list of scalars (each already typed; `None` for a null) as one text parameter.
pub fn list(values: &[Option<ParamValue>]) -> ParamValue {
    let json: Vec<Value> = values.iter().map(|v| v.as_ref().map_or(Value::Null, ParamValue::to_json)).collect();
    ParamValue::Str(Value::Array(json).to_string())
}

/// Parameters collected under dotted names, each given once, in source order.
#[derive(Default)]
pub(crate) struct Flat {
    params: Params,
    seen: HashSet<String>,
}

impl Flat {
    /// Add `name` (null: no value, but the name counts as given).
    pub(crate) fn insert(&mut self, name: &str, value: Option<ParamValue>) -> Result<(), Refused> {
        if !self.seen.insert(name.to_string()) {
            return Err(Refused::new(
                "duplicate key",
                "give each parameter once (a dotted name and the same name nested, \"a.b\" and \"a\": {\"b\": ...}, are one parameter)",
            ));
        }
        if let Some(v) = value {
            self.params.set(name, v);
        }
        Ok(())
    }

    pub(crate) fn into_params(self) -> Params {
        self.params
    }
}

/// `prefix.key`, or `key` at the top; an empty key is refused.
pub(crate) fn join(prefix: &str, key: &str) -> Result<String, Refused> {
    if key.is_empty() {
        return Err(Refused::new("empty key", "name every parameter"));
    }
    Ok(if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") })
}

/// A JSON object's members as parameters, nested objects as dotted names under `prefix`. A
/// refusal comes with the dotted name it is about.
pub(crate) fn json_object(obj: &Map<String, Value>, prefix: &str, out: &mut Flat) -> Result<(), (String, Refused)> {
    for (k, v) in obj {
        let name = join(prefix, k).map_err(|r| (format!("{prefix}{}", if prefix.is_empty() { "" } else { "." }), r))?;
        let at = |r: Refused| (name.clone(), r);
        let typed = match v {
            Value::Object(inner) => {
                json_object(inner, &name, out)?;
                continue;
            }
            Value::Array(items) => {
                let values = items
                    .iter()
                    .map(|item| {
                        json_value(item).unwrap_or_else(|| {
                            Err(Refused::new(
                                format!("a list may hold only numbers, strings, booleans and nulls, found {item}"),
                                format!("flatten it into one parameter per value (\"{name}.0\": ..., \"{name}.1\": ...), or leave it out"),
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(at)?;
                Some(list(&values))
            }
            scalar => json_value(scalar).expect("objects and arrays are handled above").map_err(at)?,
        };
        out.insert(&name, typed).map_err(at)?;
    }
    Ok(())
}

/// A JSON scalar's parameter value; `None` for an object or an array.
fn json_value(v: &Value) -> Option<Result<Option<ParamValue>, Refused>> {
    Some(match v {
        Value::Null => value(Scalar::Null),
        Value::Bool(b) => value(Scalar::Bool(*b)),
        // A JSON number is typed by its spelling, like any plain scalar.
        Value::Number(n) => value(Scalar::Plain(&n.to_string())),
        Value::String(s) => value(Scalar::Quoted(s)),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain_value(v: &str) -> Result<Option<ParamValue>, Refused> {
        value(Scalar::Plain(v))
    }

    #[test]
    fn plain_text_is_typed_by_its_spelling() {
        assert_eq!(plain_value("128"), Ok(Some(ParamValue::Int(128))));
        assert_eq!(plain_value("-3"), Ok(Some(ParamValue::Int(-3))));
        assert_eq!(plain_value("1.0"), Ok(Some(ParamValue::Float(1.0))));
        assert_eq!(plain_value("1e-4"), Ok(Some(ParamValue::Float(1e-4))));
        assert_eq!(plain_value("True"), Ok(Some(ParamValue::Bool(true))));
        assert_eq!(plain_value("false"), Ok(Some(ParamValue::Bool(false))));
        assert_eq!(plain_value("sgd"), Ok(Some(ParamValue::Str("sgd".into()))));
        assert_eq!(plain_value("0x1F"), Ok(Some(ParamValue::Str("0x1F".into()))));
        for bad in ["nan", "inf", "-Infinity", ".inf", "-.inf", ".NaN"] {
            let r = plain_value(bad).unwrap_err();
            assert!(r.problem.contains("not finite"), "{bad}: {r:?}");
        }
        let r = plain_value("9223372036854775808").unwrap_err();
        assert_eq!(r.problem, "number 9223372036854775808 out of range");
        assert_eq!(value(Scalar::Quoted("0.1")), Ok(Some(ParamValue::Str("0.1".into()))));
        assert_eq!(value(Scalar::Null), Ok(None));
    }

    #[test]
    fn json_objects_flatten_to_dotted_names() {
        let obj: Map<String, Value> = serde_json::from_str(
            r#"{"optimizer": {"lr": 0.1, "betas": [0.9, 0.999], "sched": {"kind": "cosine"}}, "bs": 128, "none": null}"#,
        )
        .unwrap();
        let mut flat = Flat::default();
        json_object(&obj, "", &mut flat).unwrap();
        assert_eq!(
            flat.into_params().0,
            [
                ("optimizer.lr".to_string(), ParamValue::Float(0.1)),
                ("optimizer.betas".to_string(), ParamValue::Str("[0.9,0.999]".into())),
                ("optimizer.sched.kind".to_string(), ParamValue::Str("cosine".into())),
                ("bs".to_string(), ParamValue::Int(128)),
            ]
        );
        let refuse = |text: &str| {
            let obj: Map<String, Value> = serde_json::from_str(text).unwrap();
            json_object(&obj, "", &mut Flat::default()).unwrap_err()
        };
        let (name, r) = refuse(r#"{"a.b": 1, "a": {"b": 2}}"#);
        assert_eq!((name.as_str(), r.problem.as_str()), ("a.b", "duplicate key"));
        let (name, r) = refuse(r#"{"layers": [{"units": 64}]}"#);
        assert_eq!(name, "layers");
        assert!(r.fix.contains("\"layers.0\""), "{}", r.fix);
        let (name, r) = refuse(r#"{"a": {"": 1}}"#);
        assert_eq!((name.as_str(), r.problem.as_str()), ("a.", "empty key"));
    }
}
