//! `horizon watch`: a live view of a study, read from its database, so it shows the study
//! whichever processes or machines run it. On a terminal it redraws in place every interval;
//! otherwise it prints a line whenever something changed. Ctrl-C (or SIGTERM) ends it cleanly.
//!
//! [`view`] is pure (stored records in, what to show out); [`render`] draws it.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use horizon_core::trial::RungRecord;
use horizon_core::{Direction, TrialRecord, TrialState};

use crate::cli::WatchArgs;
use crate::table::num;
use crate::target;

/// Failures shown, most recent first.
const RECENT_FAILURES: usize = 5;
/// Bins of the best-step histogram so far.
const BINS: usize = 20;

/// A running trial: its rung, the last step it reported of its budget, its latest objective.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub number: u64,
    pub rung: u32,
    pub step: Option<u64>,
    pub budget: u64,
    pub value: Option<f64>,
}

/// What the live view shows.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub study: String,
    pub objective: String,
    pub planned: u64,
    /// Trials by state, only states with trials.
    pub states: Vec<(TrialState, usize)>,
    /// The best so far: trial, value, step, budget.
    pub best: Option<(u64, f64, u64, u64)>,
    pub running: Vec<Running>,
    /// Complete trials by `best_step / max_train_steps`, [`BINS`] bins.
    pub histogram: Vec<usize>,
    /// For a ladder or rounds: per rung, (budget, running or waiting, finished).
    pub rungs: Vec<(u64, usize, usize)>,
    /// Failed or diverged trials, most recent first: number, state, message.
    pub failures: Vec<(u64, TrialState, String)>,
}

/// The view of a study from its records. `latest` is each running trial's last objective
/// evaluation (step, value).
pub fn view(
    study: &str,
    objective: &str,
    direction: Direction,
    planned: u64,
    trials: &[TrialRecord],
    rungs: &[RungRecord],
    latest: &BTreeMap<i64, (u64, f64)>,
) -> View {
    let counts = horizon_runner::worker::count_states(trials);
    let states = TrialState::ALL.iter().filter_map(|s| counts.get(s).filter(|n| **n > 0).map(|n| (*s, *n))).collect();
    let best =
        horizon_runner::worker::best_of(trials, direction).map(|(t, s)| (t.number, s.best_value, s.best_step, t.max_train_steps));
    let running = trials
        .iter()
        .filter(|t| t.state == TrialState::Running)
        .map(|t| {
            let last = latest.get(&t.id);
            Running {
                number: t.number,
                rung: t.rung,
                step: last.map(|l| l.0),
                budget: t.max_train_steps,
                value: last.map(|l| l.1),
            }
        })
        .collect();
    let mut histogram = vec![0; BINS];
    for t in trials.iter().filter(|t| t.state == TrialState::Complete) {
        if let Some(step) = t.best_step.filter(|_| t.max_train_steps > 0) {
            let f = step as f64 / t.max_train_steps as f64;
            histogram[((f * BINS as f64) as usize).min(BINS - 1)] += 1;
        }
    }
    let top = rungs.iter().map(|r| r.rung).max().unwrap_or(0);
    let rungs: Vec<(u64, usize, usize)> = if top == 0 {
        Vec::new()
    } else {
        (0..=top)
            .map(|k| {
                let at: Vec<&RungRecord> = rungs.iter().filter(|r| r.rung == k).collect();
                let pending = at.iter().filter(|r| matches!(r.state, TrialState::Running | TrialState::Waiting)).count();
                (at.first().map_or(0, |r| r.budget), pending, at.len() - pending)
            })
            .collect()
    };
    let mut failed: Vec<&TrialRecord> =
        trials.iter().filter(|t| matches!(t.state, TrialState::Failed | TrialState::Diverged)).collect();
    failed.sort_by(|a, b| b.finished_at.unwrap_or(0.0).total_cmp(&a.finished_at.unwrap_or(0.0)).then(b.number.cmp(&a.number)));
    let failures =
        failed.into_iter().take(RECENT_FAILURES).map(|t| (t.number, t.state, t.message.clone().unwrap_or_default())).collect();
    View { study: study.into(), objective: objective.into(), planned, states, best, running, histogram, rungs, failures }
}

/// The view as lines of text.
pub fn render(v: &View) -> String {
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    let states: Vec<String> = v.states.iter().map(|(st, n)| format!("{n} {st}")).collect();
    let total: usize = v.states.iter().map(|(_, n)| n).sum();
    line(format!("study {}: {total} of {} trials: {}", v.study, v.planned, states.join(", ")));
    match v.best {
        Some((n, value, step, budget)) => {
            line(format!("best: trial {n} with {} {} at step {step} of {budget}", v.objective, num(value)))
        }
        None => line("best: none yet".into()),
    }
    if !v.running.is_empty() {
        line(format!("running ({}):", v.running.len()));
        for Running { number: n, rung, step, budget, value } in &v.running {
            let at = step.map_or_else(|| "starting".to_string(), |s| format!("step {s}/{budget}"));
            let value = value.map(|x| format!("  {} {}", v.objective, num(x))).unwrap_or_default();
            let rung = if v.rungs.is_empty() { String::new() } else { format!(" (rung {rung})") };
            line(format!("  trial {n}{rung}: {at}{value}"));
        }
    }
    let most = v.histogram.iter().copied().max().unwrap_or(0);
    if most > 0 {
        let bars: String = v.histogram.iter().map(|&n| bar(n, most)).collect();
        let early: usize = v.histogram[..BINS / 10].iter().sum();
        let late: usize = v.histogram[BINS * 3 / 4..].iter().sum();
        line(format!("best step / budget, complete trials: 0 |{bars}| 1   (first 10%: {early}, last 25%: {late})"));
    }
    if !v.rungs.is_empty() {
        let rows: Vec<String> =
            v.rungs.iter().enumerate().map(|(k, (b, p, f))| format!("{k} @ {b}: {f} finished, {p} pending")).collect();
        line(format!("rungs: {}", rows.join("; ")));
    }
    for (n, state, message) in &v.failures {
        line(format!("{state}: trial {n}: {message}"));
    }
    s
}

fn bar(n: usize, most: usize) -> char {
    const LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if n == 0 { LEVELS[0] } else { LEVELS[(1 + (n * 7).div_ceil(most)).min(8)] }
}

/// One line of what changed, for a reader that is not a terminal.
fn summary(v: &View) -> String {
    let states: Vec<String> = v.states.iter().map(|(st, n)| format!("{n} {st}")).collect();
    let best = v.best.map(|(n, x, _, _)| format!("; best {} {} (trial {n})", v.objective, num(x))).unwrap_or_default();
    let running: Vec<String> = v
        .running
        .iter()
        .map(|r| format!("{}@{}/{}", r.number, r.step.map_or_else(|| "-".into(), |s| s.to_string()), r.budget))
        .collect();
    let running = if running.is_empty() { String::new() } else { format!("; running {}", running.join(" ")) };
    format!("{}{best}{running}", states.join(", "))
}

pub fn watch(args: WatchArgs) -> Result<()> {
    let t = target::open(&args.study, args.name.as_deref())?;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    let tty = std::io::stdout().is_terminal() && !args.once;
    let every = Duration::from_secs_f64(args.every.max(0.1));
    let mut last = String::new();
    if tty {
        print!("\x1b[?25l");
    }
    let result = (|| -> Result<()> {
        loop {
            let trials = t.storage.trials(t.study.id)?;
            let rungs = t.storage.rungs(t.study.id)?;
            let mut latest = BTreeMap::new();
            for tr in trials.iter().filter(|tr| tr.state == TrialState::Running) {
                let points = t.storage.rung_metrics(tr.id, tr.rung)?;
                if let Some(p) = points.iter().filter(|p| p.name == t.objective).max_by_key(|p| p.step) {
                    latest.insert(tr.id, (p.step, p.value));
                }
            }
            let planned = horizon_core::trial::planned_total(t.spec.trials.unwrap_or(0), &trials);
            let v = view(&t.study.name, &t.objective, t.direction, planned, &trials, &rungs, &latest);
            let mut out = std::io::stdout().lock();
            if args.once {
                write!(out, "{}", render(&v))?;
                return Ok(());
            }
            if tty {
                write!(out, "\x1b[H\x1b[J{}\n(refreshing every {:?}; Ctrl-C to stop)\n", render(&v), every)?;
            } else {
                let now = summary(&v);
                if now != last {
                    writeln!(out, "{now}")?;
                    last = now;
                }
            }
            out.flush()?;
            drop(out);
            let until = Instant::now() + every;
            while Instant::now() < until {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50).min(every));
            }
        }
    })();
    if tty {
        print!("\x1b[?25h");
        let _ = std::io::stdout().flush();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_shows_running_trials_the_best_the_histogram_and_recent_failures() {
        let t = |n: u64, state: TrialState, best: Option<(u64, f64)>| TrialRecord {
            best_step: best.map(|b| b.0),
            best_value: best.map(|b| b.1),
            final_step: best.map(|_| 100),
            final_value: best.map(|b| b.1),
            finished_at: Some(n as f64),
            message: (state == TrialState::Failed).then(|| format!("exit 1 (attempt {n})")),
            ..TrialRecord::new(n, horizon_core::Params::default(), 100, state)
        };
        let trials = vec![
            t(0, TrialState::Complete, Some((95, 0.3))),
            t(1, TrialState::Complete, Some((5, 0.2))),
            t(2, TrialState::Failed, None),
            t(3, TrialState::Running, None),
            t(4, TrialState::Failed, None),
        ];
        let latest: BTreeMap<i64, (u64, f64)> = [(3, (40, 0.25))].into();
        let v = view("s", "valid/loss", Direction::Minimize, 8, &trials, &[], &latest);
        assert_eq!(v.best, Some((1, 0.2, 5, 100)));
        assert_eq!(v.running, vec![Running { number: 3, rung: 0, step: Some(40), budget: 100, value: Some(0.25) }]);
        assert_eq!((v.histogram[1], v.histogram[19]), (1, 1));
        assert_eq!(v.failures.iter().map(|f| f.0).collect::<Vec<_>>(), [4, 2], "most recent first");
        let text = render(&v);
        assert!(text.starts_with("study s: 5 of 8 trials: 1 running, 2 complete, 2 failed\n"), "{text}");
        assert!(text.contains("  trial 3: step 40/100  valid/loss 0.25"), "{text}");
        assert!(text.contains("failed: trial 4: exit 1 (attempt 4)"), "{text}");
        assert_eq!(summary(&v), "1 running, 2 complete, 2 failed; best valid/loss 0.2 (trial 1); running 3@40/100");
    }
}
