//! End-to-end tests of `horizon import`: real files written to a temporary directory, the real
//! binary, and the stored study read back through `horizon trials`/`analyze --json`.

mod util;

use std::path::Path;

use serde_json::{Value, json};
use util::*;

/// A temporary directory to work in (the harness's study file is not used).
fn workspace() -> TestStudy {
    TestStudy::new(StudyOptions::default())
}

/// One evaluation every 100 steps to `budget`; the loss is lowest at `best` (a step).
fn curve(budget: u64, best: u64, floor: f64) -> Vec<(u64, f64)> {
    (1..=budget / 100).map(|k| k * 100).map(|s| (s, floor + ((s as f64 - best as f64) / 1000.0).powi(2))).collect()
}

/// The retrospective selection of a curve: the first step of its lowest (or highest) finite value.
fn best_step(curve: &[(u64, f64)], maximize: bool) -> Option<u64> {
    let finite = curve.iter().filter(|c| c.1.is_finite());
    let better = |a: f64, b: f64| if maximize { a > b } else { a < b };
    finite
        .fold(None, |best: Option<(u64, f64)>, &(s, v)| match best {
            Some((_, bv)) if !better(v, bv) => best,
            _ => Some((s, v)),
        })
        .map(|b| b.0)
}

/// A JSON Lines run; non-finite values are written as the strings JSON needs.
fn jsonl_run(name: &str, lr: f64, budget: u64, curve: &[(u64, f64)], extra: Value) -> String {
    let points: Vec<Value> = curve
        .iter()
        .map(|&(s, v)| {
            let v = if v.is_finite() { json!(v) } else { json!("nan") };
            json!({"step": s, "valid/loss": v, "train/loss": 2.0})
        })
        .collect();
    let mut run = json!({"name": name, "params": {"lr": lr, "optimizer": "sgd"}, "max_train_steps": budget, "curve": points});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        run[k] = v;
    }
    run.to_string()
}

/// Six runs: four complete with their best at different steps (two budgets), one diverged, one
/// failed without a curve. Returns the file's text and each run's curve.
fn six_runs() -> (String, Vec<Vec<(u64, f64)>>) {
    let mut curves = vec![curve(1000, 300, 0.5), curve(1000, 700, 0.4), curve(1000, 1000, 0.3), curve(2000, 1200, 0.2)];
    let mut diverged = curve(1000, 500, 0.6);
    diverged[6].1 = f64::NAN;
    diverged.truncate(7);
    curves.push(diverged);
    curves.push(Vec::new());
    let lines: Vec<String> = curves
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let budget = if i == 3 { 2000 } else { 1000 };
            let extra = match i {
                4 => json!({"state": "diverged", "message": "loss became NaN"}),
                5 => json!({"state": "failed", "message": "out of memory"}),
                _ => json!({}),
            };
            jsonl_run(&format!("run-{i}"), 0.01 * (i + 1) as f64, budget, c, extra)
        })
        .collect();
    (lines.join("\n") + "\n", curves)
}

fn trials_json(w: &TestStudy, dir: &str, name: Option<&str>) -> Vec<Value> {
    let mut args = vec!["trials", dir, "--json"];
    if let Some(n) = name {
        args.extend(["--name", n]);
    }
    let out = w.horizon(&args);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_jsonl_import_is_analyzed_with_the_best_steps_of_its_curves() {
    let w = workspace();
    let (text_, curves) = six_runs();
    write(&w.path().join("sweep.jsonl"), &text_);
    let out = w.horizon(&["import", "sweep.jsonl", "--into", "study", "--objective", "valid/loss"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported 6 runs from sweep.jsonl (jsonl) into study \"sweep\" as trials 0-5"), "{stdout}");
    assert!(stdout.contains("4 complete, 1 diverged, 1 failed"), "{stdout}");
    assert!(stdout.contains("1000 (5 runs), 2000 (1 run)"), "{stdout}");
    assert!(
        stdout.contains("1 run has no finite valid/loss evaluation (first: sweep.jsonl:6); analyze counts 1 as failed"),
        "the failed run without a curve is noted: {stdout}"
    );
    assert!(stdout.contains("next: horizon analyze study"), "{stdout}");
    assert!(w.path().join("study").join("horizon.db").is_file());

    let trials = trials_json(&w, "study", None);
    let states: Vec<&str> = trials.iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["complete", "complete", "complete", "complete", "diverged", "failed"]);
    assert_eq!(trials[3]["max_train_steps"], 2000);
    assert_eq!(trials[0]["params"], json!({"lr": 0.01, "optimizer": "sgd"}));
    assert_eq!(trials[4]["message"], "loss became NaN");
    assert!(trials.iter().all(|t| t["attempts"] == 1));
    // Each says where it came from.
    for (i, t) in trials.iter().enumerate() {
        let origin = t["imported"]["origin"].as_str().unwrap();
        assert!(origin.starts_with('/') && origin.ends_with(&format!("sweep.jsonl:{}", i + 1)), "{t}");
        assert_eq!(t["imported"]["source"], Value::Null);
    }

    let out = w.horizon(&["analyze", "study", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((a["objective"].as_str(), a["direction"].as_str()), (Some("valid/loss"), Some("minimize")), "{a}");
    let analyzed = a["trials"].as_array().unwrap();
    assert_eq!(analyzed.len(), 6);
    for (i, (t, c)) in analyzed.iter().zip(&curves).enumerate() {
        assert_eq!(t["number"], i as u64);
        assert_eq!(t["best_step"].as_u64(), best_step(c, false), "run {i}: {t}");
        assert_eq!(t["evaluations"], c.len(), "run {i}: every evaluation was stored");
    }
    assert_eq!(
        analyzed.iter().take(4).map(|t| t["best_step"].as_u64().unwrap()).collect::<Vec<_>>(),
        [300, 700, 1000, 1200],
        "the best steps the curves were built with"
    );

    // `status` shows the runs' own budgets, not a study budget they never had.
    let out = w.horizon(&["status", "study"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("each run its own (imported): 1000 to 2000 steps"), "{status}");
}

#[test]
fn a_csv_directory_is_detected_and_imported_to_maximize() {
    let w = workspace();
    let dir = w.path().join("csv-runs");
    write(
        &dir.join("runs.csv"),
        "name,max_train_steps,lr,batch_size,state\na,300,0.1,32,\nb,300,0.01,64,complete\nc,200,1.0,32,diverged\n",
    );
    let curves = [
        ("a", vec![(100, 0.5), (200, 0.8), (300, 0.7)]),
        ("b", vec![(100, 0.6), (200, 0.6), (300, 0.65)]),
        ("c", vec![(100, 0.2), (200, f64::NAN)]),
    ];
    for (name, c) in &curves {
        let rows: Vec<String> =
            c.iter().map(|(s, v)| format!("{s},{},1.5", if v.is_finite() { v.to_string() } else { "nan".into() })).collect();
        write(&dir.join(format!("{name}.csv")), &format!("step,valid/accuracy,train/loss\n{}\n", rows.join("\n")));
    }
    let out = w.horizon(&["import", "csv-runs", "--into", "study", "--objective", "valid/accuracy", "--direction", "maximize"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported 3 runs from csv-runs (csv) into study \"csv-runs\""), "{stdout}");

    let trials = trials_json(&w, "study", None);
    assert_eq!(trials.len(), 3);
    for (t, (name, c)) in trials.iter().zip(&curves) {
        assert_eq!(t["best_step"].as_u64(), best_step(c, true), "run {name}: {t}");
    }
    assert_eq!(trials[0]["params"], json!({"lr": 0.1, "batch_size": 32}));
    assert_eq!(trials[2]["state"], "diverged");
    let status = w.horizon(&["status", "study", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["objective"], json!({"metric": "valid/accuracy", "direction": "maximize"}));
    assert_eq!(status["study"], "csv-runs");
}

#[test]
fn a_bad_line_in_the_middle_imports_nothing() {
    let w = workspace();
    let (good, _) = six_runs();
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    // Line 3: an evaluation past the run's budget.
    lines[2] = jsonl_run("late", 0.1, 100, &[(100, 1.0), (200, 0.9)], json!({}));
    write(&w.path().join("bad.jsonl"), &lines.join("\n"));

    let out = w.horizon(&["import", "bad.jsonl", "--into", "study", "--objective", "valid/loss"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:3: curve[1].step: step 200 is beyond max_train_steps 100"), "{err}");
    assert!(err.contains("fix: raise max_train_steps"), "{err}");
    assert!(!w.path().join("study").join("horizon.db").exists(), "a refused import creates no database");

    // Into an existing study: its trials stay as they were.
    write(&w.path().join("good.jsonl"), &good);
    let ok = w.horizon(&["import", "good.jsonl", "--into", "study", "--name", "s", "--objective", "valid/loss"]);
    assert!(ok.status.success(), "{}", text(&ok));
    let before = trials_json(&w, "study", None);
    let out = w.horizon(&["import", "bad.jsonl", "--into", "study", "--name", "s", "--objective", "valid/loss"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.jsonl:3"));
    assert_eq!(trials_json(&w, "study", None), before);
    let db = rusqlite::Connection::open(w.path().join("study").join("horizon.db")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM trials"), 6);
    assert_eq!(count("SELECT COUNT(*) FROM studies"), 1);
}

#[test]
fn importing_the_same_source_twice_into_a_study_is_refused() {
    let w = workspace();
    let (runs, _) = six_runs();
    write(&w.path().join("runs.jsonl"), &runs);
    let import = |source: &str, extra: &[&str]| {
        let mut args = vec!["import", source, "--into", "study", "--objective", "valid/loss"];
        args.extend_from_slice(extra);
        w.horizon(&args)
    };
    assert!(import("runs.jsonl", &[]).status.success());

    // The same file, even spelled differently, is refused as a whole.
    std::fs::create_dir(w.path().join("sub")).unwrap();
    for spelling in ["runs.jsonl", "sub/../runs.jsonl"] {
        let out = import(spelling, &["--name", "runs"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let canonical = std::fs::canonicalize(w.path().join("runs.jsonl")).unwrap();
        let first = format!("{}:1", canonical.display());
        assert!(
            err.contains(&format!(
                "{first} is the same run (parameters, budget and curve) as {first}, already trial 0 of study \"runs\""
            )),
            "{err}"
        );
        assert!(err.contains("nothing was imported") && err.contains("fix:"), "{err}");
    }
    assert_eq!(trials_json(&w, "study", None).len(), 6, "nothing was duplicated");

    // An edited file (a line inserted before the old runs, a new run among them) is refused as a
    // whole, naming where the old run now is: the new run before it is not stored either.
    let new_run = jsonl_run("new", 0.7, 1000, &curve(1000, 600, 0.15), json!({}));
    let mut lines: Vec<String> = runs.lines().map(str::to_string).collect();
    lines.insert(0, new_run);
    lines.insert(0, String::new());
    write(&w.path().join("runs.jsonl"), &(lines.join("\n") + "\n"));
    let out = import("runs.jsonl", &["--name", "runs"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let canonical = std::fs::canonicalize(w.path().join("runs.jsonl")).unwrap();
    assert!(
        err.contains(&format!("{}:3 is the same run", canonical.display()))
            && err.contains(&format!("as {}:1, already trial 0", canonical.display())),
        "{err}"
    );
    assert_eq!(trials_json(&w, "study", None).len(), 6, "the new run was rolled back with the rest");
    write(&w.path().join("runs.jsonl"), &runs);

    // The same run twice in one file: refused, naming both lines.
    let renamed = lines[1].replacen("\"name\":\"new\"", "\"name\":\"new-copy\"", 1);
    assert_ne!(renamed, lines[1]);
    write(&w.path().join("twice.jsonl"), &format!("{}\n{renamed}\n", lines[1]));
    let out = import("twice.jsonl", &["--name", "twice"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("twice.jsonl:2 is the same run") && err.contains("twice.jsonl:1; importing both"), "{err}");
    let studies: i64 = rusqlite::Connection::open(w.path().join("study/horizon.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM studies WHERE name = 'twice'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(studies, 0, "a refused import into a new study leaves no empty study behind");

    // New runs in a new file are added after the others; the old file into another study is fine.
    write(&w.path().join("more.jsonl"), &(jsonl_run("extra", 0.5, 1000, &curve(1000, 400, 0.1), json!({})) + "\n"));
    let out = import("more.jsonl", &["--name", "runs"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("into study \"runs\" as trial 6"), "{}", text(&out));
    let out = import("runs.jsonl", &["--name", "copy"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("next: horizon analyze study --name copy"), "{}", text(&out));
    assert_eq!(trials_json(&w, "study", Some("runs")).len(), 7);
    assert_eq!(trials_json(&w, "study", Some("copy")).len(), 6);
}

#[test]
fn a_missing_objective_is_refused_with_the_metrics_that_exist() {
    let w = workspace();
    let (runs, _) = six_runs();
    write(&w.path().join("runs.jsonl"), &runs);
    let out = w.horizon(&["import", "runs.jsonl", "--into", "study", "--objective", "valid/error"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("none of its 6 runs has the objective metric \"valid/error\""), "{err}");
    assert!(err.contains("\"train/loss\", \"valid/loss\"") && err.contains("fix: pass one of them"), "{err}");
    assert!(!w.path().join("study").exists(), "nothing was created");
}

#[test]
fn an_existing_study_keeps_its_objective() {
    let w = workspace();
    let (runs, _) = six_runs();
    write(&w.path().join("runs.jsonl"), &runs);
    write(&w.path().join("more.jsonl"), &(jsonl_run("extra", 0.5, 1000, &curve(1000, 400, 0.1), json!({})) + "\n"));
    assert!(w.horizon(&["import", "runs.jsonl", "--into", "study", "--objective", "valid/loss"]).status.success());
    for wrong in [&["--objective", "train/loss"][..], &["--objective", "valid/loss", "--direction", "maximize"]] {
        let mut args = vec!["import", "more.jsonl", "--into", "study", "--name", "runs"];
        args.extend_from_slice(wrong);
        let out = w.horizon(&args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("judges its trials by valid/loss (minimize)"), "{err}");
        assert!(err.contains("--objective valid/loss --direction minimize"), "{err}");
    }
    // Without --direction the stored one is used.
    let out = w.horizon(&["import", "more.jsonl", "--into", "study", "--name", "runs", "--objective", "valid/loss"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(trials_json(&w, "study", None).len(), 7);
}

#[test]
fn the_format_is_given_when_the_name_does_not_tell() {
    let w = workspace();
    let (runs, _) = six_runs();
    write(&w.path().join("runs.txt"), &runs);
    let out = w.horizon(&["import", "runs.txt", "--into", "study", "--objective", "valid/loss"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fix: pass --format jsonl"), "{}", text(&out));
    let out = w.horizon(&["import", "runs.txt", "--into", "study", "--objective", "valid/loss", "--format", "jsonl"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(trials_json(&w, "study", Some("runs")).len(), 6);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_tensorboard_log_directory_is_detected_and_imported() {
    let w = workspace();
    // Real event files written by tensorboardX (horizon-import's fixtures: five runs).
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../horizon-import/tests/fixtures/tensorboard");
    copy_tree(&fixtures, &w.path().join("logs"));
    let out = w.horizon(&["import", "logs", "--into", "study", "--objective", "valid/loss"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported 5 runs from logs (tensorboard) into study \"logs\" as trials 0-4"), "{stdout}");
    let trials = trials_json(&w, "study", None);
    assert_eq!(trials.len(), 5);
    // Run `a`: valid/loss 2.5, 0.8, 0.55, 0.45 at steps 0..300 (its budget from params.json).
    assert_eq!((trials[0]["best_step"].as_u64(), trials[0]["max_train_steps"].as_u64()), (Some(300), Some(300)));
    assert_eq!(trials[0]["params"]["lr"], 0.1);
    // Importing the directory again is refused: its runs are already there.
    let again = w.horizon(&["import", "logs", "--into", "study", "--objective", "valid/loss"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is the same run (parameters, budget and curve)"),
        "{}",
        text(&again)
    );
}

#[test]
fn runs_imported_into_a_run_study_leave_its_sampling_alone() {
    let s = TestStudy::new(StudyOptions { trials: 2, ..Default::default() });
    assert!(s.run(&[]).status.success());
    let (runs, _) = six_runs();
    write(&s.path().join("runs.jsonl"), &runs);
    let dir = s.study_dir().display().to_string();
    let out = s.horizon(&["import", "runs.jsonl", "--into", &dir, "--name", "test", "--objective", "valid/loss"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("as trials 2-7"), "{}", text(&out));
    // `status` counts them on top of the study's own: 2 sampled of 2 planned, plus 6 imported.
    let status = s.horizon(&["status", "--json", &dir]);
    assert!(status.status.success(), "{}", text(&status));
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!((doc["trials"].as_u64(), doc["planned_trials"].as_u64()), (Some(8), Some(8)), "{doc}");

    // Two more sampled trials: the imported ones neither count against `trials` nor take an index.
    s.write_spec(&StudyOptions { trials: 4, ..Default::default() });
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let db = s.db();
    let mut stmt = db.prepare("SELECT number, sample_index FROM trials ORDER BY number").unwrap();
    let rows: Vec<(u64, Option<u64>)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let expected: Vec<(u64, Option<u64>)> =
        [(0, Some(0)), (1, Some(1))].into_iter().chain((2..8).map(|n| (n, None))).chain([(8, Some(2)), (9, Some(3))]).collect();
    assert_eq!(rows, expected);
    assert_eq!(s.trials().iter().filter(|t| t["state"] == "complete").count(), 8);
    let imported: Vec<bool> = trials_json(&s, &dir, None).iter().map(|t| !t["imported"].is_null()).collect();
    assert_eq!(imported, [false, false, true, true, true, true, true, true, false, false]);
}

#[test]
fn the_import_summary_counts_runs_without_an_objective_as_analyze_does() {
    let w = workspace();
    let run = |name: &str, curve: Value| {
        json!({"name": name, "params": {"lr": 0.1}, "max_train_steps": 100, "curve": curve}).to_string()
    };
    let lines = [
        run("ok", json!([{"step": 100, "valid/loss": 0.5}])),
        run("ok2", json!([{"step": 100, "valid/loss": 0.4}])),
        // No objective at all, and a NaN training loss: analyze calls it diverged.
        run("nan-train", json!([{"step": 50, "train/loss": "nan"}])),
        // No objective, finite training loss: no_objective.
        run("no-valid", json!([{"step": 50, "train/loss": 1.0}])),
        // The objective only as NaN: diverged.
        run("nan-valid", json!([{"step": 50, "valid/loss": "nan"}])),
    ];
    write(&w.path().join("runs.jsonl"), &(lines.join("\n") + "\n"));
    let out = w.horizon(&["import", "runs.jsonl", "--into", "study", "--objective", "valid/loss"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported 5 runs from"), "{stdout}");
    assert!(
        stdout.contains("3 runs have no finite valid/loss evaluation")
            && stdout.contains("analyze counts 2 as diverged, 1 as no_objective"),
        "{stdout}"
    );
    let a: Value = serde_json::from_slice(&w.horizon(&["analyze", "study", "--json"]).stdout).unwrap();
    assert_eq!((a["counts"]["diverged"].as_u64(), a["counts"]["no_objective"].as_u64()), (Some(2), Some(1)), "{}", a["counts"]);

    // One run: singular words.
    write(&w.path().join("one.jsonl"), &(run("one", json!([{"step": 100, "valid/loss": 0.5}])) + "\n"));
    let out = w.horizon(&["import", "one.jsonl", "--into", "one", "--objective", "valid/loss"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported 1 run from") && stdout.contains("100 (1 run)"), "{stdout}");
    let out = w.horizon(&["analyze", "one"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Analysis of 1 trial:") && stdout.contains("only 1 trial (needs 3)"), "{stdout}");
    assert!(!stdout.contains("1 trials"), "{stdout}");
}

#[test]
fn imported_runs_take_their_true_space_and_analysis_settings_at_import_or_after() {
    let w = workspace();
    // 30 runs with dropout drawn uniformly on [0, 0.3], the best near 0.26.
    let lines: Vec<String> = (0..30)
        .map(|i| {
            let d = 0.3 * ((0.5 + i as f64 * 0.618_033_988_749_895) % 1.0);
            let floor = 0.3 + (d - 0.26).abs();
            let curve: Vec<Value> = (1..=10).map(|k| json!({"step": k * 10, "valid/loss": floor + 1.0 / k as f64})).collect();
            json!({"name": format!("r{i}"), "params": {"dropout": d}, "max_train_steps": 100, "curve": curve}).to_string()
        })
        .collect();
    write(&w.path().join("runs.jsonl"), &(lines.join("\n") + "\n"));
    let space = "[params.dropout]\ntype = \"float\"\nlow = 0.0\nhigh = 0.3\n\n[analysis]\nchance_level = 2.0\n";
    write(&w.path().join("space.toml"), space);
    let analyze = |dir: &str| -> Value { serde_json::from_slice(&w.horizon(&["analyze", dir, "--json"]).stdout).unwrap() };

    // At import.
    let out = w.horizon(&["import", "runs.jsonl", "--into", "a", "--objective", "valid/loss", "--space", "space.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("space    1 parameter (dropout) from space.toml"), "{}", text(&out));
    let a = analyze("a");
    let p = &a["space"]["parameters"][0];
    assert_eq!((p["range_source"].as_str(), p["low"].as_f64(), p["high"].as_f64()), (Some("space"), Some(0.0), Some(0.3)), "{p}");
    assert_eq!(a["config"]["chance_level"], 2.0, "the space file's [analysis] is used");

    // Without it, inferred and marked so; then fixed after the import.
    assert!(w.horizon(&["import", "runs.jsonl", "--into", "b", "--objective", "valid/loss"]).status.success());
    assert_eq!(analyze("b")["space"]["parameters"][0]["range_source"], "observed");
    let out = w.horizon(&["import", "--into", "b", "--space", "space.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("space set to 1 parameter (dropout)"), "{}", text(&out));
    assert_eq!(analyze("b")["space"], a["space"], "the same reading as when given at import");

    // A space that does not hold the runs' values is refused, naming the run and the fix.
    write(&w.path().join("narrow.toml"), "[params.dropout]\ntype = \"float\"\nlow = 0.0\nhigh = 0.1\n");
    let out = w.horizon(&["import", "--into", "b", "--space", "narrow.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runs.jsonl:")
            && err.contains("is outside the space in narrow.toml")
            && err.contains("fix: widen params.dropout"),
        "{err}"
    );
    assert_eq!(analyze("b")["space"], a["space"], "nothing was changed");
    // A space file with the errors of a study file.
    write(&w.path().join("bad.toml"), "[params.dropout]\ntype = \"float\"\nlow = 0.5\nhigh = 0.1\n");
    let out = w.horizon(&["import", "--into", "b", "--space", "bad.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("bad.toml: params.dropout.low"), "{err}");
    // Neither a source nor a space: a usage error.
    let out = w.horizon(&["import", "--into", "b"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn best_of_an_imported_study_shows_where_the_run_came_from_and_trials_marks_cut_notes() {
    let w = workspace();
    let long = "training loss became NaN after 43 of 87 epochs, as the source's nan_train_loss flag says";
    let lines = [
        json!({"name": "a", "params": {"lr": 0.1}, "max_train_steps": 100, "curve": [{"step": 100, "valid/loss": 0.5}], "source": "lab notebook 7"}).to_string(),
        json!({"name": "b", "params": {"lr": 0.2}, "max_train_steps": 100, "curve": [{"step": 50, "valid/loss": "nan"}], "state": "diverged", "message": long}).to_string(),
    ];
    write(&w.path().join("runs.jsonl"), &(lines.join("\n") + "\n"));
    assert!(w.horizon(&["import", "runs.jsonl", "--into", "s", "--objective", "valid/loss"]).status.success());
    let out = w.horizon(&["best", "s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("imported from: ") && stdout.contains("runs.jsonl:1") && stdout.contains("source: lab notebook 7"),
        "{stdout}"
    );
    assert!(!stdout.contains("trial directory"), "an imported run has no trial directory: {stdout}");
    let doc: Value = serde_json::from_slice(&w.horizon(&["best", "s", "--json"]).stdout).unwrap();
    assert!(doc["trial_dir"].is_null(), "{doc}");
    assert!(doc["imported"]["origin"].as_str().unwrap().ends_with("runs.jsonl:1"), "{doc}");
    assert_eq!(doc["imported"]["source"], "lab notebook 7");
    let out = w.horizon(&["trials", "s"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.contains("diverged")).unwrap();
    assert!(row.trim_end().ends_with('…'), "a cut note is marked: {row}");
    assert!(row.contains("after 43 of 87"), "not cut inside a number: {row}");
}
