//! The one number formatter of every human-readable output (tables, analyses, reports), so a
//! value reads the same wherever it is shown.

/// A number in at most 4 significant digits without trailing zeros (`0.229`, `12.35`, `2000`),
/// in exponent form when very large or small (`1.5e-5` as `1.500e-5`); `nan`, `inf`, `-inf`.
pub fn num(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{x:.3e}");
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::num;

    #[test]
    fn four_significant_digits_without_trailing_zeros() {
        assert_eq!(num(0.123456), "0.1235");
        assert_eq!(num(0.229), "0.229");
        assert_eq!(num(12.3456), "12.35");
        assert_eq!(num(2000.0), "2000");
        assert_eq!(num(-0.5), "-0.5");
        assert_eq!(num(1.5e-5), "1.500e-5");
        assert_eq!(num(123456.0), "1.235e5");
        assert_eq!(num(f64::NAN), "nan");
        assert_eq!(num(f64::NEG_INFINITY), "-inf");
        assert_eq!(num(0.0), "0");
    }
}
