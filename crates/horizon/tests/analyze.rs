//! End-to-end tests of `horizon analyze`'s settings: the study file's `[analysis]` table.

mod util;

use serde_json::Value;
use util::*;

#[test]
fn the_study_files_analysis_table_sets_the_reading() {
    let s = TestStudy::new(StudyOptions { trials: 4, ..Default::default() });
    assert!(s.run(&[]).status.success());
    let analyze = |s: &TestStudy, target: &str| -> Value {
        let out = s.horizon(&["analyze", target, "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert!(analyze(&s, "study.toml")["config"]["chance_level"].is_null());
    // Added after the study ran: the identity is unchanged, the reading follows the file.
    let spec = std::fs::read_to_string(&s.spec).unwrap() + "\n[analysis]\nchance_level = 2.5\nmin_group = 2\n";
    std::fs::write(&s.spec, spec).unwrap();
    let a = analyze(&s, "study.toml");
    assert_eq!(a["config"]["chance_level"], 2.5);
    assert_eq!(a["config"]["min_group"], 2);
    assert_eq!(a["high_loss"]["start_level_source"], "chance_level", "{}", a["high_loss"]);
    // A bad setting is refused with its field, and nothing else runs.
    let spec = std::fs::read_to_string(&s.spec).unwrap().replace("min_group = 2", "min_group = 0");
    std::fs::write(&s.spec, spec).unwrap();
    let out = s.horizon(&["analyze", "study.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("analysis.min_group") && err.contains("fix:"), "{err}");
}
