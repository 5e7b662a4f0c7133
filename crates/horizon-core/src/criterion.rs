//! A rule on one metric's value, "`METRIC OP VALUE`" (e.g. `train/error <= 0`): the fit
//! criterion of the learning-rate sweep ([`crate::lr_sweep`]) and a trainer's `stop_when`
//! ([`crate::spec::TrainerSpec`]). Serialized as its text.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A comparison that decides whether a metric value meets a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Le,
    Lt,
    Ge,
    Gt,
    Eq,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Eq => "==",
        }
    }
}

/// "`metric` `op` `threshold`", e.g. `train/error <= 0`: the fit criterion of the sweep, and the
/// rule of a trainer's `stop_when`.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    pub metric: String,
    pub op: Op,
    pub threshold: f64,
}

impl Criterion {
    /// Parse `"train/error <= 0"`. Operators: `<=`, `<`, `>=`, `>`, `==`.
    pub fn parse(text: &str) -> Result<Criterion, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let [metric, op, threshold] = words.as_slice() else {
            return Err(format!("{text:?} is not \"METRIC OP VALUE\""));
        };
        let op = match *op {
            "<=" => Op::Le,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            ">" => Op::Gt,
            "==" => Op::Eq,
            other => return Err(format!("{other:?} is not a comparison (use <=, <, >=, > or ==)")),
        };
        let threshold: f64 = threshold.parse().map_err(|_| format!("{threshold:?} is not a number"))?;
        if !threshold.is_finite() {
            return Err(format!("the threshold must be finite, got {threshold}"));
        }
        Ok(Criterion { metric: metric.to_string(), op, threshold })
    }

    /// Whether a value meets the criterion (never for NaN).
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Op::Le => value <= self.threshold,
            Op::Lt => value < self.threshold,
            Op::Ge => value >= self.threshold,
            Op::Gt => value > self.threshold,
            Op::Eq => value == self.threshold,
        }
    }

    /// How far a value is from meeting the criterion, in its own direction (lower is closer;
    /// NaN is infinitely far). Ranks learning rates when none of them fits.
    pub fn distance(&self, value: f64) -> f64 {
        let d = match self.op {
            Op::Le | Op::Lt => value,
            Op::Ge | Op::Gt => -value,
            Op::Eq => (value - self.threshold).abs(),
        };
        if d.is_nan() { f64::INFINITY } else { d }
    }

    /// The value of a curve that came closest to meeting the criterion.
    pub fn closest(&self, curve: &[(u64, f64)]) -> Option<f64> {
        curve.iter().map(|(_, v)| *v).filter(|v| v.is_finite()).min_by(|a, b| self.distance(*a).total_cmp(&self.distance(*b)))
    }

    /// The first evaluated step at which the criterion holds (`curve` in any order).
    pub fn first_step(&self, curve: &[(u64, f64)]) -> Option<u64> {
        curve.iter().filter(|(_, v)| self.holds(*v)).map(|(s, _)| *s).min()
    }
}

impl fmt::Display for Criterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op.symbol(), self.threshold)
    }
}

impl Serialize for Criterion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Criterion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Criterion::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_parse_compare_and_print() {
        let c = Criterion::parse("train/loss  <  1e-3").unwrap();
        assert_eq!((c.metric.as_str(), c.op, c.threshold), ("train/loss", Op::Lt, 1e-3));
        assert!(c.holds(5e-4) && !c.holds(1e-3) && !c.holds(f64::NAN));
        assert_eq!(c.to_string(), "train/loss < 0.001");
        assert_eq!(Criterion::parse(&c.to_string()).unwrap(), c);
        assert!(Criterion::parse("train/error = 0").unwrap_err().contains("comparison"));
        assert!(Criterion::parse("train/error <= zero").unwrap_err().contains("number"));
        assert!(Criterion::parse("train/error<=0").is_err());
        let e = Criterion::parse("train/error == 0").unwrap();
        assert_eq!(e.first_step(&[(30, 0.0), (10, 0.2), (20, 0.0)]), Some(20));
        assert_eq!(e.first_step(&[(10, 0.1)]), None);
    }
}
