//! Search-space boundaries and where infeasible trials cluster (docs/method.md section 4).
//!
//! Positions are in the parameter's sampling scale, in `[0, 1]` (`ParamDef::unit_position`):
//! log for log-scaled ranges, the index for discrete lists. Without a search space (imported
//! runs) ranges are inferred from the observed values.

use horizon_core::params::ParamValue;
use horizon_core::space::{ParamDef, ParamKind, Scale};
use serde::Serialize;

use crate::StudyData;
use crate::config::AnalysisConfig;
use crate::stats;
use crate::text::{num, pct};
use crate::trials::{InfeasibleReason, TrialAnalysis};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    Low,
    High,
}

impl Edge {
    pub fn as_str(self) -> &'static str {
        match self {
            Edge::Low => "low",
            Edge::High => "high",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeSource {
    /// The study's search space.
    Space,
    /// Inferred from the observed values (no search space given).
    Observed,
}

/// The reading of one edge of one parameter's range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeTest {
    pub edge: Edge,
    /// The band is the positions within `edge_margin` of this edge; this is its inner limit,
    /// in the parameter's units (for ranges).
    pub band_limit: Option<f64>,
    pub top_count: usize,
    pub top_in_band: usize,
    pub best_in_band: bool,
    /// Of the (up to) 3 best trials, how many are in the band.
    pub top3_in_band: usize,
    /// Share of all feasible trials in the band.
    pub feasible_share: f64,
    /// Share of the sampling distribution in the band (study spaces only).
    pub sampling_share: Option<f64>,
    /// The larger of the two: what the band would hold if the parameter did not matter.
    pub base_share: f64,
    /// P(at least `top_in_band` of `top_count` in the band) under `base_share`.
    pub p_value: f64,
    pub flagged: bool,
    /// What holds on a flagged edge: "enrichment" (required), and "best_and_top3" when it confirms.
    pub rules: Vec<String>,
}

/// The boundary reading of one varied numeric parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamBoundary {
    pub name: String,
    /// "linear", "log" or "index" (discrete lists).
    pub scale: String,
    pub range_source: RangeSource,
    pub low: f64,
    pub high: f64,
    /// Why the scale was chosen, for inferred ranges.
    pub note: Option<String>,
    pub best_value: Option<ParamValue>,
    pub best_position: Option<f64>,
    /// Positions of the boundary's top trials, best first.
    pub top_positions: Vec<f64>,
    pub low_edge: EdgeTest,
    pub high_edge: EdgeTest,
    /// Edges to widen.
    pub widen: Vec<Edge>,
    pub advice: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedParam {
    pub name: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HalfRate {
    pub trials: usize,
    pub infeasible: usize,
    pub rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InfeasibleParam {
    pub name: String,
    pub infeasible_median_position: Option<f64>,
    pub feasible_median_position: Option<f64>,
    /// infeasible median - feasible median.
    pub shift: Option<f64>,
    pub low_half: HalfRate,
    pub high_half: HalfRate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    pub parameter: String,
    pub side: Edge,
    pub shift: f64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InfeasibleReport {
    pub finished: usize,
    pub infeasible: usize,
    pub failed: usize,
    pub diverged: usize,
    pub high_loss: usize,
    pub no_objective: usize,
    pub incomplete: usize,
    /// Per parameter, largest |shift| first.
    pub parameters: Vec<InfeasibleParam>,
    /// The parameter along which the infeasible trials cluster most, if any.
    pub cluster: Option<Cluster>,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpaceReport {
    /// "space" or "observed"; `None` when no parameter could be read.
    pub range_source: Option<RangeSource>,
    /// The best trials the edges are read from (numbers, best first).
    pub top_trials: Vec<u64>,
    pub parameters: Vec<ParamBoundary>,
    pub skipped: Vec<SkippedParam>,
    pub infeasible: InfeasibleReport,
}

/// One axis to read: a parameter definition (given or inferred).
struct Axis {
    def: ParamDef,
    source: RangeSource,
    scale: &'static str,
    note: Option<String>,
}

fn axes(input: &StudyData, trials: &[TrialAnalysis], config: &AnalysisConfig, skipped: &mut Vec<SkippedParam>) -> Vec<Axis> {
    let mut out = Vec::new();
    if let Some(space) = &input.space {
        for p in &space.params {
            match &p.kind {
                ParamKind::Fixed { .. } => {}
                ParamKind::Categorical { .. } => {
                    skipped.push(SkippedParam { name: p.name.clone(), why: "categorical: no order, no edges".into() })
                }
                ParamKind::Float { scale, .. } | ParamKind::Int { scale, .. } => out.push(Axis {
                    def: p.clone(),
                    source: RangeSource::Space,
                    scale: if *scale == Scale::Log { "log" } else { "linear" },
                    note: None,
                }),
                ParamKind::Discrete { values } if values.len() >= 2 => {
                    out.push(Axis { def: p.clone(), source: RangeSource::Space, scale: "index", note: None })
                }
                ParamKind::Discrete { .. } => {}
            }
        }
        return out;
    }
    // Inferred: every parameter name, in order of first appearance.
    let mut names: Vec<&str> = Vec::new();
    for t in trials {
        for (n, _) in t.params.iter() {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    for name in names {
        let values: Vec<&ParamValue> = trials.iter().filter_map(|t| t.params.get(name)).collect();
        let nums: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
        if nums.len() != values.len() {
            skipped.push(SkippedParam { name: name.into(), why: "not numeric: no order, no edges".into() });
            continue;
        }
        let (low, high) = nums.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        if low.partial_cmp(&high) != Some(std::cmp::Ordering::Less) {
            continue; // not varied
        }
        let (log, why) = infer_scale(&nums, low, high, config);
        let note = Some(format!("range inferred from the observed values; {} scale: {why}", if log { "log" } else { "linear" }));
        out.push(Axis {
            def: ParamDef {
                name: name.into(),
                kind: ParamKind::Float { low, high, scale: if log { Scale::Log } else { Scale::Linear } },
            },
            source: RangeSource::Observed,
            scale: if log { "log" } else { "linear" },
            note,
        });
    }
    out
}

/// Whether values observed on `[low, high]` were sampled on a log scale, and why. Conservative:
/// log only when every value is positive, the values span more than `log_decades` decades, and
/// they are spread more evenly on a log axis than on a linear one (a smaller Kolmogorov-Smirnov
/// distance to the uniform distribution). A parameter sampled uniformly on [0, 0.3] (dropout, a
/// warmup fraction) stays linear when a few small values stretch its span past 1.5 decades; a
/// value of 0 rules log out.
pub(crate) fn infer_scale(values: &[f64], low: f64, high: f64, config: &AnalysisConfig) -> (bool, String) {
    if low <= 0.0 {
        return (false, format!("a value is {} (not all positive)", num(low)));
    }
    let decades = (high / low).log10();
    if decades <= config.log_decades {
        return (false, format!("spanning {decades:.1} decades (<= {})", config.log_decades));
    }
    let linear: Vec<f64> = values.iter().map(|&x| (x - low) / (high - low)).collect();
    let logged: Vec<f64> = values.iter().map(|&x| (x.ln() - low.ln()) / (high.ln() - low.ln())).collect();
    let (ks_lin, ks_log) = (stats::ks_uniform(&linear).unwrap_or(0.0), stats::ks_uniform(&logged).unwrap_or(0.0));
    if ks_log < ks_lin {
        (
            true,
            format!(
                "all positive, spanning {decades:.1} decades (> {}), and spread more evenly on a log axis (KS distance to uniform {ks_log:.2}) than a linear one ({ks_lin:.2})",
                config.log_decades
            ),
        )
    } else {
        (
            false,
            format!(
                "spanning {decades:.1} decades, but spread more evenly on a linear axis (KS distance to uniform {ks_lin:.2}) than a log one ({ks_log:.2})"
            ),
        )
    }
}

fn range_of(def: &ParamDef) -> (f64, f64) {
    match &def.kind {
        ParamKind::Float { low, high, .. } => (*low, *high),
        ParamKind::Int { low, high, .. } => (*low as f64, *high as f64),
        ParamKind::Discrete { values } => {
            (values.first().and_then(|v| v.as_f64()).unwrap_or(0.0), values.last().and_then(|v| v.as_f64()).unwrap_or(1.0))
        }
        _ => (0.0, 1.0),
    }
}

/// The parameter value at position `u` of a range, for display.
fn value_at(def: &ParamDef, u: f64) -> Option<f64> {
    let (low, high) = range_of(def);
    match &def.kind {
        ParamKind::Float { scale: Scale::Log, .. } | ParamKind::Int { scale: Scale::Log, .. } => {
            Some((low.ln() + u * (high.ln() - low.ln())).exp())
        }
        ParamKind::Float { .. } | ParamKind::Int { .. } => Some(low + u * (high - low)),
        _ => None,
    }
}

fn in_band(pos: f64, edge: Edge, margin: f64) -> bool {
    match edge {
        Edge::Low => pos <= margin + 1e-12,
        Edge::High => pos >= 1.0 - margin - 1e-12,
    }
}

/// Share of the sampler's distribution (uniform on the unit coordinate) that lands in the band.
fn sampling_share(def: &ParamDef, edge: Edge, margin: f64) -> f64 {
    const N: usize = 4096;
    let hits = (0..N)
        .filter(|&i| {
            let v = def.value_at((i as f64 + 0.5) / N as f64);
            def.unit_position(&v).is_some_and(|p| in_band(p, edge, margin))
        })
        .count();
    hits as f64 / N as f64
}

pub(crate) fn report(input: &StudyData, trials: &[TrialAnalysis], ranked: &[usize], config: &AnalysisConfig) -> SpaceReport {
    let mut skipped = Vec::new();
    let axes = axes(input, trials, config, &mut skipped);
    let n_feasible = ranked.len();
    let k = ((config.boundary_top_fraction * n_feasible as f64).ceil() as usize).max(config.boundary_top_min).min(n_feasible);
    let mut parameters = Vec::new();
    for axis in &axes {
        // Feasible trials' positions, best first.
        let pos: Vec<f64> =
            ranked.iter().filter_map(|&i| trials[i].params.get(&axis.def.name).and_then(|v| axis.def.unit_position(v))).collect();
        if pos.len() < 3 {
            skipped.push(SkippedParam {
                name: axis.def.name.clone(),
                why: format!("{} feasible trials with a value in range (needs 3)", pos.len()),
            });
            continue;
        }
        let k = k.min(pos.len());
        let best_value = ranked.first().and_then(|&i| trials[i].params.get(&axis.def.name).cloned());
        let edge_test = |edge: Edge| -> EdgeTest {
            let top = &pos[..k];
            let top_in_band = top.iter().filter(|&&p| in_band(p, edge, config.edge_margin)).count();
            let top3_in_band = pos.iter().take(3).filter(|&&p| in_band(p, edge, config.edge_margin)).count();
            let best_in_band = in_band(pos[0], edge, config.edge_margin);
            let feasible_share = pos.iter().filter(|&&p| in_band(p, edge, config.edge_margin)).count() as f64 / pos.len() as f64;
            let sampling = (axis.source == RangeSource::Space).then(|| sampling_share(&axis.def, edge, config.edge_margin));
            let base = feasible_share.max(sampling.unwrap_or(0.0));
            let p_value = stats::binomial_tail(top_in_band, k, base);
            // An edge is flagged only with enrichment: more of the best trials in the band than
            // chance explains. The best trial and a runner-up in the band confirm it, but alone
            // (p = 0.89 on real data) they are a weak sign, not a reason to widen.
            let mut rules = Vec::new();
            let enriched = top_in_band >= 2 && p_value <= config.edge_alpha;
            if enriched {
                rules.push("enrichment".to_string());
                if best_in_band && top3_in_band >= 2 {
                    rules.push("best_and_top3".to_string());
                }
            }
            let band_limit = value_at(
                &axis.def,
                match edge {
                    Edge::Low => config.edge_margin,
                    Edge::High => 1.0 - config.edge_margin,
                },
            );
            EdgeTest {
                edge,
                band_limit,
                top_count: k,
                top_in_band,
                best_in_band,
                top3_in_band,
                feasible_share,
                sampling_share: sampling,
                base_share: base,
                p_value,
                flagged: !rules.is_empty(),
                rules,
            }
        };
        let low_edge = edge_test(Edge::Low);
        let high_edge = edge_test(Edge::High);
        let widen: Vec<Edge> = [&low_edge, &high_edge].iter().filter(|e| e.flagged).map(|e| e.edge).collect();
        let advice = advice(axis, &low_edge, &high_edge, pos[0], config);
        let (low, high) = range_of(&axis.def);
        parameters.push(ParamBoundary {
            name: axis.def.name.clone(),
            scale: axis.scale.to_string(),
            range_source: axis.source,
            low,
            high,
            note: axis.note.clone(),
            best_value,
            best_position: Some(pos[0]),
            top_positions: pos[..k].to_vec(),
            low_edge,
            high_edge,
            widen,
            advice,
        });
    }
    let infeasible = infeasible_report(&axes, trials, config);
    SpaceReport {
        range_source: axes.first().map(|a| a.source),
        top_trials: ranked.iter().take(k).map(|&i| trials[i].number).collect(),
        parameters,
        skipped,
        infeasible,
    }
}

fn advice(axis: &Axis, low: &EdgeTest, high: &EdgeTest, best_pos: f64, config: &AnalysisConfig) -> String {
    let name = &axis.def.name;
    let (lo, hi) = range_of(&axis.def);
    let discrete = matches!(axis.def.kind, ParamKind::Discrete { .. });
    let mut parts = Vec::new();
    for e in [low, high] {
        if !e.flagged {
            continue;
        }
        let why = format!(
            "{} of the top {}{} sit in the {} {} of the range (expected {:.1}; p = {:.3})",
            e.top_in_band,
            crate::text::plural(e.top_count, "trial"),
            if e.best_in_band { ", the best included," } else { "" },
            if e.edge == Edge::Low { "lowest" } else { "highest" },
            pct(config.edge_margin),
            e.base_share * e.top_count as f64,
            e.p_value
        );
        let what = match (e.edge, discrete, axis.source) {
            (Edge::Low, true, _) => format!("add values below {}", num(lo)),
            (Edge::High, true, _) => format!("add values above {}", num(hi)),
            (Edge::Low, false, RangeSource::Space) => format!("lower `low` below {}", num(lo)),
            (Edge::High, false, RangeSource::Space) => format!("raise `high` above {}", num(hi)),
            (Edge::Low, false, RangeSource::Observed) => format!("try values below the smallest tried ({})", num(lo)),
            (Edge::High, false, RangeSource::Observed) => format!("try values above the largest tried ({})", num(hi)),
        };
        let what = if e.edge == Edge::Low && lo == 0.0 && !discrete {
            format!(
                "{what} if negative values make sense; 0 is often the natural bound, and then the best trials simply prefer {name} off"
            )
        } else {
            what
        };
        parts.push(format!("widen {name} {}: {what}; {why}", if e.edge == Edge::Low { "downward" } else { "upward" }));
    }
    if !parts.is_empty() {
        return parts.join("; ");
    }
    for e in [low, high] {
        if e.best_in_band && e.top_in_band >= 2 {
            // The top trials are there, but no more than all trials are: not enrichment (a
            // parameter many trials set at its bound, such as a regularizer at 0).
            return format!(
                "weak sign: {} of the top {}, the best included, sit in the {} {} of the range, but so do {} of all feasible \
                 trials (p = {:.2}): no more than chance; watch it",
                e.top_in_band,
                e.top_count,
                if e.edge == Edge::Low { "lowest" } else { "highest" },
                pct(config.edge_margin),
                pct(e.feasible_share),
                e.p_value
            );
        }
        if e.best_in_band {
            return format!(
                "weak sign: the best trial sits in the {} {} of the range but the other top trials do not confirm it \
                 ({} of the top 3, {} of the top {}); watch it",
                if e.edge == Edge::Low { "lowest" } else { "highest" },
                pct(config.edge_margin),
                e.top3_in_band,
                e.top_in_band,
                e.top_count
            );
        }
    }
    format!("ok: the best trial sits at {} of the range ({} scale), away from both edges", pct(best_pos), axis.scale)
}

fn infeasible_report(axes: &[Axis], trials: &[TrialAnalysis], config: &AnalysisConfig) -> InfeasibleReport {
    let finished: Vec<&TrialAnalysis> = trials.iter().filter(|t| t.finished).collect();
    let count = |r: InfeasibleReason| finished.iter().filter(|t| t.infeasible == Some(r)).count();
    let n_inf = finished.iter().filter(|t| !t.feasible).count();
    let mut parameters = Vec::new();
    for axis in axes {
        let mut inf = Vec::new();
        let mut feas = Vec::new();
        let mut halves = [(0usize, 0usize); 2];
        for t in &finished {
            let Some(p) = t.params.get(&axis.def.name).and_then(|v| axis.def.unit_position(v)) else { continue };
            if t.feasible {
                feas.push(p)
            } else {
                inf.push(p)
            }
            let h = usize::from(p > 0.5);
            halves[h].0 += 1;
            halves[h].1 += usize::from(!t.feasible);
        }
        let (im, fm) = (stats::median(&inf), stats::median(&feas));
        let half = |(trials, infeasible): (usize, usize)| HalfRate {
            trials,
            infeasible,
            rate: (trials > 0).then(|| infeasible as f64 / trials as f64),
        };
        parameters.push(InfeasibleParam {
            name: axis.def.name.clone(),
            infeasible_median_position: im,
            feasible_median_position: fm,
            shift: im.zip(fm).map(|(a, b)| a - b),
            low_half: half(halves[0]),
            high_half: half(halves[1]),
        });
    }
    parameters
        .sort_by(|a, b| b.shift.map_or(-1.0, f64::abs).total_cmp(&a.shift.map_or(-1.0, f64::abs)).then(a.name.cmp(&b.name)));
    let cluster = parameters.first().filter(|_| n_inf >= config.cluster_min_trials).and_then(|p| {
        let shift = p.shift?;
        if shift.abs() < config.cluster_min_shift {
            return None;
        }
        let side = if shift > 0.0 { Edge::High } else { Edge::Low };
        let (toward, away) = if side == Edge::High { (&p.high_half, &p.low_half) } else { (&p.low_half, &p.high_half) };
        Some(Cluster {
            parameter: p.name.clone(),
            side,
            shift,
            text: format!(
                "infeasible trials cluster at {} {}: their median position is {:.2} vs {:.2} for feasible trials; \
                 {} of the trials in the {} half of its range are infeasible vs {} in the {} half",
                if side == Edge::High { "high" } else { "low" },
                p.name,
                p.infeasible_median_position.unwrap(),
                p.feasible_median_position.unwrap(),
                toward.rate.map_or("n/a".into(), pct),
                if side == Edge::High { "upper" } else { "lower" },
                away.rate.map_or("n/a".into(), pct),
                if side == Edge::High { "lower" } else { "upper" },
            ),
        })
    });
    let reasons: Vec<String> = InfeasibleReason::ALL
        .iter()
        .map(|&r| (r, count(r)))
        .filter(|(_, c)| *c > 0)
        .map(|(r, c)| format!("{} {c}", r.label()))
        .collect();
    let summary = if n_inf == 0 {
        format!("no infeasible trials among {} finished", finished.len())
    } else {
        let mut s = format!(
            "{n_inf} of {} finished trials are infeasible ({}) = {}",
            finished.len(),
            reasons.join(", "),
            pct(n_inf as f64 / finished.len() as f64)
        );
        if n_inf * 2 >= finished.len() {
            s.push_str("; that many means the space needs adjusting, or a bug");
        }
        match &cluster {
            Some(c) => s.push_str(&format!("; {}", c.text)),
            None if n_inf >= config.cluster_min_trials && !parameters.is_empty() => s.push_str(&format!(
                "; no parameter separates them from the feasible trials by {:.2} or more in median position",
                config.cluster_min_shift
            )),
            None => {}
        }
        s
    };
    InfeasibleReport {
        finished: finished.len(),
        infeasible: n_inf,
        failed: count(InfeasibleReason::Failed),
        diverged: count(InfeasibleReason::Diverged),
        high_loss: count(InfeasibleReason::HighLoss),
        no_objective: count(InfeasibleReason::NoObjective),
        incomplete: count(InfeasibleReason::Incomplete),
        parameters,
        cluster,
        summary,
    }
}
