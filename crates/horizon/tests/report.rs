//! `horizon report`: a real study's report is written, parses in a real browser (headless
//! Chromium) with every section the study has data for and no console error, and its
//! screenshot is kept as a test artifact (`target/tmp/report-*.png`).

mod util;

use std::path::Path;
use std::process::Command;

use util::*;

/// Headless Chromium with the flags a test machine needs, a fresh profile, and console
/// messages on stderr.
fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs (Debian package `chromium`; .ci/run installs it)");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Console errors and uncaught exceptions in Chromium's log.
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect()
}

#[test]
fn a_studys_report_renders_in_chromium_with_its_sections_and_no_console_error() {
    let s = TestStudy::new(StudyOptions { trials: 6, max_train_steps: 100, ..Default::default() });
    assert!(s.run(&[]).status.success());
    let out = s.horizon(&["report", "study.toml", "-o", "report.html"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("wrote report.html"), "{}", text(&out));
    let path = s.path().join("report.html");
    let html = std::fs::read_to_string(&path).unwrap();
    // Self-contained: nothing fetched, no script.
    for outside in ["http://", "https://", "<script", "<link", "@import", "url("] {
        let allowed = |i: usize| html[i..].starts_with("http://www.w3.org/2000/svg") || html[i..].starts_with("url(#");
        assert!(html.match_indices(outside).all(|(i, _)| allowed(i)), "the report refers outside itself: {outside}");
    }
    // Sections without data are left out: no sweep, no ladder here.
    assert!(!html.contains("id=\"sweep\"") && !html.contains("id=\"stages\""));

    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", path.display());
    let dom = chromium(profile.path(), &["--dump-dom", &url]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    for id in ["card", "budget", "curves", "axes"] {
        assert!(dom_text.contains(&format!("<section id=\"{id}\">")), "the parsed report has no {id} section");
    }
    assert!(dom_text.matches("<svg class=\"plot\"").count() >= 4, "plots are drawn");
    assert!(dom_text.contains("lr (log scale)"), "the log-scaled parameter is plotted on a log axis");
    let errors = console_errors(std::str::from_utf8(&dom.stderr).unwrap_or(""));
    assert!(errors.is_empty(), "console errors: {errors:?}");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-fixture-study.png");
    let _ = std::fs::remove_file(&shot);
    let render = chromium(profile.path(), &["--window-size=1200,3000", &format!("--screenshot={}", shot.display()), &url]);
    let errors = console_errors(std::str::from_utf8(&render.stderr).unwrap_or(""));
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 20_000, "a screenshot of a drawn page, not a blank one ({} bytes)", png.len());
}

#[test]
fn a_hostile_parameter_value_is_shown_as_text_never_as_markup() {
    let extra = "[params.note]\ntype = \"fixed\"\nvalue = \"<script>alert(1)</script><img src=x onerror=alert(2)>\"\n";
    let s = TestStudy::new(StudyOptions { trials: 3, max_train_steps: 50, extra: extra.into(), ..Default::default() });
    assert!(s.run(&[]).status.success());
    let out = s.horizon(&["report", "study.toml", "-o", "r.html"]);
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(s.path().join("r.html")).unwrap();
    assert!(!html.contains("<script") && !html.contains("<img"), "markup from a parameter reached the page");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the value is shown, escaped");
}

#[test]
fn a_report_that_cannot_be_written_says_where_and_leaves_nothing_behind() {
    let s = TestStudy::new(StudyOptions { trials: 2, max_train_steps: 30, ..Default::default() });
    assert!(s.run(&[]).status.success());
    let out = s.horizon(&["report", "study.toml", "-o", "no/such/dir/r.html"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("writing no/such/dir/r.html"), "{}", text(&out));
    // The default is report.html in the study directory.
    let out = s.horizon(&["report", "study.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(s.study_dir().join("report.html").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(s.study_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

/// A digits-mlp study on a small ladder that also ran its learning-rate sweep.
const LADDER_AND_SWEEP: &str = r#"
[study]
name = "both"
trials = 4
max_train_steps = 160
eval_every = 20
seed = 1

[objective]
metric = "valid/error"
direction = "minimize"

[trainer]
workload = "digits-mlp"

[params.learning_rate]
type = "float"
low = 0.01
high = 1.0
scale = "log"

[params.momentum]
type = "fixed"
value = 0.9

[params.hidden]
type = "fixed"
value = 32

[params.schedule]
type = "fixed"
value = "wsd"

[params.decay_steps]
type = "fixed"
value = 20

[ladder]
min_steps = 40
eta = 2

[lr_sweep]
low = 0.03
high = 1.0
points = 3
max_steps = 400
"#;

#[test]
fn the_report_of_a_ladder_with_its_sweep_has_both_sections_with_their_numbers() {
    let s = TestStudy::new(StudyOptions::default());
    std::fs::write(&s.spec, LADDER_AND_SWEEP).unwrap();
    let sweep = s.horizon(&["sweep-lr", "study.toml", "--json", "--no-progress", "-j", "2"]);
    assert!(sweep.status.success(), "{}", text(&sweep));
    let sweep: serde_json::Value = serde_json::from_slice(&sweep.stdout).unwrap();
    assert!(s.run(&["--jobs", "2"]).status.success());
    let out = s.horizon(&["report", "study.toml", "-o", "report.html"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("learning-rate sweep, ladder"), "{}", text(&out));
    let html = std::fs::read_to_string(s.path().join("report.html")).unwrap();
    assert!(html.contains("<section id=\"sweep\">") && html.contains("<section id=\"stages\">"));
    // The sweep's answer and each rung's budget, as the sweep and the ladder report give them.
    match (sweep["verdict"]["kind"].as_str(), sweep["suggested_max_train_steps"].as_u64()) {
        (Some("found"), Some(n)) => assert!(html.contains(&format!("initial max_train_steps {n}")), "the sweep's answer"),
        (Some("nothing_fit"), _) => assert!(html.contains("no learning rate fit the training set"), "the sweep's answer"),
        (kind, _) => assert!(html.contains("still at the"), "the sweep's answer ({kind:?})"),
    }
    for budget in [40, 80, 160] {
        assert!(html.contains(&format!("({budget} steps)")), "rung at {budget} steps drawn");
    }
    assert!(
        html.contains("The best trial&#39;s schedule at each budget")
            || html.contains("The best trial's schedule at each budget")
    );

    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", s.path().join("report.html").display());
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-ladder-and-sweep.png");
    let render = chromium(profile.path(), &["--window-size=1200,4000", &format!("--screenshot={}", shot.display()), &url]);
    let errors = console_errors(std::str::from_utf8(&render.stderr).unwrap_or(""));
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 20_000);
}
