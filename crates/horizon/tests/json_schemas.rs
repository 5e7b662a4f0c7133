//! Every `--json` output carries a versioned schema, and its keys are the ones docs/json.md
//! documents: a change to either side fails here.

mod util;

use std::collections::BTreeSet;

use serde_json::Value;
use util::*;

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The keys docs/json.md lists in the table under `heading` (every backquoted name in the first
/// column, up to the next heading).
fn documented(heading: &str) -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/json.md")).unwrap();
    let start = doc.find(heading).unwrap_or_else(|| panic!("docs/json.md has no {heading}"));
    let section = &doc[start + heading.len()..];
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    let mut out = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap();
        out.extend(first.split('`').skip(1).step_by(2).map(str::to_string));
    }
    out
}

/// The keys docs/json.md lists for each event of `horizon run --json`: per row of its table,
/// the event names (first column) and the backquoted keys of the second.
fn documented_events() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/json.md")).unwrap();
    let heading = "## `horizon run --json`";
    let section = &doc[doc.find(heading).expect("the events section") + heading.len()..];
    let mut out = std::collections::BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cols: Vec<&str> = line.split('|').collect();
        let names = cols[1].split('`').skip(1).step_by(2);
        // Keys are the backquoted words before any parenthesis's explanation.
        let keys: BTreeSet<String> = cols[2]
            .split(", ")
            .filter_map(|part| part.trim().strip_prefix('`').and_then(|p| p.split('`').next()))
            .map(str::to_string)
            .collect();
        for name in names {
            out.insert(name.to_string(), keys.clone());
        }
    }
    out
}

fn json(s: &TestStudy, args: &[&str]) -> Value {
    let out = s.horizon(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out)))
}

#[test]
fn every_json_output_has_its_schema_and_its_documented_keys() {
    let s = TestStudy::new(StudyOptions { trials: 2, max_train_steps: 30, ..Default::default() });
    assert!(s.run(&[]).status.success());

    let status = json(&s, &["status", "study.toml", "--json"]);
    assert_eq!(status["schema"], "horizon.status/1");
    assert_eq!(keys(&status), documented("## `horizon status --json`"));

    let out = s.horizon(&["trials", "study.toml", "--json"]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["schema"], "horizon.trial/1");
        assert_eq!(keys(line), documented("## `horizon trials --json`"));
        for rung in line["rungs"].as_array().unwrap() {
            assert_eq!(keys(rung), documented("### `rungs[]`"), "{rung}");
        }
    }

    let best = json(&s, &["best", "study.toml", "--json"]);
    assert_eq!(best["schema"], "horizon.best/1");
    let mut trial_keys = documented("## `horizon trials --json`");
    trial_keys.remove("rungs");
    let extra = documented("## `horizon best --json`");
    assert_eq!(keys(&best), trial_keys.union(&extra).cloned().collect::<BTreeSet<_>>());

    let detail = json(&s, &["trial", "study.toml", "0", "--json"]);
    assert_eq!(detail["schema"], "horizon.trial-detail/1");
    assert_eq!(keys(&detail), documented("## `horizon trial N --json`"));

    let analysis = json(&s, &["analyze", "study.toml", "--json"]);
    assert_eq!(analysis["schema"], "horizon.analysis/1");
    assert!(keys(&analysis).is_superset(&set(&["schema", "budget", "curves", "space", "trials"])));
}

#[test]
fn every_run_event_has_its_documented_keys() {
    let s = TestStudy::new(StudyOptions { trials: 2, max_train_steps: 30, ..Default::default() });
    let out = s.horizon(&["run", "study.toml", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let documented = documented_events();
    let mut seen = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["schema"], "horizon.event/1");
        let kind = event["event"].as_str().unwrap().to_string();
        let mut want = documented.get(&kind).unwrap_or_else(|| panic!("docs/json.md does not document event {kind}")).clone();
        want.extend(["schema".to_string(), "event".to_string()]);
        assert_eq!(keys(&event), want, "event {kind}");
        seen.insert(kind);
    }
    // (A fast trainer may end between two reads of its metrics and stream no `progress`; the
    // live-view test's gated trainer always does, and checks it.)
    for kind in ["started", "trial_started", "trial_finished", "finished"] {
        assert!(seen.contains(kind), "a run streams {kind}: {seen:?}");
    }
}
