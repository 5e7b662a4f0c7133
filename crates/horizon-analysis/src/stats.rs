//! Small, dependency-free statistics.

use serde::Serialize;

/// Minimum, quartiles and maximum of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub min: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(xs: &[f64]) -> Option<Summary> {
        let s = sorted(xs);
        if s.is_empty() {
            return None;
        }
        Some(Summary {
            min: s[0],
            q1: quantile_sorted(&s, 0.25),
            median: quantile_sorted(&s, 0.5),
            q3: quantile_sorted(&s, 0.75),
            max: s[s.len() - 1],
        })
    }

    pub fn iqr(&self) -> f64 {
        self.q3 - self.q1
    }
}

pub fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    s
}

/// Linear interpolation between order statistics (the common "type 7" quantile).
pub fn quantile_sorted(s: &[f64], q: f64) -> f64 {
    debug_assert!(!s.is_empty());
    let h = (s.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    s[lo] + (h - lo as f64) * (s[hi] - s[lo])
}

pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    let s = sorted(xs);
    (!s.is_empty()).then(|| quantile_sorted(&s, q))
}

pub fn median(xs: &[f64]) -> Option<f64> {
    quantile(xs, 0.5)
}

/// The nearest-rank quantile: an observed value (the ceil(q * n)-th smallest).
pub fn nearest_rank(xs: &[f64], q: f64) -> Option<f64> {
    let s = sorted(xs);
    if s.is_empty() {
        return None;
    }
    let r = ((q.clamp(0.0, 1.0) * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[r - 1])
}

/// Sample standard deviation (n - 1); `None` below two values.
pub fn std_dev(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
    Some(var.sqrt())
}

/// P(X >= k) for X ~ Binomial(n, p), summed in log space so large `n` does not underflow.
/// The Kolmogorov-Smirnov statistic of positions in [0, 1] against the uniform distribution:
/// the largest gap between their empirical distribution function and the diagonal. 0 for
/// perfectly even positions, near 1 when they crowd one end. `None` when empty.
pub fn ks_uniform(positions: &[f64]) -> Option<f64> {
    if positions.is_empty() {
        return None;
    }
    let s = sorted(positions);
    let n = s.len() as f64;
    let d = s
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let x = x.clamp(0.0, 1.0);
            ((i + 1) as f64 / n - x).max(x - i as f64 / n)
        })
        .fold(0.0, f64::max);
    Some(d)
}

pub fn binomial_tail(k: usize, n: usize, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut ln_choose = 0.0; // ln C(n, 0)
    let mut total = 0.0;
    for i in 0..=n {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        if i >= k {
            total += (ln_choose + i as f64 * lp + (n - i) as f64 * lq).exp();
        }
    }
    total.min(1.0)
}

/// Round up to two significant digits: 1234 -> 1300, 87 -> 87, 0.3 -> 1.
pub fn round_up_2sig(x: f64) -> u64 {
    if !x.is_finite() || x <= 1.0 {
        return 1;
    }
    let digits = x.log10().floor() as i32;
    let unit = 10f64.powi((digits - 1).max(0));
    ((x / unit - 1e-9).ceil() * unit) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_against_uniform() {
        let even: Vec<f64> = (0..100).map(|i| (i as f64 + 0.5) / 100.0).collect();
        assert!(ks_uniform(&even).unwrap() <= 0.0051);
        let crowded: Vec<f64> = (0..100).map(|i| (i as f64 / 100.0).powi(4)).collect();
        assert!(ks_uniform(&crowded).unwrap() > 0.45);
        assert_eq!(ks_uniform(&[]), None);
        assert_eq!(ks_uniform(&[0.5]), Some(0.5));
    }

    #[test]
    fn quantiles() {
        let xs = [4.0, 1.0, 3.0, 2.0, 5.0];
        let s = Summary::of(&xs).unwrap();
        assert_eq!((s.min, s.q1, s.median, s.q3, s.max), (1.0, 2.0, 3.0, 4.0, 5.0));
        assert_eq!(nearest_rank(&xs, 0.9), Some(5.0));
        assert_eq!(nearest_rank(&xs, 0.2), Some(1.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, 2.0]), Some(1.5));
    }

    #[test]
    fn binomial() {
        assert!((binomial_tail(1, 1, 0.3) - 0.3).abs() < 1e-12);
        assert!((binomial_tail(2, 3, 0.1) - 0.028).abs() < 1e-12);
        assert!((binomial_tail(6, 20, 0.1) - 0.011_253).abs() < 1e-5);
        assert_eq!(binomial_tail(0, 5, 0.5), 1.0);
        assert_eq!(binomial_tail(3, 5, 0.0), 0.0);
        let big = binomial_tail(600, 1000, 0.5);
        assert!(big > 0.0 && big < 1e-9, "{big}");
    }

    #[test]
    fn rounding() {
        assert_eq!(round_up_2sig(1234.0), 1300);
        assert_eq!(round_up_2sig(1200.0), 1200);
        assert_eq!(round_up_2sig(87.0), 87);
        assert_eq!(round_up_2sig(8.2), 9);
        assert_eq!(round_up_2sig(0.3), 1);
        assert_eq!(round_up_2sig(100_001.0), 110_000);
    }
}
