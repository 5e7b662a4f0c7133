//! `horizon sweep-lr` on the real digits-mlp workload: the stages it runs, the invariants of
//! its report (checked against the stored curves, not against magic numbers), its cost,
//! determinism and resume; and the held values it refuses to guess.

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
        .map(|r| {
            (r[0].as_f64().unwrap(), r[1]["kind"].as_str().unwrap().to_string(), r[1]["steps"].as_u64(), r[1]["best"].as_f64())
        })
        .collect()
}

fn stage_db(s: &TestStudy, stage: &str) -> rusqlite::Connection {
    rusqlite::Connection::open(s.study_dir().join("lr-sweep").join(stage).join("horizon.db")).unwrap()
}

/// The sum over every stage of the sweep of the last step each trial reported: what the sweep
/// trained, read from the databases.
fn steps_trained(s: &TestStudy) -> u64 {
    let mut total = 0;
    for stage in std::fs::read_dir(s.study_dir().join("lr-sweep")).unwrap() {
        let db = rusqlite::Connection::open(stage.unwrap().path().join("horizon.db")).unwrap();
        let sum: i64 = db
            .query_row("SELECT COALESCE(SUM(last), 0) FROM (SELECT MAX(step) AS last FROM metrics GROUP BY trial_id)", [], |r| {
                r.get(0)
            })
            .unwrap();
        total += sum as u64;
    }
    total
}

/// What a report concluded: verdict, fastest rates, suggested budget.
fn answer(report: &Value) -> (Value, Value, Value) {
    (report["verdict"].clone(), report["fastest"].clone(), report["suggested_max_train_steps"].clone())
}

#[test]
fn the_sweep_runs_the_grid_against_the_cap_and_reports_the_fastest_interior_rate() {
    let s = TestStudy::new(StudyOptions { name: "sw", ..Default::default() });
    std::fs::write(&s.spec, sweep_study("sw", "low = 0.01\nhigh = 1.0\npoints = 5\nmax_steps = 6400\nset = { momentum = 0.9 }"))
        .unwrap();
    let report = sweep(&s);
    assert_eq!(report["schema"], "horizon.lr-sweep/2");
    // No separate run to find N: the grid ran against the cap.
    assert_eq!(report["budget"], serde_json::json!({"source": "cap", "steps": 6400}), "{report}");
    assert!(!s.study_dir().join("lr-sweep/find-steps").exists());
    let n = 6400;

    let rows = results(&report);
    assert!(rows.len() >= 4 && rows.windows(2).all(|w| w[0].0 < w[1].0), "ascending, unique: {rows:?}");
    let fits: Vec<u64> = rows.iter().filter_map(|r| r.2).collect();
    assert!(!fits.is_empty(), "{report}");
    let best = *fits.iter().min().unwrap();
    assert_eq!(report["suggested_max_train_steps"].as_u64(), Some(best));
    for (lr, kind, steps, _) in &rows {
        match kind.as_str() {
            "fit" => {
                assert!(steps.unwrap() <= n && steps.unwrap() % 20 == 0, "lr {lr}: fit at an evaluation within N: {steps:?}")
            }
            "slower" | "stalled" | "never" | "diverged" => {}
            other => panic!("lr {lr}: {other}"),
        }
    }
    let fastest: Vec<f64> = report["fastest"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let (lowest, highest) = (rows[0].0, rows[rows.len() - 1].0);
    match report["verdict"]["kind"].as_str().unwrap() {
        "found" => assert!(!fastest.contains(&lowest) && !fastest.contains(&highest), "interior: {fastest:?} of {rows:?}"),
        "edge_unresolved" => assert_eq!(report["extensions"].as_array().unwrap().len(), 2, "only after both extensions"),
        other => panic!("unexpected verdict {other}: {report}"),
    }
    // Every rate slower than the fastest is read up to the fastest fit of its stage and those
    // before it, whatever it trained: "slower than" that step.
    for r in report["results"].as_array().unwrap() {
        if r[1]["kind"] == "slower" {
            assert!(r[1]["than"].as_u64().unwrap() >= best, "{r}");
        }
    }
    // The cost is in the report, and it is what the databases hold.
    assert_eq!(report["trained_steps"].as_u64(), Some(steps_trained(&s)));

    // The grid ran with regularization off, momentum as set, a constant schedule, against the
    // cap, and every trial ended complete, stopped with its reason.
    let db = stage_db(&s, "grid-0");
    let mut stmt = db.prepare("SELECT id, params_json, max_train_steps, state, message FROM trials").unwrap();
    let trials: Vec<(i64, String, i64, String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(trials.len(), 5);
    for (id, params, steps, state, message) in &trials {
        let p: Value = serde_json::from_str(params).unwrap();
        assert_eq!(
            (p["weight_decay"].as_f64(), p["momentum"].as_f64(), p["hidden"].as_i64()),
            (Some(0.0), Some(0.9), Some(64)),
            "{p}"
        );
        assert_eq!(*steps as u64, n);
        let lr = p["learning_rate"].as_f64().unwrap();
        let last: i64 = db.query_row("SELECT MAX(step) FROM metrics WHERE trial_id = ?1", [id], |r| r.get(0)).unwrap();
        let message = message.clone().unwrap_or_default();
        if matches!(state.as_str(), "complete") && (last as u64) < n {
            assert!(message.starts_with(&format!("stopped at step {last} of {n}: ")), "lr {lr}: {message}");
        }
        if let Some((_, _, Some(fit), _)) = rows.iter().find(|r| r.0 == lr) {
            // Stopped once the fit was seen (the trainer may run on until the signal lands).
            assert!(last as u64 >= *fit, "lr {lr}: curve ends at {last}, before its fit at {fit}");
            let error_at_fit: f64 = db
                .query_row(
                    "SELECT value FROM metrics WHERE trial_id = ?1 AND name = 'train/error' AND step = ?2",
                    [*id, *fit as i64],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(error_at_fit, 0.0);
            let before: i64 = db
                .query_row(
                    "SELECT COUNT(*) FROM metrics WHERE trial_id = ?1 AND name = 'train/error' AND step < ?2 AND value <= 0",
                    [*id, *fit as i64],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(before, 0, "lr {lr}: {fit} is the first fit");
            assert!(message.contains(&format!("train/error <= 0 held at step {fit}")), "{message}");
        } else if state == "complete" && (last as u64) < n {
            // Stopped by the sweep's policy: complete (not incomplete, not failed), with why; or
            // it fit on its own, later than the fastest rate, before the policy's stop landed.
            let later_fit = message.split("held at step ").nth(1).and_then(|f| f.parse::<u64>().ok()).is_some_and(|f| f > best);
            assert!(message.contains("cannot be the fastest") || message.contains("stalled") || later_fit, "lr {lr}: {message}");
        }
    }
    assert_eq!(db.query_row("SELECT COUNT(*) FROM trials WHERE state = 'incomplete'", [], |r| r.get::<_, i64>(0)).unwrap(), 0);

    // Running it again resumes: nothing new runs, and the report is the same.
    let again = sweep(&s);
    assert_eq!(again["results"], report["results"]);
    assert_eq!(again["trained_steps"], report["trained_steps"]);
    let attempts: i64 = stage_db(&s, "grid-0").query_row("SELECT MAX(attempt) FROM trials", [], |r| r.get(0)).unwrap();
    assert_eq!(attempts, 1);

    // The same study in another directory gives the same results, although trials were stopped
    // at whatever step the policy's look happened to land: each is read up to the bound.
    let twin = TestStudy::new(StudyOptions { name: "sw", ..Default::default() });
    std::fs::copy(&s.spec, &twin.spec).unwrap();
    assert_eq!(sweep(&twin)["results"], report["results"]);
}

/// examples/digits.toml, copied beside a fresh study directory, with `extra` appended.
fn digits_example(extra: &str) -> TestStudy {
    let s = TestStudy::new(StudyOptions { name: "digits", ..Default::default() });
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/digits.toml")).unwrap();
    std::fs::write(&s.spec, format!("{text}\n{extra}")).unwrap();
    s
}

#[test]
fn the_digits_sweep_costs_at_most_ten_times_its_answer_and_gives_the_exhaustive_grids_answer() {
    let s = digits_example("");
    let report = sweep(&s);
    let suggested = report["suggested_max_train_steps"].as_u64().expect("the digits example fits");
    let trained = steps_trained(&s);
    assert!(trained <= 10 * suggested, "the sweep trained {trained} steps to find {suggested}: {report}");
    assert_eq!(report["trained_steps"].as_u64(), Some(trained));
    assert_eq!(report["verdict"]["kind"], "found", "{report}");
    // Momentum, searched over [0, 0.99], is held at digits-mlp's default, not at 0.495.
    let momentum: f64 = stage_db(&s, "grid-0")
        .query_row("SELECT DISTINCT json_extract(params_json, '$.momentum') FROM trials", [], |r| r.get(0))
        .unwrap();
    assert_eq!(momentum, 0.9);
    let held = report["held"].as_array().unwrap();
    assert!(held.contains(&serde_json::json!({"name": "momentum", "value": 0.9, "by": "default"})), "{held:?}");

    // The same grid with nothing stopped early, every rate trained to twice the answer: the
    // same answer.
    let exhaustive = digits_example(&format!("[lr_sweep]\nprune = false\nsteps = {}\n", 2 * suggested));
    let full = sweep(&exhaustive);
    assert_eq!(answer(&full), answer(&report), "pruned: {report}\nexhaustive: {full}");
    assert!(steps_trained(&exhaustive) > trained, "the exhaustive grid costs more");
}

#[test]
fn an_interrupted_sweep_resumed_gives_the_same_report() {
    let options = "low = 0.01\nhigh = 1.0\npoints = 5\nmax_steps = 6400\nset = { momentum = 0.9 }";
    let s = TestStudy::new(StudyOptions { name: "int", ..Default::default() });
    std::fs::write(&s.spec, sweep_study("int", options)).unwrap();
    let mut child = s
        .cmd(&["sweep-lr", "study.toml", "--json", "--no-progress", "-j", "2"])
        .stdout(std::fs::File::create(s.path().join("first.stdout")).unwrap())
        .stderr(std::fs::File::create(s.path().join("first.stderr")).unwrap())
        .spawn()
        .unwrap();
    // Stop it once a trial of the grid has finished while others still run.
    let db_path = s.study_dir().join("lr-sweep/grid-0/horizon.db");
    wait_for("a finished trial in grid-0", LONG, || {
        rusqlite::Connection::open_with_flags(&db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()
            .and_then(|db| db.query_row("SELECT COUNT(*) FROM trials WHERE state = 'complete'", [], |r| r.get::<_, i64>(0)).ok())
            .is_some_and(|n| n >= 1)
    });
    send_signal(&child, libc::SIGTERM);
    let code = child.wait().unwrap().code();
    assert!(matches!(code, Some(130) | Some(0)), "{code:?}: {}", s.output_of("first"));
    let resumed = sweep(&s);

    let twin = TestStudy::new(StudyOptions { name: "int", ..Default::default() });
    std::fs::copy(&s.spec, &twin.spec).unwrap();
    let straight = sweep(&twin);
    assert_eq!(resumed["results"], straight["results"], "interrupted (exit {code:?}) and resumed vs. run straight");
    assert_eq!(answer(&resumed), answer(&straight));
}

/// A study of the fixture trainer (the user's own program) for the sweep: `params` are extra
/// [params] tables.
fn own_trainer_study(s: &TestStudy, params: &str, sweep: &str) {
    let options = StudyOptions {
        name: "own",
        trials: 2,
        max_train_steps: 100,
        eval_every: 10,
        args: vec!["--schedule={schedule}".into()],
        extra: format!(
            "{params}\n[lr_sweep]\nparam = \"lr\"\nfit = \"train/loss <= 0.16\"\npoints = 2\nextensions = 0\n{sweep}\n"
        ),
        ..Default::default()
    };
    s.write_spec(&options);
}

#[test]
fn a_sweep_that_cannot_hold_the_rate_constant_is_refused_with_the_fix() {
    let s = TestStudy::new(StudyOptions { name: "own", ..Default::default() });
    own_trainer_study(&s, "[params.schedule]\ntype = \"fixed\"\nvalue = \"cosine\"", "");
    let out = s.horizon(&["sweep-lr", "study.toml", "--no-progress"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("params.schedule") && err.contains("constant learning rates"), "{err}");
    assert!(err.contains("fix: say which: add constant = VALUE to [params.schedule]"), "{err}");
    assert!(!s.study_dir().join("lr-sweep").exists(), "nothing ran");

    // Said in the study file: the sweep runs with it, and only the sweep.
    own_trainer_study(&s, "[params.schedule]\ntype = \"fixed\"\nvalue = \"cosine\"\nconstant = \"constant\"", "");
    let report = sweep(&s);
    assert!(
        report["held"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"name": "schedule", "value": "constant", "by": "constant"})),
        "{report}"
    );
    let db = stage_db(&s, "grid-0");
    let schedules: Vec<String> = db
        .prepare("SELECT json_extract(params_json, '$.schedule') FROM trials")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(schedules, vec!["constant", "constant"]);
    let argv = std::fs::read_to_string(s.study_dir().join("lr-sweep/grid-0/trials/00000/argv.json")).unwrap();
    assert!(argv.contains("--schedule=constant"), "{argv}");
    let run = s.run(&["--no-progress"]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        s.argv_record(0)["argv"].as_array().unwrap().contains(&Value::from("--schedule=cosine")),
        "the study itself keeps its schedule"
    );
}

#[test]
fn searched_parameters_without_a_value_are_refused_not_held_at_the_middle() {
    let s = TestStudy::new(StudyOptions { name: "own", ..Default::default() });
    let params = "[params.schedule]\ntype = \"fixed\"\nvalue = \"constant\"\n[params.momentum]\ntype = \"float\"\nlow = 0.0\nhigh = 0.99\n[params.act]\ntype = \"categorical\"\nchoices = [\"relu\", \"gelu\"]";
    own_trainer_study(&s, params, "");
    let out = s.horizon(&["sweep-lr", "study.toml", "--no-progress"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lr_sweep.set") && err.contains("momentum, act have none"), "{err}");
    assert!(
        err.contains("fix: give the value you would train with: [lr_sweep] set = { momentum = VALUE, act = VALUE }"),
        "{err}"
    );

    own_trainer_study(&s, params, "set = { momentum = 0.9, act = \"gelu\" }");
    let report = sweep(&s);
    let held = report["held"].as_array().unwrap();
    assert!(held.contains(&serde_json::json!({"name": "momentum", "value": 0.9, "by": "set"})), "{held:?}");
    assert!(held.contains(&serde_json::json!({"name": "act", "value": "gelu", "by": "set"})), "{held:?}");
}

#[test]
fn a_range_below_the_fastest_rate_is_extended_upwards() {
    // Every rate of this grid is small: the fastest is its top edge, so the sweep extends it.
    let s = TestStudy::new(StudyOptions { name: "edge", ..Default::default() });
    std::fs::write(
        &s.spec,
        sweep_study(
            "edge",
            "low = 0.003\nhigh = 0.012\npoints = 2\nsteps = 400\nextensions = 1\nextend_by = 1\nset = { momentum = 0.0 }",
        ),
    )
    .unwrap();
    let report = sweep(&s);
    let extensions = report["extensions"].as_array().unwrap();
    assert_eq!(extensions.len(), 1, "{report}");
    assert_eq!(extensions[0][0], "high");
    let added = extensions[0][1][0].as_f64().unwrap();
    assert!(added > 0.012 && (added / 0.012 - 4.0).abs() < 0.01, "same spacing as the grid: {added}");
    // The reason, from the evidence: 0.012 fit fastest, or nothing fit and it came closest.
    let rows = results(&report);
    let (low, high) = (&rows[0], &rows[1]);
    assert_eq!((low.0, high.0), (0.003, 0.012), "{rows:?}");
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
    std::fs::write(
        &s.spec,
        sweep_study("chg", "low = 0.01\nhigh = 1.0\npoints = 2\nsteps = 40\neval_every = 20\nfit = \"train/loss <= 0.001\""),
    )
    .unwrap();
    let out = s.horizon(&["sweep-lr", "study.toml", "--no-progress"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run with other settings") && err.contains("stop_when"), "{err}");
}
