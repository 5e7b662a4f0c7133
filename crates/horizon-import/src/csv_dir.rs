//! A directory of CSV files: an index of runs, and one curve file per run.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use horizon_core::{MetricPoint, Params};

use crate::curve::{assemble, default_state, non_finite_word, parse_state};
use crate::params::{Scalar, value};
use crate::{At, ImportError, Run, as_read, list_dir, read};

const INDEX: &str = "runs.csv";
const RESERVED: &[&str] = &["name", "max_train_steps", "state", "curve", "message", "source"];

/// The `.csv` files directly in `dir` (any case of the extension), sorted.
pub fn csv_files(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let mut files: Vec<PathBuf> = list_dir(dir)?
        .into_iter()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")))
        .collect();
    files.sort();
    Ok(files)
}

/// Read a directory of CSV runs: `runs.csv` (one row per run: `name`, `max_train_steps`,
/// optional `state`, `curve`, `message`, `source`, and one column per parameter) and one curve
/// file per run (`<name>.csv` unless the `curve` column says otherwise) with a `step` column
/// and one column per metric.
pub fn parse_csv_dir(dir: impl AsRef<Path>) -> Result<Vec<Run>, ImportError> {
    let dir = dir.as_ref();
    let index = dir.join(INDEX);
    if !dir.is_dir() {
        return Err(At { file: dir, line: None }.err(
            None,
            "not a directory",
            format!("give the directory that holds {INDEX} and one CSV file per run"),
        ));
    }
    if !index.is_file() {
        return Err(At { file: &index, line: None }.err(
            None,
            "missing index",
            "create runs.csv with the columns name,max_train_steps (optional: state,curve,message,source) and one column per parameter",
        ));
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
            return Err(at.err(
                "name".to_string(),
                format!("duplicate run name {name:?} (first on line {first})"),
                "give every run a unique name",
            ));
        }
        let budget_text = cell("max_train_steps").unwrap_or("");
        let max_train_steps = budget_text.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| {
            at.err(
                "max_train_steps".to_string(),
                format!("must be a positive integer, found {budget_text:?}"),
                "give the run's step budget as a whole number",
            )
        })?;
        let mut params = Params::default();
        for (i, h) in headers.iter().enumerate() {
            if RESERVED.contains(&h) {
                continue;
            }
            let Some(v) = record.get(i).filter(|s| !s.is_empty()) else { continue };
            if let Some(v) = value(Scalar::Plain(v)).map_err(|r| at.err(h.to_string(), r.problem, r.fix))? {
                params.set(h, v);
            }
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
            return Err(at.err(
                "curve".to_string(),
                format!("{rel} is already the curve of the run on line {first}"),
                "give each run its own curve file",
            ));
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
        let trial = as_read(
            format!("{}:{lineno}", index.display()),
            params,
            max_train_steps,
            state,
            curve,
            cell("message").map(str::to_string),
            cell("source").map(str::to_string),
        );
        runs.push(Run { name: Some(name), trial });
    }
    if runs.is_empty() {
        return Err(At { file: &index, line: None }.err(None, "no runs in the index", "add one row per run"));
    }
    // Stray CSV files are runs the index forgot: refuse rather than silently drop them.
    let stray: Vec<String> = csv_files(dir)?
        .into_iter()
        .filter(|p| *p != index && !curves.contains_key(p))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    if let Some(first) = stray.first() {
        return Err(At { file: &dir.join(first), line: None }.err(
            None,
            format!("CSV file not listed in {INDEX} ({} such: {})", stray.len(), stray.join(", ")),
            format!("add a row for it to {INDEX} (name = the file name without .csv), or move it out of the directory"),
        ));
    }
    Ok(runs)
}

fn csv_err(file: &Path, e: csv::Error) -> ImportError {
    At { file, line: e.position().map(|p| p.line()) }.err(
        None,
        format!("malformed CSV: {e}"),
        "every row needs as many cells as the header has columns; quote cells that contain commas",
    )
}

fn csv_curve(path: &Path, max_train_steps: u64) -> Result<Vec<MetricPoint>, ImportError> {
    let text = read(path)?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| csv_err(path, e))?.clone();
    let top = At { file: path, line: Some(1) };
    if headers.get(0) != Some("step") {
        return Err(top.err(
            "(header)".to_string(),
            "the first column must be `step`",
            "write the header as step,<metric>,<metric>,... e.g. step,valid/loss,train/loss",
        ));
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
            at.err(
                "step".to_string(),
                format!("must be a non-negative integer, found {step_text:?}"),
                "steps are whole numbers (use 1-based epochs if you count epochs)",
            )
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
                    at.err(
                        h.to_string(),
                        format!("not a number: {v:?}"),
                        "write a number, leave the cell empty, or write nan/inf/-inf",
                    )
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
