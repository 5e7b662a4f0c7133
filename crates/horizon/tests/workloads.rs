//! Built-in workloads through the real binary: `horizon run` launches `horizon workload run`
//! as a trial process, exactly like a user's trainer.

mod util;

use util::*;

fn workload_study(name: &str, trials: u64, steps: u64, every: u64) -> String {
    format!(
        r#"
[study]
name = "{name}"
trials = {trials}
max_train_steps = {steps}
eval_every = {every}
seed = 7

[objective]
metric = "valid/loss"
direction = "minimize"

[trainer]
workload = "digits-mlp"
kill_grace = "30s"

[checkpoints]
every = {every}

[params.learning_rate]
type = "float"
low = 0.01
high = 0.5
scale = "log"
"#
    )
}

fn write_study(s: &TestStudy, text: &str) {
    std::fs::write(&s.spec, text).unwrap();
}

#[test]
fn a_workload_study_reports_every_catalog_metric_and_selects_checkpoints() {
    let s = TestStudy::new(StudyOptions { name: "w", ..Default::default() });
    write_study(&s, &workload_study("w", 3, 200, 50));
    let out = s.run(&["-j", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(trials.len(), 3);
    let info = horizon_core::workloads::workload("digits-mlp").unwrap();
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        let n = t["number"].as_u64().unwrap();
        for metric in info.metrics {
            let evaluations = s.count(&format!(
                "SELECT COUNT(*) FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.number = {n} AND m.name = '{metric}' AND m.value IS NOT NULL"
            ));
            assert_eq!(evaluations, 4, "{metric} at steps 50, 100, 150, 200 of trial {n}");
        }
        // Checkpoints were announced at every evaluation; retention kept the best and the latest.
        let best = t["best_step"].as_u64().unwrap();
        let mut kept: Vec<String> = std::fs::read_dir(s.trial_dir(n))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f.starts_with("ckpt-"))
            .collect();
        kept.sort();
        let mut expected = vec![format!("ckpt-{best}"), "ckpt-200".to_string()];
        expected.sort();
        expected.dedup();
        assert_eq!(kept, expected, "trial {n}");
    }
}

#[test]
fn the_same_seed_gives_the_same_curves_in_separate_processes() {
    let curves = |s: &TestStudy| -> Vec<(i64, i64, String, Option<f64>)> {
        let db = s.db();
        let mut stmt = db
            .prepare(
                "SELECT t.number, m.step, m.name, m.value FROM metrics m JOIN trials t ON t.id = m.trial_id ORDER BY 1, 2, 3",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
    };
    let a = TestStudy::new(StudyOptions { name: "d", ..Default::default() });
    let b = TestStudy::new(StudyOptions { name: "d", ..Default::default() });
    for s in [&a, &b] {
        write_study(s, &workload_study("d", 2, 100, 50));
        assert!(s.run(&["-j", "2"]).status.success());
    }
    let (ca, cb) = (curves(&a), curves(&b));
    assert!(!ca.is_empty());
    assert_eq!(ca, cb, "bit-for-bit identical metrics");
}

#[test]
fn stopping_a_workload_trial_writes_its_checkpoint_first() {
    let s = TestStudy::new(StudyOptions { name: "stop", ..Default::default() });
    // A long budget, so the trial is surely running when it is stopped.
    write_study(&s, &workload_study("stop", 1, 1_000_000, 50));
    let mut child = s.spawn_run(&[], "first");
    let metrics_file = s.trial_dir(0).join("attempt-1.metrics.jsonl");
    wait_for("the first evaluations", LONG, || {
        std::fs::read_to_string(&metrics_file).is_ok_and(|t| t.contains("\"checkpoint\""))
    });
    send_signal(&child, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(130), "{}", s.output_of("first"));
    assert_eq!(s.count("SELECT COUNT(*) FROM trials WHERE state = 'waiting'"), 1, "interrupted, to run again");
    let exit: Option<i64> = s.db().query_row("SELECT exit_code FROM attempts", [], |r| r.get(0)).unwrap();
    assert_eq!(exit, Some(143), "the workload stopped itself after SIGTERM: {}", s.output_of("first"));
    // The last announced checkpoint is the one written on SIGTERM, and it exists.
    let text = std::fs::read_to_string(&metrics_file).unwrap();
    let announced: Vec<serde_json::Value> =
        text.lines().filter(|l| l.contains("\"checkpoint\"")).map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = announced.last().unwrap();
    let latest_step = announced.iter().map(|v| v["step"].as_u64().unwrap()).max().unwrap();
    assert_eq!(last["step"].as_u64().unwrap(), latest_step, "the stop checkpoint is the latest");
    let path = s.trial_dir(0).join(last["path"].as_str().unwrap());
    assert!(path.exists(), "kept by retention as the latest: {}", path.display());
}

/// `horizon analyze` on a real digits-mlp study: the verdict follows the documented rule from
/// the stored best steps (recomputed here from `horizon trials`), and every number it reports
/// about a trial is that trial's.
#[test]
fn analyze_on_a_real_workload_study_follows_its_documented_rule() {
    let s = TestStudy::new(StudyOptions { name: "an", ..Default::default() });
    let spec = workload_study("an", 8, 1500, 50).replace("[checkpoints]\nevery = 50\n", "");
    write_study(&s, &spec);
    assert!(s.run(&["-j", "2", "--no-progress"]).status.success());
    let out = s.horizon(&["analyze", "study.toml", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stored = s.trials();
    let analyzed = a["trials"].as_array().unwrap();
    assert_eq!(analyzed.len(), 8);
    for (x, y) in analyzed.iter().zip(&stored) {
        assert_eq!(x["best_step"], y["best_step"]);
        let fraction = y["best_step"].as_f64().unwrap() / 1500.0;
        assert!((x["best_fraction"].as_f64().unwrap() - fraction).abs() < 1e-9);
    }
    // The rule of docs/analysis.md with its defaults, on the feasible group.
    let group = &a["budget"]["feasible"];
    let numbers: Vec<u64> = group["trial_numbers"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
    let fractions: Vec<f64> = stored
        .iter()
        .filter(|t| numbers.contains(&t["number"].as_u64().unwrap()))
        .map(|t| t["best_step"].as_f64().unwrap() / 1500.0)
        .collect();
    let share = |f: &dyn Fn(f64) -> bool| fractions.iter().filter(|x| f(**x)).count() as f64 / fractions.len() as f64;
    let (early, late) = (share(&|x| x <= 0.10), share(&|x| x >= 0.75));
    let expected = if fractions.len() < 3 {
        "insufficient_evidence"
    } else if early >= 0.90 {
        "too_high"
    } else if late >= 0.75 {
        "too_low"
    } else {
        "adequate"
    };
    assert_eq!(group["verdict"], expected, "early {early}, late {late}: {group}");
    assert!((group["early_share"].as_f64().unwrap() - early).abs() < 1e-9);
    assert!((group["late_share"].as_f64().unwrap() - late).abs() < 1e-9);
    assert!(group["suggested_max_train_steps"].as_u64().is_some_and(|n| n > 0), "{group}");
}
