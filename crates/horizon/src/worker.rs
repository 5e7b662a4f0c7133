//! `horizon worker`: work on a study in a shared database until it is done, the way `horizon
//! run` does (the same claims, runner, rounds and progress), from the database alone: the study
//! file is stored with the study, so a worker started on another machine needs only the URL and
//! the study's name (and the study's files at the same paths: a shared file system).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use horizon_core::stored::StoredSpec;
use horizon_runner::resolve::ResolvedStudy;
use horizon_store::{Access, StorageUrl};

use crate::cli::WorkerArgs;
use crate::run::{RunOptions, run_resolved};

pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let url = StorageUrl::parse(&args.storage)?;
    let (study, again) = match (&args.file, &args.study) {
        (Some(file), _) => (
            ResolvedStudy::load(file)?.with_storage(url.clone()),
            format!("horizon worker --storage {} {}", url.redacted(), file.display()),
        ),
        (None, Some(name)) => (stored_study(&url, name)?, format!("horizon worker --storage {} --study {name}", url.redacted())),
        (None, None) => bail!("give the study: --study NAME (stored in the database) or a study file"),
    };
    let study = if args.gpus.is_empty() {
        study
    } else {
        if let Some(bad) = args.gpus.iter().find(|g| g.trim().is_empty() || g.contains(char::is_whitespace)) {
            bail!("--gpus: {bad:?} is not a GPU index or UUID\n  fix: --gpus 0,1,2,3");
        }
        study.with_gpus(args.gpus.clone())
    };
    if !(args.lease_timeout.is_finite() && args.lease_timeout > 0.0) {
        bail!("--lease-timeout {} is not a positive number of seconds", args.lease_timeout);
    }
    let options = RunOptions {
        jobs: args.jobs,
        lease_timeout: std::time::Duration::from_secs_f64(args.lease_timeout),
        no_progress: args.no_progress,
        json: args.json,
        again,
    };
    run_resolved(study, &options)
}

/// The study `name` as stored at `url`, from the study file stored with it.
fn stored_study(url: &StorageUrl, name: &str) -> Result<ResolvedStudy> {
    let storage = horizon_store::open(url, Access::ReadWrite)?;
    let Some(record) = storage.study(name)? else {
        let names: Vec<String> = storage.studies()?.into_iter().map(|s| s.name).collect();
        bail!(
            "{} holds no study named {name:?} ({})\n  fix: start it once with `horizon worker --storage {} STUDY.toml` (or `horizon run STUDY.toml --storage ...`), or name one that is there",
            url.redacted(),
            if names.is_empty() { "it holds none yet".to_string() } else { format!("it holds {}", names.join(", ")) },
            url.redacted()
        );
    };
    let spec = StoredSpec::parse(&record.name, &record.spec_json)?;
    let source = &spec.raw["source"];
    let (Some(path), Some(text)) = (source["path"].as_str(), source["text"].as_str()) else {
        bail!(
            "study {name:?} in {} was stored without its study file (by an older horizon, or it is a sweep's grid)\n  fix: run it once with `horizon worker --storage {} STUDY.toml` to store the file",
            url.redacted(),
            url.redacted()
        );
    };
    let path = std::path::Path::new(path);
    let study = ResolvedStudy::from_source(text, path)
        .with_context(|| {
            format!("the study file stored with {name:?} (from {}) does not resolve on this machine", path.display())
        })?
        .with_storage(url.clone());
    if study.spec.name != name {
        bail!("the study file stored with {name:?} names study {:?}", study.spec.name);
    }
    Ok(study)
}
