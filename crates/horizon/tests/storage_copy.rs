//! `horizon storage copy`: a study started on a laptop (SQLite) moves to PostgreSQL, goes on
//! there, and moves back, whole; its study directory follows it.

mod util;

use horizon_store::{Access, StorageUrl};
use util::*;

fn trials(url: &str) -> Vec<(u64, String, Option<u64>)> {
    let s = horizon_store::open(&StorageUrl::parse(url).unwrap(), Access::ReadOnly).unwrap();
    let st = s.study("moving").unwrap().unwrap();
    s.trials(st.id).unwrap().into_iter().map(|t| (t.number, t.state.as_str().to_string(), t.best_step)).collect()
}

#[test]
fn a_study_moves_from_sqlite_to_postgres_goes_on_there_and_moves_back() {
    let options = StudyOptions { name: "moving", trials: 2, ..StudyOptions::default() };
    let s = TestStudy::new(options);
    assert!(s.run(&["--no-progress"]).status.success());
    let local = s.study_dir().join("horizon.db");
    let local_url = local.display().to_string();
    let before = trials(&local_url);
    assert_eq!(before.len(), 2);

    // To PostgreSQL: every row, and the study directory now belongs there.
    let db = horizon_store::testing::scratch_database();
    let out = s.horizon(&["storage", "copy", "study.toml", &db.url]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("copied study \"moving\": 2 trials") && shown.contains("now belongs to"), "{shown}");
    assert_eq!(trials(&db.url), before);
    let refused = s.run(&["--no-progress"]);
    assert!(!refused.status.success(), "the local copy is no longer the study's home");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("belongs to the database"), "{}", text(&refused));

    // It goes on there: two more trials, numbered after the first two.
    s.write_spec(&StudyOptions { name: "moving", trials: 4, ..StudyOptions::default() });
    let out = s.run(&["--no-progress", "--storage", &db.url]);
    assert!(out.status.success(), "{}", text(&out));
    let there = trials(&db.url);
    assert_eq!(there.len(), 4);
    assert_eq!(&there[..2], &before[..], "the copied trials are as they were");
    assert!(there.iter().all(|t| t.1 == "complete"), "{there:?}");

    // Copying back onto the laptop's older copy needs --replace, then it is the study's home again.
    let out = s.horizon(&["storage", "copy", &db.url, &local_url]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--replace"), "{}", text(&out));
    let out = s.horizon(&["storage", "copy", &db.url, &local_url, "--replace"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(trials(&local_url), there);
    assert!(!s.study_dir().join("storage.url").exists(), "the default database needs no marker");
    let out = s.run(&["--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(trials(&local_url), there, "nothing left to run");

    // And to the cluster again, replacing the copy left there.
    let out = s.horizon(&["storage", "copy", "study.toml", &db.url, "--replace"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(trials(&db.url), there);
}
