//! Tuning in rounds (docs/method.md section 3): what carries from one round to the next.
//!
//! A round's search space is a pure function of the previous round's results and the transfer
//! table: each parameter is **frozen** at the previous round's winner, **narrowed** around the
//! previous round's best trials (in its sampling scale), or **searched** again over its full
//! range. The defaults follow the method's table by kind of parameter ([`ParamRole`]):
//!
//! | role | default | why (the method's transfer table) |
//! |---|---|---|
//! | warmup, initialization | freeze | expected to transfer from short runs to long ones |
//! | architecture | freeze the winner | changing the model changes everything else |
//! | optimizer, augmentation, regularization | narrow | their best values move with the budget, but not far |
//! | schedule | carried by rule ([`crate::schedule::Schedule::transfer`]) | the shape moves with the budget by the method's rules |
//! | other | search | nothing known: keep searching the full range |
//!
//! The round's trials are then drawn from that space by the study's sampler, so a round is
//! resumable from the database alone like any study.

use crate::params::{ParamValue, Params};
use crate::space::{ParamDef, ParamKind, Scale, SearchSpace};

/// What a parameter is, for the transfer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamRole {
    Warmup,
    Initialization,
    Architecture,
    Optimizer,
    Augmentation,
    Regularization,
    /// Shapes the learning rate over training (`schedule`, `decay_steps`): carried by rule.
    Schedule,
    Other,
}

/// How a parameter carries into the next round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transfer {
    /// Fixed at the previous round's winner.
    Freeze,
    /// Searched again, within the range the previous round's best trials span (in the
    /// parameter's sampling scale), widened by a margin and kept inside the original range.
    Narrow,
    /// Searched again over its full range.
    Search,
}

impl ParamRole {
    /// The method's default transfer for this role. The schedule's parameters are frozen at the
    /// winner's values here; its budget-dependent part is carried by the schedule transfer rule.
    pub fn default_transfer(self) -> Transfer {
        match self {
            ParamRole::Warmup | ParamRole::Initialization | ParamRole::Architecture | ParamRole::Schedule => Transfer::Freeze,
            ParamRole::Optimizer | ParamRole::Augmentation | ParamRole::Regularization => Transfer::Narrow,
            ParamRole::Other => Transfer::Search,
        }
    }
}

/// How much a narrowed range is widened on each side, as a share of its span in the sampling
/// scale (so a range of one point still leaves room to move).
pub const NARROW_MARGIN: f64 = 0.25;

/// The definition a parameter has in the next round, given the values of the previous round's
/// best trials (`top`, best first; `top[0]` is the winner). A parameter that is fixed stays
/// fixed. With no top trial there is nothing to carry: the definition is kept.
pub fn carry(def: &ParamDef, transfer: Transfer, top: &[ParamValue]) -> ParamDef {
    let Some(winner) = top.first() else { return def.clone() };
    let kind = match (transfer, &def.kind) {
        (_, ParamKind::Fixed { .. }) | (Transfer::Search, _) => def.kind.clone(),
        (Transfer::Freeze, _) => ParamKind::Fixed { value: winner.clone() },
        (Transfer::Narrow, kind) => narrow(kind, top),
    };
    ParamDef { name: def.name.clone(), kind }
}

/// A range narrowed around `top` (see [`Transfer::Narrow`]).
fn narrow(kind: &ParamKind, top: &[ParamValue]) -> ParamKind {
    match kind {
        ParamKind::Float { low, high, scale } => {
            let xs: Vec<f64> = top.iter().filter_map(ParamValue::as_f64).filter(|x| x.is_finite()).collect();
            match narrowed(*low, *high, *scale, &xs) {
                Some((a, b)) if a < b => ParamKind::Float { low: a, high: b, scale: *scale },
                Some((a, _)) => ParamKind::Fixed { value: ParamValue::Float(a) },
                None => kind.clone(),
            }
        }
        ParamKind::Int { low, high, scale } => {
            let xs: Vec<f64> = top.iter().filter_map(ParamValue::as_f64).collect();
            match narrowed(*low as f64, *high as f64, *scale, &xs) {
                Some((a, b)) => {
                    let (a, b) = ((a.floor() as i64).clamp(*low, *high), (b.ceil() as i64).clamp(*low, *high));
                    if a < b {
                        ParamKind::Int { low: a, high: b, scale: *scale }
                    } else {
                        ParamKind::Fixed { value: ParamValue::Int(a) }
                    }
                }
                None => kind.clone(),
            }
        }
        // Ordered values: the span of the top trials' values in the list, one more each side.
        ParamKind::Discrete { values } => {
            let at: Vec<usize> = top.iter().filter_map(|v| values.iter().position(|x| x == v)).collect();
            match (at.iter().min(), at.iter().max()) {
                (Some(&a), Some(&b)) => {
                    let kept: Vec<ParamValue> = values[a.saturating_sub(1)..=(b + 1).min(values.len() - 1)].to_vec();
                    if kept.len() == 1 {
                        ParamKind::Fixed { value: kept[0].clone() }
                    } else {
                        ParamKind::Discrete { values: kept }
                    }
                }
                _ => kind.clone(),
            }
        }
        // Unordered: the choices the top trials made, in the original order.
        ParamKind::Categorical { choices } => {
            let kept: Vec<ParamValue> = choices.iter().filter(|c| top.contains(c)).cloned().collect();
            match kept.len() {
                0 => kind.clone(),
                1 => ParamKind::Fixed { value: kept[0].clone() },
                _ => ParamKind::Categorical { choices: kept },
            }
        }
        ParamKind::Fixed { .. } => kind.clone(),
    }
}

/// The least a narrowed range is widened on each side, as a share of the original range's span
/// in the sampling scale.
pub const MIN_MARGIN_SHARE: f64 = 0.05;

/// `[min, max]` of `xs` widened by [`NARROW_MARGIN`] of its span (at least
/// [`MIN_MARGIN_SHARE`] of the original span) on each side, in the sampling scale, clipped to
/// `[low, high]`.
fn narrowed(low: f64, high: f64, scale: Scale, xs: &[f64]) -> Option<(f64, f64)> {
    type Map = fn(f64) -> f64;
    let (to, from): (Map, Map) = match scale {
        Scale::Linear => (|x| x, |x| x),
        Scale::Log => (f64::ln, f64::exp),
    };
    let us: Vec<f64> = xs.iter().copied().filter(|x| *x >= low && *x <= high).map(to).collect();
    let (a, b) = us.iter().fold(None, |acc: Option<(f64, f64)>, &u| match acc {
        None => Some((u, u)),
        Some((a, b)) => Some((a.min(u), b.max(u))),
    })?;
    let full = to(high) - to(low);
    let margin = ((b - a) * NARROW_MARGIN).max(full * MIN_MARGIN_SHARE);
    let (lo, hi) = ((a - margin).max(to(low)), (b + margin).min(to(high)));
    Some((from(lo).clamp(low, high), from(hi).clamp(low, high)))
}

/// The next round's search space: every parameter carried by its transfer, from the `top`
/// trials of the previous round (best first).
pub fn next_space(space: &SearchSpace, transfer: &dyn Fn(&str) -> Transfer, top: &[&Params]) -> SearchSpace {
    let params = space
        .params
        .iter()
        .map(|def| {
            let values: Vec<ParamValue> = top.iter().filter_map(|p| p.get(&def.name).cloned()).collect();
            carry(def, transfer(&def.name), &values)
        })
        .collect();
    SearchSpace { params }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(name: &str, low: f64, high: f64, scale: Scale) -> ParamDef {
        ParamDef { name: name.into(), kind: ParamKind::Float { low, high, scale } }
    }

    #[test]
    fn the_methods_table_is_the_default() {
        assert_eq!(ParamRole::Warmup.default_transfer(), Transfer::Freeze);
        assert_eq!(ParamRole::Architecture.default_transfer(), Transfer::Freeze);
        assert_eq!(ParamRole::Optimizer.default_transfer(), Transfer::Narrow);
        assert_eq!(ParamRole::Regularization.default_transfer(), Transfer::Narrow);
        assert_eq!(ParamRole::Other.default_transfer(), Transfer::Search);
    }

    #[test]
    fn narrowing_happens_in_the_sampling_scale_and_stays_inside_the_range() {
        let lr = float("lr", 1e-4, 1.0, Scale::Log);
        let top = [ParamValue::Float(0.01), ParamValue::Float(0.001)];
        let ParamKind::Float { low, high, scale } = carry(&lr, Transfer::Narrow, &top).kind else { panic!() };
        assert_eq!(scale, Scale::Log);
        // One decade spanned; a quarter decade of margin each side.
        assert!((low.log10() - (-3.25)).abs() < 1e-9 && (high.log10() - (-1.75)).abs() < 1e-9, "{low} {high}");
        // At the edge: clipped to the original range, and the top trials are inside.
        let top = [ParamValue::Float(1.0), ParamValue::Float(0.5)];
        let ParamKind::Float { low, high, .. } = carry(&lr, Transfer::Narrow, &top).kind else { panic!() };
        assert_eq!(high, 1.0);
        assert!(low < 0.5 && low > 1e-4);
        // Frozen: the winner (the first).
        assert_eq!(carry(&lr, Transfer::Freeze, &top).kind, ParamKind::Fixed { value: ParamValue::Float(1.0) });
        assert_eq!(carry(&lr, Transfer::Search, &top), lr);
        // Nothing to carry from: unchanged.
        assert_eq!(carry(&lr, Transfer::Freeze, &[]), lr);
    }

    #[test]
    fn choices_and_lists_narrow_to_what_the_best_trials_chose() {
        let c = ParamDef {
            name: "opt".into(),
            kind: ParamKind::Categorical { choices: ["sgd", "adam", "adamw"].map(|s| ParamValue::Str(s.into())).to_vec() },
        };
        let top = [ParamValue::Str("adamw".into()), ParamValue::Str("sgd".into())];
        assert_eq!(
            carry(&c, Transfer::Narrow, &top).kind,
            ParamKind::Categorical { choices: vec![ParamValue::Str("sgd".into()), ParamValue::Str("adamw".into())] }
        );
        let d = ParamDef {
            name: "bs".into(),
            kind: ParamKind::Discrete { values: [16, 32, 64, 128, 256].map(ParamValue::Int).to_vec() },
        };
        assert_eq!(
            carry(&d, Transfer::Narrow, &[ParamValue::Int(64)]).kind,
            ParamKind::Discrete { values: [32, 64, 128].map(ParamValue::Int).to_vec() }
        );
        let i = ParamDef { name: "w".into(), kind: ParamKind::Int { low: 8, high: 512, scale: Scale::Log } };
        let ParamKind::Int { low, high, .. } = carry(&i, Transfer::Narrow, &[ParamValue::Int(64), ParamValue::Int(128)]).kind
        else {
            panic!()
        };
        assert!(low <= 64 && high >= 128 && low >= 8 && high <= 512, "{low}..{high}");
    }

    #[test]
    fn the_next_space_carries_every_parameter_from_the_best_trials() {
        let space = SearchSpace {
            params: vec![
                float("lr", 1e-4, 1.0, Scale::Log),
                float("warmup", 0.0, 100.0, Scale::Linear),
                float("x", 0.0, 1.0, Scale::Linear),
            ],
        };
        let p = |lr: f64, w: f64| {
            Params(vec![
                ("lr".into(), ParamValue::Float(lr)),
                ("warmup".into(), ParamValue::Float(w)),
                ("x".into(), ParamValue::Float(0.5)),
            ])
        };
        let (a, b) = (p(0.01, 10.0), p(0.02, 20.0));
        let top = [&b, &a];
        let transfer = |name: &str| match name {
            "lr" => Transfer::Narrow,
            "warmup" => Transfer::Freeze,
            _ => Transfer::Search,
        };
        let next = next_space(&space, &transfer, &top);
        assert_eq!(next.params[1].kind, ParamKind::Fixed { value: ParamValue::Float(20.0) }, "frozen at the winner");
        assert_eq!(next.params[2], space.params[2]);
        for t in &top {
            assert!(next.params[0].contains(t.get("lr").unwrap()), "the top trials are inside the narrowed range");
        }
    }
}
