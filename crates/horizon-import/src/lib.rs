//! Runs made without horizon, read into what storage imports: JSON Lines, a directory of CSV
//! files, and TensorBoard event files (formats in `docs/analysis.md`, section 7).
//!
//! The parsers only read: nothing is written anywhere, and storing the runs (one transaction) is
//! the caller's business (`horizon import`). On the first problem they return an
//! [`ImportError`] and nothing else, naming the file, the line, the field and the fix, so an
//! import is all or nothing.
//!
//! - [`parse_jsonl`], [`parse_csv_dir`], [`parse_tensorboard_dir`]: a source in, `Vec<Run>` out.
//! - [`Run::for_study`]: a run as storage imports it into a study with a given objective.
//! - [`study_from_runs`]: runs as a [`horizon_analysis::StudyData`], analyzed without a database.
//! - [`event_runs`] and [`csv_files`]: the two directory listings, which the parsers use and by
//!   which `horizon import` tells a source's format.
//!
//! # One shape of an imported run
//!
//! A [`Run`] is the store's [`ImportedTrial`] (parameters, budget, state, message, every
//! evaluation, run key, origin, source) plus the run's name in its source, which nothing stores.
//! There is no second struct with the same fields to keep in step: a parser fills the trial once,
//! its run key included, and [`Run::for_study`] fills in the three things a parser cannot know —
//! the selection over the study's objective, the time of the import, and the origin's file made
//! absolute — so that the trial storage receives and the runs the import summary describes are
//! the same values. (The other way round, a name in `ImportedTrial` that storage ignores, or an
//! `ImportedRun` beside it, would put import-only fields in the store's interface or a second
//! copy of its fields here.)
//!
//! # One conversion of parameter values
//!
//! Every parameter value, whatever the format, goes through [`params::value`]: a JSON number or
//! string, a CSV cell, a YAML scalar and a `key=value` directory name give the same
//! `ParamValue` for the same scalar (`0.1` a float, `128` an integer, `true` a boolean, `sgd`
//! text). Nested objects and mappings, in JSON and YAML alike, become dotted names
//! (`optimizer: {lr: 0.1}` is the parameter `optimizer.lr`); a list of scalars becomes one text
//! parameter (its values as a compact JSON list, `[0.9,0.999]`); anything else is refused with
//! the file, the key and a fix. The rules are in [`params`].
//!
//! # Why `saphyr-parser` for YAML
//!
//! `serde_yaml` is deprecated and archived; `serde_yml`, its fork, is archived too and under a
//! RustSec advisory (RUSTSEC-2025-0068, unsound); `yaml-rust2` receives only basic maintenance,
//! its authors developing `saphyr` instead. `saphyr-parser` is that project's YAML 1.2 event parser alone (pure Rust, passes the
//! YAML test suite, depends only on `arraydeque` and `thiserror`). Its events are what flattening
//! needs and a loaded tree would hide: every key's line (for errors), each scalar's style (a
//! quoted `'0.1'` is text, a plain `0.1` a number, by the one conversion above), tags (PyYAML's
//! `!!python/object` is refused, not misread) and aliases.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("runs.jsonl");
//! std::fs::write(&path, r#"{"params": {"optimizer": {"lr": 0.1}}, "max_train_steps": 100, "curve": [{"step": 100, "valid/loss": 0.5}]}"#).unwrap();
//! let runs = horizon_import::parse_jsonl(&path).unwrap();
//! assert_eq!(runs[0].trial.params.get("optimizer.lr"), Some(&horizon_core::ParamValue::Float(0.1)));
//! let trial = runs[0].for_study("valid/loss", horizon_core::Direction::Minimize, 0.0);
//! assert_eq!(trial.selection.unwrap().best_step, 100);
//! ```

mod csv_dir;
mod curve;
mod jsonl;
pub mod params;
mod tensorboard;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

use horizon_analysis::{StudyData, TrialData};
use horizon_core::selection::{Selection, select};
use horizon_core::{Direction, MetricPoint, ParamValue, Params, TrialRecord, TrialState};

pub use csv_dir::{csv_files, parse_csv_dir};
pub use horizon_store::ImportedTrial;
pub use jsonl::parse_jsonl;
pub use tensorboard::{EVENT_PREFIX, EventRun, event_runs, parse_tensorboard_dir};

/// One run read from a source: what storage imports, and the run's name.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The run's name in its source: JSON Lines' optional `name`, the CSV index's `name`, a
    /// TensorBoard run's directory. Unique within the source; not stored (the origin is).
    pub name: Option<String>,
    /// The run as storage imports it. As read, `origin` is `file:line` (for TensorBoard, the
    /// run's first event file) with the path as it was given, `selection` is `None` and `at` is
    /// 0: the study's objective and the time of the import are not the file's. [`Run::for_study`]
    /// sets the three.
    pub trial: ImportedTrial,
}

impl Run {
    /// The trial to import into a study judged by `objective` in `direction`, at `at` (seconds
    /// since the Unix epoch): the retrospective selection over the objective's evaluations, and
    /// the origin's file made absolute, so that the same run reads the same from any working
    /// directory.
    pub fn for_study(&self, objective: &str, direction: Direction, at: f64) -> ImportedTrial {
        ImportedTrial {
            selection: self.selection(objective, direction),
            origin: absolute_origin(&self.trial.origin),
            at,
            ..self.trial.clone()
        }
    }

    /// Retrospective selection over the objective's evaluations, if any value was finite.
    pub fn selection(&self, objective: &str, direction: Direction) -> Option<Selection> {
        let evals: Vec<(u64, f64)> =
            self.trial.metrics.iter().filter(|m| m.name == objective).map(|m| (m.step, m.value)).collect();
        select(&evals, direction)
    }
}

/// A trial as a parser reads it: the run key computed, the rest as [`Run::trial`] says.
fn as_read(
    origin: String,
    params: Params,
    max_train_steps: u64,
    state: TrialState,
    metrics: Vec<MetricPoint>,
    message: Option<String>,
    source: Option<String>,
) -> ImportedTrial {
    let run_key = run_key(&params, max_train_steps, &metrics);
    ImportedTrial { params, max_train_steps, state, message, selection: None, metrics, run_key, origin, source, at: 0.0 }
}

/// What makes a run this run, whatever file or line it is read from: a fingerprint (FNV-1a, 64
/// bits) of its parameters (by name), its budget and its curve. Storage keeps it unique within a
/// study, so that importing an edited or renamed file does not count a run twice. Its name,
/// state, message and source are not part of it.
fn run_key(params: &Params, max_train_steps: u64, metrics: &[MetricPoint]) -> String {
    let mut h = Fnv1a::default();
    let mut params: Vec<(&str, &ParamValue)> = params.iter().collect();
    params.sort_by(|a, b| a.0.cmp(b.0));
    for (name, value) in params {
        h.write(name.as_bytes());
        h.write(&[0]);
        match value {
            ParamValue::Bool(b) => h.write(&[1, u8::from(*b)]),
            ParamValue::Int(i) => h.write(&[2]).write(&i.to_le_bytes()),
            ParamValue::Float(x) => h.write(&[3]).write(&x.to_bits().to_le_bytes()),
            ParamValue::Str(t) => h.write(&[4]).write(t.as_bytes()).write(&[0]),
        };
    }
    h.write(&[0xff]).write(&max_train_steps.to_le_bytes());
    let mut curve: Vec<&MetricPoint> = metrics.iter().collect();
    curve.sort_by(|a, b| (a.step, &a.name).cmp(&(b.step, &b.name)));
    for m in curve {
        h.write(&m.step.to_le_bytes()).write(m.name.as_bytes()).write(&[0]).write(&m.value.to_bits().to_le_bytes());
    }
    format!("fnv1a64:{:016x}", h.0)
}

/// FNV-1a, 64 bits: a stable fingerprint (std's hashers may change between Rust releases).
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
}

/// `file:line` with the file made absolute; kept as given when the file cannot be found.
fn absolute_origin(origin: &str) -> String {
    let (file, line) = match origin.rsplit_once(':') {
        Some((f, l)) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => (f, Some(l)),
        _ => (origin, None),
    };
    let file = std::fs::canonicalize(file).map_or_else(|_| file.to_string(), |p| p.display().to_string());
    match line {
        Some(l) => format!("{file}:{l}"),
        None => file,
    }
}

/// Imported runs as a study to analyze: trial numbers in source order, no search space (ranges
/// are inferred), best and final evaluations selected retrospectively.
pub fn study_from_runs(objective: &str, direction: Direction, runs: &[Run]) -> StudyData {
    let trials = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let sel = run.selection(objective, direction);
            let t = &run.trial;
            TrialData {
                record: TrialRecord {
                    id: i as i64,
                    number: i as u64,
                    sample_index: None,
                    params: t.params.clone(),
                    max_train_steps: t.max_train_steps,
                    state: t.state,
                    attempt: 1,
                    failures: u32::from(t.state == TrialState::Failed),
                    best_step: sel.map(|s| s.best_step),
                    best_value: sel.map(|s| s.best_value),
                    final_step: sel.map(|s| s.final_step),
                    final_value: sel.map(|s| s.final_value),
                    message: t.message.clone(),
                    created_at: 0.0,
                    started_at: None,
                    finished_at: None,
                    lease: None,
                    rung: 0,
                },
                metrics: t.metrics.clone(),
            }
        })
        .collect();
    StudyData { objective: objective.to_string(), direction, space: None, trials }
}

/// A problem in an import source.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ImportError {
    pub file: PathBuf,
    /// 1-based line, when the problem has one.
    pub line: Option<u64>,
    /// The field, column or key (`curve[3].valid/loss`), when the problem has one.
    pub field: Option<String>,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// Where a problem is: a file and, when it has one, a line.
#[derive(Clone, Copy)]
struct At<'a> {
    file: &'a Path,
    line: Option<u64>,
}

impl At<'_> {
    fn err(&self, field: impl Into<Option<String>>, problem: impl Into<String>, fix: impl Into<String>) -> ImportError {
        ImportError {
            file: self.file.to_path_buf(),
            line: self.line,
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// A whole file as text.
fn read(path: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(path).map_err(|e| {
        At { file: path, line: None }.err(None, format!("cannot read: {e}"), "check the path and that the file is UTF-8 text")
    })
}

/// A directory's entries.
fn list_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, ImportError> {
    let cannot = |e: std::io::Error| {
        At { file: dir, line: None }.err(None, format!("cannot list: {e}"), "check the directory's permissions")
    };
    std::fs::read_dir(dir).map_err(cannot)?.map(|e| e.map_err(cannot)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(params: Vec<(&str, ParamValue)>, budget: u64, curve: Vec<(u64, &str, f64)>) -> String {
        let params = Params(params.into_iter().map(|(n, v)| (n.to_string(), v)).collect());
        let curve: Vec<MetricPoint> =
            curve.into_iter().map(|(step, name, value)| MetricPoint { step, name: name.into(), value }).collect();
        run_key(&params, budget, &curve)
    }

    #[test]
    fn a_run_key_depends_on_the_run_not_on_where_or_how_it_was_written() {
        let base = key(
            vec![("lr", ParamValue::Float(0.1)), ("wd", ParamValue::Int(0))],
            100,
            vec![(10, "loss", 1.0), (20, "loss", 0.5)],
        );
        assert!(base.starts_with("fnv1a64:") && base.len() == 8 + 16, "{base}");
        // Parameter and curve order do not change the run (nor do origin, name, state or
        // message, which are not arguments).
        assert_eq!(
            key(
                vec![("wd", ParamValue::Int(0)), ("lr", ParamValue::Float(0.1))],
                100,
                vec![(20, "loss", 0.5), (10, "loss", 1.0)]
            ),
            base
        );
        // Any change of a value, a type, the budget or the curve does.
        let changed = [
            key(
                vec![("lr", ParamValue::Float(0.2)), ("wd", ParamValue::Int(0))],
                100,
                vec![(10, "loss", 1.0), (20, "loss", 0.5)],
            ),
            key(
                vec![("lr", ParamValue::Float(0.1)), ("wd", ParamValue::Float(0.0))],
                100,
                vec![(10, "loss", 1.0), (20, "loss", 0.5)],
            ),
            key(
                vec![("lr", ParamValue::Float(0.1)), ("wd", ParamValue::Int(0))],
                100,
                vec![(10, "loss", 1.0), (20, "loss", 0.6)],
            ),
            key(vec![("lr", ParamValue::Float(0.1)), ("wd", ParamValue::Int(0))], 100, vec![(10, "loss", 1.0)]),
            key(
                vec![("lr", ParamValue::Float(0.1)), ("wd", ParamValue::Int(0))],
                200,
                vec![(10, "loss", 1.0), (20, "loss", 0.5)],
            ),
        ];
        for c in &changed {
            assert_ne!(c, &base);
        }
    }

    #[test]
    fn origins_become_absolute_and_keep_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runs.jsonl");
        std::fs::write(&file, "").unwrap();
        let canonical = std::fs::canonicalize(&file).unwrap().display().to_string();
        assert_eq!(absolute_origin(&format!("{}:12", file.display())), format!("{canonical}:12"));
        assert_eq!(absolute_origin(&file.display().to_string()), canonical, "no line: the whole path");
        assert_eq!(absolute_origin("/no/such/file:3"), "/no/such/file:3", "kept as given when missing");
    }
}
