//! Replays horizon's ladder (`horizon_core::ladder::next`, the policy itself, not a copy) and
//! plain random search over recorded learning curves, with simulated asynchronous workers, for
//! many seeds. Prints one JSON line per (method, seed) with the regret curve against compute.
//!
//! ```text
//! ladder_replay --data alexnet_tuning.results.jsonl.gz --seeds 100 --workers 4 \
//!     --orders orders.jsonl > runs.jsonl
//! ```
//!
//! The data: OPDA's AlexNet tuning runs (JSON Lines, one run per line, `epochs`,
//! `nan_train_loss`, `learning_curve[].top_1`; a `.gz` path is read through `gzip -dc`). A run's
//! error after epoch `e` is `1 - top_1` of its curve's `e`-th point; a diverged run
//! (`nan_train_loss`) has a curve that stops where its loss became NaN, so its loss is NaN at
//! epoch `curve length + 1`.
//!
//! The simulation, the same for every method: seed `s` orders the runs at random (a Fisher-Yates
//! shuffle driven by splitmix64 of `s`, written to `--orders` so the Optuna script uses the same
//! orders); the `n`-th configuration a method starts is the `n`-th run of that order. Time
//! advances one epoch at a time; in each, every busy worker trains one epoch of its job (worker 0
//! first), which costs one epoch of compute and yields that epoch's error, an observation. Jobs
//! that reach their end finish at the end of the epoch; then every idle worker, in order, asks
//! its method for work. A method that answers "wait" leaves its worker idle (no compute).
//!
//! - `random` / `random-stop`: every configuration trains its whole schedule (`epochs`). A
//!   diverged run is charged its full budget (`random`, the issue's anchors) or stopped in the
//!   epoch its loss became NaN (`random-stop`: what horizon's recorder does in any study).
//! - `ladder-asha`, `ladder`, `ladder-grow`: `horizon_core::ladder::next` decides (launch,
//!   promote, wait, done) from the trials' rung outcomes, built as storage builds them, on
//!   `Ladder::geometric(--min-epochs, --eta, --max-epochs)`: `ladder` with its defaults (the
//!   rank-correlation guard; `--calibration`, `--min-rank-correlation` change it), `ladder-asha`
//!   with the guard off (`calibration: Some(0)`: plain ASHA, the policy before the guard),
//!   `ladder-grow` with `grow: true`. A rung at budget `b` reads the run's curve up to
//!   `min(b, epochs)` (the replay has one schedule per run, so a rung reads a truncated
//!   schedule); its value is the best error over those epochs (retrospective selection); a run
//!   whose loss became NaN within them is stopped in that epoch (horizon's
//!   `stop_on_divergence`, on by default) and is infeasible there. A promoted trial resumes
//!   where its previous rung stopped (a promotion from `b1` to `b2` costs `b2 - b1` epochs, as
//!   with Optuna's pruners, which never restart, and with horizon where the schedule allows a
//!   resume); with the suffix `-restart` every rung trains from scratch (`b2` epochs).
//!
//! Regret at compute `c` is the best error observed in the first `c` epochs of compute minus
//! the best error anywhere in the data, in points (x100). Each output line lists the points
//! where it improves, `[compute, regret]`, and the compute the method used in all.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use horizon_core::Direction;
use horizon_core::ladder::{self, Ladder, LadderDecision, LadderTrial, RungOutcome, RungRule};

/// One recorded run: its schedule's length and its error after each epoch.
struct Run {
    epochs: u64,
    /// `1 - top_1` after epochs 1, 2, ... (finite).
    errors: Vec<f64>,
    /// The epoch (1-based) in which the loss became NaN.
    diverges_at: Option<u64>,
}

impl Run {
    fn error(&self, epoch: u64) -> Option<f64> {
        self.errors.get(epoch as usize - 1).copied()
    }
}

fn load(path: &str) -> Result<Vec<Run>> {
    let mut text = String::new();
    if path.ends_with(".gz") {
        let mut child = Command::new("gzip").arg("-dc").arg(path).stdout(Stdio::piped()).spawn().context("gzip -dc")?;
        child.stdout.take().unwrap().read_to_string(&mut text)?;
        if !child.wait()?.success() {
            bail!("gzip -dc {path} failed");
        }
    } else {
        text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    }
    let mut runs = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{path}:{}", i + 1))?;
        let epochs = v["epochs"].as_u64().with_context(|| format!("{path}:{}: epochs", i + 1))?;
        let curve = v["learning_curve"].as_array().with_context(|| format!("{path}:{}: learning_curve", i + 1))?;
        let mut errors = Vec::new();
        for p in curve {
            let top1 = p["top_1"].as_f64().with_context(|| format!("{path}:{}: top_1", i + 1))?;
            errors.push(1.0 - top1);
        }
        if errors.iter().any(|e| !e.is_finite()) || errors.len() as u64 > epochs {
            bail!("{path}:{}: a curve longer than its epochs or with non-finite values", i + 1);
        }
        let diverged = v["nan_train_loss"].as_bool().unwrap_or(false);
        if diverged && errors.len() as u64 >= epochs {
            bail!("{path}:{}: a diverged run with a whole curve", i + 1);
        }
        if !diverged && (errors.len() as u64) < epochs {
            bail!("{path}:{}: a short curve without nan_train_loss", i + 1);
        }
        let diverges_at = diverged.then_some(errors.len() as u64 + 1);
        runs.push(Run { epochs, errors, diverges_at });
    }
    Ok(runs)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seed `seed`'s order of `n` runs: Fisher-Yates with splitmix64 (rejection-free modulo: the
/// bias for n = 512 is below 1e-16).
fn order(seed: u64, n: usize) -> Vec<usize> {
    let mut state = seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x6A09_E667_F3BC_C909;
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

#[derive(Clone, Copy, PartialEq)]
enum Divergence {
    /// Charged the whole budget of the job (the run trains on with a NaN loss).
    Full,
    /// Stopped in the epoch the loss became NaN.
    Stop,
}

#[derive(Clone)]
enum Method {
    Random { divergence: Divergence },
    Ladder { ladder: Ladder, restart: bool },
}

/// Work for one worker: train trial `trial` (run `run`) from epoch `next` through `end`.
struct Job {
    trial: usize,
    run: usize,
    /// The rung this job runs (ladder only).
    rung: Option<usize>,
    next: u64,
    end: u64,
    diverged: bool,
}

struct Outcome {
    improvements: Vec<(u64, f64)>,
    compute: u64,
    wall: u64,
    launched: usize,
    /// Configurations that reached the top rung (ladder) or finished (random).
    top: usize,
    /// Promotions (ladder).
    promotions: usize,
    /// How each rung below the top promoted at the end (ladder).
    rules: Vec<RungRule>,
}

enum Ask {
    Work(Job),
    Wait,
    Done,
}

struct Sim<'a> {
    runs: &'a [Run],
    order: Vec<usize>,
    method: Method,
    planned: u64,
    history: Vec<LadderTrial>,
    launched: usize,
    promotions: usize,
}

impl Sim<'_> {
    fn ask(&mut self) -> Ask {
        match &self.method {
            Method::Random { divergence } => {
                if self.launched == self.order.len() {
                    return Ask::Done;
                }
                let run = self.order[self.launched];
                let trial = self.launched;
                self.launched += 1;
                let r = &self.runs[run];
                let end = match (divergence, r.diverges_at) {
                    (Divergence::Stop, Some(d)) => d,
                    _ => r.epochs,
                };
                Ask::Work(Job { trial, run, rung: None, next: 1, end, diverged: false })
            }
            Method::Ladder { ladder, restart } => {
                let decision = ladder::next(ladder, &self.history, self.planned, Direction::Minimize);
                match decision {
                    LadderDecision::Launch { budget } => {
                        let trial = self.history.len();
                        assert!(trial < self.order.len(), "the ladder launched more than planned");
                        self.history.push(LadderTrial { number: trial as u64, rungs: vec![RungOutcome::Pending] });
                        self.launched += 1;
                        let run = self.order[trial];
                        Ask::Work(Job {
                            trial,
                            run,
                            rung: Some(0),
                            next: 1,
                            end: budget.min(self.runs[run].epochs),
                            diverged: false,
                        })
                    }
                    LadderDecision::Promote { trial, rung, budget } => {
                        let t = &mut self.history[trial as usize];
                        assert_eq!(t.rungs.len(), rung, "trial {trial} promoted to rung {rung} out of turn");
                        assert!(
                            matches!(t.rungs[rung - 1], RungOutcome::Finished(_)),
                            "trial {trial} promoted from an unfinished rung"
                        );
                        t.rungs.push(RungOutcome::Pending);
                        self.promotions += 1;
                        let run = self.order[trial as usize];
                        let epochs = self.runs[run].epochs;
                        let from = if *restart { 0 } else { ladder.rungs[rung - 1].min(epochs) };
                        Ask::Work(Job {
                            trial: trial as usize,
                            run,
                            rung: Some(rung),
                            next: from + 1,
                            end: budget.min(epochs),
                            diverged: false,
                        })
                    }
                    LadderDecision::Wait => Ask::Wait,
                    LadderDecision::Done => Ask::Done,
                }
            }
        }
    }

    fn finish(&mut self, job: &Job) {
        let Some(rung) = job.rung else { return };
        let r = &self.runs[job.run];
        let outcome = if job.diverged {
            RungOutcome::Infeasible
        } else {
            let best = r.errors[..job.end as usize].iter().copied().fold(f64::INFINITY, f64::min);
            RungOutcome::Finished(best)
        };
        let t = &mut self.history[job.trial];
        assert_eq!(t.rungs.len(), rung + 1);
        t.rungs[rung] = outcome;
    }
}

fn simulate(runs: &[Run], order: Vec<usize>, method: Method, workers: usize, best_in_data: f64) -> Outcome {
    let planned = order.len() as u64;
    let mut sim = Sim { runs, order, method, planned, history: Vec::new(), launched: 0, promotions: 0 };
    let mut slots: Vec<Option<Job>> = (0..workers).map(|_| None).collect();
    let mut done = false;
    // The policy is a pure function of the history: idle workers ask again only after it changed.
    let mut changed = true;
    let (mut compute, mut wall) = (0u64, 0u64);
    let mut best = f64::INFINITY;
    let mut improvements = Vec::new();
    loop {
        // Idle workers ask in order; a zero-epoch job (a promotion past the run's schedule)
        // finishes at once, and then the workers that were told to wait ask again.
        while !done && changed {
            changed = false;
            for slot in slots.iter_mut().filter(|s| s.is_none()) {
                loop {
                    match sim.ask() {
                        Ask::Work(job) if job.next > job.end => {
                            sim.finish(&job);
                            changed = true;
                        }
                        Ask::Work(job) => {
                            *slot = Some(job);
                            break;
                        }
                        Ask::Wait => break,
                        Ask::Done => {
                            done = true;
                            break;
                        }
                    }
                }
                if done {
                    break;
                }
            }
        }
        if slots.iter().all(Option::is_none) {
            // Nothing runs: the method is done (or waits on nothing, which would be a bug).
            break;
        }
        wall += 1;
        for slot in slots.iter_mut() {
            let Some(job) = slot else { continue };
            compute += 1;
            let r = &runs[job.run];
            let epoch = job.next;
            job.next += 1;
            if r.diverges_at.is_some_and(|d| epoch >= d) {
                job.diverged = true;
                if job.rung.is_some() {
                    // The ladder runs in horizon, which stops a non-finite loss at once; random
                    // search's `Stop` ends its job at this epoch already.
                    job.end = epoch;
                }
            } else if let Some(e) = r.error(epoch)
                && e < best
            {
                best = e;
                improvements.push((compute, 100.0 * (e - best_in_data)));
            }
        }
        for slot in slots.iter_mut() {
            if slot.as_ref().is_some_and(|j| j.next > j.end) {
                let job = slot.take().unwrap();
                sim.finish(&job);
                changed = true;
            }
        }
    }
    let (top, rules) = match &sim.method {
        Method::Random { .. } => (sim.launched, Vec::new()),
        Method::Ladder { ladder, .. } => (
            sim.history.iter().filter(|t| t.rungs.len() > ladder.top()).count(),
            ladder.rules(&sim.history, planned, Direction::Minimize),
        ),
    };
    Outcome { improvements, compute, wall, launched: sim.launched, top, promotions: sim.promotions, rules }
}

struct Args {
    data: String,
    seeds: u64,
    workers: usize,
    min_epochs: u64,
    eta: u64,
    max_epochs: u64,
    orders: Option<String>,
    label: String,
    methods: Vec<String>,
    min_rank_correlation: Option<f64>,
    calibration: Option<u64>,
}

/// Every method: random search (diverged runs charged in full, or stopped), and the ladder as
/// ASHA (`asha`: the rank-correlation guard off, the policy before it), with its defaults
/// (`ladder`) and growing (`ladder-grow`); `-restart` trains every rung from scratch.
const DEFAULT_METHODS: &str =
    "random,random-stop,ladder-asha,ladder,ladder-grow,ladder-asha-restart,ladder-restart,ladder-grow-restart";

fn args() -> Result<Args> {
    let mut a = Args {
        data: String::new(),
        seeds: 100,
        workers: 4,
        min_epochs: 1,
        eta: 3,
        max_epochs: 100,
        orders: None,
        label: String::new(),
        methods: DEFAULT_METHODS.split(',').map(str::to_string).collect(),
        min_rank_correlation: None,
        calibration: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => a.data = value()?,
            "--seeds" => a.seeds = value()?.parse()?,
            "--workers" => a.workers = value()?.parse()?,
            "--min-epochs" => a.min_epochs = value()?.parse()?,
            "--eta" => a.eta = value()?.parse()?,
            "--max-epochs" => a.max_epochs = value()?.parse()?,
            "--orders" => a.orders = Some(value()?),
            "--label" => a.label = value()?,
            "--methods" => a.methods = value()?.split(',').map(str::to_string).collect(),
            "--min-rank-correlation" => a.min_rank_correlation = Some(value()?.parse()?),
            "--calibration" => a.calibration = Some(value()?.parse()?),
            _ => bail!(
                "unknown argument {flag}; usage: ladder_replay --data FILE [--seeds 100] [--workers 4] [--min-epochs 1] \
                 [--eta 3] [--max-epochs 100] [--orders FILE] [--label TEXT] [--methods {DEFAULT_METHODS}] \
                 [--min-rank-correlation R] [--calibration N]"
            ),
        }
    }
    if a.data.is_empty() {
        bail!("--data FILE is required");
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = args()?;
    let runs = load(&a.data)?;
    let best_in_data = runs.iter().flat_map(|r| r.errors.iter().copied()).fold(f64::INFINITY, f64::min);
    let mut ladder = Ladder::geometric(a.min_epochs, a.eta, a.max_epochs).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(r) = a.min_rank_correlation {
        ladder.min_rank_correlation = r;
    }
    if a.calibration.is_some() {
        ladder.calibration = a.calibration;
    }
    let mut methods: Vec<(&str, Method)> = Vec::new();
    for m in &a.methods {
        let (base, restart) = match m.strip_suffix("-restart") {
            Some(b) => (b, true),
            None => (m.as_str(), false),
        };
        let method = match base {
            "random" if !restart => Method::Random { divergence: Divergence::Full },
            "random-stop" if !restart => Method::Random { divergence: Divergence::Stop },
            "ladder-asha" => Method::Ladder { ladder: Ladder { calibration: Some(0), ..ladder.clone() }, restart },
            "ladder" => Method::Ladder { ladder: ladder.clone(), restart },
            "ladder-grow" => Method::Ladder { ladder: Ladder { grow: true, ..ladder.clone() }, restart },
            other => bail!("unknown method {other} (known: {DEFAULT_METHODS})"),
        };
        methods.push((m, method));
    }
    let mut orders = match &a.orders {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("creating {p}"))?)),
        None => None,
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    for seed in 0..a.seeds {
        let o = order(seed, runs.len());
        if let Some(w) = orders.as_mut() {
            writeln!(w, "{}", serde_json::json!({ "seed": seed, "order": o }))?;
        }
        for (name, method) in &methods {
            let r = simulate(&runs, o.clone(), method.clone(), a.workers, best_in_data);
            let line = serde_json::json!({
                "method": name,
                // The label names the ladder's build (before / after a change); random search
                // does not run horizon's policy.
                "label": if matches!(method, Method::Ladder { .. }) { a.label.as_str() } else { "" },
                "seed": seed,
                "workers": a.workers,
                "ladder": match method { Method::Ladder { ladder, .. } => Some(ladder), _ => None },
                "improvements": r.improvements.iter().map(|&(c, g)| serde_json::json!([c, g])).collect::<Vec<_>>(),
                "compute": r.compute,
                "wall": r.wall,
                "launched": r.launched,
                "top": r.top,
                "promotions": r.promotions,
                "rules": r.rules,
                "best_in_data": best_in_data,
            });
            writeln!(out, "{line}")?;
        }
    }
    if let Some(mut w) = orders {
        w.flush()?;
    }
    Ok(())
}
