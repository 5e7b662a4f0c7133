//! Opening storage by URL: the one way callers open a database, whichever backend holds it.
//!
//! - `sqlite:///abs/path/horizon.db`, `sqlite:relative/horizon.db`, or a plain path: the
//!   embedded SQLite backend;
//! - `postgres://user@host:port/db` (or `postgresql://`): a PostgreSQL server. The password is
//!   never part of what horizon prints: [`StorageUrl::redacted`] is what messages show.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{BackendErrorKind, PostgresStorage, Result, SqliteStorage, Storage, StoreError};

/// Where a study's database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

/// How a database is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Create it if missing and bring its schema up to date.
    ReadWrite,
    /// Never create, migrate or write (the write methods fail).
    ReadOnly,
}

impl StorageUrl {
    /// Parse a storage URL or a path.
    pub fn parse(text: &str) -> Result<StorageUrl> {
        if let Some(rest) = text.strip_prefix("sqlite://") {
            return Ok(StorageUrl::Sqlite(PathBuf::from(rest)));
        }
        if let Some(rest) = text.strip_prefix("sqlite:") {
            return Ok(StorageUrl::Sqlite(PathBuf::from(rest)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StorageUrl::Postgres(text.to_string()));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(StoreError::Backend {
                backend: "url",
                target: redact(text),
                kind: BackendErrorKind::CannotOpen,
                message: format!(
                    "unknown storage scheme {scheme:?}\n  fix: use a path or sqlite:///PATH for SQLite, postgres://USER@HOST/DB for PostgreSQL"
                ),
            });
        }
        Ok(StorageUrl::Sqlite(PathBuf::from(text)))
    }

    /// The SQLite database file at `path`.
    pub fn sqlite(path: &Path) -> StorageUrl {
        StorageUrl::Sqlite(path.to_path_buf())
    }

    /// The URL as messages show it: without a password.
    pub fn redacted(&self) -> String {
        match self {
            StorageUrl::Sqlite(p) => p.display().to_string(),
            StorageUrl::Postgres(url) => redact(url),
        }
    }
}

/// `scheme://user:secret@host/db?password=secret` as `scheme://user:***@host/db?password=***`:
/// everything between the user's name and the last `@` of the authority (a password may hold
/// `/`, `:` or `?`), and any `password` query parameter.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (mut authority, mut tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    // With a user part, the authority ends at the first `/` or `?` after its last `@`.
    if let Some(at) = rest.rfind('@').filter(|&at| !rest[..at].contains(['?']) || rest[..at].contains(':')) {
        let end = rest[at..].find(['/', '?']).map_or(rest.len(), |i| at + i);
        (authority, tail) = rest.split_at(end);
    }
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Open the storage at `url`.
pub fn open(url: &StorageUrl, access: Access) -> Result<Arc<dyn Storage>> {
    match (url, access) {
        (StorageUrl::Sqlite(path), Access::ReadWrite) => Ok(Arc::new(SqliteStorage::open(path)?)),
        (StorageUrl::Sqlite(path), Access::ReadOnly) => Ok(Arc::new(SqliteStorage::open_read_only(path)?)),
        (StorageUrl::Postgres(url), access) => Ok(Arc::new(PostgresStorage::open(url, access)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_parse_and_passwords_never_show() {
        assert_eq!(StorageUrl::parse("runs/horizon.db").unwrap(), StorageUrl::Sqlite("runs/horizon.db".into()));
        assert_eq!(StorageUrl::parse("sqlite:///tmp/h.db").unwrap(), StorageUrl::Sqlite("/tmp/h.db".into()));
        assert_eq!(StorageUrl::parse("sqlite:h.db").unwrap(), StorageUrl::Sqlite("h.db".into()));
        let pg = StorageUrl::parse("postgres://horizon:s3cret@db.internal:5432/studies?sslmode=require").unwrap();
        assert_eq!(pg.redacted(), "postgres://horizon:***@db.internal:5432/studies?sslmode=require");
        let err = open(&pg, Access::ReadWrite).err().unwrap().to_string();
        assert!(!err.contains("s3cret"), "{err}");
        let err = StorageUrl::parse("mysql://root:pw@h/db").unwrap_err().to_string();
        assert!(err.contains("unknown storage scheme \"mysql\"") && !err.contains("pw@"), "{err}");
        assert_eq!(redact("postgres://db.internal/studies"), "postgres://db.internal/studies");
        assert_eq!(
            redact("postgres://horizon@h/db?password=S3CRET&sslmode=disable"),
            "postgres://horizon@h/db?password=***&sslmode=disable"
        );
        assert_eq!(redact("postgres://u:pa/ss@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u:p@ss?x@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn a_sqlite_url_opens_the_same_database_as_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let url = StorageUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
        let s = open(&url, Access::ReadWrite).unwrap();
        s.open_or_create_study(&crate::NewStudy { name: "s".into(), spec_json: "{}".into(), identity_json: "{}".into() })
            .unwrap();
        let r = open(&StorageUrl::sqlite(&path), Access::ReadOnly).unwrap();
        assert!(r.study("s").unwrap().is_some());
    }
}
