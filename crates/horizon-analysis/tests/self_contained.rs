//! The repository stands on its own: a fresh clone builds, tests and runs with nothing from
//! outside it.
//!
//! - No code, build, test or CI file uses a path into the developers' shared inputs next to the
//!   repository (data, specs): what the tests need is committed (e.g. `tests/data/opda-alexnet/`).
//! - No file points readers to the method's specification outside the repository: it is
//!   `docs/method.md`.
//! - Every citation of a section of `method.md` ("method.md section 2", "method.md, sections 1
//!   and 4", "method.md §3") names a section that `docs/method.md` has.
//!
//! The files are those git knows (tracked, plus untracked ones that are not ignored, so a new
//! file is caught before it is committed); outside a git checkout, the tree is walked instead,
//! skipping build outputs and hidden folders.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Paths relative to the repository root.
fn files() -> Vec<PathBuf> {
    let root = repo();
    let git =
        Command::new("git").arg("-C").arg(&root).args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"]).output();
    if let Ok(out) = git
        && out.status.success()
        && !out.stdout.is_empty()
    {
        return out
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect();
    }
    let mut found = Vec::new();
    walk(&root, Path::new(""), &mut found);
    found
}

fn walk(root: &Path, rel: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = rel.join(&name);
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            let skip = ["target", "horizon-runs", "__pycache__", "results"].contains(&name.as_str())
                || (name.starts_with('.') && name != ".ci" && name != ".github");
            if !skip {
                walk(root, &path, found);
            }
        } else if kind.is_file() {
            found.push(path);
        }
    }
}

/// The file's text, or `None` for binary files and files that are gone.
fn text(rel: &Path) -> Option<String> {
    let bytes = std::fs::read(repo().join(rel)).ok()?;
    if bytes.contains(&0) {
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Files that take part in building, testing or running: sources, manifests, scripts, CI.
fn is_code(rel: &Path, text: &str) -> bool {
    let ext = rel.extension().and_then(|e| e.to_str()).unwrap_or("");
    let in_dir = |d: &str| rel.components().next().is_some_and(|c| c.as_os_str() == d);
    ["rs", "py", "toml", "sh", "bash", "yml", "yaml", "json", "cfg", "ini", "mk", "ci"].contains(&ext)
        || rel.file_name().is_some_and(|n| n == "Makefile" || n == "Cargo.lock")
        || in_dir(".ci")
        || in_dir(".github")
        || in_dir("scripts")
        || text.starts_with("#!")
}

fn report(what: &str, hits: &[String]) {
    assert!(hits.is_empty(), "{what}:\n  {}", hits.join("\n  "));
}

#[test]
fn nothing_uses_the_shared_inputs_outside_the_repository() {
    // Spelled in pieces so that this file does not match itself.
    let sh = "shared";
    let code_patterns = [format!("../{sh}"), format!("/{sh}/"), format!("\"..\", \"{sh}\""), format!("'..', '{sh}'")];
    // Documentation may say where data came from; it may not send readers outside for the spec.
    let doc_pattern = format!("../{sh}/docs/");
    let listed = files();
    assert!(listed.iter().any(|p| p == Path::new("Cargo.toml")), "the repository's files were not found: {listed:?}");
    let mut hits = Vec::new();
    for rel in &listed {
        let Some(text) = text(rel) else { continue };
        let code = is_code(rel, &text);
        for (i, line) in text.lines().enumerate() {
            let bad = if code {
                code_patterns.iter().find(|p| line.contains(p.as_str()))
            } else {
                Some(&doc_pattern).filter(|p| line.contains(p.as_str()))
            };
            if let Some(p) = bad {
                hits.push(format!("{}:{}: `{p}` in: {}", rel.display(), i + 1, line.trim()));
            }
        }
    }
    report(
        "files refer to the developers' shared inputs outside the repository (commit what is needed, e.g. under \
         crates/horizon-analysis/tests/data/, and cite docs/method.md for the method)",
        &hits,
    );
}

/// The section numbers of `docs/method.md`: its `## N. Title` headings.
fn method_sections() -> BTreeSet<u32> {
    let method = std::fs::read_to_string(repo().join("docs/method.md")).expect("docs/method.md is part of the repository");
    method
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter_map(|h| h.split_once('.').and_then(|(n, _)| n.trim().parse().ok()))
        .collect()
}

/// The section numbers cited right after one occurrence of `method.md`: `section 2`, `, section
/// 3`, `sections 1, 2 and 4`, `§2`, `section 2's`. An empty list when no section is named.
fn cited_sections(after: &str) -> Vec<u32> {
    let rest = after.trim_start_matches(|c: char| c == ',' || c == '`' || c == ')' || c == ']' || c == '*' || c.is_whitespace());
    let Some(rest) = rest.strip_prefix("sections").or_else(|| rest.strip_prefix("section")).or_else(|| rest.strip_prefix('§'))
    else {
        return Vec::new();
    };
    let mut numbers = Vec::new();
    let mut rest = rest;
    loop {
        rest = rest.trim_start();
        for sep in [",", "and ", "&"] {
            rest = rest.strip_prefix(sep).unwrap_or(rest).trim_start();
        }
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return numbers;
        }
        numbers.push(digits.parse().unwrap());
        rest = &rest[digits.len()..];
        if !(rest.trim_start().starts_with(',') || rest.trim_start().starts_with("and ") || rest.trim_start().starts_with('&')) {
            return numbers;
        }
    }
}

#[test]
fn section_citations_of_the_method_exist() {
    assert_eq!(cited_sections(" sections 1, 2 and 4)."), vec![1, 2, 4]);
    assert_eq!(cited_sections(", section 3): keep"), vec![3]);
    assert_eq!(cited_sections("` section 2's sweep"), vec![2]);
    assert_eq!(cited_sections(" §2)."), vec![2]);
    assert_eq!(cited_sections("](method.md) section 2"), Vec::<u32>::new());
    assert_eq!(cited_sections(" (in the repository)"), Vec::<u32>::new());

    let sections = method_sections();
    assert!((1..=4).all(|n| sections.contains(&n)), "docs/method.md has sections {sections:?}");
    let mut hits = Vec::new();
    for rel in files() {
        let ext = rel.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !["md", "rs", "py", "toml", "txt"].contains(&ext) {
            continue;
        }
        let Some(text) = text(&rel) else { continue };
        for (i, line) in text.lines().enumerate() {
            for (at, _) in line.match_indices("method.md") {
                for n in cited_sections(&line[at + "method.md".len()..]) {
                    if !sections.contains(&n) {
                        hits.push(format!("{}:{}: section {n} in: {}", rel.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    report(&format!("citations of sections that docs/method.md does not have (it has {sections:?})"), &hits);
}
