//! Ladders end to end through the runner: real SQLite, real workers, trials as closures that
//! train a small deterministic model under a warmup-stable-decay schedule, declare where their
//! schedule stops depending on the budget, and checkpoint there.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::channel;

use horizon_core::StudySpec;
use horizon_core::rng::SplitMix64;
use horizon_core::schedule::{Decay, Schedule};
use horizon_core::trial::{RungEntry, TrialState};
use horizon_runner::attempt::{InProcessTrial, Program};
use horizon_runner::resolve::ResolvedStudy;
use horizon_runner::worker::{Worker, WorkerOptions};
use horizon_store::Storage;

const DECAY: u64 = 6;

/// Updates the closures actually computed, by study directory (tests run in parallel).
static UPDATES: std::sync::Mutex<Vec<(std::path::PathBuf, u64)>> = std::sync::Mutex::new(Vec::new());

fn count_update(trial_dir: &Path) {
    let study_dir = trial_dir.parent().and_then(Path::parent).unwrap().to_path_buf();
    let mut all = UPDATES.lock().unwrap();
    match all.iter_mut().find(|(d, _)| *d == study_dir) {
        Some((_, n)) => *n += 1,
        None => all.push((study_dir, 1)),
    }
}

fn updates(study_dir: &Path) -> u64 {
    UPDATES.lock().unwrap().iter().find(|(d, _)| d.starts_with(study_dir)).map_or(0, |(_, n)| *n)
}

/// A study of closure trials over `x` and `lr`, with `rest` after the common tables (the
/// parameters and, for a ladder, its table).
fn study_toml(name: &str, trials: u64, budget: u64, rest: &str) -> String {
    format!(
        r#"
[study]
name = "{name}"
trials = {trials}
max_train_steps = {budget}
eval_every = 2
[objective]
metric = "valid/loss"
direction = "minimize"
[trainer]
command = ["true"]
metrics = ["valid/loss"]
{rest}
"#
    )
}

/// A ladder over `x` in -1..1 and `lr` in 0.01..0.3 (log), top rung 90 steps.
fn study_text(name: &str, trials: u64, ladder: &str) -> String {
    let rest = format!(
        "[params.x]\ntype = \"float\"\nlow = -1.0\nhigh = 1.0\n[params.lr]\ntype = \"float\"\nlow = 0.01\nhigh = 0.3\nscale = \"log\"\n[ladder]\n{ladder}"
    );
    study_toml(name, trials, 90, &rest)
}

fn resolved(dir: &Path, text: &str) -> ResolvedStudy {
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    ResolvedStudy::new(StudySpec::parse(text, "study.toml").unwrap(), &path).unwrap()
}

/// Gradient descent on `(w - x)^2` with noisy gradients (the noise a function of the trial's
/// seed and the step), under a warmup-stable-decay schedule for the budget: deterministic, so a
/// resumed run and a run from scratch can be compared bit for bit. Declares the prefix the
/// schedule shares with longer budgets and checkpoints there.
fn train(t: &mut InProcessTrial<'_>) -> Result<(), String> {
    let x = t.params.get("x").unwrap().as_f64().unwrap();
    let lr = t.params.get("lr").unwrap().as_f64().unwrap();
    let schedule = Schedule::new(lr, 2, t.max_train_steps, Decay::ConstantThenLinear { decay_steps: DECAY }).unwrap();
    let shared = schedule.budget_independent_until();
    t.budget_independent(shared);
    let (mut step, mut w) = match t.resume_from {
        Some((path, at)) => {
            let text = std::fs::read_to_string(t.trial_dir.join(path)).map_err(|e| e.to_string())?;
            let (s, bits) = text.split_once(' ').unwrap();
            assert_eq!(s.parse::<u64>().unwrap(), at, "the checkpoint is at the step horizon said");
            (at, f64::from_bits(bits.trim().parse().unwrap()))
        }
        None => (0, 0.0),
    };
    // A validation loss that drifts up with the step (as when a model starts to overfit), so
    // that the best evaluation often comes before a promotion's resume point.
    let loss = |w: f64, step: u64| (w - x).powi(2) + 0.004 * step as f64;
    if step > 0 && step.is_multiple_of(t.eval_every) {
        t.report(step, "valid", &[("loss", loss(w, step))]);
    }
    while step < t.max_train_steps && !t.should_stop() {
        // Noise from the configuration and the step (not the trial seed), so that a study
        // trained from scratch elsewhere sees the same.
        let noise = (SplitMix64::new(x.to_bits() ^ step.wrapping_mul(0x9E37_79B9)).next_f64() - 0.5) * 0.2;
        w -= schedule.lr(step) * (2.0 * (w - x) + noise);
        step += 1;
        count_update(t.trial_dir);
        if step.is_multiple_of(t.eval_every) {
            t.report(step, "valid", &[("loss", loss(w, step))]);
        }
        if step == shared && step < t.max_train_steps {
            let name = format!("ckpt-{step}");
            std::fs::create_dir_all(t.trial_dir).map_err(|e| e.to_string())?;
            std::fs::write(t.trial_dir.join(&name), format!("{step} {}", w.to_bits())).map_err(|e| e.to_string())?;
            t.checkpoint(step, &name);
        }
    }
    Ok(())
}

/// ASHA's guarantee once a ladder is done: at every rung below the top, the best
/// `floor(n / eta)` of the `n` trials that finished it went on to the next (asynchronous
/// promotions made early may add others, never fewer).
fn assert_top_went_on(rungs: &[horizon_core::trial::RungRecord], eta: usize, levels: u32) {
    for k in 0..levels - 1 {
        let mut at: Vec<(f64, u64)> = rungs.iter().filter(|r| r.rung == k).map(|r| (r.best_value.unwrap(), r.number)).collect();
        at.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let next: Vec<u64> = rungs.iter().filter(|r| r.rung == k + 1).map(|r| r.number).collect();
        assert!(next.len() >= at.len() / eta && next.len() <= at.len(), "rung {}: {} of {}", k + 1, next.len(), at.len());
        for (_, n) in &at[..at.len() / eta] {
            assert!(next.contains(n), "trial {n}, in the top of rung {k}, did not go on: {next:?}");
        }
    }
}

fn run(study: ResolvedStudy, storage: Arc<dyn Storage>, jobs: usize) -> i64 {
    let (tx, _rx) = channel();
    let worker = Worker::new(study, storage, WorkerOptions { jobs, ..Default::default() }, tx)
        .unwrap()
        .with_program(Program::InProcess(Arc::new(train)));
    let id = worker.study().id;
    worker.run().unwrap();
    id
}

#[test]
fn a_ladder_promotes_the_best_and_resumes_them_exactly_where_the_schedules_part() {
    let tmp = tempfile::tempdir().unwrap();
    let study = resolved(tmp.path(), &study_text("ladder", 9, "min_steps = 10\neta = 3"));
    assert_eq!(study.spec.ladder.as_ref().unwrap().ladder.rungs, [10, 30, 90]);
    let storage: Arc<dyn Storage> = study.open_storage().unwrap();
    let id = run(study, storage.clone(), 2);

    let rungs = storage.rungs(id).unwrap();
    let reached = |k: u32| rungs.iter().filter(|r| r.rung == k).count();
    assert_eq!(reached(0), 9);
    assert_top_went_on(&rungs, 3, 3);
    // The trainers computed exactly the steps the rungs account for, fewer than from scratch.
    let run_steps: u64 = rungs.iter().map(|r| r.steps_run).sum();
    let from_scratch: u64 = rungs.iter().map(|r| r.budget).sum();
    assert_eq!(updates(tmp.path()), run_steps);
    let saved: u64 = rungs.iter().filter(|r| r.rung > 0).map(|r| [10, 30][r.rung as usize - 1] - DECAY).sum();
    assert_eq!(from_scratch - run_steps, saved, "each resume saved its shared prefix");
    assert!(saved > 0);
    assert!(rungs.iter().all(|r| r.state == TrialState::Complete));
    let value = |n: u64, k: u32| rungs.iter().find(|r| r.number == n && r.rung == k).and_then(|r| r.best_value);
    for r in rungs.iter().filter(|r| r.rung > 0) {
        // Every promotion resumed where the shorter budget's decay began.
        let from_budget = [10, 30, 90][r.rung as usize - 1];
        assert_eq!(r.entry, RungEntry::Resumed { from: r.rung - 1, step: from_budget - DECAY }, "trial {}", r.number);
        assert_eq!(r.steps_run, r.budget - (from_budget - DECAY), "a resumed rung runs only the rest");
        assert_eq!(r.budget_independent_until, Some(r.budget - DECAY));
        // Its curve up to the resume point is the earlier rung's...
        let before = storage.rung_metrics(r.trial, r.rung - 1).unwrap();
        let now = storage.rung_metrics(r.trial, r.rung).unwrap();
        let upto = |m: &[horizon_core::MetricPoint], s: u64| m.iter().filter(|p| p.step <= s).cloned().collect::<Vec<_>>();
        assert_eq!(upto(&now, from_budget - DECAY), upto(&before, from_budget - DECAY));
        // ... and after it, the earlier rung decayed while this one did not.
        assert_ne!(now.iter().find(|p| p.step == from_budget), before.iter().find(|p| p.step == from_budget));
        assert!(value(r.number, r.rung).is_some());
    }

    // The same configurations trained from scratch at the longer budgets (a fixed-budget study
    // each): bit for bit the curves of the resumed rungs.
    let mut early_bests = 0;
    for r in rungs.iter().filter(|r| r.rung > 0) {
        let trial = storage.trial(r.trial).unwrap();
        let x = trial.params.get("x").unwrap().as_f64().unwrap();
        let lr = trial.params.get("lr").unwrap().as_f64().unwrap();
        let dir = tmp.path().join(format!("scratch-{}-{}", r.number, r.rung));
        std::fs::create_dir_all(&dir).unwrap();
        let fixed = format!("[params.x]\ntype = \"fixed\"\nvalue = {x:?}\n[params.lr]\ntype = \"fixed\"\nvalue = {lr:?}");
        let text = study_toml("scratch", 1, r.budget, &fixed);
        let scratch = resolved(&dir, &text);
        let s: Arc<dyn Storage> = scratch.open_storage().unwrap();
        let sid = run(scratch, s.clone(), 1);
        let t = &s.trials(sid).unwrap()[0];
        let fresh = s.metrics(t.id).unwrap();
        let resumed = storage.rung_metrics(r.trial, r.rung).unwrap();
        let bits = |m: &[horizon_core::MetricPoint]| m.iter().map(|p| (p.step, p.value.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&resumed), bits(&fresh), "trial {} rung {}: resumed vs from scratch", r.number, r.rung);
        // ... and so is the retrospective selection over it, the copied prefix included.
        assert_eq!((r.best_step, r.best_value.map(f64::to_bits)), (t.best_step, t.best_value.map(f64::to_bits)));
        if t.best_step.unwrap() <= r.entry.start_step() {
            early_bests += 1;
        }
    }
    assert!(early_bests > 0, "some resumed rung had its best before the resume point (what the selection must include)");
}

#[test]
fn two_workers_on_their_own_connections_share_one_ladder() {
    let tmp = tempfile::tempdir().unwrap();
    let text = study_text("shared", 27, "rungs = [10, 30, 90]\neta = 3");
    let study = resolved(tmp.path(), &text);
    let db = study.db_path();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let study = study.clone();
            let db = db.clone();
            scope.spawn(move || {
                let storage: Arc<dyn Storage> = Arc::new(horizon_store::SqliteStorage::open(&db).unwrap());
                run(study, storage, 2)
            });
        }
    });
    let storage = horizon_store::SqliteStorage::open(&db).unwrap();
    let id = storage.study("shared").unwrap().unwrap().id;
    let rungs = storage.rungs(id).unwrap();
    assert_eq!(rungs.iter().filter(|r| r.rung == 0).count(), 27);
    assert_top_went_on(&rungs, 3, 3);
    for t in storage.trials(id).unwrap() {
        let attempts = storage.attempts(t.id).unwrap();
        // One attempt per rung reached: nothing ran twice, nothing was lost.
        assert_eq!(attempts.len(), t.rung as usize + 1, "trial {}", t.number);
        assert_eq!(attempts.iter().map(|a| a.rung).collect::<Vec<_>>(), (0..=t.rung).collect::<Vec<_>>());
        assert_eq!(t.state, TrialState::Complete);
    }
}
