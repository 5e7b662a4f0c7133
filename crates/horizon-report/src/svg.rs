//! Plots as inline SVG, written by hand: a frame with labelled axes (linear or log, "nice"
//! ticks), and the few marks the report needs (lines, points with tooltips, crosses, bars,
//! shaded bands). Tooltips are SVG `<title>` elements, which every browser shows on hover
//! without a script.

use std::fmt::Write;

/// Escape text for HTML and SVG (element content and attribute values). Everything a trainer
/// wrote (parameter values, messages) goes through this.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One axis: its data range, whether it is log-scaled, and its label (with units).
#[derive(Debug, Clone)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    pub label: String,
    /// Whole numbers only (counts): no fractional ticks.
    pub integer: bool,
}

impl Axis {
    /// An axis over `values` (finite ones; positive ones for a log axis), padded by 5% on a
    /// linear axis; `[0, 1]` when there is nothing to span.
    pub fn over(values: impl IntoIterator<Item = f64>, log: bool, label: &str) -> Axis {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for v in values.into_iter().filter(|v| v.is_finite() && (!log || *v > 0.0)) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return Axis {
                lo: if log { 1.0 } else { 0.0 },
                hi: if log { 10.0 } else { 1.0 },
                log,
                label: label.into(),
                integer: false,
            };
        }
        if log {
            // A sixth of a decade on each side: marks at the ends stay whole.
            (lo, hi) = if hi <= lo { (lo / 2.0, hi * 2.0) } else { (lo / 1.5, hi * 1.5) };
            return Axis { lo, hi, log, label: label.into(), integer: false };
        }
        if hi <= lo {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            (lo, hi) = (lo - pad, hi + pad);
        } else {
            let pad = (hi - lo) * 0.05;
            (lo, hi) = (lo - pad, hi + pad);
        }
        Axis { lo, hi, log, label: label.into(), integer: false }
    }

    /// Fixed bounds.
    pub fn fixed(lo: f64, hi: f64, log: bool, label: &str) -> Axis {
        Axis { lo, hi, log, label: label.into(), integer: false }
    }

    /// A count axis from 0 to a little above `max`, with whole-number ticks.
    pub fn counts(max: f64, label: &str) -> Axis {
        Axis { lo: 0.0, hi: max.max(1.0) * 1.1, log: false, label: label.into(), integer: true }
    }

    /// `v`'s position in `[0, 1]` along the axis.
    pub fn unit(&self, v: f64) -> f64 {
        if self.log {
            (v.max(f64::MIN_POSITIVE).ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    /// Tick positions and their labels: decades (with 2 and 5 when the range is short) on a
    /// log axis, 1-2-5 steps on a linear one.
    pub fn ticks(&self) -> Vec<(f64, String)> {
        let num = horizon_core::numfmt::num;
        if self.log {
            let (a, b) = (self.lo.log10().floor() as i32, self.hi.log10().ceil() as i32);
            let mults: &[f64] = if b - a <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
            let step = ((b - a) as f64 / 8.0).ceil().max(1.0) as i32;
            let mut out = Vec::new();
            let mut e = a;
            while e <= b {
                for m in mults {
                    let v = m * 10f64.powi(e);
                    if v >= self.lo * 0.999 && v <= self.hi * 1.001 {
                        // Powers of ten far from 1 read best as 1e-6, not 1.000e-6.
                        let text = if (-3..5).contains(&e) { num(v) } else { format!("{m}e{e}") };
                        out.push((v, text));
                    }
                }
                e += step;
            }
            return out;
        }
        let span = self.hi - self.lo;
        if span <= 0.0 || !span.is_finite() {
            return vec![(self.lo, num(self.lo))];
        }
        let raw = if self.integer { (span / 5.0).max(1.0) } else { span / 5.0 };
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
        let mut v = (self.lo / step).ceil() * step;
        let mut out = Vec::new();
        while v <= self.hi + step * 1e-9 {
            let shown = if v.abs() < step * 1e-9 { 0.0 } else { v };
            out.push((shown, tick_label(shown)));
            v += step;
        }
        out
    }
}

/// A tick's label: the number as the report prints numbers, but very small or large ones in
/// short exponent form (`2e-4`, `1.5e6`), as tick values are round.
fn tick_label(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || (1e-3..1e5).contains(&a) {
        return horizon_core::numfmt::num(v);
    }
    let s = format!("{v:.2e}");
    match s.split_once('e') {
        Some((m, e)) => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
        None => s,
    }
}

/// A plot being drawn: a frame of `width` x `height` pixels with margins for the axes.
pub struct Plot {
    pub width: f64,
    pub height: f64,
    pub x: Axis,
    pub y: Axis,
    /// Ticks to draw on the x axis instead of the axis's own (category labels).
    pub x_ticks: Option<Vec<(f64, String)>>,
    body: String,
}

const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 44.0;

impl Plot {
    pub fn new(width: f64, height: f64, x: Axis, y: Axis) -> Plot {
        Plot { width, height, x, y, x_ticks: None, body: String::new() }
    }

    /// Pixel coordinates of a data point.
    pub fn at(&self, x: f64, y: f64) -> (f64, f64) {
        let px = LEFT + self.x.unit(x) * (self.width - LEFT - RIGHT);
        let py = self.height - BOTTOM - self.y.unit(y) * (self.height - TOP - BOTTOM);
        (px, py)
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + self.x.unit(x) * (self.width - LEFT - RIGHT)
    }

    /// The top edge of the plotting area (where infeasible crosses go).
    pub fn top(&self) -> f64 {
        TOP + 6.0
    }

    /// A shaded vertical band between data x-values `a` and `b`.
    pub fn band(&mut self, a: f64, b: f64, class: &str, title: &str) {
        let (x0, x1) = (self.px(a).max(LEFT), self.px(b).min(self.width - RIGHT));
        let _ = write!(
            self.body,
            r#"<rect class="{class}" x="{x0:.1}" y="{TOP:.1}" width="{:.1}" height="{:.1}"><title>{}</title></rect>"#,
            (x1 - x0).max(0.0),
            self.height - TOP - BOTTOM,
            escape(title)
        );
    }

    /// A line through `points` (non-finite points break it).
    pub fn line(&mut self, points: &[(f64, f64)], class: &str) {
        let mut d = String::new();
        let mut pen = false;
        for &(x, y) in points {
            if !x.is_finite() || !y.is_finite() || (self.y.log && y <= 0.0) || (self.x.log && x <= 0.0) {
                pen = false;
                continue;
            }
            let (px, py) = self.at(x, y);
            let _ = write!(d, "{}{px:.1},{py:.1}", if pen { "L" } else { "M" });
            pen = true;
        }
        if !d.is_empty() {
            let _ = write!(self.body, r#"<path class="{class}" d="{d}"/>"#);
        }
    }

    /// A point with a tooltip.
    pub fn point(&mut self, x: f64, y: f64, r: f64, class: &str, title: Option<&str>) {
        if !self.visible(x, y) {
            return;
        }
        let (px, py) = self.at(x, y);
        match title {
            Some(t) => {
                let _ = write!(
                    self.body,
                    r#"<circle class="{class}" cx="{px:.1}" cy="{py:.1}" r="{r}"><title>{}</title></circle>"#,
                    escape(t)
                );
            }
            None => {
                let _ = write!(self.body, r#"<circle class="{class}" cx="{px:.1}" cy="{py:.1}" r="{r}"/>"#);
            }
        }
    }

    /// Many points without tooltips, as one compact path of small squares.
    pub fn dots(&mut self, points: &[(f64, f64)], class: &str) {
        let mut d = String::new();
        for &(x, y) in points {
            if self.visible(x, y) {
                let (px, py) = self.at(x, y);
                let _ = write!(d, "M{:.0},{:.0}h3v3h-3z", px - 1.5, py - 1.5);
            }
        }
        if !d.is_empty() {
            let _ = write!(self.body, r#"<path class="{class}" d="{d}"/>"#);
        }
    }

    /// A cross at data x `x`, pixel y `py` (infeasible trials, along the top).
    pub fn cross(&mut self, x: f64, py: f64, class: &str, title: &str) {
        if !x.is_finite() || (self.x.log && x <= 0.0) {
            return;
        }
        let px = self.px(x);
        let _ = write!(
            self.body,
            r#"<path class="{class}" d="M{:.1},{:.1}l6,6m0,-6l-6,6"><title>{}</title></path>"#,
            px - 3.0,
            py - 3.0,
            escape(title)
        );
    }

    /// A bar from data x `a` to `b`, from 0 to data y `y`.
    pub fn bar(&mut self, a: f64, b: f64, y: f64, class: &str, title: &str) {
        let (x0, y0) = self.at(a, y);
        let (x1, base) = self.at(b, self.y.lo.max(0.0));
        let _ = write!(
            self.body,
            r#"<rect class="{class}" x="{:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}"><title>{}</title></rect>"#,
            x0 + 0.5,
            (x1 - x0 - 1.0).max(0.5),
            (base - y0).max(0.0),
            escape(title)
        );
    }

    /// A text label at data coordinates.
    pub fn label(&mut self, x: f64, y: f64, text: &str, class: &str) {
        let (px, py) = self.at(x, y);
        let _ = write!(self.body, r#"<text class="{class}" x="{px:.1}" y="{py:.1}">{}</text>"#, escape(text));
    }

    fn visible(&self, x: f64, y: f64) -> bool {
        x.is_finite() && y.is_finite() && (!self.x.log || x > 0.0) && (!self.y.log || y > 0.0)
    }

    /// The finished SVG: axes, ticks, labels, then the marks (clipped to the plotting area).
    pub fn finish(self, title: &str) -> String {
        let (w, h) = (self.width, self.height);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{}">"#,
            escape(title)
        );
        let clip = format!("c{:x}", fnv(title.as_bytes()) ^ (w as u64) << 20 ^ h as u64);
        let _ = write!(
            s,
            // A few pixels past the frame, so marks at the edges of the range are whole.
            r#"<defs><clipPath id="{clip}"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/></clipPath></defs>"#,
            LEFT - 6.0,
            TOP - 6.0,
            w - LEFT - RIGHT + 12.0,
            h - TOP - BOTTOM + 12.0
        );
        let _ = write!(
            s,
            r#"<rect class="frame" x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}"/>"#,
            w - LEFT - RIGHT,
            h - TOP - BOTTOM
        );
        for (v, text) in self.x_ticks.clone().unwrap_or_else(|| self.x.ticks()) {
            let px = self.px(v);
            let _ = write!(
                s,
                r#"<path class="grid" d="M{px:.1},{TOP}V{:.1}"/><text class="tick" x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                h - BOTTOM,
                h - BOTTOM + 14.0,
                escape(&text)
            );
        }
        for (v, text) in self.y.ticks() {
            let (_, py) = self.at(self.x.lo, v);
            let _ = write!(
                s,
                r#"<path class="grid" d="M{LEFT},{py:.1}H{:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                w - RIGHT,
                LEFT - 4.0,
                py + 4.0,
                escape(&text)
            );
        }
        let scale = |a: &Axis| if a.log { " (log scale)" } else { "" };
        let _ = write!(
            s,
            r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="middle">{}{}</text>"#,
            LEFT + (w - LEFT - RIGHT) / 2.0,
            h - 8.0,
            escape(&self.x.label),
            scale(&self.x)
        );
        let _ = write!(
            s,
            r#"<text class="axis" transform="translate(14,{:.1}) rotate(-90)" text-anchor="middle">{}{}</text>"#,
            TOP + (h - TOP - BOTTOM) / 2.0,
            escape(&self.y.label),
            scale(&self.y)
        );
        let _ = write!(s, r#"<g clip-path="url(#{clip})">{}</g></svg>"#, self.body);
        s
    }
}

/// FNV-1a, for ids unique to a plot.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_are_decades_and_linear_ticks_are_nice() {
        let t: Vec<String> = Axis::fixed(1e-4, 1.0, true, "lr").ticks().into_iter().map(|(_, s)| s).collect();
        assert_eq!(t, ["1e-4", "0.001", "0.01", "0.1", "1"]);
        let t: Vec<String> = Axis::fixed(0.02, 0.5, true, "lr").ticks().into_iter().map(|(_, s)| s).collect();
        assert_eq!(t, ["0.02", "0.05", "0.1", "0.2", "0.5"]);
        let t: Vec<String> = Axis::fixed(0.0, 1.0, false, "x").ticks().into_iter().map(|(_, s)| s).collect();
        assert_eq!(t, ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        let t: Vec<String> = Axis::fixed(0.0, 1e-3, false, "wd").ticks().into_iter().map(|(_, s)| s).collect();
        assert_eq!(t, ["0", "2e-4", "4e-4", "6e-4", "8e-4", "0.001"]);
    }

    #[test]
    fn text_from_a_trainer_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        let mut p = Plot::new(200.0, 100.0, Axis::fixed(0.0, 1.0, false, "x"), Axis::fixed(0.0, 1.0, false, "y"));
        p.point(0.5, 0.5, 3.0, "pt", Some("<b>"));
        let svg = p.finish("t");
        assert!(svg.contains("<title>&lt;b&gt;</title>") && !svg.contains("<b>"), "{svg}");
    }
}
