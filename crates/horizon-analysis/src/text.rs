//! The terminal summary of an analysis, and number formatting shared by the evidence strings.

use std::fmt::Write;

use horizon_core::Direction;

use crate::Analysis;
use crate::budget::BudgetVerdict;
use crate::curves::CurveDiagnostics;

/// The one number formatter (`horizon_core::numfmt::num`).
pub use horizon_core::numfmt::num;

/// A share as a percentage: 0.125 -> "12.5%", 0.1 -> "10%".
pub fn pct(x: f64) -> String {
    let p = 100.0 * x;
    if (p - p.round()).abs() < 0.05 { format!("{:.0}%", p) } else { format!("{:.1}%", p) }
}

const SHOWN: usize = 10;

/// `n` and the noun, singular or plural: "1 trial", "3 trials", "0 runs".
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// The terminal summary: every statement with the numbers behind it.
pub fn render_text(a: &Analysis) -> String {
    let mut s = String::new();
    let dir = a.direction.as_str();
    let c = &a.counts;
    let _ = writeln!(s, "Analysis of {}: objective {} ({dir})", plural(c.trials, "trial"), a.objective);
    let mut reasons = Vec::new();
    for (n, label) in [
        (c.diverged, "diverged"),
        (c.high_loss, "high loss"),
        (c.failed, "failed"),
        (c.no_objective, "no objective"),
        (c.incomplete, "incomplete"),
    ] {
        if n > 0 {
            reasons.push(format!("{label} {n}"));
        }
    }
    let _ = writeln!(
        s,
        "  finished {}, unfinished {}; feasible {}, infeasible {}{}",
        c.finished,
        c.unfinished,
        c.feasible,
        c.infeasible,
        if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) }
    );
    if let Some(limit) = a.high_loss.limit {
        let _ = writeln!(
            s,
            "  high loss: best value {} {} (start level {}, study best {}{})",
            if a.direction == Direction::Minimize { "above" } else { "below" },
            num(limit),
            a.high_loss.start_level.map_or("n/a".into(), num),
            a.high_loss.study_best.map_or("n/a".into(), num),
            a.high_loss.fence.map_or(String::new(), |f| format!(", far-out fence {}", num(f)))
        );
    }
    for n in &a.high_loss.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    for n in &a.notes {
        let _ = writeln!(s, "  note: {n}");
    }

    // Best trials.
    if !a.top_trials.is_empty() {
        let _ = writeln!(
            s,
            "\nTop trials ({} of {} feasible; best quarter, at least {}):",
            a.top_trials.len(),
            c.feasible,
            a.config.top_min
        );
        let _ = writeln!(
            s,
            "  {:>5} {:>6} {:>12} {:>10} {:>10} {:>9} {:>12}",
            "rank", "trial", "best", "best step", "budget", "fraction", "final"
        );
        for &num_ in a.top_trials.iter().take(SHOWN) {
            let t = a.trials.iter().find(|t| t.number == num_).unwrap();
            let _ = writeln!(
                s,
                "  {:>5} {:>6} {:>12} {:>10} {:>10} {:>9} {:>12}",
                t.rank.unwrap_or(0),
                t.number,
                t.best_value.map_or("-".into(), num),
                t.best_step.map_or("-".into(), |x| x.to_string()),
                t.max_train_steps,
                t.best_fraction.map_or("-".into(), |f| format!("{f:.2}")),
                t.final_value.map_or("-".into(), num)
            );
        }
        if a.top_trials.len() > SHOWN {
            let _ = writeln!(s, "  ... {} more in --json", a.top_trials.len() - SHOWN);
        }
    }

    // Budget.
    let _ = writeln!(s, "\nBudget (max_train_steps), from where the best checkpoints fall:");
    for e in &a.budget.feasible.excluded {
        let shown: Vec<String> = e.examples.iter().map(u64::to_string).collect();
        let more = if e.trials > e.examples.len() { ", ..." } else { "" };
        let _ = writeln!(
            s,
            "  excluded: {} {} ({} {}{more}): {}",
            e.trials,
            e.reason.replace('_', " "),
            if e.trials == 1 { "trial" } else { "trials" },
            shown.join(", "),
            e.why
        );
    }
    if let Some(p) = &a.budget.parameter {
        let _ = writeln!(s, "  budget parameter {} ({}): {}", p.name, p.relation, p.verdict.label().to_uppercase());
        let _ = writeln!(s, "    => {}", p.line);
        for e in &p.evidence {
            let _ = writeln!(s, "    - {e}");
        }
        let _ = writeln!(
            s,
            "  per trial, each against its own budget (steps; suggestions are in steps, {} is the unit you tune):",
            p.name
        );
    }
    for v in [&a.budget.feasible, &a.budget.top] {
        verdict_text(&mut s, v);
    }

    // Curves.
    let cr = &a.curves;
    let _ = writeln!(s, "\nCurves of the top trials ({}, {}):", cr.metric, cr.train_metric);
    let k = &cr.counts;
    if k.diagnosed > 0 {
        let _ = writeln!(s, "  still improving at the end: {} of {}", k.still_improving, k.diagnosed);
        let _ = writeln!(s, "  saturated long before the end: {} of {}", k.saturated_early, k.diagnosed);
        let _ =
            writeln!(s, "  {} rising after its best (problematic overfitting): {} of {}", cr.metric, k.overfitting, k.diagnosed);
        let train_n = cr.trials.len() - k.train_metric_missing;
        if train_n > 0 {
            let _ = writeln!(s, "  {} rising (likely a bug): {} of {}", cr.train_metric, k.train_loss_rising, train_n);
        } else {
            let _ = writeln!(s, "  {} rising: not checked (no {} curve)", cr.train_metric, cr.train_metric);
        }
        let _ = writeln!(s, "  high step-to-step noise late in training: {} of {}", k.late_noise, k.diagnosed);
        for d in cr.trials.iter().filter(|d| flagged_problem(d)).take(SHOWN) {
            for (what, sign) in
                [("overfitting", &d.overfitting), ("training loss rising", &d.train_loss_rising), ("late noise", &d.late_noise)]
            {
                if sign.flagged {
                    let _ = writeln!(s, "    trial {} {what}: {}", d.number, sign.evidence);
                }
            }
        }
    }
    let _ = writeln!(s, "  => {}", cr.classification.line);

    // Space.
    let sp = &a.space;
    let _ = writeln!(
        s,
        "\nSearch space ({}; best trials: top {}):",
        match sp.range_source {
            Some(crate::boundary::RangeSource::Space) => "ranges from the study's space",
            Some(crate::boundary::RangeSource::Observed) => "ranges inferred from observed values",
            None => "no numeric parameter to read",
        },
        sp.top_trials.len()
    );
    for p in &sp.parameters {
        let mark = if p.widen.is_empty() { "  " } else { "! " };
        let _ = writeln!(
            s,
            "  {mark}{} [{} .. {}, {}{}]: best at {}; {}",
            p.name,
            num(p.low),
            num(p.high),
            p.scale,
            if p.range_source == crate::boundary::RangeSource::Observed { ", inferred" } else { "" },
            p.best_position.map_or("n/a".into(), |x| format!("{x:.2}")),
            p.advice
        );
        if let Some(n) = &p.note {
            let _ = writeln!(s, "      ({n})");
        }
    }
    for p in &sp.skipped {
        let _ = writeln!(s, "    {}: skipped ({})", p.name, p.why);
    }
    let _ = writeln!(s, "  infeasible: {}", sp.infeasible.summary);
    s
}

fn flagged_problem(d: &CurveDiagnostics) -> bool {
    d.overfitting.flagged || d.train_loss_rising.flagged || d.late_noise.flagged
}

fn verdict_text(s: &mut String, v: &BudgetVerdict) {
    let head = v.verdict.label().to_uppercase();
    let _ = writeln!(s, "  {} trials ({}): {}", v.group, v.trials, head);
    for e in &v.evidence {
        let _ = writeln!(s, "    - {e}");
    }
    match v.suggested_max_train_steps {
        Some(x) => {
            let _ = writeln!(s, "    suggested max_train_steps: {x} ({})", v.suggestion_rule);
        }
        None => {
            let _ = writeln!(s, "    suggested max_train_steps: none ({})", v.suggestion_rule);
        }
    }
    let _ = writeln!(s, "    confidence: {} ({})", v.confidence.label(), v.confidence_reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(num(0.41442), "0.4144");
        assert_eq!(num(12.0), "12");
        assert_eq!(num(1234.6), "1235");
        assert_eq!(num(1e-6), "1.000e-6");
        assert_eq!(num(0.0), "0");
        assert_eq!(pct(0.1), "10%");
        assert_eq!(pct(0.959), "95.9%");
    }
}
