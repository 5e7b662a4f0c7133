//! Finding the study a command is about, from a study file or a study directory. Reading
//! commands open the database read-only ([`open`]), so they work on a study the user may only
//! read; [`open_writable`] is for the commands that change it (`horizon requeue`).

use horizon_core::stored::StoredSpec;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use horizon_core::spec::{Direction, StudySpec};
use horizon_runner::resolve::{DATABASE_FILE, study_dir};
use horizon_store::{Access, Storage, StorageUrl, StoreError, StudyRecord};

/// An opened study.
pub struct Target {
    pub storage: std::sync::Arc<dyn Storage>,
    pub study: StudyRecord,
    pub dir: PathBuf,
    pub objective: String,
    pub direction: Direction,
    /// The spec the study was stored with, typed (`raw` for the rest).
    pub spec: StoredSpec,
    /// The study file, absolute, when the command was given one.
    pub spec_path: Option<PathBuf>,
}

impl Target {
    /// The directory the study file was in (what its relative paths are relative to): the
    /// given file's, or inferred from the study directory when its `directory` (default
    /// `horizon-runs/<name>`) can be undone lexically. `None` when it cannot be known.
    pub fn spec_base(&self) -> Option<PathBuf> {
        if let Some(p) = &self.spec_path {
            return p.parent().map(Path::to_path_buf);
        }
        let relative = match self.spec.directory.as_deref() {
            Some(d) => PathBuf::from(d),
            None => Path::new("horizon-runs").join(&self.spec.name),
        };
        let mut base = std::path::absolute(&self.dir).ok()?;
        let parts: Vec<_> = relative.components().collect();
        for part in parts.iter().rev() {
            match part {
                std::path::Component::CurDir => {}
                std::path::Component::Normal(name) if base.file_name() == Some(name) => {
                    base.pop();
                }
                _ => return None,
            }
        }
        Some(base)
    }
}

/// Open a study for reading: the database is opened read-only, never created or written. A
/// database whose schema is older than this horizon's is upgraded in place (read-write) when
/// the user may write it, and refused with a fix otherwise.
pub fn open(path: &Path, name: Option<&str>) -> Result<Target> {
    open_with(path, name, |url| match horizon_store::open(url, Access::ReadOnly) {
        Err(old @ StoreError::SchemaTooOld { .. }) => horizon_store::open(url, Access::ReadWrite).map_err(|_| old),
        other => other,
    })
}

/// Open a study to change it (read-write; the schema is upgraded if needed).
pub fn open_writable(path: &Path, name: Option<&str>) -> Result<Target> {
    open_with(path, name, |url| horizon_store::open(url, Access::ReadWrite))
}

/// A database URL given where a study file or directory may be (`postgres://...`, `sqlite://...`).
fn database_url(path: &Path) -> Option<StorageUrl> {
    let text = path.to_str()?;
    text.contains("://").then(|| StorageUrl::parse(text).ok()).flatten()
}

fn open_with(
    path: &Path,
    name: Option<&str>,
    open_db: impl FnOnce(&StorageUrl) -> horizon_store::Result<std::sync::Arc<dyn Storage>>,
) -> Result<Target> {
    // A database itself (a study run with `--storage`: its file, or its URL): its study
    // directory is the one its stored study file names.
    let url = database_url(path);
    let database_file = url.is_some() || (path.is_file() && is_sqlite_file(path));
    let (dir, spec_name, spec_path) = if url.is_some() {
        (PathBuf::from("."), None, None)
    } else if path.is_dir() {
        (path.to_path_buf(), None, None)
    } else if database_file {
        (path.parent().unwrap_or(Path::new(".")).to_path_buf(), None, None)
    } else if path.is_file() {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let spec = StudySpec::parse(&text, &path.display().to_string())?;
        (study_dir(&spec, path), Some(spec.name), std::path::absolute(path).ok())
    } else {
        bail!(
            "{} is neither a study file nor a study directory\n  fix: give the study's .toml file, the directory that holds its {DATABASE_FILE}, the database file, or its postgres:// URL",
            path.display()
        );
    };
    let url = match url {
        Some(url) => url,
        None => {
            let db = if database_file { path.to_path_buf() } else { dir.join(DATABASE_FILE) };
            if !db.is_file() {
                bail!(
                    "no study database at {}\n  fix: run the study first (`horizon run STUDY.toml`), or point at the directory that holds {DATABASE_FILE}",
                    db.display()
                );
            }
            StorageUrl::sqlite(&db)
        }
    };
    let db = url.redacted();
    let storage = open_db(&url)?;
    let wanted = name.map(str::to_string).or(spec_name);
    let study = match wanted {
        Some(n) => storage.study(&n)?.with_context(|| format!("{db} holds no study named {n:?}"))?,
        None => {
            let mut all = storage.studies()?;
            match all.len() {
                1 => all.remove(0),
                0 => bail!("{db} holds no study yet"),
                _ => bail!(
                    "{db} holds several studies ({}); choose one with --name",
                    all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    };
    let spec = stored_spec(&study)?;
    let dir = match (database_file, stored_study_dir(&spec)) {
        (true, Some(d)) => d,
        _ => dir,
    };
    let objective = spec.objective.as_ref().map_or("objective", |o| o.metric.as_str()).to_string();
    let direction = spec.objective.as_ref().map_or(Direction::Minimize, |o| o.direction);
    Ok(Target { storage, study, dir, objective, direction, spec, spec_path })
}

/// Whether `path` is a SQLite database (its 16-byte header).
fn is_sqlite_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == b"SQLite format 3\0"
}

/// The study directory the study file stored with a study names (where its trials are).
fn stored_study_dir(spec: &StoredSpec) -> Option<PathBuf> {
    let source = &spec.raw["source"];
    let path = Path::new(source["path"].as_str()?);
    let parsed = StudySpec::parse(source["text"].as_str()?, &path.display().to_string()).ok()?;
    Some(study_dir(&parsed, path))
}

/// The spec a study was last stored with, typed; a field that does not read is an error that
/// names it.
pub fn stored_spec(study: &StudyRecord) -> Result<StoredSpec> {
    Ok(StoredSpec::parse(&study.name, &study.spec_json)?)
}
