//! The cheapest trainer that speaks trial protocol v1, for measuring horizon's own per-process
//! overhead: it reads `HORIZON_PARAMS` and `HORIZON_METRICS_FILE`, appends 10 evaluation lines
//! (`{"step": k, "split": "valid", "metrics": {"loss": v}}`, k = 1..=10) in one write, and
//! exits 0. The objective matches `overhead`'s in-process closure and `optuna_overhead.py`.

use std::io::Write;

fn main() {
    let params: serde_json::Value =
        serde_json::from_str(&std::env::var("HORIZON_PARAMS").expect("HORIZON_PARAMS is set")).expect("HORIZON_PARAMS is JSON");
    let get = |name: &str| params[name].as_f64().unwrap_or_else(|| panic!("no float parameter {name}"));
    let (x, y) = (get("x"), get("y"));
    let steps: u64 = std::env::var("HORIZON_MAX_TRAIN_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let mut out = String::with_capacity(64 * steps as usize);
    for step in 1..=steps {
        let loss = (x - 2.0).powi(2) + (y.ln() + 3.0).powi(2) + 1.0 / step as f64;
        out.push_str(&format!("{{\"step\": {step}, \"split\": \"valid\", \"metrics\": {{\"loss\": {loss}}}}}\n"));
    }
    let path = std::env::var_os("HORIZON_METRICS_FILE").expect("HORIZON_METRICS_FILE is set");
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(path).expect("opening the metrics file");
    file.write_all(out.as_bytes()).expect("writing the metrics file");
}
