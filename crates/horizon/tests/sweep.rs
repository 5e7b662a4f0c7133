//! `horizon sweep-lr` on the real digits-mlp workload: the stages it runs, the invariants of
//! its report (checked against the stored curves, not against magic numbers), determinism
//! and resume.

mod util;

use serde_json::Value;
use util::*;

fn sweep_study(name: &str, sweep: &str) -> String {
    format!(
        r#"
[study]
name = "{name}"
trials = 8
max_train_steps = 400
eval_every = 20
seed = 3

[objective]
metric = "valid/error"
direction = "minimize"

[trainer]
workload = "digits-mlp"

[params.learning_rate]
type = "float"
low = 0.001
high = 1.0
scale = "log"

[params.momentum]
type = "float"
low = 0.5
high = 0.95

[params.weight_decay]
type = "float"
low = 1e-5
high = 1e-2
scale = "log"

[params.hidden]
type = "fixed"
value = 64

[lr_sweep]
{sweep}
"#
    )
}

fn sweep(s: &TestStudy) -> Value {
    let out = s.horizon(&["sweep-lr", "study.toml", "--json", "--no-progress", "-j", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(lr, outcome kind, steps to fit, closest train/error when it never fit)` for every swept
/// learning rate.
fn results(report: &Value) -> Vec<(f64, String, Option<u64>, Option<f64>)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_f64().unwrap(), r[1]["kind"].as_str().unwrap().to_string(), r[1]["steps"].as_u64(), r[1]["best"].as_f64()))
        .collect()
}

fn stage_db(s: &TestStudy, stage: &str) -> rusqlite::Connection {
    rusqlite::Connection::open(s.study_dir().join("lr-sweep").join(stage).join("horizon.db")).unwrap()
}

#[test]
fn the_sweep_finds_n_runs_the_grid_and_reports_the_fastest_interior_rate() {
    let s = TestStudy::new(StudyOptions { name: "sw", ..Default::default() });
    std::fs::write(&s.spec, sweep_study("sw", "low = 0.01\nhigh = 1.0\npoints = 5\nstart_steps = 100\nmax_steps = 6400\nset = { momentum = 0.9 }")).unwrap();
    let report = sweep(&s);
    assert_eq!(report["schema"], "horizon.lr-sweep/1");

    // N came from the find-steps stage, as the first doubled budget that contains its fit.
    let budget = &report["budget"];
    assert_eq!(budget["source"], "found", "{report}");
    let (fit_step, n) = (budget["fit_step"].as_u64().unwrap(), budget["steps"].as_u64().unwrap());
    assert!(n >= fit_step && (n == 100 || n / 2 < fit_step) && (n / 100).is_power_of_two(), "{budget}");

    let rows = results(&report);
    assert!(rows.len() >= 4 && rows.windows(2).all(|w| w[0].0 < w[1].0), "ascending, unique: {rows:?}");
    let fits: Vec<u64> = rows.iter().filter_map(|r| r.2).collect();
    assert!(!fits.is_empty(), "{report}");
    let best = *fits.iter().min().unwrap();
    assert_eq!(report["suggested_max_train_steps"].as_u64(), Some(best));
    for (lr, kind, steps, _) in &rows {
        if let Some(steps) = steps {
            assert!(*steps <= n && steps % 20 == 0, "lr {lr}: fit at an evaluation within N: {steps}");
        } else {
            assert!(kind == "never" || kind == "diverged", "lr {lr}: {kind}");
        }
    }
    let fastest: Vec<f64> = report["fastest"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let (lowest, highest) = (rows[0].0, rows[rows.len() - 1].0);
    match report["verdict"]["kind"].as_str().unwrap() {
        "found" => assert!(!fastest.contains(&lowest) && !fastest.contains(&highest), "interior: {fastest:?} of {rows:?}"),
        "edge_unresolved" => assert_eq!(report["extensions"].as_array().unwrap().len(), 2, "only after both extensions"),
        other => panic!("unexpected verdict {other}: {report}"),
    }
    // An extension happens exactly when grid-0's own fastest rate (or, if none fit, the one
    // that came closest, the largest of ties) was at one of its edges.
    let grid0: Vec<_> = rows.iter().filter(|r| (0.01..=1.0).contains(&r.0)).collect();
    assert_eq!(grid0.len(), 5);
    let at_edge = match grid0.iter().filter_map(|r| r.2).min() {
        Some(b) => grid0[0].2 == Some(b) || grid0[4].2 == Some(b),
        None => {
            let closest = grid0.iter().filter_map(|r| r.3.map(|v| (r.0, v))).fold(None::<(f64, f64)>, |acc, (lr, v)| match acc {
                Some((_, bv)) if v > bv => acc,
                _ => Some((lr, v)),
            });
            closest.is_some_and(|(lr, _)| lr == grid0[0].0 || lr == grid0[4].0)
        }
    };
    assert_eq!(!report["extensions"].as_array().unwrap().is_empty(), at_edge, "{report}");

    // The grid ran with regularization off, momentum as set, a constant schedule, N steps, and
    // each fitting trial stopped at its fit.
    let db = stage_db(&s, "grid-0");
    let mut stmt = db.prepare("SELECT id, params_json, max_train_steps, state FROM trials").unwrap();
    let trials: Vec<(i64, String, i64, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(trials.len(), 5);
    for (id, params, steps, _) in &trials {
        let p: Value = serde_json::from_str(params).unwrap();
        assert_eq!((p["weight_decay"].as_f64(), p["momentum"].as_f64(), p["hidden"].as_i64()), (Some(0.0), Some(0.9), Some(64)), "{p}");
        assert_eq!(*steps as u64, n);
        let lr = p["learning_rate"].as_f64().unwrap();
        let last: i64 = db.query_row("SELECT MAX(step) FROM metrics WHERE trial_id = ?1", [id], |r| r.get(0)).unwrap();
        if let Some((_, _, Some(fit), _)) = rows.iter().find(|r| r.0 == lr) {
            // Stopped once the fit was seen (the trainer may run on until the signal lands).
            assert!(last as u64 >= *fit, "lr {lr}: curve ends at {last}, before its fit at {fit}");
            let error_at_fit: f64 = db
                .query_row("SELECT value FROM metrics WHERE trial_id = ?1 AND name = 'train/error' AND step = ?2", [*id, *fit as i64], |r| r.get(0))
                .unwrap();
            assert_eq!(error_at_fit, 0.0);
            let before: i64 = db
                .query_row("SELECT COUNT(*) FROM metrics WHERE trial_id = ?1 AND name = 'train/error' AND step < ?2 AND value <= 0", [*id, *fit as i64], |r| r.get(0))
                .unwrap();
            assert_eq!(before, 0, "lr {lr}: {fit} is the first fit");
            if (last as u64) < n {
                let message: String = db.query_row("SELECT message FROM trials WHERE id = ?1", [id], |r| r.get(0)).unwrap();
                assert!(message.contains(&format!("train/error <= 0 held at step {fit}")), "{message}");
            }
        }
    }

    // Running it again resumes: nothing new runs, and the report is the same.
    let again = sweep(&s);
    assert_eq!(again["results"], report["results"]);
    let attempts: i64 = stage_db(&s, "grid-0").query_row("SELECT MAX(attempt) FROM trials", [], |r| r.get(0)).unwrap();
    assert_eq!(attempts, 1);

    // The same study in another directory gives the same results: runs are deterministic.
    let twin = TestStudy::new(StudyOptions { name: "sw", ..Default::default() });
    std::fs::copy(&s.spec, &twin.spec).unwrap();
    assert_eq!(sweep(&twin)["results"], report["results"]);
}

#[test]
fn a_range_below_the_fastest_rate_is_extended_upwards() {
    // Every rate of this grid is small: the fastest is its top edge, so the sweep extends it.
    let s = TestStudy::new(StudyOptions { name: "edge", ..Default::default() });
    std::fs::write(&s.spec, sweep_study("edge", "low = 0.001\nhigh = 0.004\npoints = 2\nsteps = 400\nextensions = 1\nextend_by = 1\nset = { momentum = 0.0 }")).unwrap();
    let report = sweep(&s);
    let extensions = report["extensions"].as_array().unwrap();
    assert_eq!(extensions.len(), 1, "{report}");
    assert_eq!(extensions[0][0], "high");
    let added = extensions[0][1][0].as_f64().unwrap();
    assert!(added > 0.004 && (added / 0.004 - 4.0).abs() < 0.01, "same spacing as the grid: {added}");
    // The reason, from the evidence: 0.004 fit fastest, or nothing fit and it came closest.
    let rows = results(&report);
    let (low, high) = (&rows[0], &rows[1]);
    assert_eq!((low.0, high.0), (0.001, 0.004), "{rows:?}");
    match (low.2, high.2) {
        (Some(a), Some(b)) => assert!(b <= a, "{rows:?}"),
        (None, Some(_)) => {}
        (Some(_), None) => panic!("the low edge fit and the high did not, yet the grid went up: {rows:?}"),
        (None, None) => assert!(high.3.unwrap() <= low.3.unwrap(), "the high edge came closest: {rows:?}"),
    }
    assert_eq!(rows.len(), 3, "grid-1 ran its one rate: {rows:?}");
    assert!(s.study_dir().join("lr-sweep/grid-1/horizon.db").is_file());
    assert!(!s.study_dir().join("lr-sweep/find-steps").exists(), "N was given");
}

#[test]
fn a_changed_sweep_is_refused_with_the_way_out() {
    let s = TestStudy::new(StudyOptions { name: "chg", ..Default::default() });
    std::fs::write(&s.spec, sweep_study("chg", "low = 0.01\nhigh = 1.0\npoints = 2\nsteps = 40\neval_every = 20")).unwrap();
    sweep(&s);
    std::fs::write(&s.spec, sweep_study("chg", "low = 0.01\nhigh = 1.0\npoints = 3\nsteps = 40\neval_every = 20")).unwrap();
    let out = s.horizon(&["sweep-lr", "study.toml", "--no-progress"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run with other settings") && err.contains("lr-sweep"), "{err}");

    // A changed fit criterion is refused too: the stored curves were cut short at the old one.
    std::fs::write(&s.spec, sweep_study("chg", "low = 0.01\nhigh = 1.0\npoints = 2\nsteps = 40\neval_every = 20\nfit = \"train/loss <= 0.001\"")).unwrap();
    let out = s.horizon(&["sweep-lr", "study.toml", "--no-progress"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run with other settings") && err.contains("stop_when"), "{err}");
}
