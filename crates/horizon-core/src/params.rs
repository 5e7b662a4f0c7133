//! Parameter values and the ordered set of them that one trial receives.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One parameter's value. Serialized as the plain JSON/TOML scalar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl ParamValue {
    /// The value as a number, when it is one (integers widen to `f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Int(i) => Some(*i as f64),
            ParamValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a parameter value is always representable in JSON")
    }
}

impl fmt::Display for ParamValue {
    /// The text a command-line template receives: integers without a decimal point, floats in
    /// the shortest form that reads back exactly and always looks like a float (`0.001`,
    /// `3.0`, `1e-7`), strings verbatim.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x:?}"),
            ParamValue::Str(s) => f.write_str(s),
        }
    }
}

/// The parameters of one trial, in the order the search space declares them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Params(pub Vec<(String, ParamValue)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Insert or replace a value, keeping the position of an existing name.
    pub fn set(&mut self, name: &str, value: ParamValue) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).expect("parameters are always representable in JSON")
    }
}

impl Serialize for Params {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamsVisitor;
        impl<'de> Visitor<'de> for ParamsVisitor {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of parameter names to scalar values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Params, A::Error> {
                let mut params = Vec::new();
                while let Some((k, v)) = access.next_entry::<String, ParamValue>()? {
                    params.push((k, v));
                }
                Ok(Params(params))
            }
        }
        deserializer.deserialize_map(ParamsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_through_json_keeping_order() {
        let p = Params(vec![
            ("zeta".into(), ParamValue::Float(0.5)),
            ("alpha".into(), ParamValue::Int(3)),
            ("opt".into(), ParamValue::Str("adam".into())),
        ]);
        let json = p.to_json_string();
        assert_eq!(json, r#"{"zeta":0.5,"alpha":3,"opt":"adam"}"#);
        let back: Params = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn display_is_what_a_command_line_gets() {
        assert_eq!(ParamValue::Float(0.001).to_string(), "0.001");
        assert_eq!(ParamValue::Float(3.0).to_string(), "3.0");
        assert_eq!(ParamValue::Float(1e-7).to_string(), "1e-7");
        assert_eq!(ParamValue::Int(128).to_string(), "128");
        assert_eq!(ParamValue::Str("a b;c".into()).to_string(), "a b;c");
    }
}
