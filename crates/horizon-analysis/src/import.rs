//! Runs made without horizon: JSON Lines and a directory of CSV files (formats documented in
//! `docs/analysis.md`). The parsers only read; storing the runs (in one transaction) is the
//! caller's business. On any error nothing is returned but the error, which names the file,
//! the line, the field, and the fix.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use horizon_core::selection::{Selection, select};
use horizon_core::{Direction, MetricPoint, ParamValue, Params, TrialRecord, TrialState};
use serde_json::{Map, Value};

use crate::{StudyData, TrialData};

/// One imported run: its parameters, its budget, and its curve.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedRun {
    /// The run's name, unique within the import (always present for CSV imports).
    pub name: Option<String>,
    pub params: Params,
    /// This run's own step budget.
    pub max_train_steps: u64,
    /// Complete, diverged or failed (given, or diverged when any value is non-finite).
    pub state: TrialState,
    /// Every evaluation, sorted by step, metrics in the order they appear.
    pub curve: Vec<MetricPoint>,
    pub message: Option<String>,
    /// Provenance and attribution of the data, as given.
    pub source: Option<String>,
    /// Where the run was read from: `file:line`.
    pub origin: String,
}

impl ImportedRun {
    /// What makes this run this run, whatever file or line it is read from: a fingerprint
    /// (FNV-1a, 64 bits) of its parameters (by name), its budget and its curve. Storage keeps it
    /// unique within a study, so that importing an edited or renamed file does not count a run
    /// twice. Its name, state, message and source are not part of it.
    pub fn run_key(&self) -> String {
        let mut h = Fnv1a::default();
        let mut params: Vec<(&str, &ParamValue)> = self.params.iter().collect();
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
        h.write(&[0xff]).write(&self.max_train_steps.to_le_bytes());
        let mut curve: Vec<&MetricPoint> = self.curve.iter().collect();
        curve.sort_by(|a, b| (a.step, &a.name).cmp(&(b.step, &b.name)));
        for m in curve {
            h.write(&m.step.to_le_bytes()).write(m.name.as_bytes()).write(&[0]).write(&m.value.to_bits().to_le_bytes());
        }
        format!("fnv1a64:{:016x}", h.0)
    }

    /// Retrospective selection over the objective's evaluations, if any value was finite.
    pub fn selection(&self, objective: &str, direction: Direction) -> Option<Selection> {
        let evals: Vec<(u64, f64)> = self.curve.iter().filter(|m| m.name == objective).map(|m| (m.step, m.value)).collect();
        select(&evals, direction)
    }
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

/// A problem in an import file.
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

/// Evaluations as read: (step, index in the file, [(metric, value)]).
type Rows = Vec<(u64, usize, Vec<(String, f64)>)>;

const JSONL_FIELDS: &[&str] = &["name", "params", "max_train_steps", "curve", "state", "message", "source"];
const STATES: &str = "\"complete\", \"incomplete\", \"diverged\" or \"failed\"";

fn read(path: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(path).map_err(|e| ImportError {
        file: path.to_path_buf(),
        line: None,
        field: None,
        problem: format!("cannot read: {e}"),
        fix: "check the path and that the file is UTF-8 text".into(),
    })
}

fn parse_state(text: &str, at: &At, field: &str) -> Result<TrialState, ImportError> {
    match text {
        "complete" => Ok(TrialState::Complete),
        "incomplete" => Ok(TrialState::Incomplete),
        "diverged" => Ok(TrialState::Diverged),
        "failed" => Ok(TrialState::Failed),
        other => Err(at.err(field.to_string(), format!("unknown state {other:?}"), format!("use {STATES}, or leave it out"))),
    }
}

/// Non-finite values written as text (JSON has no NaN).
fn non_finite_word(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" | "-nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

fn default_state(curve: &[MetricPoint]) -> TrialState {
    if curve.iter().any(|m| !m.value.is_finite()) { TrialState::Diverged } else { TrialState::Complete }
}

/// Read a JSON Lines file: one run per line (blank lines ignored).
pub fn parse_jsonl(path: impl AsRef<Path>) -> Result<Vec<ImportedRun>, ImportError> {
    let path = path.as_ref();
    let text = read(path)?;
    let mut runs = Vec::new();
    let mut names: HashMap<String, u64> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let lineno = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = At { file: path, line: Some(lineno) };
        let value: Value = serde_json::from_str(line).map_err(|e| {
            at.err(
                format!("column {}", e.column()),
                format!("not valid JSON: {e}"),
                "write one JSON object per line (NaN and Infinity are not JSON: write them as the strings \"nan\", \"inf\", \"-inf\")",
            )
        })?;
        let Value::Object(obj) = value else {
            return Err(at.err(None, "a line must be a JSON object", "write one object per line: {\"params\": {...}, \"max_train_steps\": N, \"curve\": [...]}"));
        };
        let run = jsonl_run(&obj, &at)?;
        if let Some(name) = &run.name
            && let Some(first) = names.insert(name.clone(), lineno) {
                return Err(at.err(
                    "name".to_string(),
                    format!("duplicate run name {name:?} (first on line {first})"),
                    "give every run a unique name, or remove the duplicate line",
                ));
            }
        runs.push(run);
    }
    if runs.is_empty() {
        return Err(At { file: path, line: None }.err(
            None,
            "no runs in the file",
            "write one JSON object per line: {\"params\": {...}, \"max_train_steps\": N, \"curve\": [...]}",
        ));
    }
    Ok(runs)
}

fn jsonl_run(obj: &Map<String, Value>, at: &At) -> Result<ImportedRun, ImportError> {
    for key in obj.keys() {
        if !JSONL_FIELDS.contains(&key.as_str()) {
            return Err(at.err(key.clone(), "unknown field", format!("the fields are {}", JSONL_FIELDS.join(", "))));
        }
    }
    let opt_string = |key: &str| -> Result<Option<String>, ImportError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(at.err(key.to_string(), format!("must be a string, found {other}"), "write it as a JSON string")),
        }
    };
    let name = opt_string("name")?;
    if name.as_deref() == Some("") {
        return Err(at.err("name".to_string(), "empty name", "give a non-empty name or leave it out"));
    }
    let message = opt_string("message")?;
    let source = opt_string("source")?;

    let max_train_steps = match obj.get("max_train_steps") {
        None => return Err(at.err("max_train_steps".to_string(), "missing", "give the run's step budget: \"max_train_steps\": N")),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => n,
            _ => {
                return Err(at.err(
                    "max_train_steps".to_string(),
                    format!("must be a positive integer, found {v}"),
                    "give the run's step budget as a whole number of steps (or epochs, consistently with the curve's steps)",
                ));
            }
        },
    };

    let mut params = Params::default();
    match obj.get("params") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let field = format!("params.{k}");
                let value = match v {
                    Value::Bool(b) => ParamValue::Bool(*b),
                    Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                        (Some(i), _) => ParamValue::Int(i),
                        (None, Some(f)) if n.is_f64() => ParamValue::Float(f),
                        _ => return Err(at.err(field, format!("number {n} out of range"), "use a value that fits a 64-bit integer or float")),
                    },
                    Value::String(s) => ParamValue::Str(s.clone()),
                    other => {
                        return Err(at.err(
                            field,
                            format!("must be a number, string or boolean, found {other}"),
                            "flatten nested parameters into dotted names (\"optimizer.lr\": 0.1)",
                        ));
                    }
                };
                params.set(k, value);
            }
        }
        Some(other) => return Err(at.err("params".to_string(), format!("must be an object, found {other}"), "write \"params\": {\"name\": value, ...}")),
    }

    let points = match obj.get("curve") {
        None => return Err(at.err("curve".to_string(), "missing", "give the evaluations: \"curve\": [{\"step\": S, \"valid/loss\": v}, ...] (an empty list is allowed)")),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(at.err("curve".to_string(), format!("must be a list, found {other}"), "write \"curve\": [{\"step\": S, \"metric\": v}, ...]")),
    };
    let mut rows: Rows = Vec::new();
    for (j, p) in points.iter().enumerate() {
        let field = |k: &str| format!("curve[{j}]{}", if k.is_empty() { String::new() } else { format!(".{k}") });
        let Value::Object(p) = p else {
            return Err(at.err(field(""), "an evaluation must be an object", "write {\"step\": S, \"metric\": value, ...}"));
        };
        let step = match p.get("step") {
            None => return Err(at.err(field("step"), "missing", "every evaluation needs its \"step\"")),
            Some(v) => v.as_u64().ok_or_else(|| {
                at.err(field("step"), format!("must be a non-negative integer, found {v}"), "steps are whole numbers (use 1-based epochs if you count epochs)")
            })?,
        };
        if step > max_train_steps {
            return Err(at.err(
                field("step"),
                format!("step {step} is beyond max_train_steps {max_train_steps}"),
                format!("raise max_train_steps to at least {step}, or drop the evaluation"),
            ));
        }
        let mut values = Vec::new();
        for (k, v) in p {
            if k == "step" {
                continue;
            }
            if k.is_empty() {
                return Err(at.err(field(""), "empty metric name", "name every metric, e.g. \"valid/loss\""));
            }
            let x = match v {
                Value::Null => continue,
                Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                Value::String(s) => non_finite_word(s).ok_or_else(|| {
                    at.err(field(k), format!("not a number: {s:?}"), "write numbers as JSON numbers; only \"nan\", \"inf\" and \"-inf\" are accepted as text")
                })?,
                other => return Err(at.err(field(k), format!("must be a number, found {other}"), "write a JSON number, null, or \"nan\"/\"inf\"/\"-inf\"")),
            };
            values.push((k.clone(), x));
        }
        rows.push((step, j, values));
    }
    let curve = assemble(rows, |j, other| {
        at.err(format!("curve[{j}].step"), format!("duplicate step (also in curve[{other}])"), "give each step once, with all its metrics")
    })?;
    let state = match obj.get("state") {
        None | Some(Value::Null) => default_state(&curve),
        Some(Value::String(s)) => parse_state(s, at, "state")?,
        Some(other) => return Err(at.err("state".to_string(), format!("must be a string, found {other}"), format!("use {STATES}"))),
    };
    Ok(ImportedRun {
        name,
        params,
        max_train_steps,
        state,
        curve,
        message,
        source,
        origin: format!("{}:{}", at.file.display(), at.line.unwrap_or(0)),
    })
}

/// Sort evaluations by step, refusing duplicate steps; `dup(index, other_index)` builds the error.
fn assemble(
    mut rows: Rows,
    dup: impl Fn(usize, usize) -> ImportError,
) -> Result<Vec<MetricPoint>, ImportError> {
    rows.sort_by_key(|r| (r.0, r.1));
    for w in rows.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(dup(w[1].1, w[0].1));
        }
    }
    Ok(rows
        .into_iter()
        .flat_map(|(step, _, values)| values.into_iter().map(move |(name, value)| MetricPoint { step, name, value }))
        .collect())
}

const INDEX: &str = "runs.csv";
const RESERVED: &[&str] = &["name", "max_train_steps", "state", "curve", "message", "source"];

/// Read a directory of CSV runs: `runs.csv` (one row per run: `name`, `max_train_steps`,
/// optional `state`, `curve`, `message`, `source`, and one column per parameter) and one curve
/// file per run (`<name>.csv` unless the `curve` column says otherwise) with a `step` column
/// and one column per metric.
pub fn parse_csv_dir(dir: impl AsRef<Path>) -> Result<Vec<ImportedRun>, ImportError> {
    let dir = dir.as_ref();
    let index = dir.join(INDEX);
    if !dir.is_dir() {
        return Err(ImportError {
            file: dir.to_path_buf(),
            line: None,
            field: None,
            problem: "not a directory".into(),
            fix: format!("give the directory that holds {INDEX} and one CSV file per run"),
        });
    }
    if !index.is_file() {
        return Err(ImportError {
            file: index,
            line: None,
            field: None,
            problem: "missing index".into(),
            fix: "create runs.csv with the columns name,max_train_steps (optional: state,curve,message,source) and one column per parameter".into(),
        });
    }
    let text = read(&index)?;
    let top = At { file: &index, line: Some(1) };
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| csv_err(&index, e))?.clone();
    let mut seen = BTreeSet::new();
    for h in headers.iter() {
        if h.is_empty() {
            return Err(top.err("(header)".to_string(), "empty column name", "name every column"));
        }
        if !seen.insert(h) {
            return Err(top.err(h.to_string(), "duplicate column", "name each column once"));
        }
    }
    for required in ["name", "max_train_steps"] {
        if !seen.contains(required) {
            return Err(top.err(
                "(header)".to_string(),
                format!("missing column `{required}`"),
                "runs.csv needs the columns name and max_train_steps; every other column (except state, curve, message, source) is a parameter",
            ));
        }
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    let mut runs = Vec::new();
    let mut names: HashMap<String, u64> = HashMap::new();
    let mut curves: HashMap<PathBuf, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_err(&index, e))?;
        let lineno = record.position().map_or(0, |p| p.line());
        let at = At { file: &index, line: Some(lineno) };
        let cell = |name: &str| col(name).and_then(|i| record.get(i)).filter(|s| !s.is_empty());
        let name = cell("name").ok_or_else(|| at.err("name".to_string(), "empty", "give every run a unique name"))?.to_string();
        if let Some(first) = names.insert(name.clone(), lineno) {
            return Err(at.err("name".to_string(), format!("duplicate run name {name:?} (first on line {first})"), "give every run a unique name"));
        }
        let budget_text = cell("max_train_steps").unwrap_or("");
        let max_train_steps = budget_text.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| {
            at.err("max_train_steps".to_string(), format!("must be a positive integer, found {budget_text:?}"), "give the run's step budget as a whole number")
        })?;
        let mut params = Params::default();
        for (i, h) in headers.iter().enumerate() {
            if RESERVED.contains(&h) {
                continue;
            }
            let Some(v) = record.get(i).filter(|s| !s.is_empty()) else { continue };
            params.set(h, csv_param(v, &at, h)?);
        }
        let rel = cell("curve").map(str::to_string).unwrap_or_else(|| format!("{name}.csv"));
        let rel_path = Path::new(&rel);
        if rel_path.is_absolute() || rel_path.components().any(|c| !matches!(c, Component::Normal(_))) || rel == INDEX {
            return Err(at.err(
                "curve".to_string(),
                format!("{rel:?} is not a file inside the directory"),
                "give a path relative to the directory, without .. (and not runs.csv itself)",
            ));
        }
        let curve_path = dir.join(rel_path);
        if let Some(first) = curves.insert(curve_path.clone(), lineno) {
            return Err(at.err("curve".to_string(), format!("{rel} is already the curve of the run on line {first}"), "give each run its own curve file"));
        }
        if !curve_path.is_file() {
            return Err(at.err(
                "curve".to_string(),
                format!("curve file {} not found", curve_path.display()),
                format!("create {rel} (columns step and one per metric), or name the right file in a `curve` column"),
            ));
        }
        let curve = csv_curve(&curve_path, max_train_steps)?;
        let state = match cell("state") {
            None => default_state(&curve),
            Some(s) => parse_state(s, &at, "state")?,
        };
        runs.push(ImportedRun {
            name: Some(name),
            params,
            max_train_steps,
            state,
            curve,
            message: cell("message").map(str::to_string),
            source: cell("source").map(str::to_string),
            origin: format!("{}:{lineno}", index.display()),
        });
    }
    if runs.is_empty() {
        return Err(At { file: &index, line: None }.err(None, "no runs in the index", "add one row per run"));
    }
    // Stray CSV files are runs the index forgot: refuse rather than silently drop them.
    let entries = std::fs::read_dir(dir).map_err(|e| ImportError {
        file: dir.to_path_buf(),
        line: None,
        field: None,
        problem: format!("cannot list: {e}"),
        fix: "check the directory's permissions".into(),
    })?;
    let mut stray: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")) && *p != index && !curves.contains_key(p))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    stray.sort();
    if let Some(first) = stray.first() {
        return Err(ImportError {
            file: dir.join(first),
            line: None,
            field: None,
            problem: format!("CSV file not listed in {INDEX} ({} such: {})", stray.len(), stray.join(", ")),
            fix: format!("add a row for it to {INDEX} (name = the file name without .csv), or move it out of the directory"),
        });
    }
    Ok(runs)
}

fn csv_err(file: &Path, e: csv::Error) -> ImportError {
    let line = e.position().map(|p| p.line());
    ImportError {
        file: file.to_path_buf(),
        line,
        field: None,
        problem: format!("malformed CSV: {e}"),
        fix: "every row needs as many cells as the header has columns; quote cells that contain commas".into(),
    }
}

fn csv_param(v: &str, at: &At, column: &str) -> Result<ParamValue, ImportError> {
    if v == "true" || v == "false" {
        return Ok(ParamValue::Bool(v == "true"));
    }
    if let Ok(i) = v.parse::<i64>() {
        return Ok(ParamValue::Int(i));
    }
    if let Ok(f) = v.parse::<f64>() {
        if !f.is_finite() {
            return Err(at.err(column.to_string(), format!("parameter value {v:?} is not finite"), "give a finite number, or quote-free text that is not nan/inf"));
        }
        return Ok(ParamValue::Float(f));
    }
    Ok(ParamValue::Str(v.to_string()))
}

fn csv_curve(path: &Path, max_train_steps: u64) -> Result<Vec<MetricPoint>, ImportError> {
    let text = read(path)?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| csv_err(path, e))?.clone();
    let top = At { file: path, line: Some(1) };
    if headers.get(0) != Some("step") {
        return Err(top.err("(header)".to_string(), "the first column must be `step`", "write the header as step,<metric>,<metric>,... e.g. step,valid/loss,train/loss"));
    }
    let mut seen = BTreeSet::new();
    for h in headers.iter().skip(1) {
        if h.is_empty() {
            return Err(top.err("(header)".to_string(), "empty metric name", "name every column"));
        }
        if !seen.insert(h) {
            return Err(top.err(h.to_string(), "duplicate column", "name each metric once"));
        }
    }
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for (j, record) in reader.records().enumerate() {
        let record = record.map_err(|e| csv_err(path, e))?;
        let lineno = record.position().map_or(0, |p| p.line());
        let at = At { file: path, line: Some(lineno) };
        let step_text = record.get(0).unwrap_or("");
        let step = step_text.parse::<u64>().map_err(|_| {
            at.err("step".to_string(), format!("must be a non-negative integer, found {step_text:?}"), "steps are whole numbers (use 1-based epochs if you count epochs)")
        })?;
        if step > max_train_steps {
            return Err(at.err(
                "step".to_string(),
                format!("step {step} is beyond the run's max_train_steps {max_train_steps}"),
                format!("raise max_train_steps in runs.csv to at least {step}, or drop the row"),
            ));
        }
        let mut values = Vec::new();
        for (i, h) in headers.iter().enumerate().skip(1) {
            let v = record.get(i).unwrap_or("");
            if v.is_empty() {
                continue;
            }
            let x = match v.parse::<f64>() {
                Ok(x) => x,
                Err(_) => non_finite_word(v).ok_or_else(|| {
                    at.err(h.to_string(), format!("not a number: {v:?}"), "write a number, leave the cell empty, or write nan/inf/-inf")
                })?,
            };
            values.push((h.to_string(), x));
        }
        rows.push((step, j, values));
        lines.push(lineno);
    }
    assemble(rows, |j, other| ImportError {
        file: path.to_path_buf(),
        line: Some(lines[j]),
        field: Some("step".into()),
        problem: format!("duplicate step (also on line {})", lines[other]),
        fix: "give each step once, with all its metrics".into(),
    })
}

/// Imported runs as a study to analyze: trial numbers in file order, no search space (ranges
/// are inferred), best and final evaluations selected retrospectively.
pub fn study_from_runs(objective: &str, direction: Direction, runs: &[ImportedRun]) -> StudyData {
    let trials = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let sel = run.selection(objective, direction);
            TrialData {
                record: TrialRecord {
                    id: i as i64,
                    number: i as u64,
                    sample_index: None,
                    params: run.params.clone(),
                    max_train_steps: run.max_train_steps,
                    state: run.state,
                    attempt: 1,
                    failures: u32::from(run.state == TrialState::Failed),
                    best_step: sel.map(|s| s.best_step),
                    best_value: sel.map(|s| s.best_value),
                    final_step: sel.map(|s| s.final_step),
                    final_value: sel.map(|s| s.final_value),
                    message: run.message.clone(),
                    created_at: 0.0,
                    started_at: None,
                    finished_at: None,
                    lease: None,
                },
                metrics: run.curve.clone(),
            }
        })
        .collect();
    StudyData { objective: objective.to_string(), direction, space: None, trials }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(params: Vec<(&str, ParamValue)>, curve: Vec<(u64, &str, f64)>) -> ImportedRun {
        ImportedRun {
            name: None,
            params: Params(params.into_iter().map(|(n, v)| (n.to_string(), v)).collect()),
            max_train_steps: 100,
            state: TrialState::Complete,
            curve: curve.into_iter().map(|(step, name, value)| MetricPoint { step, name: name.into(), value }).collect(),
            message: None,
            source: None,
            origin: "runs.jsonl:1".into(),
        }
    }

    #[test]
    fn a_run_key_depends_on_the_run_not_on_where_or_how_it_was_written() {
        let a = run(vec![("lr", ParamValue::Float(0.1)), ("wd", ParamValue::Int(0))], vec![(10, "loss", 1.0), (20, "loss", 0.5)]);
        let key = a.run_key();
        assert!(key.starts_with("fnv1a64:") && key.len() == 8 + 16, "{key}");
        // Parameter order, origin, name, state and message do not change the run.
        let mut b = run(vec![("wd", ParamValue::Int(0)), ("lr", ParamValue::Float(0.1))], vec![(10, "loss", 1.0), (20, "loss", 0.5)]);
        b.origin = "renamed.jsonl:7".into();
        b.name = Some("run-3".into());
        b.message = Some("note".into());
        assert_eq!(b.run_key(), key);
        // Any change of a value, a type, the budget or the curve does.
        let changed = [
            run(vec![("lr", ParamValue::Float(0.2)), ("wd", ParamValue::Int(0))], vec![(10, "loss", 1.0), (20, "loss", 0.5)]),
            run(vec![("lr", ParamValue::Float(0.1)), ("wd", ParamValue::Float(0.0))], vec![(10, "loss", 1.0), (20, "loss", 0.5)]),
            run(vec![("lr", ParamValue::Float(0.1)), ("wd", ParamValue::Int(0))], vec![(10, "loss", 1.0), (20, "loss", 0.6)]),
            run(vec![("lr", ParamValue::Float(0.1)), ("wd", ParamValue::Int(0))], vec![(10, "loss", 1.0)]),
            ImportedRun { max_train_steps: 200, ..a.clone() },
        ];
        for c in &changed {
            assert_ne!(c.run_key(), key, "{c:?}");
        }
    }
}
