//! The analysis is pure: it depends on no parser of outside files (those live in
//! `horizon-import`) and its code reads no file.

use std::path::Path;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The names in the `[dependencies]` table of this crate's manifest.
fn dependencies() -> Vec<String> {
    let manifest = std::fs::read_to_string(crate_dir().join("Cargo.toml")).unwrap();
    let mut in_table = false;
    let mut names = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == "[dependencies]";
        } else if in_table && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap();
            names.push(name.to_string());
        }
    }
    names
}

#[test]
fn the_analysis_depends_on_no_parser_of_outside_files() {
    let deps = dependencies();
    assert!(deps.contains(&"horizon-core".to_string()), "{deps:?}");
    for parser in ["prost", "crc32c", "csv", "serde_json", "saphyr-parser", "horizon-import"] {
        assert!(!deps.iter().any(|d| d == parser), "horizon-analysis depends on {parser}: {deps:?}");
    }
}

#[test]
fn the_analysis_reads_no_file() {
    for entry in std::fs::read_dir(crate_dir().join("src")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for io in ["std::fs", "File::open", "read_to_string", "read_dir"] {
            assert!(!text.contains(io), "{} uses {io}", path.display());
        }
    }
}
