//! A study spec bound to the file system: where its database and trials live, where its
//! trainer runs, and the checks only the file system can answer (missing programs and scripts).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use horizon_core::spec::{Piece, SpecError, StudySpec};
use horizon_store::{Access, NewStudy, Storage, StorageUrl, StudyRecord};

use crate::{RunError, io_err};

/// The database file inside a study directory.
pub const DATABASE_FILE: &str = "horizon.db";
/// In a study directory whose database is elsewhere (`--storage`): that database's URL.
pub const STORAGE_MARKER: &str = "storage.url";

/// A checked study spec with its paths resolved.
#[derive(Debug, Clone)]
pub struct ResolvedStudy {
    pub spec: Arc<StudySpec>,
    /// The study file, absolute.
    pub spec_path: PathBuf,
    /// The study directory: database and `trials/`.
    pub dir: PathBuf,
    /// Where the trainer runs.
    pub working_dir: PathBuf,
    /// The `horizon` executable that runs built-in workloads (this process's own).
    pub horizon_exe: PathBuf,
    /// The study file's text, stored with the study so that `horizon worker --study NAME` can
    /// run it from the database alone (`None` for a spec built in code, e.g. a sweep's grid).
    pub source: Option<String>,
    /// Where the study's database is, when not `<dir>/horizon.db` (`--storage URL`).
    pub storage: Option<StorageUrl>,
}

impl ResolvedStudy {
    /// Read, parse and resolve a study file.
    pub fn load(path: &Path) -> Result<ResolvedStudy, RunError> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        ResolvedStudy::from_source(&text, path)
    }

    /// Parse and resolve a study file's text, read from `path` (or stored with a study and
    /// found there again), keeping the text to store with the study.
    pub fn from_source(text: &str, path: &Path) -> Result<ResolvedStudy, RunError> {
        let spec = StudySpec::parse(text, &path.display().to_string())?;
        let mut study = ResolvedStudy::new(spec, path)?;
        study.source = Some(text.to_string());
        Ok(study)
    }

    /// The same study with its database at `url` instead of `<dir>/horizon.db`.
    pub fn with_storage(mut self, url: StorageUrl) -> ResolvedStudy {
        self.storage = Some(url);
        self
    }

    /// Run trials on these GPUs (`CUDA_VISIBLE_DEVICES`, one per running trial) instead of the
    /// study file's `trainer.gpus`: each machine has its own.
    pub fn with_gpus(mut self, gpus: Vec<String>) -> ResolvedStudy {
        let mut spec = (*self.spec).clone();
        spec.trainer.gpus = gpus;
        self.spec = Arc::new(spec);
        self
    }

    /// Where the study's database is.
    pub fn storage_url(&self) -> StorageUrl {
        self.storage.clone().unwrap_or_else(|| StorageUrl::sqlite(&self.db_path()))
    }

    /// Resolve a parsed spec that came from `spec_path`. Relative paths in the spec are relative
    /// to the study file's directory.
    pub fn new(spec: StudySpec, spec_path: &Path) -> Result<ResolvedStudy, RunError> {
        let spec_path = std::path::absolute(spec_path).map_err(io_err(spec_path))?;
        let base = spec_path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let origin = spec_path.display().to_string();
        let err = |field: &str, problem: String, fix: &str| {
            RunError::Spec(SpecError { origin: origin.clone(), field: field.into(), problem, fix: fix.into() })
        };
        let dir = study_dir(&spec, &spec_path);
        let working_dir = match &spec.trainer.working_dir {
            Some(w) => base.join(w),
            None => base.clone(),
        };
        if !working_dir.is_dir() {
            return Err(err(
                "trainer.working_dir",
                format!("{} is not a directory", working_dir.display()),
                "give a directory relative to the study file, or leave the field out to use the study file's directory",
            ));
        }
        // The program, and any literal argument that names a script, must exist.
        for (i, pieces) in spec.trainer.command.iter().enumerate() {
            let [Piece::Text(arg)] = pieces.as_slice() else { continue };
            let field = format!("trainer.command[{i}]");
            if i == 0 {
                if arg.contains('/') {
                    if !working_dir.join(arg).is_file() {
                        return Err(err(
                            &field,
                            format!("program {arg} does not exist (looked in {})", working_dir.display()),
                            "give a path relative to trainer.working_dir (default: the study file's directory), or a program on PATH",
                        ));
                    }
                } else if find_on_path(arg).is_none() {
                    return Err(err(
                        &field,
                        format!("program {arg:?} is not on PATH"),
                        "install it, or give its path (e.g. \"/usr/bin/python3\" or \"./train.sh\")",
                    ));
                }
            } else if looks_like_script(arg) && !working_dir.join(arg).is_file() {
                return Err(err(
                    &field,
                    format!("{arg} does not exist (looked in {})", working_dir.display()),
                    "give the script's path relative to trainer.working_dir (default: the study file's directory)",
                ));
            }
        }
        let horizon_exe = std::env::current_exe().map_err(io_err(Path::new("the horizon executable")))?;
        Ok(ResolvedStudy { spec: Arc::new(spec), spec_path, dir, working_dir, horizon_exe, source: None, storage: None })
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join(DATABASE_FILE)
    }

    /// The directory of a trial: `trials/00042`.
    pub fn trial_dir(&self, number: u64) -> PathBuf {
        trial_dir(&self.dir, number)
    }

    /// Open (creating if needed) the study's database: `<dir>/horizon.db`, or its storage URL.
    ///
    /// A study directory belongs to one database: its trial directories are named by trial
    /// number, so two databases numbering trials into one directory would overwrite each other's
    /// files. A directory used with `--storage` records the database in [`STORAGE_MARKER`]; a
    /// run with another database (or the default one) is refused there.
    pub fn open_storage(&self) -> Result<std::sync::Arc<dyn Storage>, RunError> {
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let marker = self.dir.join(STORAGE_MARKER);
        // The database's URL (without a password) and, since this horizon, its identity.
        let recorded = std::fs::read_to_string(&marker).ok().map(|t| {
            let mut lines = t.lines().map(str::trim);
            (lines.next().unwrap_or("").to_string(), lines.next().filter(|l| !l.is_empty()).map(String::from))
        });
        let url = self.storage_url();
        let wanted = self.storage.as_ref().map(StorageUrl::redacted);
        let local = self.db_path();
        let clash = match (&wanted, &recorded) {
            (Some(w), Some((r, id))) if w != r => {
                // Another name for the same database (a host and its address, a proxy)? Its
                // recorded identity tells; a database that is not there yet is not it.
                let same = id.as_ref().is_some_and(|id| {
                    horizon_store::open(&url, Access::ReadOnly).and_then(|s| s.database_id()).is_ok_and(|got| &got == id)
                });
                (!same).then(|| r.clone())
            }
            (None, Some((r, _))) => Some(r.clone()),
            (Some(_), None) if local.exists() => Some(local.display().to_string()),
            _ => None,
        };
        if let Some(other) = clash {
            return Err(RunError::Incompatible(format!(
                "the study directory {} belongs to the database {other}; {} would number trials into the same trial directories
                   fix: use that database (--storage {other}), or give the study another [study] directory",
                self.dir.display(),
                wanted.unwrap_or_else(|| local.display().to_string())
            )));
        }
        let storage = horizon_store::open(&url, Access::ReadWrite)?;
        // The same name, another database (dropped and made again, restored elsewhere): its
        // trial numbers would start over in the directories of the one recorded.
        if let Some((r, Some(id))) = &recorded
            && wanted.as_ref() == Some(r)
            && storage.database_id()? != *id
        {
            return Err(RunError::Incompatible(format!(
                "the database at {r} is not the one the study directory {} belongs to (it was made again, or restored): \
                 its trials would be numbered into the directories of the other's
                   fix: point at the database the directory belongs to, or give the study another [study] directory \
                 (or delete {} if that database is gone for good)",
                self.dir.display(),
                marker.display()
            )));
        }
        let unrecorded = match &recorded {
            None => true,
            Some((r, id)) => id.is_none() && wanted.as_ref() == Some(r),
        };
        if let (Some(w), true) = (&wanted, unrecorded) {
            let id = storage.database_id()?;
            std::fs::write(&marker, format!("{w}\n{id}\n")).map_err(io_err(&marker))?;
        }
        Ok(storage)
    }

    /// Create the study in storage, or check that the stored one was started from a compatible
    /// spec: a study keeps one budget, one space and one objective for all its trials.
    pub fn open_study(&self, storage: &dyn Storage) -> Result<StudyRecord, RunError> {
        let spec = &self.spec;
        let identity = spec.identity();
        // Compare before opening: opening stores the new spec, which a refused run must not do.
        if let Some(existing) = storage.study(&spec.name)? {
            let stored: serde_json::Value = serde_json::from_str(&existing.identity_json)
                .map_err(|e| horizon_store::StoreError::Corrupt(format!("identity of study {}: {e}", existing.name)))?;
            let changes = StudySpec::identity_changes(&stored, &identity);
            if !changes.is_empty() {
                let lines: String = identity_differences(&stored, &identity).iter().map(|l| format!("\n  {l}")).collect();
                return Err(RunError::Incompatible(format!(
                    "{}: the stored study {:?} in {} was started with different {}; its trials would not be comparable:{lines}\n  \
                     fix: restore those fields, or give the study a new [study] name (or directory) to start a new study",
                    self.spec_path.display(),
                    spec.name,
                    self.storage_url().redacted(),
                    changes.join(", ")
                )));
            }
        }
        let mut stored = serde_json::to_value(spec.as_ref()).expect("a spec is always representable in JSON");
        if let Some(text) = &self.source {
            // What `horizon worker --study NAME` runs: the file as written, and where it was (its
            // relative paths are relative to it, so workers see it on a shared file system).
            stored["source"] = serde_json::json!({"path": self.spec_path, "text": text});
        }
        Ok(storage.open_or_create_study(&NewStudy {
            name: spec.name.clone(),
            spec_json: stored.to_string(),
            identity_json: identity.to_string(),
        })?)
    }
}

/// Each identity field that differs between a stored and a new [`StudySpec::identity`], down to
/// the value that changed, as `field: stored X, this file Y` (at most 12 lines; long values
/// are cut short). Command templates are shown as written (`--lr={lr}`).
pub fn identity_differences(stored: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let mut lines = Vec::new();
    for field in StudySpec::identity_changes(stored, new) {
        let null = serde_json::Value::Null;
        diff_values(&field, stored.get(&field).unwrap_or(&null), new.get(&field).unwrap_or(&null), &mut lines);
    }
    if lines.len() > 12 {
        let more = lines.len() - 12;
        lines.truncate(12);
        lines.push(format!("... and {more} more"));
    }
    lines
}

fn diff_values(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if !is_template(a) && !is_template(b) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let null = Value::Null;
                diff_values(&format!("{path}.{k}"), x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() && !is_template(a) => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ => out.push(format!("{path}: stored {}, this file {}", show_value(a), show_value(b))),
    }
}

/// A serialized command argument template: a list of `{"Text": ..}` / `{"Var": ..}` pieces.
fn is_template(v: &serde_json::Value) -> bool {
    v.as_array().is_some_and(|pieces| {
        !pieces.is_empty()
            && pieces
                .iter()
                .all(|p| p.as_object().is_some_and(|o| o.len() == 1 && (o.contains_key("Text") || o.contains_key("Var"))))
    })
}

fn show_value(v: &serde_json::Value) -> String {
    let text = match v {
        serde_json::Value::Null => "(none)".to_string(),
        _ if is_template(v) => {
            let arg: String = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match (p.get("Text").and_then(|t| t.as_str()), p.get("Var").and_then(|t| t.as_str())) {
                    (Some(t), _) => t.replace('{', "{{").replace('}', "}}"),
                    (_, Some(name)) => format!("{{{name}}}"),
                    _ => String::new(),
                })
                .collect();
            format!("{arg:?}")
        }
        serde_json::Value::Array(items) if items.iter().all(is_template) && !items.is_empty() => {
            let args: Vec<String> = items.iter().map(show_value).collect();
            format!("[{}]", args.join(", "))
        }
        _ => v.to_string(),
    };
    if text.chars().count() > 160 { format!("{}...", text.chars().take(157).collect::<String>()) } else { text }
}

/// The study directory of a spec read from `spec_path`: `directory` relative to the study
/// file, or `horizon-runs/<name>` beside it.
pub fn study_dir(spec: &StudySpec, spec_path: &Path) -> PathBuf {
    let base = spec_path.parent().unwrap_or(Path::new("."));
    match &spec.directory {
        Some(d) => base.join(d),
        None => base.join("horizon-runs").join(&spec.name),
    }
}

/// The directory of trial `number` inside a study directory.
pub fn trial_dir(study_dir: &Path, number: u64) -> PathBuf {
    study_dir.join("trials").join(format!("{number:05}"))
}

fn looks_like_script(arg: &str) -> bool {
    const EXTENSIONS: &[&str] = &["py", "sh", "bash", "jl", "R", "r", "lua", "js", "rb", "pl"];
    !arg.starts_with('-') && Path::new(arg).extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e))
}

/// The first executable named `program` on `PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}
