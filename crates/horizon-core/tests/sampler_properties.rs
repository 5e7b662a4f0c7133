//! Property tests: every sampler stays inside its parameter's range over the whole range of
//! the types (`i64::MIN..=i64::MAX`, `±f64::MAX`, subnormals, log ranges over hundreds of
//! decades), for any seed and index, and still spreads its samples over the range.

use horizon_core::params::ParamValue;
use horizon_core::sampler::{HaltonSequence, Sampler, SamplerSpec, grid_levels, random_point};
use horizon_core::space::{ParamDef, ParamKind, Scale, SearchSpace};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Bounds.

/// Any finite float: ordinary values, subnormals, zeros, and the extremes.
fn finite() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        3 => POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO,
        // Uniform over the bit patterns: every binade is as likely as any other.
        3 => (0u64..0x7FF0_0000_0000_0000, any::<bool>()).prop_map(|(b, neg)| {
            let x = f64::from_bits(b);
            if neg { -x } else { x }
        }),
        1 => prop::sample::select(vec![
            f64::MAX, -f64::MAX, f64::MIN_POSITIVE, -f64::MIN_POSITIVE, 5e-324, -5e-324, 0.0, -0.0,
            1.0, -1.0, 1e308, -1e308, f64::MAX / 2.0,
        ]),
    ]
}

/// Any positive finite float, each binade from 5e-324 to f64::MAX about equally likely.
fn positive() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (1u64..0x7FF0_0000_0000_0000).prop_map(f64::from_bits),
        1 => prop::sample::select(vec![5e-324, f64::MIN_POSITIVE, 1e-300, 1e-8, 1.0, 1e300, f64::MAX]),
    ]
}

fn ordered<T: PartialOrd>(a: T, b: T) -> (T, T) {
    if a <= b { (a, b) } else { (b, a) }
}

fn float_range() -> impl Strategy<Value = (f64, f64)> {
    (finite(), finite()).prop_map(|(a, b)| ordered(a, b))
}

fn log_range() -> impl Strategy<Value = (f64, f64)> {
    (positive(), positive()).prop_map(|(a, b)| ordered(a, b))
}

/// Any integer, with the edges and the 2^53 boundary (past it not every integer is a float).
fn integer() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => any::<i64>(),
        2 => (0u32..63, any::<bool>(), -3i64..=3).prop_map(|(k, neg, d)| {
            let x = (1i64 << k).saturating_add(d);
            if neg { -x } else { x }
        }),
        1 => prop::sample::select(vec![i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX, 1 << 53, -(1 << 53)]),
    ]
}

fn int_range() -> impl Strategy<Value = (i64, i64)> {
    (integer(), integer()).prop_map(|(a, b)| ordered(a, b))
}

fn positive_integer() -> impl Strategy<Value = i64> {
    integer().prop_map(|x| x.checked_abs().unwrap_or(i64::MAX).max(1))
}

fn int_log_range() -> impl Strategy<Value = (i64, i64)> {
    (positive_integer(), positive_integer()).prop_map(|(a, b)| ordered(a, b))
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn def(name: &str, kind: ParamKind) -> ParamDef {
    ParamDef { name: name.into(), kind }
}

/// A space with one parameter of each numeric kind and scale, plus a list and a fixed value.
fn space(f: (f64, f64), fl: (f64, f64), i: (i64, i64), il: (i64, i64)) -> SearchSpace {
    SearchSpace {
        params: vec![
            def("f", ParamKind::Float { low: f.0, high: f.1, scale: Scale::Linear }),
            def("fl", ParamKind::Float { low: fl.0, high: fl.1, scale: Scale::Log }),
            def("i", ParamKind::Int { low: i.0, high: i.1, scale: Scale::Linear }),
            def("il", ParamKind::Int { low: il.0, high: il.1, scale: Scale::Log }),
            def(
                "d",
                ParamKind::Discrete { values: vec![ParamValue::Int(i64::MIN), ParamValue::Float(-f64::MAX), ParamValue::Int(3)] },
            ),
            def("c", ParamKind::Categorical { choices: vec![ParamValue::Str("a".into()), ParamValue::Bool(true)] }),
            def("k", ParamKind::Fixed { value: ParamValue::Float(0.5) }),
        ],
    }
}

/// Whether `value` is a value `p` can take; the message says why not.
fn check_in_space(p: &ParamDef, value: &ParamValue) -> Result<(), String> {
    let ok = match (&p.kind, value) {
        (ParamKind::Float { low, high, scale }, ParamValue::Float(x)) => {
            x.is_finite() && low <= x && x <= high && (*scale == Scale::Linear || *x > 0.0)
        }
        (ParamKind::Int { low, high, scale }, ParamValue::Int(n)) => {
            low <= n && n <= high && (*scale == Scale::Linear || *n >= 1)
        }
        (ParamKind::Discrete { values }, v) => values.contains(v),
        (ParamKind::Categorical { choices }, v) => choices.contains(v),
        (ParamKind::Fixed { value }, v) => value == v,
        _ => false,
    };
    // Its position in the sampling scale (what the analysis plots) is finite and in [0, 1].
    let position_ok = p.unit_position(value).is_none_or(|u| (0.0..=1.0).contains(&u));
    if ok && position_ok {
        Ok(())
    } else {
        Err(format!("{} = {value:?} is outside {:?} (unit position {:?})", p.name, p.kind, p.unit_position(value)))
    }
}

fn int_of(v: &ParamValue) -> i64 {
    match v {
        ParamValue::Int(n) => *n,
        other => panic!("not an int: {other:?}"),
    }
}

fn float_of(v: &ParamValue) -> f64 {
    match v {
        ParamValue::Float(x) => *x,
        other => panic!("not a float: {other:?}"),
    }
}

fn samplers(space: &SearchSpace, seed: u64, skip: u64) -> Vec<(&'static str, Box<dyn Sampler>)> {
    vec![
        ("halton", SamplerSpec::Halton { skip }.build(space, seed).unwrap()),
        ("random", SamplerSpec::Random.build(space, seed).unwrap()),
    ]
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    // No regressions file: the cases that failed once are pinned as plain tests below.
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every sample of every sampler, at any (seed, index), is within its parameter's range.
    #[test]
    fn every_sample_is_within_bounds_and_finite(
        f in float_range(), fl in log_range(), i in int_range(), il in int_log_range(),
        seed in any::<u64>(), skip in prop_oneof![Just(100u64), any::<u64>()],
        index in prop_oneof![0u64..10_000, any::<u64>()],
    ) {
        let space = space(f, fl, i, il);
        for (name, s) in samplers(&space, seed, skip) {
            for index in [index, index.wrapping_add(1), index / 2] {
                let params = s.sample(index).unwrap();
                prop_assert_eq!(params.len(), space.params.len());
                for p in &space.params {
                    let v = params.get(&p.name).unwrap();
                    prop_assert!(check_in_space(p, v).is_ok(), "{}, seed {}, index {}: {}", name, seed, index, check_in_space(p, v).unwrap_err());
                }
            }
        }
    }

    /// The unit-cube map itself, at any coordinate (the samplers' are in [0, 1); 1, NaN and
    /// values outside are clamped), stays in range.
    #[test]
    fn any_unit_coordinate_maps_into_the_range(
        f in float_range(), fl in log_range(), i in int_range(), il in int_log_range(),
        u in prop_oneof![0.0..1.0f64, prop::sample::select(vec![0.0, 1.0 - f64::EPSILON / 2.0, 1.0, -1.0, 2.0, f64::NAN, f64::INFINITY])],
    ) {
        for p in &space(f, fl, i, il).params {
            let v = p.value_at(u);
            prop_assert!(check_in_space(p, &v).is_ok(), "u = {}: {}", u, check_in_space(p, &v).unwrap_err());
        }
    }

    /// Over a range of 2^40 integers or more, samples are spread: nearly all distinct, and
    /// both the bottom and the top quarter of the range are hit.
    #[test]
    fn ints_over_huge_ranges_spread(
        (low, high) in int_range().prop_filter("a huge range", |(l, h)| (*h as i128 - *l as i128) >= 1 << 40),
        seed in any::<u64>(), start in 0u64..1_000_000,
    ) {
        let space = SearchSpace { params: vec![def("n", ParamKind::Int { low, high, scale: Scale::Linear })] };
        let width = high as i128 - low as i128;
        for (name, s) in samplers(&space, seed, 100) {
            let mut xs: Vec<i64> = (start..start + 256).map(|i| int_of(s.sample(i).unwrap().get("n").unwrap())).collect();
            let (bottom, top) = (low as i128 + width / 4, high as i128 - width / 4);
            prop_assert!(xs.iter().any(|&x| (x as i128) < bottom), "{}: nothing in the bottom quarter of [{}, {}]", name, low, high);
            prop_assert!(xs.iter().any(|&x| (x as i128) > top), "{}: nothing in the top quarter of [{}, {}]", name, low, high);
            xs.sort_unstable();
            xs.dedup();
            prop_assert!(xs.len() >= 250, "{}: only {} distinct of 256 over [{}, {}]", name, xs.len(), low, high);
        }
    }

    /// Floats over ranges too wide for `high - low` spread over the range (no pile-up at an end).
    #[test]
    fn floats_over_overflowing_ranges_spread(
        low in prop_oneof![Just(-f64::MAX), -f64::MAX..-1e300], high in prop_oneof![Just(f64::MAX), 1e300..f64::MAX],
        seed in any::<u64>(),
    ) {
        let space = SearchSpace { params: vec![def("x", ParamKind::Float { low, high, scale: Scale::Linear })] };
        for (name, s) in samplers(&space, seed, 100) {
            let xs: Vec<f64> = (0..256).map(|i| float_of(s.sample(i).unwrap().get("x").unwrap())).collect();
            prop_assert!(xs.iter().all(|x| x.is_finite() && (low..=high).contains(x)));
            // The quartiles of the range: a quarter of the samples or so lies beyond each.
            let (q1, q3) = (0.75 * low + 0.25 * high, 0.25 * low + 0.75 * high);
            let below = xs.iter().filter(|&&x| x < q1).count();
            let above = xs.iter().filter(|&&x| x > q3).count();
            prop_assert!((32..=96).contains(&below) && (32..=96).contains(&above), "{}: {} below {:e}, {} above {:e}", name, below, q1, above, q3);
        }
    }

    /// Log samples are positive, within the range, and uniform in the logarithm: about half lie
    /// below the geometric middle, even for ranges over hundreds of decades.
    #[test]
    fn log_samples_are_positive_and_spread_in_the_logarithm(
        (low, high) in log_range().prop_filter("a range of at least one decade", |(l, h)| h.log10() - l.log10() >= 1.0),
        seed in any::<u64>(),
    ) {
        let space = SearchSpace { params: vec![def("x", ParamKind::Float { low, high, scale: Scale::Log })] };
        let middle = (low.ln() + high.ln()) / 2.0;
        for (name, s) in samplers(&space, seed, 100) {
            let xs: Vec<f64> = (0..256).map(|i| float_of(s.sample(i).unwrap().get("x").unwrap())).collect();
            prop_assert!(xs.iter().all(|&x| x > 0.0 && x.is_finite() && (low..=high).contains(&x)), "{}: {:?}", name, xs);
            let below = xs.iter().filter(|x| x.ln() < middle).count();
            prop_assert!((80..=176).contains(&below), "{}: {} of 256 below the geometric middle of [{:e}, {:e}]", name, below, low, high);
        }
    }

    /// Integer log ranges: in range, at least 1, and spread in the logarithm too.
    #[test]
    fn int_log_samples_spread_in_the_logarithm(
        (low, high) in int_log_range().prop_filter("a range of a few decades", |(l, h)| (*h as f64).log10() - (*l as f64).log10() >= 3.0),
        seed in any::<u64>(),
    ) {
        let space = SearchSpace { params: vec![def("n", ParamKind::Int { low, high, scale: Scale::Log })] };
        let middle = ((low as f64).ln() + (high as f64).ln()) / 2.0;
        for (name, s) in samplers(&space, seed, 100) {
            let xs: Vec<i64> = (0..256).map(|i| int_of(s.sample(i).unwrap().get("n").unwrap())).collect();
            prop_assert!(xs.iter().all(|&x| x >= 1 && (low..=high).contains(&x)));
            let below = xs.iter().filter(|&&x| (x as f64).ln() < middle).count();
            prop_assert!((80..=176).contains(&below), "{}: {} of 256 below the geometric middle of [{}, {}]", name, below, low, high);
        }
    }

    /// Narrow integer ranges far from zero (where floats are 1024 apart or more) still reach
    /// every integer: the sampler works with the offset from low, not with rounded bounds.
    #[test]
    fn narrow_int_ranges_far_from_zero_reach_every_value(
        far in prop_oneof![(1i64 << 60)..i64::MAX - 8, i64::MIN..-(1i64 << 60)], scale in prop_oneof![Just(Scale::Linear), Just(Scale::Log)],
        seed in any::<u64>(),
    ) {
        let low = if scale == Scale::Log { far.checked_abs().unwrap_or(i64::MAX - 8).min(i64::MAX - 8) } else { far };
        let high = low + 3;
        let space = SearchSpace { params: vec![def("n", ParamKind::Int { low, high, scale })] };
        for (name, s) in samplers(&space, seed, 100) {
            let mut xs: Vec<i64> = (0..64).map(|i| int_of(s.sample(i).unwrap().get("n").unwrap())).collect();
            xs.sort_unstable();
            xs.dedup();
            prop_assert_eq!(&xs, &(low..=high).collect::<Vec<_>>(), "{}", name);
        }
    }

    /// Grid levels are within the range, strictly ascending (so distinct), start at low, and
    /// number `points` whenever the range holds that many well-separated values.
    #[test]
    fn grid_levels_are_distinct_and_in_range(
        f in float_range(), fl in log_range(), i in int_range(), il in int_log_range(), points in 2u32..40,
    ) {
        let p = (points - 1) as f64;
        for param in &space(f, fl, i, il).params[..4] {
            let levels = grid_levels(param, points);
            prop_assert!(!levels.is_empty() && levels.len() <= points as usize, "{:?}: {} levels", param.kind, levels.len());
            for v in &levels {
                prop_assert!(check_in_space(param, v).is_ok(), "{}", check_in_space(param, v).unwrap_err());
            }
            let ascending = match levels[0] {
                ParamValue::Int(_) => levels.windows(2).all(|w| int_of(&w[0]) < int_of(&w[1])),
                _ => levels.windows(2).all(|w| float_of(&w[0]) < float_of(&w[1])),
            };
            prop_assert!(ascending, "{:?}: levels not strictly ascending: {:?}", param.kind, levels);
            let separated = match &param.kind {
                ParamKind::Float { low, high, scale: Scale::Linear } => {
                    let ulp = (low.abs().max(high.abs()) * f64::EPSILON).max(5e-324);
                    !(high - low).is_finite() || (high - low) / p > 4.0 * ulp
                }
                ParamKind::Float { low, high, scale: Scale::Log } => (high.ln() - low.ln()) / p > 1e-10,
                ParamKind::Int { low, high, scale: Scale::Linear } => (*high as i128 - *low as i128) as f64 >= 2.0 * p,
                ParamKind::Int { low, high, scale: Scale::Log } => {
                    *low as f64 * ((*high as f64 / *low as f64).powf(1.0 / p) - 1.0) >= 2.0
                }
                _ => unreachable!(),
            };
            if separated {
                prop_assert_eq!(levels.len(), points as usize, "{:?}: {:?}", param.kind, levels);
            }
            // The first level is low: exactly on a linear scale, to rounding (exp of ln) on a log one.
            match &param.kind {
                ParamKind::Float { low, scale: Scale::Linear, .. } => prop_assert!(float_of(&levels[0]) == *low, "first level {:?} is not {:e}", levels[0], low),
                ParamKind::Int { low, .. } => prop_assert!(int_of(&levels[0]) == *low, "first level {:?} is not {}", levels[0], low),
                ParamKind::Float { low, .. } => prop_assert!((float_of(&levels[0]) - low) / low < 1e-12, "first level {:?} is not {:e}", levels[0], low),
                _ => unreachable!(),
            }
        }
    }

    /// A grid over two extreme parameters hands out every combination once, all in range.
    #[test]
    fn grid_samples_are_distinct_and_in_range(f in float_range(), i in int_range(), points in 2u32..12) {
        let space = SearchSpace {
            params: vec![
                def("f", ParamKind::Float { low: f.0, high: f.1, scale: Scale::Linear }),
                def("i", ParamKind::Int { low: i.0, high: i.1, scale: Scale::Linear }),
            ],
        };
        let g = SamplerSpec::Grid { points }.build(&space, 0).unwrap();
        let n = g.capacity().unwrap();
        let all: Vec<_> = (0..n).map(|k| g.sample(k).unwrap()).collect();
        for (k, params) in all.iter().enumerate() {
            for p in &space.params {
                let v = params.get(&p.name).unwrap();
                prop_assert!(check_in_space(p, v).is_ok(), "{}", check_in_space(p, v).unwrap_err());
            }
            prop_assert!(!all[..k].contains(params), "combination {} repeats: {:?}", k, params);
        }
        prop_assert!(g.sample(n).is_err());
    }

    /// The raw unit-cube points are in [0, 1) at any index, skip and seed (no overflow of
    /// index + skip).
    #[test]
    fn unit_points_are_in_the_unit_cube(seed in any::<u64>(), skip in any::<u64>(), index in any::<u64>(), dims in 1usize..12) {
        let h = HaltonSequence::new(dims, seed, skip);
        for x in h.point(index).into_iter().chain(random_point(seed, index, dims)) {
            prop_assert!((0.0..1.0).contains(&x), "{}", x);
        }
    }
}

/// The reported cases, pinned: an int on [0, i64::MAX - 1] used to sample 0 every time, and a
/// float on [-1e308, 1e308] used to sample 1e308 (or NaN) every time.
#[test]
fn the_reported_extreme_ranges_spread() {
    let space = SearchSpace {
        params: vec![
            def("n", ParamKind::Int { low: 0, high: i64::MAX - 1, scale: Scale::Linear }),
            def("x", ParamKind::Float { low: -1e308, high: 1e308, scale: Scale::Linear }),
        ],
    };
    for (name, s) in samplers(&space, 0, 100) {
        let samples: Vec<_> = (0..64).map(|i| s.sample(i).unwrap()).collect();
        let ns: Vec<i64> = samples.iter().map(|p| int_of(p.get("n").unwrap())).collect();
        let xs: Vec<f64> = samples.iter().map(|p| float_of(p.get("x").unwrap())).collect();
        assert!(ns.iter().all(|n| (0..i64::MAX).contains(n)), "{name}: {ns:?}");
        assert!(ns.iter().filter(|&&n| n > i64::MAX / 2).count() > 16, "{name}: {ns:?}");
        assert!(ns.iter().filter(|&&n| n < i64::MAX / 2).count() > 16, "{name}: {ns:?}");
        assert!(xs.iter().all(|x| (-1e308..=1e308).contains(x)), "{name}: {xs:?}");
        assert!(xs.iter().filter(|&&x| x < 0.0).count() > 16, "{name}: {xs:?}");
        assert!(xs.iter().filter(|&&x| x > 0.0).count() > 16, "{name}: {xs:?}");
    }
}
