//! Existing studies resume with the very same sequence: the values the samplers give over
//! ordinary ranges are pinned here, bit for bit (a digest of every value of many samples).
//!
//! The digests were taken (on x86_64 Linux, whose libm computes the `ln`/`exp` of log scales)
//! before the samplers were made safe over extreme ranges; if one of these tests fails, a
//! change altered what a resumed study would sample.

use horizon_core::params::ParamValue;
use horizon_core::sampler::{SamplerSpec, grid_levels};
use horizon_core::space::{ParamDef, ParamKind, Scale, SearchSpace};

/// FNV-1a over text: a stable digest without a dependency.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

fn float(name: &str, low: f64, high: f64, scale: Scale) -> ParamDef {
    ParamDef { name: name.into(), kind: ParamKind::Float { low, high, scale } }
}

fn int(name: &str, low: i64, high: i64, scale: Scale) -> ParamDef {
    ParamDef { name: name.into(), kind: ParamKind::Int { low, high, scale } }
}

/// Ordinary parameters, as study files declare them.
fn ordinary() -> Vec<ParamDef> {
    use Scale::{Linear, Log};
    vec![
        float("f01", 0.0, 1.0, Linear),
        float("fneg", -3.5, 2.25, Linear),
        float("fwide", 1e-3, 10.0, Linear),
        float("fodd", -0.1, 0.2, Linear),
        float("lr", 1e-4, 1.0, Log),
        float("lr2", 1e-3, 10.0, Log),
        float("wd", 1e-8, 1e-2, Log),
        int("n4", 1, 4, Linear),
        int("width", 16, 512, Linear),
        int("sym", -10, 10, Linear),
        int("big", 0, 1_000_000, Linear),
        int("neg", -1000, -7, Linear),
        int("hlog", 16, 1024, Log),
        int("nlog", 1, 100_000, Log),
        ParamDef {
            name: "bs".into(),
            kind: ParamKind::Discrete { values: vec![ParamValue::Int(32), ParamValue::Int(64), ParamValue::Float(128.5)] },
        },
        ParamDef {
            name: "opt".into(),
            kind: ParamKind::Categorical {
                choices: vec![ParamValue::Str("sgd".into()), ParamValue::Str("adam".into()), ParamValue::Bool(true)],
            },
        },
        ParamDef { name: "k".into(), kind: ParamKind::Fixed { value: ParamValue::Float(0.5) } },
    ]
}

#[test]
fn halton_and_random_sequences_over_ordinary_ranges_are_unchanged() {
    let space = SearchSpace { params: ordinary() };
    let mut text = String::new();
    for spec in [SamplerSpec::Halton { skip: 100 }, SamplerSpec::Halton { skip: 0 }, SamplerSpec::Random] {
        for seed in [0u64, 1, 42, u64::MAX] {
            let s = spec.build(&space, seed).unwrap();
            for i in 0..1500 {
                text.push_str(&s.sample(i).unwrap().to_json_string());
                text.push('\n');
            }
        }
    }
    assert_eq!(fnv(&text), 0x2ac956a8cab542ff, "digest of {} bytes", text.len());
}

#[test]
fn unit_mapping_over_ordinary_ranges_is_unchanged() {
    let mut text = String::new();
    for p in ordinary() {
        for i in 0..=4000 {
            let v = p.value_at(i as f64 / 4000.0);
            text.push_str(&format!("{} {:?} {:?}\n", p.name, v, p.unit_position(&v).map(f64::to_bits)));
        }
    }
    assert_eq!(fnv(&text), 0xd17a065483dded48, "digest of {} bytes", text.len());
}

/// The one deliberate change: grid levels that rounding used to put just outside the range
/// (`0.20000000000000004` for `[-0.1, 0.2]`, `10.00000000000001` or `9.999999999999982e-9` at
/// the ends of log ranges) are now the range's end itself; every other level is unchanged.
#[test]
fn grids_over_ordinary_ranges_are_unchanged() {
    let params = ordinary();
    let mut text = String::new();
    for p in &params {
        for points in 2..=12 {
            text.push_str(&format!("{} {points} {:?}\n", p.name, grid_levels(p, points)));
        }
    }
    for (a, b) in [(0, 4), (7, 12), (5, 14), (13, 15)] {
        let space = SearchSpace { params: vec![params[a].clone(), params[b].clone(), params[16].clone()] };
        let g = SamplerSpec::Grid { points: 7 }.build(&space, 0).unwrap();
        for i in 0..g.capacity().unwrap() {
            text.push_str(&g.sample(i).unwrap().to_json_string());
        }
    }
    assert_eq!(fnv(&text), 0xfeb603581323d2dc, "digest of {} bytes", text.len());
}
