//! Measure training steps per second of a workload at its default parameters, on one thread:
//! `cargo run --release -p horizon-workloads --example steps_per_second -- NAME STEPS [k=v...]`.
//! Runs STEPS steps with one evaluation at the end and prints steps/s (evaluation excluded)
//! and the final metrics. Besides wall-clock time it reads the main thread's CPU time from
//! /proc/self/schedstat (Linux), which other processes on a busy machine do not inflate.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use horizon_core::{ParamValue, Params};
use horizon_workloads::{TrialEnv, run};

// The same allocator as the `horizon` binary that runs the workloads as trials.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map(String::as_str).unwrap_or("digits-mlp");
    let steps: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let mut params = Params::default();
    for kv in args.iter().skip(2) {
        let (k, v) = kv.split_once('=').expect("parameters are k=v");
        let value = if let Ok(i) = v.parse::<i64>() {
            ParamValue::Int(i)
        } else if let Ok(x) = v.parse::<f64>() {
            ParamValue::Float(x)
        } else if let Ok(b) = v.parse::<bool>() {
            ParamValue::Bool(b)
        } else {
            ParamValue::Str(v.to_string())
        };
        params.set(k, value);
    }
    let dir = tempfile::tempdir().unwrap();
    let metrics_file = dir.path().join("metrics.jsonl");
    let stop = AtomicBool::new(false);
    // A run of 1 step and one of STEPS + 1 steps, each evaluated at its last step (and loading
    // its data): their difference is the time of STEPS training steps.
    let env = |steps: u64, eval_every: u64| TrialEnv {
        params: params.clone(),
        max_train_steps: steps,
        eval_every,
        seed: std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1),
        trial_dir: dir.path().to_path_buf(),
        metrics_file: metrics_file.clone(),
        checkpoint_every: 0,
        checkpoint_steps: vec![],
        resume_from: None,
    };
    let (t, c) = (Instant::now(), cpu_seconds());
    run(name, &env(1, 1), &stop).unwrap();
    let (one, one_cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    let (t, c) = (Instant::now(), cpu_seconds());
    // EVAL_EVERY=N evaluates every N steps too (and then prints every line).
    let every: u64 = std::env::var("EVAL_EVERY").ok().and_then(|s| s.parse().ok()).unwrap_or(steps + 1);
    run(name, &env(steps + 1, every), &stop).unwrap();
    let (total, total_cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    let per_step = (total - one) / steps as f64;
    let per_step_cpu = (total_cpu - one_cpu) / steps as f64;
    println!(
        "{name}: {steps} steps: {:.1} steps/s wall ({:.2} ms/step), {:.1} steps/s CPU ({:.2} ms/step); setup + 1 step + eval {:.2} s",
        1.0 / per_step,
        per_step * 1e3,
        1.0 / per_step_cpu,
        per_step_cpu * 1e3,
        one
    );
    println!("threads: {}", std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0));
    let text = std::fs::read_to_string(&metrics_file).unwrap();
    // One evaluation: 3 steps evaluated at steps 1, 2, 3, minus 3 steps evaluated at step 3.
    let c = cpu_seconds();
    run(name, &env(3, 1), &stop).unwrap();
    let three_evals = cpu_seconds() - c;
    let c = cpu_seconds();
    run(name, &env(3, 3), &stop).unwrap();
    let one_eval = cpu_seconds() - c;
    println!("one evaluation: {:.1} ms CPU", (three_evals - one_eval) / 2.0 * 1e3);
    let shown = if every <= steps { usize::MAX } else { 2 };
    for line in text.lines().skip(2).collect::<Vec<_>>().into_iter().rev().take(shown).collect::<Vec<_>>().into_iter().rev() {
        println!("{line}");
    }
}

/// CPU time of the main thread so far (0 where /proc/self/schedstat is missing).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()))
        .map_or(0.0, |ns| ns * 1e-9)
}
