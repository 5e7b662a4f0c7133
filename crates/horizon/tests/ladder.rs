//! Ladders through the real binary: a built-in workload (digits-mlp, a real burn model) under a
//! warmup-stable-decay schedule, trained at growing budgets; promotions resume from the
//! checkpoint at the shorter budget's decay start. `kill -9` mid-ladder and resume.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

use horizon_core::protocol::{Report, TrialEnvironment, parse_line};
use util::*;

const DECAY: u64 = 10;

fn ladder_study(dir: &std::path::Path, name: &str, trials: u64, rungs: &[u64]) -> std::path::PathBuf {
    let list: Vec<String> = rungs.iter().map(u64::to_string).collect();
    let text = format!(
        r#"
[study]
name = "{name}"
trials = {trials}
max_train_steps = {top}
eval_every = 10
seed = 3

[objective]
metric = "valid/loss"
direction = "minimize"

[trainer]
workload = "digits-mlp"
timeout = "10m"

[ladder]
rungs = [{list}]
eta = 3

[params.learning_rate]
type = "float"
low = 0.02
high = 0.5
scale = "log"

[params.dropout]
type = "fixed"
value = 0.1

[params.hidden]
type = "fixed"
value = 32

[params.schedule]
type = "fixed"
value = "wsd"

[params.decay_steps]
type = "fixed"
value = {DECAY}
"#,
        top = rungs.last().unwrap(),
        list = list.join(", ")
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn horizon(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_horizon")).args(args).current_dir(dir).stdin(Stdio::null()).output().unwrap()
}

fn trials_json(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let out = horizon(dir, &["trials", "study.toml", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `(step, name) -> value bits` of every metric line a trainer wrote.
fn metric_bits(file: &std::path::Path) -> BTreeMap<(u64, String), u64> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(file).unwrap().lines() {
        if let Ok(Report::Metrics { step, values }) = parse_line(line) {
            for (name, v) in values {
                out.insert((step, name), v.to_bits());
            }
        }
    }
    out
}

#[test]
fn a_promoted_trial_resumed_at_its_decay_start_ends_exactly_as_training_from_scratch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ladder_study(dir, "wsd-ladder", 3, &[30, 90]);
    // `check` shows the plan: rung 0's budget, and the checkpoint asked for in advance.
    let out = horizon(dir, &["check", "study.toml"]);
    let plan = text(&out);
    assert!(plan.contains("ladder       rungs 30, 90 (eta 3), about 4 rung runs; promotions resume"), "{plan}");
    assert!(plan.contains("HORIZON_MAX_TRAIN_STEPS=30") && plan.contains("HORIZON_CHECKPOINT_STEPS=20"), "{plan}");
    let out = horizon(dir, &["run", "study.toml", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("promoted from rung 0 to rung 1 (90 steps), resuming from its checkpoint at step 20"), "{shown}");
    assert!(shown.contains("Ladder of 2 rungs"), "{shown}");

    let trials = trials_json(dir);
    let promoted: Vec<&serde_json::Value> = trials.iter().filter(|t| t["rung"] == 1).collect();
    assert_eq!(promoted.len(), 1, "3 trials, eta 3: one goes on");
    let t = promoted[0];
    let rungs = t["rungs"].as_array().unwrap();
    assert_eq!(rungs.len(), 2);
    assert_eq!(rungs[0]["budget"], 30);
    assert_eq!(rungs[1]["entry"], serde_json::json!({"kind": "resumed", "from": 0, "step": 20}));
    assert_eq!(rungs[1]["steps_run"], 70, "90 steps less the 20 resumed");
    // Each rung's schedule: warmup-stable-decay for its own budget, decaying over the last 10.
    for (r, budget) in rungs.iter().zip([30, 90]) {
        let s = &r["schedule"];
        assert_eq!((s["total_steps"].as_u64(), s["decay"]["kind"].as_str()), (Some(budget), Some("constant_then_linear")), "{r}");
        assert_eq!(s["decay"]["decay_steps"], DECAY);
    }
    assert_eq!((t["max_train_steps"].as_u64(), t["state"].as_str()), (Some(90), Some("complete")));
    // status and analyze report the ladder: sizes, compute, rank agreement.
    let out = horizon(dir, &["status", "study.toml", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let totals = &status["ladder"]["totals"];
    assert_eq!((totals["steps_run"].as_u64(), totals["steps_saved"].as_u64()), (Some(3 * 30 + 70), Some(20)), "{status}");
    assert_eq!(totals["from_scratch_steps"], 3 * 30 + 90);
    let out = horizon(dir, &["analyze", "study.toml"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("ladder: the analysis reads the 1 trial at rung 1 (90 steps), the highest reached, of 3"), "{shown}");
    assert!(shown.contains("Ladder of 2 rungs"), "{shown}");
    let number = t["number"].as_u64().unwrap();
    let shown = text(&horizon(dir, &["trial", "study.toml", &number.to_string()]));
    assert!(shown.contains("rungs (2; the curves below are rung 1's)"), "{shown}");
    assert!(shown.contains("promoted from rung 0, resumed from step 20"), "{shown}");
    // The promoted trial was the best of rung 0.
    let best0 = trials.iter().map(|t| t["rungs"][0]["best_value"].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
    assert_eq!(rungs[0]["best_value"].as_f64(), Some(best0));

    // The same configuration trained from scratch at 90 steps, by the same program with the same
    // trial seed and parameters: every value after the resume point is bit for bit the resumed
    // attempt's, and every value before it is rung 0's.
    let trial_dir = dir.join("horizon-runs/wsd-ladder/trials").join(format!("{number:05}"));
    let resumed = metric_bits(&trial_dir.join("attempt-2.metrics.jsonl"));
    let rung0 = metric_bits(&trial_dir.join("attempt-1.metrics.jsonl"));
    let scratch_dir = dir.join("scratch");
    std::fs::create_dir_all(&scratch_dir).unwrap();
    let metrics = scratch_dir.join("metrics.jsonl");
    let env = TrialEnvironment {
        study: "scratch".into(),
        trial_number: number,
        attempt: 1,
        trial_dir: scratch_dir.display().to_string(),
        params_json: t["params"].to_string(),
        max_train_steps: 90,
        eval_every: 10,
        seed: horizon_core::rng::trial_seed(3, number),
        metrics_file: metrics.display().to_string(),
        checkpoint_every: None,
        checkpoint_steps: vec![],
        resume_from: None,
        rung: 0,
    };
    let out = Command::new(env!("CARGO_BIN_EXE_horizon"))
        .args(["workload", "run", "digits-mlp"])
        .envs(env.vars())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let scratch = metric_bits(&metrics);
    let after = |m: &BTreeMap<(u64, String), u64>, from: u64| {
        m.iter().filter(|((s, _), _)| *s >= from).map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>()
    };
    let before = |m: &BTreeMap<(u64, String), u64>, to: u64| {
        m.iter().filter(|((s, _), _)| *s <= to).map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>()
    };
    assert!(after(&scratch, 21).len() >= 7 * 4, "evaluations at 30..90");
    assert_eq!(after(&resumed, 21), after(&scratch, 21), "resumed at 20 under budget 90 vs from scratch at 90");
    assert_eq!(before(&rung0, 20), before(&scratch, 20), "the shared prefix");
    assert_ne!(after(&rung0, 21), after(&scratch, 21)[..after(&rung0, 21).len()].to_vec(), "rung 0 decayed from step 20");
    // What the database holds for the promoted rung is the same curve.
    let db = rusqlite::Connection::open(dir.join("horizon-runs/wsd-ladder/horizon.db")).unwrap();
    let stored: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.number = ?1 AND m.rung = 1",
            [number],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored as usize, scratch.len(), "rung 1 holds the copied prefix and the resumed attempt's values");
    // The rung's retrospective selection is over its whole curve, the copied prefix included:
    // the same best step and value as the run from scratch.
    let (best_step, best_bits) = scratch
        .iter()
        .filter(|((_, name), _)| name == "valid/loss")
        .map(|((step, _), bits)| (*step, *bits))
        .fold(None, |best: Option<(u64, u64)>, (step, bits)| match best {
            Some((_, b)) if f64::from_bits(b) <= f64::from_bits(bits) => best,
            _ => Some((step, bits)),
        })
        .unwrap();
    assert_eq!(rungs[1]["best_step"].as_u64(), Some(best_step));
    assert_eq!(rungs[1]["best_value"].as_f64().map(f64::to_bits), Some(best_bits));
}

#[test]
fn kill_9_mid_ladder_then_resume_loses_duplicates_and_promotes_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ladder_study(dir, "killed", 9, &[20, 60, 180]);
    let db_path = dir.join("horizon-runs/killed/horizon.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_horizon"))
        .args(["run", "study.toml", "-j", "2", "--no-progress"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let promoted_running = || {
        let Ok(db) = rusqlite::Connection::open(&db_path) else { return false };
        db.query_row("SELECT COUNT(*) FROM rungs WHERE rung > 0 AND state = 'running'", [], |r| r.get::<_, i64>(0)).unwrap_or(0)
            > 0
    };
    wait_for("a promoted trial running", LONG, promoted_running);
    send_signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let db = rusqlite::Connection::open(&db_path).unwrap();
    let left: i64 = db.query_row("SELECT COUNT(*) FROM trials WHERE state = 'running'", [], |r| r.get(0)).unwrap();
    assert!(left >= 1, "the dead worker left its trials running");
    let before: Vec<(u64, u32, String)> = db
        .prepare("SELECT t.number, r.rung, r.state FROM rungs r JOIN trials t ON t.id = r.trial_id ORDER BY 1, 2")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();

    let out = horizon(dir, &["run", "study.toml", "-j", "2", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let trials = trials_json(dir);
    assert_eq!(trials.len(), 9, "no configuration lost or added");
    let mut runs = BTreeSet::new();
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        for r in t["rungs"].as_array().unwrap() {
            assert_eq!(r["state"], "complete", "{t}");
            assert!(runs.insert((t["number"].as_u64().unwrap(), r["rung"].as_u64().unwrap())), "a rung run twice");
        }
    }
    // Everything finished before the kill is as it was; what was running ran again, once.
    for (number, rung, state) in &before {
        assert!(runs.contains(&(*number, *rung as u64)), "trial {number} rung {rung} lost");
        if state == "complete" {
            let attempts: i64 = db
                .query_row(
                    "SELECT COUNT(*) FROM attempts a JOIN trials t ON t.id = a.trial_id WHERE t.number = ?1 AND a.rung = ?2",
                    rusqlite::params![number, rung],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(attempts, 1, "trial {number} rung {rung} was complete before the kill and never reran");
        }
    }
    // ASHA's guarantee: the best third of each finished rung went on.
    for k in 0..2u64 {
        let mut at: Vec<(f64, u64)> = trials
            .iter()
            .filter_map(|t| {
                let r = t["rungs"].as_array().unwrap().get(k as usize)?;
                Some((r["best_value"].as_f64().unwrap(), t["number"].as_u64().unwrap()))
            })
            .collect();
        at.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, n) in &at[..at.len() / 3] {
            assert!(runs.contains(&(*n, k + 1)), "trial {n} was in the top third of rung {k} and did not go on");
        }
    }
}

#[test]
fn the_example_ladder_is_a_valid_study_with_geometric_rungs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/ladder.toml");
    let spec = horizon_core::StudySpec::parse(&std::fs::read_to_string(path).unwrap(), path).unwrap();
    let ladder = spec.ladder.as_ref().expect("a [ladder] table");
    assert_eq!(ladder.ladder.rungs, [300, 900, 2700, 8100]);
    // Its schedule shares everything before the decay with longer budgets: every promotion of
    // every configuration can resume.
    let sampler = spec.sampler.build(&spec.space, spec.seed).unwrap();
    for index in 0..27 {
        let params = sampler.sample(index).unwrap();
        for &budget in &ladder.ladder.rungs[..3] {
            assert_eq!(horizon_core::workloads::budget_independent_until(&params, budget), Some(budget - 100));
        }
    }
}

fn rounds_study(dir: &std::path::Path) {
    let text = r#"
[study]
name = "rounds"
trials = 6
max_train_steps = 120
eval_every = 10
seed = 5

[objective]
metric = "valid/loss"
direction = "minimize"

[trainer]
workload = "digits-mlp"
timeout = "10m"

[params.learning_rate]
type = "float"
low = 0.01
high = 0.5
scale = "log"

[params.momentum]
type = "float"
low = 0.0
high = 0.9

[params.warmup_steps]
type = "discrete"
values = [0, 5]

[params.hidden]
type = "fixed"
value = 32

[params.schedule]
type = "fixed"
value = "linear"

[[round]]
max_train_steps = 40
trials = 6

[[round]]
max_train_steps = 120
carry = 2
trials = 2
"#;
    std::fs::write(dir.join("study.toml"), text).unwrap();
}

#[test]
fn two_rounds_carry_the_best_with_their_schedule_transferred_and_narrow_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    rounds_study(dir);
    let db_path = dir.join("horizon-runs/rounds/horizon.db");
    // A crash between the rounds: kill -9 as soon as round 1 has started, then resume.
    let mut child = Command::new(env!("CARGO_BIN_EXE_horizon"))
        .args(["run", "study.toml", "--no-progress"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("round 1 to start", LONG, || {
        let Ok(db) = rusqlite::Connection::open(&db_path) else { return false };
        db.query_row("SELECT COUNT(*) FROM rungs WHERE rung = 1", [], |r| r.get::<_, i64>(0)).unwrap_or(0) > 0
    });
    send_signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let out = horizon(dir, &["run", "study.toml", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("2 rounds (minimize):"), "{shown}");
    // The resumed run starts at the round the database says it is in: the second.
    assert!(shown.contains("round 2 of 2: 120 steps per trial, the best 2 of round 1 carried on, 2 new"), "{shown}");
    assert!(!shown.contains("round 1 of 2"), "the finished round is not run again: {shown}");
    // Its end-of-round checks, with their numbers.
    assert!(shown.contains("round 2 at 120 steps: 4 runs, 4 feasible (2 carried on)"), "{shown}");
    assert!(shown.contains("  ranking (round 1 -> 2): "), "{shown}");
    assert!(shown.contains("  budget: "), "{shown}");

    let trials = trials_json(dir);
    let round = |t: &serde_json::Value, k: usize| t["rungs"].as_array().unwrap().iter().find(|r| r["rung"] == k as u64).cloned();
    let round0: Vec<&serde_json::Value> = trials.iter().filter(|t| round(t, 0).is_some()).collect();
    let round1: Vec<&serde_json::Value> = trials.iter().filter(|t| round(t, 1).is_some()).collect();
    assert_eq!((round0.len(), round1.len(), trials.len()), (6, 4, 8), "6 in round 0; 2 carried and 2 new in round 1");
    let mut ranked: Vec<(f64, u64)> =
        round0.iter().map(|t| (round(t, 0).unwrap()["best_value"].as_f64().unwrap(), t["number"].as_u64().unwrap())).collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let carried: BTreeSet<u64> = round1.iter().filter(|t| round(t, 0).is_some()).map(|t| t["number"].as_u64().unwrap()).collect();
    assert_eq!(carried, ranked[..2].iter().map(|(_, n)| *n).collect::<BTreeSet<u64>>(), "the best two of round 0 went on");
    let winner = trials.iter().find(|t| t["number"] == ranked[0].1).unwrap();
    for t in &round1 {
        let r1 = round(t, 1).unwrap();
        assert_eq!(r1["state"], "complete", "{t}");
        // The linear decay was carried by the method's rule: its length kept, as warmup-stable-decay.
        let schedule = &r1["schedule"];
        assert_eq!(schedule["total_steps"], 120);
        assert_eq!(schedule["decay"]["kind"], "constant_then_linear", "{t}");
        let warmup = t["params"]["warmup_steps"].as_u64().unwrap();
        assert_eq!(schedule["decay"]["decay_steps"].as_u64(), Some(40 - warmup), "the 40-step run's decay length");
        if carried.contains(&t["number"].as_u64().unwrap()) {
            // A carried trial shares only its warmup with the longer schedule.
            match warmup {
                0 => assert_eq!(r1["entry"]["kind"], "restarted", "{t}"),
                w => assert_eq!(r1["entry"], serde_json::json!({"kind": "resumed", "from": 0, "step": w}), "{t}"),
            }
        } else {
            // New in round 1: warmup frozen at the winner's, the learning rate narrowed around the
            // best of round 0 and inside the original range.
            assert_eq!(r1["entry"]["kind"], "started");
            assert_eq!(t["params"]["warmup_steps"], winner["params"]["warmup_steps"]);
            let lr = t["params"]["learning_rate"].as_f64().unwrap();
            assert!((0.01..=0.5).contains(&lr), "{lr}");
            // Within the span of the two best's rates, widened by a quarter of it (or 5% of the
            // full range) on each side, in log scale.
            let best: Vec<f64> = ranked[..2]
                .iter()
                .map(|(_, n)| {
                    trials.iter().find(|u| u["number"] == *n).unwrap()["params"]["learning_rate"].as_f64().unwrap().ln()
                })
                .collect();
            let (lo, hi) = (best[0].min(best[1]), best[0].max(best[1]));
            let margin = ((hi - lo) * 0.25).max((0.5f64.ln() - 0.01f64.ln()) * 0.05);
            assert!(lr.ln() >= lo - margin - 1e-9 && lr.ln() <= hi + margin + 1e-9, "{lr} outside the narrowed range");
        }
    }
    // `analyze` reports every round's checks: round 1's winner is the best of round 0's runs,
    // and round 2 names it as the previous winner and says where it finished.
    let out = horizon(dir, &["analyze", "horizon-runs/rounds", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rounds = doc["rounds"].as_array().expect("per-round findings");
    assert_eq!(rounds.len(), 2);
    assert_eq!(rounds[0]["winner"]["number"], ranked[0].1);
    assert_eq!(rounds[0]["ranking"], serde_json::Value::Null, "nothing before the first round");
    assert_eq!(rounds[1]["winner"]["previous"], ranked[0].1);
    assert_eq!(rounds[1]["carried"], 2);
    assert_eq!(rounds[1]["ranking"]["n"], 2, "the two carried trials are compared");
    let best1 = round1
        .iter()
        .map(|t| (round(t, 1).unwrap()["best_value"].as_f64().unwrap(), t["number"].as_u64().unwrap()))
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .unwrap();
    assert_eq!(rounds[1]["winner"]["number"], best1.1);
    assert_eq!(rounds[1]["winner"]["changed"], best1.1 != ranked[0].1);
    // Narrowed into round 2: the learning rate and momentum (optimizer), not the frozen warmup.
    let analysis = text(&horizon(dir, &["analyze", "horizon-runs/rounds"]));
    assert!(analysis.contains("rounds: the analysis reads the 4 trials of round 2 (120 steps)"), "{analysis}");
    assert!(analysis.contains("round 1 at 40 steps: 6 runs, "), "{analysis}");

    // Nothing ran twice: one attempt per round a trial ran, plus the one the kill interrupted.
    let db = rusqlite::Connection::open(&db_path).unwrap();
    let attempts: i64 = db.query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0)).unwrap();
    assert!((10..=11).contains(&attempts), "{attempts} attempts for 10 round runs");
}

#[test]
fn the_example_rounds_study_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rounds.toml");
    let spec = horizon_core::StudySpec::parse(&std::fs::read_to_string(path).unwrap(), path).unwrap();
    let budgets: Vec<(u64, u64, u64)> = spec.rounds.iter().map(|r| (r.max_train_steps, r.trials, r.carry)).collect();
    assert_eq!(budgets, [(500, 16, 0), (2000, 2, 2)]);
    assert_eq!(spec.roles.get("warmup_steps"), Some(&horizon_core::rounds::ParamRole::Warmup), "the catalog's role");
    // `check` shows the rounds, and trial 0 as round 1 launches it: at round 1's budget.
    let out = Command::new(env!("CARGO_BIN_EXE_horizon")).args(["check", path]).output().unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("(2 rounds up to 2000 steps"), "{shown}");
    assert!(shown.contains("  round 1      500 steps per trial, 16 sampled"), "{shown}");
    assert!(shown.contains("  round 2      2000 steps per trial, the best 2 of round 1 carried on"), "{shown}");
    assert!(shown.contains("HORIZON_MAX_TRAIN_STEPS=500"), "{shown}");
}

#[test]
fn rounds_over_a_constant_rate_say_the_method_expects_it_to_transfer_poorly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    rounds_study(dir);
    let path = dir.join("study.toml");
    let toml = std::fs::read_to_string(&path).unwrap().replace("value = \"linear\"", "value = \"constant\"");
    let toml = toml
        .replace("max_train_steps = 40\ntrials = 6", "max_train_steps = 20\ntrials = 2")
        .replace("carry = 2\ntrials = 2", "carry = 1\ntrials = 0");
    std::fs::write(&path, toml).unwrap();
    let out = horizon(dir, &["run", "study.toml", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("note: a constant learning rate is carried unchanged; the method expects"), "{}", text(&out));
    // A linear decay is carried by the method's rule: no such note.
    let tmp = tempfile::tempdir().unwrap();
    rounds_study(tmp.path());
    let path = tmp.path().join("study.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let toml = toml
        .replace("max_train_steps = 40\ntrials = 6", "max_train_steps = 20\ntrials = 2")
        .replace("carry = 2\ntrials = 2", "carry = 1\ntrials = 0");
    std::fs::write(&path, toml).unwrap();
    let out = horizon(tmp.path(), &["run", "study.toml", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("transfer poorly") && !text(&out).contains("carried unchanged"), "{}", text(&out));
}

/// Every trial and rung of the only study at `url`: parameters, states, how each rung was
/// entered, selections (value bits) and steps run.
fn stored(url: &str) -> Vec<String> {
    use horizon_store::{Access, StorageUrl};
    let s = horizon_store::open(&StorageUrl::parse(url).unwrap(), Access::ReadOnly).unwrap();
    let st = s.studies().unwrap().remove(0);
    let mut out: Vec<String> = s
        .trials(st.id)
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{} {} {} {} {:?} {:?}",
                t.number,
                t.params.to_json_string(),
                t.state,
                t.rung,
                t.best_step,
                t.best_value.map(f64::to_bits)
            )
        })
        .collect();
    out.extend(s.rungs(st.id).unwrap().iter().map(|r| {
        format!(
            "{} rung {} {} {} {:?} {:?} {:?} {} {}",
            r.number,
            r.rung,
            r.budget,
            r.state,
            r.entry,
            r.best_step,
            r.best_value.map(f64::to_bits),
            r.steps_run,
            r.params.to_json_string()
        )
    }));
    out
}

/// A ladder and a study in rounds run on PostgreSQL exactly as on SQLite (one worker, so the
/// same completion order): the same trials, promotions, resumptions, carried schedules and
/// results, bit for bit.
#[test]
fn a_ladder_and_rounds_on_postgres_run_exactly_as_on_sqlite() {
    let ladder: fn(&std::path::Path) = |dir| {
        ladder_study(dir, "pg-ladder", 9, &[20, 60, 180]);
    };
    for make in [ladder, rounds_study] {
        let on_sqlite = tempfile::tempdir().unwrap();
        make(on_sqlite.path());
        let out = horizon(on_sqlite.path(), &["run", "study.toml", "-j", "1", "--no-progress"]);
        assert!(out.status.success(), "{}", text(&out));
        let spec = std::fs::read_to_string(on_sqlite.path().join("study.toml")).unwrap();
        let name = spec.lines().find_map(|l| l.strip_prefix("name = \"")).unwrap().trim_end_matches('"');
        let expected = stored(on_sqlite.path().join("horizon-runs").join(name).join("horizon.db").to_str().unwrap());
        assert!(expected.iter().any(|l| l.contains(" rung 1 ")), "promotions or carries happened: {expected:#?}");

        let db = horizon_store::testing::scratch_database();
        let on_pg = tempfile::tempdir().unwrap();
        make(on_pg.path());
        let out = horizon(on_pg.path(), &["run", "study.toml", "-j", "1", "--no-progress", "--storage", &db.url]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(stored(&db.url), expected);
    }
}
