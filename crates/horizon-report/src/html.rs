//! The report as one self-contained HTML file: inline CSS and SVG, no script, no font or
//! anything else fetched; printable (each section starts on a new page when printed).

use std::fmt::Write;

use crate::data::{AxisPlot, BudgetSection, CurvePanel, HISTOGRAM_BINS, Histogram, Report, StagesSection, SweepPlot};
use crate::svg::{Axis, Plot, escape};

const CSS: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1b1f24; margin: 24px auto; max-width: 1120px; padding: 0 16px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 14px 0 4px; }
section { break-before: page; } section:first-of-type { break-before: auto; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 12px 20px; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 12px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; } td, th { padding: 2px 10px; text-align: right; } th { border-bottom: 1px solid #8c959f; } td:first-child, th:first-child { text-align: left; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; max-height: 360px; } pre.wrap { white-space: pre-wrap; word-break: break-all; }
.verdict { font-weight: 600; } .flag { color: #b3261e; } .muted { color: #57606a; } ul { margin: 4px 0; }
svg.plot { display: block; max-width: 100%; height: auto; }
svg .frame { fill: #fff; stroke: #8c959f; } svg .grid { stroke: #eaeef2; } svg .tick { font-size: 11px; fill: #424a53; } svg .axis { font-size: 12px; fill: #1b1f24; }
svg .objective { fill: none; stroke: #0969da; stroke-width: 1.6; } svg .train { fill: none; stroke: #bf5700; stroke-width: 1.2; stroke-dasharray: 4 2; }
svg .best { fill: #1a7f37; stroke: #fff; stroke-width: 1; } svg .pt { fill: #0969da; fill-opacity: .7; } svg .dots { fill: #0969da; fill-opacity: .45; }
svg .iso { fill: none; stroke: #8250df; stroke-width: 1.5; } svg .x { stroke: #b3261e; stroke-width: 1.5; fill: none; }
svg .early { fill: #b3261e; fill-opacity: .10; } svg .late { fill: #bf5700; fill-opacity: .12; } svg .edge { fill: #b3261e; fill-opacity: .14; }
svg .bar { fill: #0969da; fill-opacity: .8; } svg .fit { fill: #1a7f37; } svg .never { fill: #8c959f; } svg .lr { fill: none; stroke: #0969da; stroke-width: 1.4; }
svg .lbl { font-size: 11px; fill: #424a53; } svg .end { text-anchor: end; } svg .mid { text-anchor: middle; }
.legend span { margin-right: 14px; } .sw { display: inline-block; width: 18px; height: 3px; vertical-align: middle; margin-right: 4px; }
@media print { body { margin: 0; max-width: none; } pre { max-height: none; } }
"#;

/// The report as HTML.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>horizon report: {}</title><style>{CSS}</style></head><body>",
        escape(&r.card.name)
    );
    card(&mut s, r);
    if let Some(b) = &r.budget {
        budget(&mut s, b);
    }
    if !r.curves.is_empty() {
        curves(&mut s, &r.curves, &r.card.objective);
    }
    if !r.axes.is_empty() {
        axes(&mut s, &r.axes, &r.card.objective);
    }
    if let Some(sw) = &r.sweep {
        sweep(&mut s, sw);
    }
    if let Some(st) = &r.stages {
        stages(&mut s, st);
    }
    if !r.notes.is_empty() {
        s.push_str("<section id=\"notes\"><h2>How this report was drawn</h2><ul>");
        for n in &r.notes {
            let _ = write!(s, "<li>{}</li>", escape(n));
        }
        s.push_str("</ul></section>");
    }
    s.push_str("<p class=\"muted\">Made by horizon (the training-length method of the Deep Learning Tuning Playbook).</p></body></html>\n");
    s
}

fn card(s: &mut String, r: &Report) {
    let c = &r.card;
    let _ = write!(
        s,
        "<section id=\"card\"><h1>Study {}</h1><p>objective <b>{}</b> ({})</p><div class=\"card\"><table>",
        escape(&c.name),
        escape(&c.objective),
        escape(&c.direction)
    );
    let states: Vec<String> = c.states.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = write!(s, "<tr><td>trials</td><td style=\"text-align:left\">{}</td></tr>", escape(&states.join(", ")));
    if let Some((n, v, step, budget)) = c.best {
        let _ = write!(
            s,
            "<tr><td>best checkpoint</td><td style=\"text-align:left\">trial {n}: {} = {} at step {step} of {budget}</td></tr>",
            escape(&c.objective),
            horizon_core::numfmt::num(v)
        );
    }
    if let Some(from) = &c.imported_from {
        let _ = write!(s, "<tr><td>imported from</td><td style=\"text-align:left\">{}</td></tr>", escape(from));
    }
    s.push_str("</table></div>");
    if let Some(line) = &c.reproduce {
        let _ = write!(s, "<h3>Reproduce the best trial</h3><pre class=\"wrap\">{}</pre>", escape(line));
    }
    if let Some(text) = &c.study_file {
        let _ = write!(s, "<h3>Study file</h3><pre>{}</pre>", escape(text));
    }
    s.push_str("</section>");
}

fn histogram_svg(h: &Histogram, early: f64, late: f64) -> String {
    let top = h.bins.iter().copied().max().unwrap_or(0) as f64;
    let mut p = Plot::new(520.0, 240.0, Axis::fixed(0.0, 1.0, false, "best step / max_train_steps"), Axis::counts(top, "trials"));
    p.band(0.0, early, "early", &format!("first {:.0}%: a budget too high puts nearly every best step here", early * 100.0));
    p.band(late, 1.0, "late", &format!("last {:.0}%: a budget too low puts the best steps here", (1.0 - late) * 100.0));
    let w = 1.0 / HISTOGRAM_BINS as f64;
    for (i, &n) in h.bins.iter().enumerate() {
        if n > 0 {
            let a = i as f64 * w;
            p.bar(
                a,
                a + w,
                n as f64,
                "bar",
                &format!("{n} trials with best step at {:.0}-{:.0}% of the budget", a * 100.0, (a + w) * 100.0),
            );
        }
    }
    p.finish(&format!("budget histogram of the {} trials", h.group))
}

fn budget(s: &mut String, b: &BudgetSection) {
    s.push_str("<section id=\"budget\"><h2>Budget verdict</h2><p class=\"muted\">Where each trial's retrospectively selected best checkpoint falls in its budget. Shaded: the first 10% and the last 25% the method reads.</p><div class=\"grid2\">");
    for h in [&b.feasible, &b.top] {
        let suggested =
            h.suggested_max_train_steps.map(|n| format!("; suggested max_train_steps: <b>{n}</b>")).unwrap_or_default();
        let _ = write!(
            s,
            "<div><h3>{} trials ({})</h3>{}<p class=\"verdict\">max_train_steps is {} ({} confidence){suggested}</p><ul>",
            escape(&h.group),
            h.trials,
            histogram_svg(h, b.early, b.late),
            escape(&h.verdict),
            escape(&h.confidence)
        );
        for e in &h.evidence {
            let _ = write!(s, "<li>{}</li>", escape(e));
        }
        s.push_str("</ul></div>");
    }
    s.push_str("</div></section>");
}

fn curves(s: &mut String, panels: &[CurvePanel], objective: &str) {
    let train_metric = panels.first().map(|p| p.train_metric.as_str()).unwrap_or("train");
    let _ = write!(
        s,
        "<section id=\"curves\"><h2>Training curves of the best trials</h2><p class=\"legend\"><span><i class=\"sw\" style=\"background:#0969da\"></i>{}</span><span><i class=\"sw\" style=\"background:#bf5700\"></i>{}</span><span><i class=\"sw\" style=\"background:#1a7f37;height:8px;width:8px;border-radius:4px\"></i>selected checkpoint</span></p><div class=\"grid2\">",
        escape(objective),
        escape(train_metric)
    );
    for c in panels {
        let values = c.objective.iter().chain(&c.train).map(|p| p.1);
        let mut p = Plot::new(
            520.0,
            260.0,
            Axis::fixed(0.0, c.max_train_steps.max(1) as f64, false, "step"),
            Axis::over(values, false, &format!("{objective}, {}", c.train_metric)),
        );
        let obj: Vec<(f64, f64)> = c.objective.iter().map(|&(x, y)| (x as f64, y)).collect();
        let train: Vec<(f64, f64)> = c.train.iter().map(|&(x, y)| (x as f64, y)).collect();
        p.line(&train, "train");
        p.line(&obj, "objective");
        if let Some((step, v)) = c.best {
            p.point(
                step as f64,
                v,
                4.5,
                "best",
                Some(&format!("selected: step {step}, {objective} = {}", horizon_core::numfmt::num(v))),
            );
        }
        let _ = write!(
            s,
            "<div><h3>#{} trial {}</h3><p class=\"muted\">{}</p>{}",
            c.rank,
            c.number,
            escape(&c.params),
            p.finish(&format!("curves of trial {}", c.number))
        );
        if c.diagnostics.is_empty() {
            s.push_str("<p class=\"muted\">no curve diagnostic flagged</p>");
        } else {
            s.push_str("<ul>");
            for d in &c.diagnostics {
                let _ = write!(s, "<li class=\"flag\">{}</li>", escape(d));
            }
            s.push_str("</ul>");
        }
        s.push_str("</div>");
    }
    s.push_str("</div></section>");
}

fn axes(s: &mut String, plots: &[AxisPlot], objective: &str) {
    s.push_str("<section id=\"axes\"><h2>Axis plots and isolation plots</h2><p class=\"muted\">Each trial's best objective against each varied hyperparameter, on its sampling scale; infeasible trials as red crosses along the top; flagged edges shaded. The purple line is the isolation plot: the best trial in each tenth of the range.</p><div class=\"grid2\">");
    for a in plots {
        let log = a.log && a.low > 0.0;
        let mut p = Plot::new(
            520.0,
            260.0,
            Axis::fixed(a.low, a.high, log, &a.param),
            Axis::over(a.points.iter().map(|q| q.y), false, objective),
        );
        for e in &a.edges {
            let limit = e.band_limit.unwrap_or(if e.edge == "low" { a.low } else { a.high });
            let (x0, x1) = if e.edge == "low" { (a.low, limit) } else { (limit, a.high) };
            p.band(x0, x1, "edge", &e.advice);
        }
        let unlabelled: Vec<(f64, f64)> = a.points.iter().filter(|q| q.label.is_none()).map(|q| (q.x, q.y)).collect();
        p.dots(&unlabelled, "dots");
        for q in a.points.iter().filter(|q| q.label.is_some()).rev() {
            p.point(q.x, q.y, 3.0, "pt", q.label.as_deref());
        }
        let iso: Vec<(f64, f64)> = a.isolation.clone();
        p.line(&iso, "iso");
        let top = p.top();
        for (x, n) in &a.infeasible {
            p.cross(*x, top, "x", &format!("trial {n}: infeasible"));
        }
        let _ = write!(s, "<div><h3>{}</h3>{}", escape(&a.param), p.finish(&format!("axis plot of {}", a.param)));
        for e in &a.edges {
            let _ = write!(s, "<p class=\"flag\">{} edge: {}</p>", escape(&e.edge), escape(&e.advice));
        }
        if !a.infeasible.is_empty() {
            let _ = write!(
                s,
                "<p class=\"muted\">{} (crosses)</p>",
                horizon_analysis::text::plural(a.infeasible.len(), "infeasible trial")
            );
        }
        s.push_str("</div>");
    }
    s.push_str("</div></section>");
}

fn sweep(s: &mut String, sw: &SweepPlot) {
    let steps = sw.points.iter().filter_map(|p| p.steps).map(|n| n as f64).chain([sw.budget as f64]);
    let mut p = Plot::new(
        720.0,
        300.0,
        Axis::over(sw.points.iter().map(|q| q.lr), true, &sw.param),
        Axis::fixed(0.0, steps.fold(1.0f64, f64::max) * 1.1, false, "steps to fit"),
    );
    for q in &sw.points {
        let title = format!(
            "{} = {}: {}",
            sw.param,
            q.lr,
            q.steps
                .map_or_else(|| q.outcome.clone(), |n| format!("fit in {n} steps{}", if q.fastest { " (fastest)" } else { "" }))
        );
        match q.steps {
            Some(n) => p.point(q.lr, n as f64, if q.fastest { 6.0 } else { 4.0 }, "fit", Some(&title)),
            None => {
                let top = p.top();
                p.cross(q.lr, top, "x", &title);
                p.label(q.lr, sw.budget as f64 * 0.97, &q.outcome, "lbl mid");
            }
        }
    }
    let _ = write!(
        s,
        "<section id=\"sweep\"><h2>Learning-rate sweep</h2><p class=\"muted\">Steps each constant learning rate needed to fit the training set ({}); rates that never fit, diverged or were stopped are crosses along the top.</p>{}",
        escape(&sw.fit),
        p.finish("learning-rate sweep")
    );
    for (i, lrs) in sw.extensions.iter().enumerate() {
        let shown: Vec<String> = lrs.iter().map(|x| x.to_string()).collect();
        let _ = write!(s, "<p>extension {}: {}</p>", i + 1, escape(&shown.join(", ")));
    }
    let _ = write!(s, "<p class=\"verdict\">{}</p>", escape(&sw.verdict));
    s.push_str("</section>");
}

fn stages(s: &mut String, st: &StagesSection) {
    let unit = if st.rounds { "round" } else { "rung" };
    let _ = write!(
        s,
        "<section id=\"stages\"><h2>{}</h2><table><tr><th>{unit}</th><th>budget</th><th>reached</th><th>finished</th><th>infeasible</th><th>promoted</th><th>resumed</th><th>steps run</th><th>saved</th></tr>",
        escape(&st.title)
    );
    for g in &st.rungs {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            g.rung, g.budget, g.reached, g.finished, g.infeasible, g.promoted, g.resumed, g.steps_run, g.steps_saved
        );
    }
    let _ = write!(s, "</table><p>steps run: {} of {} from scratch</p>", st.steps_run, st.from_scratch_steps);
    // Trials per rung, as bars.
    let most = st.rungs.iter().map(|g| g.reached).max().unwrap_or(1) as f64;
    let n = st.rungs.len().max(1) as f64;
    let mut p = Plot::new(520.0, 220.0, Axis::fixed(0.0, n, false, unit), Axis::counts(most, "trials reached"));
    p.x_ticks =
        Some(st.rungs.iter().enumerate().map(|(i, g)| (i as f64 + 0.5, format!("{} ({} steps)", g.rung, g.budget))).collect());
    for (i, g) in st.rungs.iter().enumerate() {
        p.bar(
            i as f64 + 0.15,
            i as f64 + 0.85,
            g.reached as f64,
            "bar",
            &format!("{unit} {} ({} steps): {} reached, {} finished", g.rung, g.budget, g.reached, g.finished),
        );
    }
    let _ = write!(s, "<div class=\"grid2\"><div>{}</div>", p.finish("trials per rung"));
    if !st.schedules.is_empty() {
        let longest = st.schedules.iter().map(|(b, _)| *b).max().unwrap_or(1) as f64;
        let top = st.schedules.iter().flat_map(|(_, pts)| pts.iter().map(|q| q.1)).fold(0.0f64, f64::max);
        let mut p = Plot::new(
            520.0,
            220.0,
            Axis::fixed(0.0, longest, false, "step"),
            Axis::fixed(0.0, top * 1.1, false, "learning rate"),
        );
        for (budget, pts) in &st.schedules {
            let line: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (x as f64, y)).collect();
            p.line(&line, "lr");
            if let Some(&(x, y)) = pts.last() {
                p.label(x as f64, y.max(top * 0.05), &format!("{budget} steps "), "lbl end");
            }
        }
        let _ = write!(s, "<div><h3>The best trial's schedule at each budget</h3>{}</div>", p.finish("schedules per budget"));
    }
    s.push_str("</div><h3>Rank agreement between budgets</h3><ul>");
    for a in &st.agreement {
        let _ = write!(s, "<li>{}</li>", escape(a));
    }
    for f in &st.flags {
        let _ = write!(s, "<li class=\"flag\">{}</li>", escape(f));
    }
    s.push_str("</ul>");
    for r in &st.round_checks {
        let _ = write!(s, "<pre>{}</pre>", escape(r));
    }
    s.push_str("</section>");
}
