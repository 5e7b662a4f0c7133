//! The terminal reporter: a progress bar (trials done, running, failed, best so far, ETA) and a
//! line per finished trial, fed by the worker's event stream.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::Duration;

use horizon_core::spec::Direction;
use horizon_core::trial::{AttemptOutcome, RungEntry, TrialState};
use horizon_runner::worker::Event;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::table::num;
use horizon_analysis::text::plural;

struct Reporter {
    bar: ProgressBar,
    objective: String,
    direction: Direction,
    running: BTreeMap<u64, (u64, u64)>,
    failed: usize,
    diverged: usize,
    incomplete: usize,
    best: Option<(u64, f64)>,
    retries: u32,
    /// The study runs a ladder: the bar counts runs of a rung, and lines name the rung.
    ladder: bool,
    rungs: BTreeMap<u64, u32>,
    /// Promotions already announced, as (trial, rung).
    promoted: std::collections::BTreeSet<(u64, u32)>,
}

/// Start the reporter on its own thread; it ends when the worker drops its event sender.
/// How a run's events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporting {
    /// Lines for people on stderr, with a progress bar when `bar`.
    Human { bar: bool },
    /// Every event as a JSON line on stdout (`Event::json`).
    Json,
}

/// A thread that writes every event as a JSON line on stdout, flushed line by line.
pub fn spawn_json(events: Receiver<Event>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for event in events {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{}", event.json()).and_then(|()| out.flush()).is_err() {
                // Nobody reads any more (a closed pipe): keep draining so the worker never blocks.
                continue;
            }
        }
    })
}

pub fn spawn(events: Receiver<Event>, show_bar: bool, objective: String, direction: Direction, retries: u32) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let target = if show_bar { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:28.cyan/blue} {pos}/{len} trials  {msg}  ETA {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let mut r = Reporter {
            bar,
            objective,
            direction,
            running: BTreeMap::new(),
            failed: 0,
            diverged: 0,
            incomplete: 0,
            best: None,
            retries,
            ladder: false,
            rungs: BTreeMap::new(),
            promoted: Default::default(),
        };
        for event in events {
            r.handle(event);
        }
        r.bar.finish_and_clear();
    })
}

impl Reporter {
    fn say(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    fn refresh(&self) {
        let mut msg = format!("running {}", self.running.len());
        if let Some((&n, &(step, max))) = self.running.iter().next()
            && self.running.len() == 1
        {
            msg = format!("running trial {n} (step {step}/{max})");
        }
        if self.failed > 0 {
            msg.push_str(&format!(" · failed {}", self.failed));
        }
        if self.incomplete > 0 {
            msg.push_str(&format!(" · incomplete {}", self.incomplete));
        }
        if self.diverged > 0 {
            msg.push_str(&format!(" · diverged {}", self.diverged));
        }
        if let Some((n, v)) = self.best {
            msg.push_str(&format!(" · best {} {} (trial {n})", self.objective, num(v)));
        }
        self.bar.set_message(msg);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Started { study, database, total, finished, jobs, ladder } => {
                self.bar.set_length(total);
                self.bar.set_position(finished);
                self.bar.reset_eta();
                let resumed = if finished > 0 { format!(", {finished} already finished") } else { String::new() };
                let what = match &ladder {
                    Some(budgets) => {
                        self.ladder = true;
                        self.bar.set_style(
                            ProgressStyle::with_template(
                                "{spinner} [{elapsed_precise}] {bar:28.cyan/blue} {pos}/{len} runs  {msg}  ETA {eta}",
                            )
                            .expect("a valid template")
                            .progress_chars("=> "),
                        );
                        let budgets: Vec<String> = budgets.iter().map(u64::to_string).collect();
                        format!("about {total} runs at budgets {}", budgets.join(", "))
                    }
                    None => format!("{total} trials"),
                };
                self.say(format!("study {study}: {what}{resumed}, {jobs} at a time; database {}", database.display()));
            }
            Event::TrialStarted { number, attempt, rung, max_train_steps, entry, .. } => {
                self.running.insert(number, (entry.start_step(), max_train_steps));
                self.rungs.insert(number, rung);
                match entry {
                    RungEntry::Resumed { from, step } if self.promoted.insert((number, rung)) => self.say(format!(
                        "trial {number}: promoted from rung {from} to rung {rung} ({max_train_steps} steps), resuming from its checkpoint at step {step}"
                    )),
                    RungEntry::Restarted { from } if self.promoted.insert((number, rung)) => self.say(format!(
                        "trial {number}: promoted from rung {from} to rung {rung} ({max_train_steps} steps), restarting from scratch (no checkpoint within the part of its schedule that a longer budget shares)"
                    )),
                    _ if attempt > 1 => self.say(format!("trial {number}: attempt {attempt}")),
                    _ => {}
                }
            }
            Event::Waiting => self.say(format!(
                "waiting: what runs next depends on {} still running",
                if self.running.is_empty() {
                    "trials other processes run".to_string()
                } else {
                    plural(self.running.len(), "trial")
                }
            )),
            Event::Progress { number, step, max_train_steps, .. } => {
                self.running.insert(number, (step, max_train_steps));
            }
            Event::TrialFinished(result) => {
                let number = result.trial.number;
                self.running.remove(&number);
                let secs = result.duration.as_secs_f64();
                if result.state.is_finished() {
                    self.bar.inc(1);
                }
                match result.state {
                    TrialState::Complete => {
                        let s = result.selection.expect("a complete trial has a selection");
                        if self.best.is_none_or(|(_, b)| self.direction.better(s.best_value, b)) {
                            self.best = Some((number, s.best_value));
                        }
                        // A trial stopped early for a reason (stop_when, a policy) says so.
                        let stopped = result.message.as_deref().map(|m| format!("; {m}")).unwrap_or_default();
                        let at = match self.rungs.get(&number) {
                            Some(&rung) if self.ladder => format!(" at rung {rung}"),
                            _ => String::new(),
                        };
                        self.say(format!(
                            "trial {number} complete{at}: best {} {} at step {}/{} (final {}) in {secs:.1}s{stopped}",
                            self.objective,
                            num(s.best_value),
                            s.best_step,
                            result.trial.max_train_steps,
                            num(s.final_value)
                        ));
                    }
                    TrialState::Incomplete => {
                        self.incomplete += 1;
                        self.say(format!("trial {number} incomplete: {}", reason(&result.outcome)));
                    }
                    TrialState::Diverged => {
                        self.diverged += 1;
                        self.say(format!("trial {number} diverged: {}", reason(&result.outcome)));
                    }
                    TrialState::Failed | TrialState::Waiting => {
                        let failed = matches!(result.outcome, AttemptOutcome::Failed { .. });
                        if result.state == TrialState::Failed {
                            self.failed += 1;
                        }
                        let next = match (&result.outcome, result.state) {
                            (_, TrialState::Failed) => String::new(),
                            (AttemptOutcome::Failed { .. }, _) => {
                                format!("; retrying ({} of {} retries used)", result.trial.failures + 1, self.retries)
                            }
                            _ => "; it runs again when the study resumes".to_string(),
                        };
                        let what = if failed { "failed" } else { "was interrupted" };
                        // The runner's reasons for an interruption start with the word already.
                        let why = reason(&result.outcome);
                        let why = if failed { why } else { why.strip_prefix("interrupted: ").unwrap_or(why) };
                        let mut text = format!("trial {number} {what}: {why}{next}");
                        if let Some(tail) = &result.stderr_tail {
                            let rule = "─".repeat(60);
                            text.push_str(&format!("\n{rule} last lines of stderr\n{tail}\n{rule}"));
                            if let Some(p) = &result.stderr_path {
                                text.push_str(&format!("\n(full output: {})", p.display()));
                            }
                        }
                        self.say(text);
                    }
                    TrialState::Running => {}
                }
                if result.warnings > 0 {
                    self.say(format!(
                        "trial {number}: {} (lines ignored, checkpoints kept, limits reached); `horizon trial STUDY {number}` shows them",
                        plural(result.warnings, "warning")
                    ));
                }
            }
            Event::Requeued { number, reason } => self.say(format!("trial {number} {reason}")),
            Event::Draining => self.say(format!(
                "stopping: no new trials; waiting for {} to finish. Ctrl-C again to stop them now.",
                plural(self.running.len(), "running trial")
            )),
            Event::Terminating => self
                .say("stopping running trials (SIGTERM, then SIGKILL after the grace period); they run again on resume".into()),
        }
        self.refresh();
    }
}

fn reason(outcome: &AttemptOutcome) -> &str {
    match outcome {
        AttemptOutcome::Completed => "completed",
        AttemptOutcome::EndedEarly { reason }
        | AttemptOutcome::Diverged { reason }
        | AttemptOutcome::Failed { reason }
        | AttemptOutcome::Interrupted { reason } => reason,
    }
}
