//! Finding the study a read-only command is about: from a study file or a study directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use horizon_core::spec::{Direction, StudySpec};
use horizon_runner::resolve::{DATABASE_FILE, study_dir};
use horizon_store::{SqliteStorage, Storage, StudyRecord};

/// An opened study.
pub struct Target {
    pub storage: SqliteStorage,
    pub study: StudyRecord,
    pub dir: PathBuf,
    pub objective: String,
    pub direction: Direction,
    /// The spec as stored (JSON), for reproduction hints.
    pub spec: serde_json::Value,
}

pub fn open(path: &Path, name: Option<&str>) -> Result<Target> {
    let (dir, spec_name) = if path.is_dir() {
        (path.to_path_buf(), None)
    } else if path.is_file() {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let spec = StudySpec::parse(&text, &path.display().to_string())?;
        (study_dir(&spec, path), Some(spec.name))
    } else {
        bail!("{} is neither a study file nor a study directory", path.display());
    };
    let db = dir.join(DATABASE_FILE);
    if !db.is_file() {
        bail!(
            "no study database at {}\n  fix: run the study first (`horizon run STUDY.toml`), or point at the directory that holds {DATABASE_FILE}",
            db.display()
        );
    }
    let storage = SqliteStorage::open(&db)?;
    let wanted = name.map(str::to_string).or(spec_name);
    let study = match wanted {
        Some(n) => storage.study(&n)?.with_context(|| format!("{} holds no study named {n:?}", db.display()))?,
        None => {
            let mut all = storage.studies()?;
            match all.len() {
                1 => all.remove(0),
                0 => bail!("{} holds no study yet", db.display()),
                _ => bail!(
                    "{} holds several studies ({}); choose one with --name",
                    db.display(),
                    all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    };
    let spec = stored_spec(&study)?;
    let (objective, direction) = stored_objective(&spec);
    let objective = objective.unwrap_or("objective").to_string();
    let direction = direction.unwrap_or(Direction::Minimize);
    Ok(Target { storage, study, dir, objective, direction, spec })
}

/// The spec a study was last stored with (JSON).
pub fn stored_spec(study: &StudyRecord) -> Result<serde_json::Value> {
    serde_json::from_str(&study.spec_json).with_context(|| format!("reading the stored spec of study {:?}", study.name))
}

/// The objective metric and direction of a stored spec, as far as it names them.
pub fn stored_objective(spec: &serde_json::Value) -> (Option<&str>, Option<Direction>) {
    (spec["objective"]["metric"].as_str(), spec["objective"]["direction"].as_str().and_then(Direction::parse))
}
