//! Samplers: deterministic functions from a trial's sample index to its parameters.
//!
//! Every sampler here is non-adaptive: point `i` depends only on the seed and `i`. Storage hands
//! out indices atomically, so a resumed study, or many workers sharing one, never reuse or skip
//! a point, and no sampler state needs saving.
//!
//! - [`Halton`] (the default): a shifted, scrambled Halton sequence, as recommended for
//!   exploration by the tuning playbook (Bousquet et al., arXiv 1706.03200). Each dimension uses
//!   its own prime base, a random permutation of the nonzero digits, and a random shift modulo 1;
//!   the first `skip` points are skipped. Unscrambled, dimensions with large bases move in
//!   lockstep over the first points (`x_d = i / b_d`), which puts early trials on a diagonal;
//!   independent digit permutations break that correlation.
//! - [`Random`]: independent uniform points.
//! - [`Grid`]: the full grid over one or two parameters.

use crate::params::{ParamValue, Params};
use crate::rng::SplitMix64;
use crate::space::{EXACT_INT, EXACT_LOG_INT, ParamDef, ParamKind, Scale, SearchSpace, int_at, lerp};

/// Why a sample could not be produced.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    #[error("the grid has {capacity} points and index {index} is past its end")]
    Exhausted { index: u64, capacity: u64 },
}

/// Proposes the parameters of the trial with a given sample index.
pub trait Sampler: Send + Sync {
    fn sample(&self, index: u64) -> Result<Params, SampleError>;
    /// How many distinct points the sampler has (`None`: unbounded).
    fn capacity(&self) -> Option<u64> {
        None
    }
}

/// Which sampler a study uses, as written in its study file (and read back from a stored spec).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SamplerSpec {
    Halton { skip: u64 },
    Random,
    Grid { points: u32 },
}

impl Default for SamplerSpec {
    fn default() -> Self {
        SamplerSpec::Halton { skip: DEFAULT_HALTON_SKIP }
    }
}

/// Points skipped at the start of the Halton sequence by default.
pub const DEFAULT_HALTON_SKIP: u64 = 100;
/// Grid points per continuous parameter by default.
pub const DEFAULT_GRID_POINTS: u32 = 5;

impl SamplerSpec {
    /// Build the sampler for a space. Grid search is refused above two varied dimensions.
    pub fn build(&self, space: &SearchSpace, seed: u64) -> Result<Box<dyn Sampler>, String> {
        Ok(match self {
            SamplerSpec::Halton { skip } => Box::new(Halton::new(space.clone(), seed, *skip)),
            SamplerSpec::Random => Box::new(Random { space: space.clone(), seed }),
            SamplerSpec::Grid { points } => Box::new(Grid::new(space, *points)?),
        })
    }
}

/// Unit-cube points of the scrambled, shifted Halton sequence (without the space mapping).
#[derive(Debug, Clone)]
pub struct HaltonSequence {
    bases: Vec<u64>,
    permutations: Vec<Vec<u64>>,
    shifts: Vec<f64>,
    skip: u64,
}

impl HaltonSequence {
    pub fn new(dims: usize, seed: u64, skip: u64) -> Self {
        let bases = first_primes(dims);
        let mut permutations = Vec::with_capacity(dims);
        let mut shifts = Vec::with_capacity(dims);
        for (d, &b) in bases.iter().enumerate() {
            let mut rng = SplitMix64::stream(seed, d as u64);
            // Permute the nonzero digits and keep 0 fixed: a point's expansion stays finite.
            let mut perm: Vec<u64> = (0..b).collect();
            for i in (2..b as usize).rev() {
                let j = 1 + rng.below(i as u64) as usize;
                perm.swap(i, j);
            }
            permutations.push(perm);
            shifts.push(rng.next_f64());
        }
        HaltonSequence { bases, permutations, shifts, skip }
    }

    /// Point `index` of the sequence, in `[0, 1)^dims`.
    pub fn point(&self, index: u64) -> Vec<f64> {
        // Wrapping: a skip near u64::MAX must not panic (the sequence has no end to run off).
        let n = index.wrapping_add(self.skip);
        self.bases
            .iter()
            .zip(&self.permutations)
            .zip(&self.shifts)
            .map(|((&b, perm), &shift)| {
                let (mut i, mut x, mut scale) = (n, 0.0, 1.0 / b as f64);
                while i > 0 {
                    x += perm[(i % b) as usize] as f64 * scale;
                    i /= b;
                    scale /= b as f64;
                }
                let u = x + shift;
                u - u.floor()
            })
            .collect()
    }
}

/// The default sampler: scrambled, shifted Halton points mapped into the space.
pub struct Halton {
    space: SearchSpace,
    sequence: HaltonSequence,
}

impl Halton {
    pub fn new(space: SearchSpace, seed: u64, skip: u64) -> Self {
        let sequence = HaltonSequence::new(space.dims(), seed, skip);
        Halton { space, sequence }
    }
}

impl Sampler for Halton {
    fn sample(&self, index: u64) -> Result<Params, SampleError> {
        Ok(self.space.decode(&self.sequence.point(index)))
    }
}

/// Independent uniform points; point `i` comes from its own stream of the seed.
pub struct Random {
    space: SearchSpace,
    seed: u64,
}

/// The unit-cube point of [`Random`] for an index.
pub fn random_point(seed: u64, index: u64, dims: usize) -> Vec<f64> {
    let mut rng = SplitMix64::stream(seed ^ 0x5EED_0F5A_3F1E, index);
    (0..dims).map(|_| rng.next_f64()).collect()
}

impl Sampler for Random {
    fn sample(&self, index: u64) -> Result<Params, SampleError> {
        Ok(self.space.decode(&random_point(self.seed, index, self.space.dims())))
    }
}

/// Every combination of the levels of one or two varied parameters, first parameter slowest.
pub struct Grid {
    names: Vec<String>,
    fixed: Params,
    levels: Vec<Vec<ParamValue>>,
    order: Vec<String>,
}

impl Grid {
    pub fn new(space: &SearchSpace, points: u32) -> Result<Self, String> {
        let varied: Vec<&ParamDef> = space.params.iter().filter(|p| p.is_varied()).collect();
        if varied.is_empty() || varied.len() > 2 {
            return Err(format!("grid search needs one or two varied parameters, this space varies {}", varied.len()));
        }
        let levels = varied.iter().map(|p| grid_levels(p, points)).collect();
        let fixed = Params(
            space
                .params
                .iter()
                .filter_map(|p| match &p.kind {
                    ParamKind::Fixed { value } => Some((p.name.clone(), value.clone())),
                    _ => None,
                })
                .collect(),
        );
        Ok(Grid {
            names: varied.iter().map(|p| p.name.clone()).collect(),
            fixed,
            levels,
            order: space.params.iter().map(|p| p.name.clone()).collect(),
        })
    }
}

impl Sampler for Grid {
    fn sample(&self, index: u64) -> Result<Params, SampleError> {
        let capacity = self.capacity().unwrap();
        if index >= capacity {
            return Err(SampleError::Exhausted { index, capacity });
        }
        let mut rest = index;
        let mut chosen = vec![ParamValue::Bool(false); self.levels.len()];
        for d in (0..self.levels.len()).rev() {
            let n = self.levels[d].len() as u64;
            chosen[d] = self.levels[d][(rest % n) as usize].clone();
            rest /= n;
        }
        let mut params = Params::default();
        for name in &self.order {
            let value = match self.names.iter().position(|n| n == name) {
                Some(d) => chosen[d].clone(),
                None => self.fixed.get(name).unwrap().clone(),
            };
            params.set(name, value);
        }
        Ok(params)
    }

    fn capacity(&self) -> Option<u64> {
        Some(self.levels.iter().map(|l| l.len() as u64).product())
    }
}

/// The grid levels of one parameter: `points` evenly spaced values (in its scale) for ranges,
/// every value for lists. Levels are within `[low, high]`, ascending and distinct: integer
/// ranges are rounded and deduplicated, and so are float ranges narrower than `points` floats.
pub fn grid_levels(p: &ParamDef, points: u32) -> Vec<ParamValue> {
    let points = points.max(2) as usize;
    // The fraction of the way along the range of level k: exactly 0 and 1 at the ends.
    let t = |k: usize| k as f64 / (points - 1) as f64;
    match &p.kind {
        ParamKind::Float { low, high, scale } => {
            let (low, high) = (*low, *high);
            let mut v: Vec<f64> = (0..points)
                .map(|k| match scale {
                    Scale::Linear => lerp(low, high, t(k)),
                    Scale::Log => (low.ln() + t(k) * (high.ln() - low.ln())).exp().clamp(low, high),
                })
                .collect();
            v.sort_by(f64::total_cmp);
            v.dedup();
            v.into_iter().map(ParamValue::Float).collect()
        }
        ParamKind::Int { low, high, scale } => {
            let (low, high) = (*low, *high);
            let exact = match scale {
                Scale::Linear => -EXACT_INT < low && high < EXACT_INT,
                Scale::Log => high < EXACT_LOG_INT,
            };
            let mut v: Vec<i64> = (0..points)
                .map(|k| match (scale, exact) {
                    // Where the bounds (and exp of their logarithms) are exact as floats: the
                    // values grids have always had.
                    (Scale::Linear, true) => (low as f64 + t(k) * (high as f64 - low as f64)).round() as i64,
                    (Scale::Log, true) => {
                        ((low as f64).ln() + t(k) * ((high as f64).ln() - (low as f64).ln())).exp().round() as i64
                    }
                    // Beyond, step along the offset from low, whose width (up to 2^64) is one float.
                    (Scale::Linear, false) => int_at(low, high, (t(k) * (high as i128 - low as i128) as f64).round()),
                    (Scale::Log, false) => {
                        let (l, w) = (low as f64, (high as i128 - low as i128) as f64);
                        int_at(low, high, (l * (t(k) * (w / l).ln_1p()).exp_m1()).round())
                    }
                })
                .map(|x| x.clamp(low, high))
                .collect();
            v.sort_unstable();
            v.dedup();
            v.into_iter().map(ParamValue::Int).collect()
        }
        ParamKind::Discrete { values } => values.clone(),
        ParamKind::Categorical { choices } => choices.clone(),
        ParamKind::Fixed { value } => vec![value.clone()],
    }
}

/// The first `n` primes (the Halton bases).
pub fn first_primes(n: usize) -> Vec<u64> {
    let mut primes = Vec::with_capacity(n);
    let mut candidate = 2u64;
    while primes.len() < n {
        if primes.iter().take_while(|&&p| p * p <= candidate).all(|&p| !candidate.is_multiple_of(p)) {
            primes.push(candidate);
        }
        candidate += 1;
    }
    primes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(dims: usize) -> SearchSpace {
        SearchSpace {
            params: (0..dims)
                .map(|d| ParamDef { name: format!("x{d}"), kind: ParamKind::Float { low: 0.0, high: 1.0, scale: Scale::Linear } })
                .collect(),
        }
    }

    /// Fraction of the cells of a `k x k` grid over dimensions (a, b) that no point falls in.
    fn empty_cell_fraction(points: &[Vec<f64>], a: usize, b: usize, k: usize) -> f64 {
        let mut seen = vec![false; k * k];
        for p in points {
            let i = (p[a] * k as f64) as usize;
            let j = (p[b] * k as f64) as usize;
            seen[i.min(k - 1) * k + j.min(k - 1)] = true;
        }
        seen.iter().filter(|s| !**s).count() as f64 / (k * k) as f64
    }

    /// Centered L2 discrepancy (Hickernell 1998) of points in the unit cube; lower is more even.
    fn centered_l2_discrepancy(points: &[Vec<f64>]) -> f64 {
        let n = points.len() as f64;
        let d = points[0].len() as i32;
        let mut sum1 = 0.0;
        for p in points {
            sum1 += p.iter().map(|&x| 1.0 + 0.5 * (x - 0.5).abs() - 0.5 * (x - 0.5).powi(2)).product::<f64>();
        }
        let mut sum2 = 0.0;
        for p in points {
            for q in points {
                sum2 += p
                    .iter()
                    .zip(q)
                    .map(|(&x, &y)| 1.0 + 0.5 * (x - 0.5).abs() + 0.5 * (y - 0.5).abs() - 0.5 * (x - y).abs())
                    .product::<f64>();
            }
        }
        ((13.0f64 / 12.0).powi(d) - 2.0 / n * sum1 + sum2 / (n * n)).sqrt()
    }

    #[test]
    fn primes_are_the_first_primes() {
        assert_eq!(first_primes(8), vec![2, 3, 5, 7, 11, 13, 17, 19]);
    }

    #[test]
    fn halton_is_deterministic_for_a_seed_and_differs_across_seeds() {
        let a = HaltonSequence::new(5, 7, 100);
        let b = HaltonSequence::new(5, 7, 100);
        let c = HaltonSequence::new(5, 8, 100);
        for i in 0..50 {
            assert_eq!(a.point(i), b.point(i));
        }
        assert_ne!(a.point(0), c.point(0));
    }

    #[test]
    fn halton_points_are_distinct_and_in_the_unit_cube() {
        let h = HaltonSequence::new(6, 1, 100);
        let pts: Vec<Vec<f64>> = (0..500).map(|i| h.point(i)).collect();
        for p in &pts {
            assert!(p.iter().all(|x| (0.0..1.0).contains(x)));
        }
        for i in 0..pts.len() {
            for j in 0..i {
                assert_ne!(pts[i], pts[j], "points {i} and {j} coincide");
            }
        }
    }

    #[test]
    fn halton_covers_more_evenly_than_random() {
        // Over several seeds, 64 points in 2-D and 5-D: lower centered L2 discrepancy and fewer
        // empty cells of an 8x8 grid than independent uniform points, on average.
        for dims in [2usize, 5] {
            let (mut h_disc, mut r_disc, mut h_empty, mut r_empty) = (0.0, 0.0, 0.0, 0.0);
            for seed in 0..10u64 {
                let h = HaltonSequence::new(dims, seed, DEFAULT_HALTON_SKIP);
                let hp: Vec<Vec<f64>> = (0..64).map(|i| h.point(i)).collect();
                let rp: Vec<Vec<f64>> = (0..64).map(|i| random_point(seed, i, dims)).collect();
                h_disc += centered_l2_discrepancy(&hp);
                r_disc += centered_l2_discrepancy(&rp);
                h_empty += empty_cell_fraction(&hp, 0, 1, 8);
                r_empty += empty_cell_fraction(&rp, 0, 1, 8);
            }
            assert!(h_disc < 0.8 * r_disc, "{dims}-D discrepancy: halton {h_disc} vs random {r_disc}");
            assert!(h_empty < r_empty, "{dims}-D empty cells: halton {h_empty} vs random {r_empty}");
        }
    }

    #[test]
    fn scrambling_breaks_the_high_base_diagonal() {
        // Dimensions 10 and 11 have bases 31 and 37. Unscrambled, their first 30 points lie on
        // the diagonal (x = i/31, y = i/37, correlation ~1). Scrambled, they must not.
        let n = 30;
        let corr = |xs: &[f64], ys: &[f64]| {
            let mx = xs.iter().sum::<f64>() / n as f64;
            let my = ys.iter().sum::<f64>() / n as f64;
            let cov: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
            let vx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
            let vy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
            cov / (vx * vy).sqrt()
        };
        let unscrambled_x: Vec<f64> = (1..=n).map(|i| i as f64 / 31.0).collect();
        let unscrambled_y: Vec<f64> = (1..=n).map(|i| i as f64 / 37.0).collect();
        assert!(corr(&unscrambled_x, &unscrambled_y) > 0.99);
        let mut worst: f64 = 0.0;
        for seed in 0..5 {
            let h = HaltonSequence::new(12, seed, 0);
            let pts: Vec<Vec<f64>> = (1..=n as u64).map(|i| h.point(i)).collect();
            let xs: Vec<f64> = pts.iter().map(|p| p[10]).collect();
            let ys: Vec<f64> = pts.iter().map(|p| p[11]).collect();
            worst = worst.max(corr(&xs, &ys).abs());
        }
        assert!(worst < 0.6, "scrambled high-base dimensions still correlated: {worst}");
    }

    #[test]
    fn samplers_respect_bounds_and_log_scale() {
        let space = SearchSpace {
            params: vec![
                ParamDef { name: "lr".into(), kind: ParamKind::Float { low: 1e-5, high: 1.0, scale: Scale::Log } },
                ParamDef { name: "width".into(), kind: ParamKind::Int { low: 8, high: 512, scale: Scale::Log } },
                ParamDef {
                    name: "opt".into(),
                    kind: ParamKind::Categorical { choices: vec![ParamValue::Str("sgd".into()), ParamValue::Str("adam".into())] },
                },
            ],
        };
        for spec in [SamplerSpec::default(), SamplerSpec::Random] {
            let s = spec.build(&space, 3).unwrap();
            let mut below_1e3 = 0;
            for i in 0..1000 {
                let p = s.sample(i).unwrap();
                let lr = p.get("lr").unwrap().as_f64().unwrap();
                assert!((1e-5..=1.0).contains(&lr));
                let w = p.get("width").unwrap().as_f64().unwrap();
                assert!((8.0..=512.0).contains(&w));
                if lr < 1e-3 {
                    below_1e3 += 1;
                }
            }
            // Log-uniform: [1e-5, 1e-3) is 2 of 5 decades, so ~40% of samples (linear: 0.1%).
            assert!((330..=470).contains(&below_1e3), "{spec:?}: {below_1e3} of 1000 below 1e-3");
        }
    }

    #[test]
    fn grid_enumerates_every_combination_once() {
        let space = SearchSpace {
            params: vec![
                ParamDef { name: "lr".into(), kind: ParamKind::Float { low: 1e-3, high: 1e-1, scale: Scale::Log } },
                ParamDef {
                    name: "bs".into(),
                    kind: ParamKind::Discrete { values: vec![ParamValue::Int(32), ParamValue::Int(64)] },
                },
                ParamDef { name: "k".into(), kind: ParamKind::Fixed { value: ParamValue::Int(1) } },
            ],
        };
        let g = SamplerSpec::Grid { points: 3 }.build(&space, 0).unwrap();
        assert_eq!(g.capacity(), Some(6));
        let all: Vec<Params> = (0..6).map(|i| g.sample(i).unwrap()).collect();
        for i in 0..6 {
            for j in 0..i {
                assert_ne!(all[i], all[j]);
            }
        }
        let lr = all[2].get("lr").unwrap().as_f64().unwrap();
        assert!((lr - 1e-2).abs() < 1e-12, "log grid midpoint, got {lr}");
        assert!(matches!(g.sample(6), Err(SampleError::Exhausted { .. })));
        assert!(SamplerSpec::Grid { points: 3 }.build(&super::tests::space(3), 0).is_err());
    }
}
