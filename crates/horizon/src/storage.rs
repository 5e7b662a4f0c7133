//! `horizon storage copy`: move a study between databases (SQLite on a laptop, PostgreSQL on a
//! cluster, and back), every row of it in one transaction, and re-point its study directory.

use std::path::Path;

use anyhow::{Context, Result};
use horizon_runner::resolve::{DATABASE_FILE, STORAGE_MARKER};
use horizon_store::{Access, StorageUrl};

use crate::cli::StorageCopyArgs;
use crate::target;

pub fn copy(args: StorageCopyArgs) -> Result<()> {
    let source = target::open(&args.from, args.name.as_deref())?;
    let to = StorageUrl::parse(&args.to)?;
    let dest = horizon_store::open(&to, Access::ReadWrite)?;
    if dest.database_id()? == source.storage.database_id()? {
        anyhow::bail!("{} is the database the study is in already", to.redacted());
    }
    let dump = source.storage.dump_study(source.study.id)?;
    let name = &source.study.name;
    let copied = dest.restore_study(&dump, args.replace).map_err(|e| match e {
        horizon_store::StoreError::StudyExists { .. } => anyhow::anyhow!(
            "{} holds a study named {name:?} already\n  fix: --replace to replace it with this copy (its rows are deleted), or copy to another database",
            to.redacted()
        ),
        e => e.into(),
    })?;
    println!(
        "copied study {name:?}: {} trials, {} metric values, {} attempts, to {}",
        dump.trials(),
        dump.rows("metrics"),
        dump.rows("attempts"),
        to.redacted()
    );
    // The study directory follows the study: runs there now use the new database (a run with
    // the old one is refused, so the two copies cannot number trials into the same directories).
    // Only a directory that is this study's (it records the source database, or holds it as its
    // own horizon.db) is re-pointed: one named by what a database holds is not trusted.
    let dir = &source.dir;
    let marker_of_source = std::fs::read_to_string(dir.join(STORAGE_MARKER))
        .ok()
        .and_then(|t| t.lines().nth(1).map(|id| id.trim().to_string()))
        .is_some_and(|id| source.storage.database_id().is_ok_and(|src| src == id));
    let holds_source = match StorageUrl::parse(&args.from.display().to_string()) {
        Ok(StorageUrl::Sqlite(p)) if p.is_file() && same_file(&p, &dir.join(DATABASE_FILE)) => true,
        _ => {
            dir.join(DATABASE_FILE).is_file()
                && !dir.join(STORAGE_MARKER).exists()
                && !args.from.display().to_string().contains("://")
        }
    };
    if !(marker_of_source || holds_source) {
        println!(
            "its study directory was not re-pointed ({} does not record the source database)\n  \
             runs there still use the source: give them --storage {} once the study directory is this study's",
            dir.display(),
            to.redacted()
        );
    } else if dir.is_dir() {
        let marker = dir.join(STORAGE_MARKER);
        let default = matches!(&to, StorageUrl::Sqlite(p) if same_file(p, &dir.join(DATABASE_FILE)));
        if default {
            if marker.exists() {
                std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
            }
        } else {
            std::fs::write(&marker, format!("{}\n{}\n", to.redacted(), dest.database_id()?))
                .with_context(|| format!("writing {}", marker.display()))?;
        }
        println!("its study directory {} now belongs to {}", dir.display(), to.redacted());
        if default {
            println!("  go on with: horizon run STUDY.toml");
        } else {
            let url = to.redacted();
            println!(
                "  go on with: horizon worker --storage {url} --study {}   (or horizon run STUDY.toml --storage {url})",
                copied.name
            );
        }
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}
