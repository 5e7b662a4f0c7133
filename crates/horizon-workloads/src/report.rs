//! Writing protocol v1 lines: one JSON object per line, each written with one `write` call on a
//! file opened for appending.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::WorkloadError;

pub struct Reporter {
    file: File,
    path: PathBuf,
}

impl Reporter {
    pub fn open(path: &Path) -> Result<Reporter, WorkloadError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| WorkloadError::io("open the metrics file (HORIZON_METRICS_FILE)", path, e))?;
        Ok(Reporter { file, path: path.to_path_buf() })
    }

    fn write_line(&mut self, value: Value) -> Result<(), WorkloadError> {
        let mut line = serde_json::to_string(&value).expect("JSON values serialize");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| WorkloadError::io("append to the metrics file", &self.path, e))
    }

    /// `{"step": S, "split": SPLIT, "metrics": {...}}`; non-finite values are written as the
    /// strings "nan", "inf" and "-inf".
    pub fn metrics(&mut self, step: u64, split: &str, metrics: &[(&str, f64)]) -> Result<(), WorkloadError> {
        let mut m = Map::new();
        for (name, x) in metrics {
            m.insert(name.to_string(), number(*x));
        }
        let mut obj = Map::new();
        obj.insert("step".into(), step.into());
        obj.insert("split".into(), split.into());
        obj.insert("metrics".into(), Value::Object(m));
        self.write_line(Value::Object(obj))
    }

    /// `{"event": "checkpoint", "step": S, "path": PATH}`.
    pub fn checkpoint(&mut self, step: u64, path: &str) -> Result<(), WorkloadError> {
        let mut obj = Map::new();
        obj.insert("event".into(), "checkpoint".into());
        obj.insert("step".into(), step.into());
        obj.insert("path".into(), path.into());
        self.write_line(Value::Object(obj))
    }
}

fn number(x: f64) -> Value {
    if x.is_nan() {
        "nan".into()
    } else if x == f64::INFINITY {
        "inf".into()
    } else if x == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        Value::from(x)
    }
}
