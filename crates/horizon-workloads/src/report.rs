//! Writing protocol v1 lines: one JSON object per line, each written with one `write` call on a
//! file opened for appending. The lines: metrics, checkpoint announcements, and the declaration
//! of the schedule's budget-independent prefix (the order a run writes them in: `crate::train`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use horizon_core::protocol::{encode_budget_independent, encode_checkpoint, encode_metrics};

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

    fn write_line(&mut self, mut line: String) -> Result<(), WorkloadError> {
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| WorkloadError::io("append to the metrics file", &self.path, e))
    }

    /// `{"step": S, "split": SPLIT, "metrics": {...}}`; non-finite values are written as the
    /// strings "nan", "inf" and "-inf" (the protocol's one encoder).
    pub fn metrics(&mut self, step: u64, split: &str, metrics: &[(&str, f64)]) -> Result<(), WorkloadError> {
        self.write_line(encode_metrics(step, split, metrics))
    }

    /// `{"event": "budget_independent", "step": S}`: the run's first `S` steps are the same
    /// under any longer budget.
    pub fn budget_independent(&mut self, step: u64) -> Result<(), WorkloadError> {
        self.write_line(encode_budget_independent(step))
    }

    /// `{"event": "checkpoint", "step": S, "path": PATH}`.
    pub fn checkpoint(&mut self, step: u64, path: &str) -> Result<(), WorkloadError> {
        self.write_line(encode_checkpoint(step, path))
    }
}
