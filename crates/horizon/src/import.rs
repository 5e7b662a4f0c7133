//! `horizon import`: runs made without horizon, stored as finished trials of a study so that
//! `horizon analyze` judges them like its own. Parsing is `horizon_import`'s (all or nothing,
//! errors with file, line, field and fix); storing is one transaction
//! (`Storage::create_study_with_imports` / `Storage::import_trials`). Every trial records its
//! run key (its parameters, budget and curve), unique in its study, so importing the same run
//! twice into one study is refused, not duplicated, and its origin (`file:line`, absolute).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use horizon_core::spec::SpaceFile;
use horizon_core::{Direction, Params, TrialState};
use horizon_import::{EVENT_PREFIX, Run, csv_files, event_runs, parse_csv_dir, parse_jsonl, parse_tensorboard_dir};
use horizon_runner::resolve::DATABASE_FILE;
use horizon_store::{Access, ImportedTrial, NewStudy, Storage, StorageUrl, StoreError, StudyRecord};
use serde_json::json;

use crate::cli::{DirectionArg, ImportArgs, ImportFormat};
use crate::table::shell_quote;
use crate::target::stored_spec;
use horizon_analysis::text::plural;

pub fn import(args: ImportArgs) -> Result<()> {
    let space = match &args.space {
        Some(path) => Some(read_space_file(path)?),
        None => None,
    };
    let (Some(source), Some(objective)) = (&args.source, &args.objective) else {
        return set_space(&args, space.expect("clap requires SOURCE and --objective without --space"));
    };
    let source = &source.clone();
    let objective = objective.as_str();
    let format = match args.format {
        Some(f) => f,
        None => detect(source)?,
    };
    let runs = match format {
        ImportFormat::Jsonl => parse_jsonl(source)?,
        ImportFormat::Csv => parse_csv_dir(source)?,
        ImportFormat::Tensorboard => parse_tensorboard_dir(source)?,
    };
    check_objective(&runs, objective, source)?;
    if let Some((path, file)) = &space {
        check_runs_in_space(runs.iter().map(|r| (r.trial.origin.as_str(), &r.trial.params)), file, path)?;
    }
    let canonical = std::fs::canonicalize(source).with_context(|| format!("reading {}", source.display()))?;
    let name = match &args.name {
        Some(n) if n.trim().is_empty() => {
            bail!("--name is empty\n  fix: give the study a name, or leave --name out")
        }
        Some(n) => n.clone(),
        None => default_name(&canonical),
    };

    crate::run::check_study_dir(&args.into)?;
    let db = args.into.join(DATABASE_FILE);
    let storage = horizon_store::open(&StorageUrl::sqlite(&db), Access::ReadWrite)?;
    let at = horizon_runner::now();
    let trials = |direction| -> Vec<ImportedTrial> { runs.iter().map(|run| run.for_study(objective, direction, at)).collect() };
    // A new study is created together with its trials (one transaction); if another process
    // creates it first, the runs go into that study once its objective is checked.
    let stored = loop {
        let result = match storage.study(&name)? {
            Some(existing) => {
                let direction = check_stored_objective(&existing, objective, args.direction, &db)?;
                let stored = storage.import_trials(existing.id, &trials(direction));
                if stored.is_ok()
                    && let Some((path, file)) = &space
                {
                    store_space(storage.as_ref(), &existing, file, path)?;
                }
                stored
            }
            None => {
                let direction = args.direction.map_or(Direction::Minimize, direction_of);
                let mut new = new_study(&name, objective, direction, &canonical, format);
                if let Some((path, file)) = &space {
                    new.spec_json = with_space(&new.spec_json, file, path)?;
                }
                match storage.create_study_with_imports(&new, &trials(direction)) {
                    Err(StoreError::StudyExists { .. }) => continue,
                    other => other.map(|(_, stored)| stored),
                }
            }
        };
        break result.map_err(|e| explain_store_error(e, &name, &db))?;
    };

    let mut next = format!("horizon analyze {}", shell_quote(&args.into.display().to_string()));
    if storage.studies()?.len() > 1 {
        next.push_str(&format!(" --name {}", shell_quote(&name)));
    }
    let mut out = std::io::stdout().lock();
    let space_line = space.as_ref().map(|(path, file)| format!("  space    {} from {}", describe_space(file), path.display()));
    write_summary(&mut out, &args, source, objective, format, &name, &runs, &stored, space_line)?;
    writeln!(out, "next: {next}")?;
    Ok(())
}

/// A space file, read and checked as a study file's `[params]` (and `[analysis]`) are.
fn read_space_file(path: &Path) -> Result<(std::path::PathBuf, SpaceFile)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the space file {}", path.display()))?;
    Ok((path.to_path_buf(), SpaceFile::parse(&text, &path.display().to_string())?))
}

/// Refuse runs whose values lie outside the declared space: their positions, and so every
/// edge reading, would be wrong. Names the run (file:line) and the parameter.
fn check_runs_in_space<'a>(runs: impl Iterator<Item = (&'a str, &'a Params)>, file: &SpaceFile, path: &Path) -> Result<()> {
    for (origin, params) in runs {
        for def in &file.space.params {
            let Some(value) = params.get(&def.name) else { continue };
            if !def.contains(value) {
                bail!(
                    "{origin}: {} = {} is outside the space in {} ({}); its position in the range, and so the edge reading, would be wrong; nothing was changed\n  \
                     fix: widen params.{} in {} to hold every value the runs used",
                    def.name,
                    value,
                    path.display(),
                    def.describe(),
                    def.name,
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// The stored spec of an imported study with the space and analysis settings of `file`.
fn with_space(spec_json: &str, file: &SpaceFile, path: &Path) -> Result<String> {
    let mut spec: serde_json::Value = serde_json::from_str(spec_json).context("the stored study spec does not read")?;
    spec["space"] = serde_json::to_value(&file.space)?;
    spec["analysis"] = serde_json::to_value(&file.analysis)?;
    spec["space_from"] = json!(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string());
    Ok(spec.to_string())
}

fn store_space(storage: &dyn Storage, study: &StudyRecord, file: &SpaceFile, path: &Path) -> Result<()> {
    storage.open_or_create_study(&NewStudy {
        name: study.name.clone(),
        spec_json: with_space(&study.spec_json, file, path)?,
        identity_json: study.identity_json.clone(),
    })?;
    Ok(())
}

fn describe_space(file: &SpaceFile) -> String {
    let names: Vec<&str> = file.space.params.iter().map(|p| p.name.as_str()).collect();
    format!("{} ({})", plural(names.len(), "parameter"), names.join(", "))
}

/// `horizon import --into DIR --space FILE` without a source: fix the space (and analysis
/// settings) of runs imported earlier.
fn set_space(args: &ImportArgs, (path, file): (std::path::PathBuf, SpaceFile)) -> Result<()> {
    let db = args.into.join(DATABASE_FILE);
    if !db.is_file() {
        bail!(
            "{} holds no study database ({DATABASE_FILE}); nothing was changed\n  fix: import the runs first: horizon import SOURCE --into {} --objective METRIC --space {}",
            args.into.display(),
            args.into.display(),
            path.display()
        );
    }
    let storage = horizon_store::open(&StorageUrl::sqlite(&db), Access::ReadWrite)?;
    let studies = storage.studies()?;
    let study = match (&args.name, studies.as_slice()) {
        (Some(n), _) => {
            studies.iter().find(|s| &s.name == n).cloned().with_context(|| format!("{} has no study {n:?}", db.display()))?
        }
        (None, [one]) => one.clone(),
        (None, _) => bail!(
            "{} holds {} studies; nothing was changed\n  fix: say which with --name ({})",
            db.display(),
            studies.len(),
            studies.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    let identity: serde_json::Value = serde_json::from_str(&study.identity_json).unwrap_or_default();
    if identity["imported"] != json!(true) {
        bail!(
            "study {:?} was run by horizon: its space is its study file's [params]; nothing was changed\n  fix: edit the study file (its [analysis] table sets the analysis)",
            study.name
        );
    }
    let trials = storage.trials(study.id)?;
    let imports = storage.imports(study.id)?;
    let origin_of =
        |id: i64| imports.iter().find(|i| i.trial == id).map_or_else(|| "an imported run".to_string(), |i| i.origin.clone());
    let origins: Vec<String> = trials.iter().map(|t| origin_of(t.id)).collect();
    check_runs_in_space(origins.iter().map(String::as_str).zip(trials.iter().map(|t| &t.params)), &file, &path)?;
    store_space(storage.as_ref(), &study, &file, &path)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "study {:?}: space set to {} from {}", study.name, describe_space(&file), path.display())?;
    writeln!(out, "next: horizon analyze {}", shell_quote(&args.into.display().to_string()))?;
    Ok(())
}

/// A refused import, with the way out.
fn explain_store_error(e: StoreError, name: &str, db: &Path) -> anyhow::Error {
    const NOTHING: &str = "nothing was imported";
    match e {
        StoreError::AlreadyImported { origin, earlier, number, .. } => anyhow::anyhow!(
            "{origin} is the same run (parameters, budget and curve) as {earlier}, already trial {number} of study {name:?} in {}; \
             importing it again would count it twice, so {NOTHING}\n  fix: put only the new runs in the file you import, or \
             import the whole source into a new study (--name NEW, or another --into directory)",
            db.display()
        ),
        StoreError::DuplicateRun { origin, earlier } => anyhow::anyhow!(
            "{origin} is the same run (parameters, budget and curve) as {earlier}; importing both would count it twice, so \
             {NOTHING}\n  fix: remove one of the two"
        ),
        other => other.into(),
    }
}

/// The format of `source`: a `.jsonl` file, a directory holding `*.csv`, or a directory with
/// TensorBoard event files anywhere below it.
fn detect(source: &Path) -> Result<ImportFormat> {
    let fix = "pass --format jsonl, csv or tensorboard";
    if source.is_file() {
        if source.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl")) {
            return Ok(ImportFormat::Jsonl);
        }
        bail!("{}: cannot tell the format from the file's name (JSON Lines files end in .jsonl)\n  fix: {fix}", source.display());
    }
    if !source.is_dir() {
        bail!(
            "{}: no such file or directory\n  fix: give a JSON Lines file, a directory of CSV files, or a TensorBoard log directory",
            source.display()
        );
    }
    let has_csv = !csv_files(source)?.is_empty();
    let has_events = !event_runs(source)?.is_empty();
    match (has_csv, has_events) {
        (true, false) => Ok(ImportFormat::Csv),
        (false, true) => Ok(ImportFormat::Tensorboard),
        (true, true) => bail!("{}: holds both CSV files and TensorBoard event files\n  fix: {fix}", source.display()),
        (false, false) => bail!(
            "{}: holds neither CSV files (runs.csv and one curve per run) nor TensorBoard event files ({EVENT_PREFIX}*)\n  fix: {fix}, or give the right directory",
            source.display()
        ),
    }
}

/// The origins of the runs without any evaluation of `objective`.
fn lacking<'a>(runs: &'a [Run], objective: &str) -> Vec<&'a str> {
    runs.iter().filter(|r| !r.trial.metrics.iter().any(|m| m.name == objective)).map(|r| r.trial.origin.as_str()).collect()
}

/// The runs without a finite evaluation of the objective, by the reason `horizon analyze` will
/// count them infeasible (its order: failed, then diverged, then no_objective).
fn without_finite_objective<'a>(runs: &'a [Run], objective: &str) -> BTreeMap<&'static str, Vec<&'a str>> {
    let mut out: BTreeMap<&'static str, Vec<&'a str>> = BTreeMap::new();
    for r in runs {
        if r.trial.metrics.iter().any(|m| m.name == objective && m.value.is_finite()) {
            continue;
        }
        let non_finite_loss = r
            .trial
            .metrics
            .iter()
            .any(|m| !m.value.is_finite() && (m.name == objective || m.name.to_ascii_lowercase().contains("loss")));
        let reason = match r.trial.state {
            TrialState::Failed => "failed",
            TrialState::Incomplete => "incomplete",
            TrialState::Diverged => "diverged",
            _ if non_finite_loss => "diverged",
            _ => "no_objective",
        };
        out.entry(reason).or_default().push(r.trial.origin.as_str());
    }
    out
}

/// Refuses runs none of which has the objective (naming the metrics they do have).
fn check_objective(runs: &[Run], objective: &str, source: &Path) -> Result<()> {
    let missing = lacking(runs, objective);
    if missing.len() == runs.len() {
        let metrics: BTreeSet<&str> = runs.iter().flat_map(|r| r.trial.metrics.iter().map(|m| m.name.as_str())).collect();
        let Some(first) = metrics.first() else {
            bail!(
                "{}: none of its {} runs has any evaluation, so there is no {objective:?} to judge them by; nothing was imported\n  \
                 fix: add the runs' curves (the format is in docs/analysis.md section 7)",
                source.display(),
                runs.len()
            );
        };
        let list: Vec<String> = metrics.iter().map(|m| format!("{m:?}")).collect();
        bail!(
            "{}: none of its {} runs has the objective metric {objective:?}; the metrics they have are {}; nothing was imported\n  \
             fix: pass one of them, e.g. --objective {first}",
            source.display(),
            runs.len(),
            list.join(", ")
        );
    }
    Ok(())
}

/// The direction to import with into an existing study, whose objective must be this one.
fn check_stored_objective(study: &StudyRecord, objective: &str, given: Option<DirectionArg>, db: &Path) -> Result<Direction> {
    let spec = stored_spec(study)?;
    let (metric, stored) = (spec.objective.as_ref().map(|o| o.metric.as_str()), spec.objective.as_ref().map(|o| o.direction));
    let wanted = given.map(direction_of).or(stored);
    if let (Some(m), Some(d)) = (metric, stored)
        && m == objective
        && wanted == Some(d)
    {
        return Ok(d);
    }
    let show = |m: Option<&str>, d: Option<Direction>| {
        format!("{} ({})", m.unwrap_or("none"), d.map_or("no direction", Direction::as_str))
    };
    bail!(
        "study {:?} in {} judges its trials by {}, not {}; its trials and these runs would not be comparable; nothing was imported\n  \
         fix: import into a new study (--name NEW, or another --into directory){}",
        study.name,
        db.display(),
        show(metric, stored),
        show(Some(objective), wanted),
        match (metric, stored) {
            (Some(m), Some(d)) => format!(", or judge the runs as it does: --objective {m} --direction {}", d.as_str()),
            _ => String::new(),
        }
    )
}

fn new_study(name: &str, objective: &str, direction: Direction, source: &Path, format: ImportFormat) -> NewStudy {
    let objective = json!({"metric": objective, "direction": direction.as_str()});
    NewStudy {
        name: name.to_string(),
        spec_json: json!({
            "name": name,
            "objective": objective,
            "imported_from": source.display().to_string(),
            "format": format_name(format),
        })
        .to_string(),
        // No run spec has this identity, so `horizon run` refuses to mix its trials into it.
        identity_json: json!({"imported": true, "objective": objective}).to_string(),
    }
}

/// The source's name without its extension (a directory's whole name).
fn default_name(canonical: &Path) -> String {
    let name = if canonical.is_dir() { canonical.file_name() } else { canonical.file_stem() };
    name.map(|n| n.to_string_lossy().into_owned()).filter(|n| !n.is_empty()).unwrap_or_else(|| "imported".into())
}

fn direction_of(d: DirectionArg) -> Direction {
    match d {
        DirectionArg::Minimize => Direction::Minimize,
        DirectionArg::Maximize => Direction::Maximize,
    }
}

fn format_name(f: ImportFormat) -> &'static str {
    match f {
        ImportFormat::Jsonl => "jsonl",
        ImportFormat::Csv => "csv",
        ImportFormat::Tensorboard => "tensorboard",
    }
}

#[allow(clippy::too_many_arguments)]
fn write_summary(
    out: &mut impl Write,
    args: &ImportArgs,
    source: &Path,
    objective: &str,
    format: ImportFormat,
    study: &str,
    runs: &[Run],
    stored: &[horizon_core::TrialRecord],
    space_line: Option<String>,
) -> std::io::Result<()> {
    let numbers = match (stored.first(), stored.last()) {
        (Some(a), Some(b)) if a.number != b.number => format!("trials {}-{}", a.number, b.number),
        (Some(a), _) => format!("trial {}", a.number),
        _ => "no trials".into(),
    };
    writeln!(
        out,
        "imported {} from {} ({}) into study {:?} as {numbers}",
        plural(stored.len(), "run"),
        source.display(),
        format_name(format),
        study,
    )?;
    let count = |s: TrialState| runs.iter().filter(|r| r.trial.state == s).count();
    let mut states = vec![format!("{} complete", count(TrialState::Complete))];
    if count(TrialState::Incomplete) > 0 {
        states.push(format!("{} incomplete", count(TrialState::Incomplete)));
    }
    states.push(format!("{} diverged", count(TrialState::Diverged)));
    states.push(format!("{} failed", count(TrialState::Failed)));
    writeln!(out, "  states   {}", states.join(", "))?;
    let mut budgets: BTreeMap<u64, usize> = BTreeMap::new();
    for r in runs {
        *budgets.entry(r.trial.max_train_steps).or_default() += 1;
    }
    let budget_text = if budgets.len() <= 6 {
        budgets.iter().map(|(b, n)| format!("{b} ({})", plural(*n, "run"))).collect::<Vec<_>>().join(", ")
    } else {
        let (lo, hi) = (budgets.keys().next().unwrap_or(&0), budgets.keys().next_back().unwrap_or(&0));
        format!("{} different budgets from {lo} to {hi}", budgets.len())
    };
    writeln!(out, "  budgets  max_train_steps {budget_text}")?;
    writeln!(out, "  study    {} ({DATABASE_FILE})", args.into.display())?;
    let unjudged = without_finite_objective(runs, objective);
    if let Some(first) = unjudged.values().flatten().next() {
        let total: usize = unjudged.values().map(Vec::len).sum();
        let counted: Vec<String> = unjudged.iter().map(|(reason, runs)| format!("{} as {reason}", runs.len())).collect();
        writeln!(
            out,
            "  note     {} {} no finite {} evaluation (first: {first}); analyze counts {}",
            plural(total, "run"),
            if total == 1 { "has" } else { "have" },
            objective,
            counted.join(", ")
        )?;
    }
    if let Some(line) = space_line {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_name_is_the_source_without_its_extension() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sweep.v2.jsonl");
        std::fs::write(&file, "").unwrap();
        assert_eq!(default_name(&file), "sweep.v2");
        let sub = dir.path().join("logs.d");
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(default_name(&sub), "logs.d", "a directory keeps its whole name");
    }

    #[test]
    fn formats_are_detected_from_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("runs.JSONL");
        std::fs::write(&jsonl, "").unwrap();
        assert_eq!(detect(&jsonl).unwrap(), ImportFormat::Jsonl);
        let txt = dir.path().join("runs.txt");
        std::fs::write(&txt, "").unwrap();
        assert!(detect(&txt).unwrap_err().to_string().contains("--format"));

        let csv = dir.path().join("csv");
        std::fs::create_dir(&csv).unwrap();
        assert!(detect(&csv).unwrap_err().to_string().contains("neither"));
        std::fs::write(csv.join("runs.csv"), "").unwrap();
        assert_eq!(detect(&csv).unwrap(), ImportFormat::Csv);

        let tb = dir.path().join("tb");
        std::fs::create_dir_all(tb.join("a/b")).unwrap();
        std::fs::write(tb.join("a/b/events.out.tfevents.1.host"), "").unwrap();
        assert_eq!(detect(&tb).unwrap(), ImportFormat::Tensorboard);
        std::fs::write(tb.join("x.csv"), "").unwrap();
        assert!(detect(&tb).unwrap_err().to_string().contains("both"));
        assert!(detect(&dir.path().join("missing")).unwrap_err().to_string().contains("no such"));
    }
}
