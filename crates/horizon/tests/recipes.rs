//! The launch recipes in examples/ (docs/distributed.md, "Launching workers") name only options
//! `horizon worker` has, and the Slurm script is valid bash.

use std::path::Path;
use std::process::Command;

fn example(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)).unwrap()
}

fn worker_help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_horizon")).args(["worker", "--help"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Every `--option` a recipe passes to horizon, and whether each is one `horizon worker` takes.
fn check_options(options: &[String], help: &str) {
    assert!(options.len() >= 4, "the recipe passes its worker options: {options:?}");
    for option in options {
        assert!(
            help.contains(&format!("{option} ")) || help.contains(&format!("{option}\n")),
            "{option} is not an option of horizon worker"
        );
    }
}

#[test]
fn the_slurm_recipe_is_valid_bash_and_passes_real_worker_options() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/slurm/horizon-workers.sbatch");
    let syntax = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    let text = example("examples/slurm/horizon-workers.sbatch");
    let options: Vec<String> = text
        .lines()
        .filter(|l| l.contains("\"$HORIZON\" worker"))
        .flat_map(|l| l.split_whitespace().filter(|w| w.starts_with("--")).map(String::from).collect::<Vec<_>>())
        .collect();
    check_options(&options, &worker_help());
}

#[test]
fn the_kubernetes_recipe_passes_real_worker_options() {
    let text = example("examples/kubernetes/horizon-workers.yaml");
    let options: Vec<String> =
        text.lines().filter_map(|l| l.trim().strip_prefix("- ")).filter(|w| w.starts_with("--")).map(String::from).collect();
    assert!(text.contains("- worker"), "the container runs horizon worker");
    check_options(&options, &worker_help());
}
