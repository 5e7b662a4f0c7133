//! Search spaces: the parameters a study varies, and the map from the unit cube to values.
//!
//! Samplers produce points in `[0, 1)^d`, one coordinate per varied parameter; the space turns
//! a point into [`Params`]. Log-scaled parameters are uniform in the logarithm, so a sampler's
//! evenness carries over to the scale the user reasons in.

use crate::params::{ParamValue, Params};

/// How a numeric range is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    #[default]
    Linear,
    Log,
}

/// What values one parameter can take.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ParamKind {
    /// A real number in `[low, high]`.
    Float { low: f64, high: f64, scale: Scale },
    /// An integer in `[low, high]`, both ends included.
    Int { low: i64, high: i64, scale: Scale },
    /// An ordered list of numbers (e.g. batch sizes); each is equally likely.
    Discrete { values: Vec<ParamValue> },
    /// Unordered choices; each is equally likely.
    Categorical { choices: Vec<ParamValue> },
    /// Not searched: every trial gets this value.
    Fixed { value: ParamValue },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParamDef {
    pub name: String,
    #[serde(flatten)]
    pub kind: ParamKind,
}

impl ParamDef {
    /// Whether the parameter takes a coordinate of the sampler's points.
    pub fn is_varied(&self) -> bool {
        !matches!(self.kind, ParamKind::Fixed { .. })
    }

    /// The value at unit coordinate `u` in `[0, 1)` (ignored for fixed parameters).
    ///
    /// Always within `[low, high]`, over any range the types can hold: integer widths are taken
    /// in `i128` (`[i64::MIN, i64::MAX]` has 2^64 values), and a float range whose width
    /// overflows (`[-f64::MAX, f64::MAX]`) is mapped through its halves.
    pub fn value_at(&self, u: f64) -> ParamValue {
        let u = if u.is_nan() { 0.0 } else { u.clamp(0.0, 1.0 - f64::EPSILON) };
        match &self.kind {
            ParamKind::Float { low, high, scale: Scale::Linear } => ParamValue::Float(lerp(*low, *high, u)),
            ParamKind::Float { low, high, scale: Scale::Log } => {
                let (a, b) = (low.ln(), high.ln());
                let x = if u == 0.0 { *low } else { (a + u * (b - a)).exp() };
                ParamValue::Float(x.clamp(*low, *high))
            }
            ParamKind::Int { low, high, scale: Scale::Linear } => {
                let n = (*high as i128 - *low as i128 + 1) as f64;
                ParamValue::Int(int_at(*low, *high, (u * n).floor()))
            }
            ParamKind::Int { low, high, scale: Scale::Log } => {
                // Uniform in log over [low, high + 1), floored: each integer gets the share of the
                // log range between it and its successor.
                if *high < EXACT_LOG_INT {
                    let (a, b) = ((*low as f64).ln(), ((*high + 1) as f64).ln());
                    ParamValue::Int(((a + u * (b - a)).exp().floor() as i64).clamp(*low, *high))
                } else {
                    // Beyond, exp(ln(x)) misses x by more than 1 (and past 2^53 not every integer
                    // is a float): work with the offset from low, low * ((high + 1) / low)^u - low,
                    // which stays exact for narrow ranges.
                    let (l, n) = (*low as f64, (*high as i128 - *low as i128 + 1) as f64);
                    ParamValue::Int(int_at(*low, *high, (l * (u * (n / l).ln_1p()).exp_m1()).floor()))
                }
            }
            ParamKind::Discrete { values } => pick(values, u),
            ParamKind::Categorical { choices } => pick(choices, u),
            ParamKind::Fixed { value } => value.clone(),
        }
    }

    /// Whether `value` is one the parameter can take: within a range, in a list, the fixed
    /// value. (Imported runs are checked against a declared space with it.)
    pub fn contains(&self, value: &ParamValue) -> bool {
        match &self.kind {
            ParamKind::Float { .. } | ParamKind::Int { .. } => self.unit_position(value).is_some(),
            ParamKind::Discrete { values } => values.contains(value),
            ParamKind::Categorical { choices } => choices.contains(value),
            ParamKind::Fixed { value: v } => v == value,
        }
    }

    /// The values the parameter can take, in words: `"0.001 to 1, log"`, `"one of 32, 64"`.
    pub fn describe(&self) -> String {
        let list = |vs: &[ParamValue]| vs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let scale = |s: &Scale| if *s == Scale::Log { "log" } else { "linear" };
        match &self.kind {
            ParamKind::Float { low, high, scale: s } => format!("{low} to {high}, {}", scale(s)),
            ParamKind::Int { low, high, scale: s } => format!("{low} to {high}, {}", scale(s)),
            ParamKind::Discrete { values } => format!("one of {}", list(values)),
            ParamKind::Categorical { choices } => format!("one of {}", list(choices)),
            ParamKind::Fixed { value } => format!("fixed at {value}"),
        }
    }

    /// The position of `value` in the parameter's sampling scale, in `[0, 1]`: linear or log
    /// for ranges, the index for lists. `None` for fixed and categorical parameters (no order)
    /// and for values that are not in the space.
    pub fn unit_position(&self, value: &ParamValue) -> Option<f64> {
        let x = value.as_f64();
        match &self.kind {
            ParamKind::Float { low, high, scale } => unit_of(x?, *low, *high, *scale),
            ParamKind::Int { low, high, scale } => match (value, scale) {
                // Differences in i128, rounded once: the same as f64 differences where those were
                // exact (below 2^53), and no overflow or cancellation beyond.
                (ParamValue::Int(i), Scale::Linear) if low < high => {
                    (low..=high).contains(&i).then(|| (*i as i128 - *low as i128) as f64 / (*high as i128 - *low as i128) as f64)
                }
                _ => unit_of(x?, *low as f64, *high as f64, *scale),
            },
            ParamKind::Discrete { values } => {
                let i = values.iter().position(|v| v == value)?;
                Some(if values.len() == 1 { 0.5 } else { i as f64 / (values.len() - 1) as f64 })
            }
            ParamKind::Categorical { .. } | ParamKind::Fixed { .. } => None,
        }
    }
}

/// Integers up to this magnitude are all exactly representable as `f64`.
pub(crate) const EXACT_INT: i64 = 1 << 53;
/// Below this, `exp(ln(x))` of an integer `x` is within 0.01 of `x` (the rounding of `ln x`
/// costs about `x * 2^-49`), so log-scale integers may be computed on the values themselves;
/// beyond, on the offset from `low`.
pub(crate) const EXACT_LOG_INT: i64 = 1 << 40;

/// `low + offset`, in `[low, high]`, for a (floored or rounded) float offset of any size.
pub(crate) fn int_at(low: i64, high: i64, offset: f64) -> i64 {
    // `as i128` saturates (and sends NaN to 0); every i64 offset fits, so the clamp is exact.
    (low as i128 + offset as i128).clamp(low as i128, high as i128) as i64
}

/// The point a fraction `t` in `[0, 1]` of the way from `low` to `high`, within `[low, high]`.
/// Finite widths use `low + t * (high - low)` (the values studies have always had); a width
/// that overflows goes through the halves, where nothing overflows and doubling is exact.
pub(crate) fn lerp(low: f64, high: f64, t: f64) -> f64 {
    let width = high - low;
    let x = if width.is_finite() {
        low + t * width
    } else {
        let (l, h) = (low / 2.0, high / 2.0);
        2.0 * (l + t * (h - l)).clamp(l, h)
    };
    x.clamp(low, high)
}

fn pick(values: &[ParamValue], u: f64) -> ParamValue {
    let i = ((u * values.len() as f64).floor() as usize).min(values.len() - 1);
    values[i].clone()
}

fn unit_of(x: f64, low: f64, high: f64, scale: Scale) -> Option<f64> {
    if !(low..=high).contains(&x) {
        return None;
    }
    if low == high {
        // A range of one value (as a single-valued list): the middle.
        return Some(0.5);
    }
    Some(match scale {
        Scale::Linear if (high - low).is_finite() => (x - low) / (high - low),
        Scale::Linear => (x / 2.0 - low / 2.0) / (high / 2.0 - low / 2.0),
        // Bounds so close that their logarithms round to one value: log is linear at that scale.
        Scale::Log if high.ln() == low.ln() => (x - low) / (high - low),
        Scale::Log => (x.ln() - low.ln()) / (high.ln() - low.ln()),
    })
}

/// The parameters of a study, in declaration order.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct SearchSpace {
    pub params: Vec<ParamDef>,
}

impl SearchSpace {
    /// Number of varied parameters: the dimension of the sampler's points.
    pub fn dims(&self) -> usize {
        self.params.iter().filter(|p| p.is_varied()).count()
    }

    pub fn param(&self, name: &str) -> Option<&ParamDef> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Map a point of the unit cube (one coordinate per varied parameter, in order) to values.
    pub fn decode(&self, point: &[f64]) -> Params {
        assert_eq!(point.len(), self.dims(), "point dimension must match the space");
        let mut coords = point.iter();
        Params(
            self.params
                .iter()
                .map(|p| {
                    let u = if p.is_varied() { *coords.next().unwrap() } else { 0.0 };
                    (p.name.clone(), p.value_at(u))
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_and_describe_cover_every_kind() {
        let f = ParamDef { name: "lr".into(), kind: ParamKind::Float { low: 1e-3, high: 1.0, scale: Scale::Log } };
        assert!(
            f.contains(&ParamValue::Float(0.01))
                && !f.contains(&ParamValue::Float(2.0))
                && !f.contains(&ParamValue::Str("x".into()))
        );
        assert_eq!(f.describe(), "0.001 to 1, log");
        let i = ParamDef { name: "n".into(), kind: ParamKind::Int { low: 1, high: 8, scale: Scale::Linear } };
        assert!(i.contains(&ParamValue::Int(8)) && !i.contains(&ParamValue::Int(9)));
        let d =
            ParamDef { name: "b".into(), kind: ParamKind::Discrete { values: vec![ParamValue::Int(32), ParamValue::Int(64)] } };
        assert!(d.contains(&ParamValue::Int(64)) && !d.contains(&ParamValue::Int(48)));
        assert_eq!(d.describe(), "one of 32, 64");
        let c = ParamDef { name: "o".into(), kind: ParamKind::Categorical { choices: vec![ParamValue::Str("sgd".into())] } };
        assert!(c.contains(&ParamValue::Str("sgd".into())) && !c.contains(&ParamValue::Str("adam".into())));
        let x = ParamDef { name: "w".into(), kind: ParamKind::Fixed { value: ParamValue::Int(3) } };
        assert!(x.contains(&ParamValue::Int(3)) && !x.contains(&ParamValue::Int(4)));
    }

    fn float(low: f64, high: f64, scale: Scale) -> ParamDef {
        ParamDef { name: "x".into(), kind: ParamKind::Float { low, high, scale } }
    }

    #[test]
    fn log_scale_is_uniform_in_the_logarithm() {
        let p = float(1e-4, 1.0, Scale::Log);
        assert_eq!(p.value_at(0.0), ParamValue::Float(1e-4));
        let mid = p.value_at(0.5).as_f64().unwrap();
        assert!((mid - 1e-2).abs() < 1e-12, "geometric midpoint, got {mid}");
        assert!((p.unit_position(&ParamValue::Float(1e-3)).unwrap() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn ints_cover_both_ends_equally() {
        let p = ParamDef { name: "n".into(), kind: ParamKind::Int { low: 1, high: 4, scale: Scale::Linear } };
        let mut counts = [0; 4];
        for i in 0..4000 {
            let v = p.value_at(i as f64 / 4000.0);
            let ParamValue::Int(n) = v else { panic!() };
            counts[(n - 1) as usize] += 1;
        }
        assert_eq!(counts, [1000; 4]);
    }

    #[test]
    fn int_log_stays_in_range() {
        let p = ParamDef { name: "h".into(), kind: ParamKind::Int { low: 16, high: 1024, scale: Scale::Log } };
        for i in 0..1000 {
            let ParamValue::Int(n) = p.value_at(i as f64 / 1000.0) else { panic!() };
            assert!((16..=1024).contains(&n));
        }
        assert_eq!(p.value_at(0.999_999_9), ParamValue::Int(1024));
    }

    #[test]
    fn spaces_round_trip_through_json() {
        let space = SearchSpace {
            params: vec![
                float(1e-4, 1.0, Scale::Log),
                ParamDef { name: "n".into(), kind: ParamKind::Int { low: 1, high: 9, scale: Scale::Linear } },
                ParamDef {
                    name: "c".into(),
                    kind: ParamKind::Categorical { choices: vec![ParamValue::Str("a".into()), ParamValue::Int(2)] },
                },
                ParamDef { name: "k".into(), kind: ParamKind::Fixed { value: ParamValue::Float(0.5) } },
            ],
        };
        let json = serde_json::to_string(&space).unwrap();
        assert!(json.contains(r#""type":"float""#), "{json}");
        let back: SearchSpace = serde_json::from_str(&json).unwrap();
        assert_eq!(back, space);
    }

    #[test]
    fn fixed_parameters_take_no_coordinate() {
        let space = SearchSpace {
            params: vec![
                float(0.0, 1.0, Scale::Linear),
                ParamDef { name: "k".into(), kind: ParamKind::Fixed { value: ParamValue::Int(7) } },
            ],
        };
        assert_eq!(space.dims(), 1);
        let p = space.decode(&[0.25]);
        assert_eq!(p.get("k"), Some(&ParamValue::Int(7)));
        assert_eq!(p.get("x"), Some(&ParamValue::Float(0.25)));
    }
}
