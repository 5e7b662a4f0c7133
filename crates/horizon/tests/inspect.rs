//! What a user does after a study ran: look at one trial, export its metrics, reproduce the
//! best trial by hand, requeue failed trials, and check a study file before running it. Real
//! processes and files, with a trainer written for these tests: it takes one parameter from its
//! argv and one only from `HORIZON_PARAMS`, uses the seed, the budget and a `trainer.env`
//! variable, runs in a working directory of its own, writes a malformed line (a warning) and a
//! checkpoint per evaluation, and fails while a flag file exists.

mod util;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use util::*;

const TRAINER: &str = r#"
import json, os, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
lr = float(args["lr"])
wd = float(json.loads(os.environ["HORIZON_PARAMS"])["wd"])
seed = int(os.environ["HORIZON_SEED"])
steps = int(os.environ["HORIZON_MAX_TRAIN_STEPS"])
every = int(os.environ["HORIZON_EVAL_EVERY"])
scale = float(os.environ["SCALE"])
trial_dir = os.environ["HORIZON_TRIAL_DIR"]
with open(os.path.join(trial_dir, "received-%s.json" % os.environ["HORIZON_ATTEMPT"]), "w") as f:
    json.dump({"argv": sys.argv, "cwd": os.getcwd(),
               "env": {k: v for k, v in os.environ.items() if k.startswith("HORIZON_") or k == "SCALE"}}, f)
if os.path.exists("fail-flag"):
    print("failing on purpose: fail-flag exists", file=sys.stderr)
    sys.exit(4)
gate = os.environ.get("TEST_GATE")
if gate:
    open(os.path.join(trial_dir, "started"), "w").close()
    while not os.path.exists(gate):
        time.sleep(0.01)
out = open(os.environ["HORIZON_METRICS_FILE"], "a")
out.write("this line is not JSON\n")
noise = (seed % 997) / 1e5
for step in range(every, steps + 1, every):
    loss = scale * ((step / steps - min(0.9, max(0.1, lr))) ** 2 + wd + noise) + 0.1
    out.write(json.dumps({"step": step, "split": "train", "metrics": {"loss": loss - 0.05}}) + "\n")
    out.write(json.dumps({"step": step, "split": "valid", "metrics": {"loss": loss}}) + "\n")
    path = "ckpt-%d.json" % step
    with open(os.path.join(trial_dir, path), "w") as f:
        json.dump({"step": step, "lr": lr}, f)
    out.write(json.dumps({"event": "checkpoint", "step": step, "path": path}) + "\n")
    out.flush()
"#;

/// A study of the test trainer in `work/` (its working directory), the study file beside it.
fn study(name: &str, trials: u64, trainer_extra: &str) -> TestStudy {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("train.py"), TRAINER).unwrap();
    let spec = tmp.path().join("study.toml");
    std::fs::write(
        &spec,
        format!(
            r#"
[study]
name = "{name}"
trials = {trials}
max_train_steps = 60
eval_every = 10
seed = 7

[objective]
metric = "valid/loss"
direction = "minimize"

[trainer]
command = ["python3", "train.py", "--lr={{lr}}", "--out={{trial_dir}}/out"]
working_dir = "work"
env = {{ SCALE = "2.5" }}
metrics = ["train/loss", "valid/loss"]
{trainer_extra}

[checkpoints]
every = 10

[params.lr]
type = "float"
low = 0.05
high = 1.0
scale = "log"

[params.wd]
type = "float"
low = 0.0
high = 0.1
"#
        ),
    )
    .unwrap();
    TestStudy { tmp, spec }
}

fn json_doc(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(step, name, value)` of a trial, read from the database directly.
fn stored_metrics(s: &TestStudy, number: u64) -> Vec<(u64, String, f64)> {
    let db = s.db();
    let mut stmt = db
        .prepare("SELECT m.step, m.name, m.value FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.number = ?1 ORDER BY m.step, m.name")
        .unwrap();
    stmt.query_map([number], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

fn received(s: &TestStudy, number: u64, attempt: u32) -> Value {
    let path = s.trial_dir(number).join(format!("received-{attempt}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn trial_shows_parameters_attempts_warnings_curves_files_and_checkpoints() {
    let s = study("inspect", 2, "");
    assert!(s.run(&[]).status.success());
    let out = s.horizon(&["trial", "study.toml", "1", "--json"]);
    let doc = json_doc(&out);
    let t = &s.trials()[1];
    assert_eq!(&doc["trial"], t, "the trial's record, as `trials --json` gives it");
    assert_eq!(doc["seed"].as_u64().unwrap().to_string(), received(&s, 1, 1)["env"]["HORIZON_SEED"].as_str().unwrap());
    let attempts = doc["attempts"].as_array().unwrap();
    assert_eq!(
        (attempts.len(), &attempts[0]["outcome"], &attempts[0]["exit_code"]),
        (1, &Value::from("complete"), &Value::from(0))
    );
    let warnings = doc["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0]["message"].as_str().unwrap().contains("not JSON"), "{warnings:?}");
    // Every metric's curve, exactly as stored.
    let mut from_json: Vec<(u64, String, f64)> = Vec::new();
    for (name, points) in doc["curves"].as_object().unwrap() {
        for p in points.as_array().unwrap() {
            from_json.push((p["step"].as_u64().unwrap(), name.clone(), p["value"].as_f64().unwrap()));
        }
    }
    from_json.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    assert_eq!(from_json, stored_metrics(&s, 1));
    assert_eq!(from_json.len(), 12, "train and valid loss at 6 evaluations");
    // Kept checkpoints are the ones on disk; deleted ones are listed as such.
    let checkpoints = doc["checkpoints"].as_array().unwrap();
    assert_eq!(checkpoints.len(), 6);
    for c in checkpoints {
        let path = PathBuf::from(c["path"].as_str().unwrap());
        assert!(path.is_absolute());
        assert_eq!(path.exists(), c["kept"].as_bool().unwrap(), "{c}");
    }
    let files: Vec<&str> = doc["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    for f in ["attempt-1.metrics.jsonl", "attempt-1.stderr", "attempt-1.stdout", "received-1.json"] {
        assert!(files.contains(&f), "{f} in {files:?}");
    }

    let out = s.horizon(&["trial", "study.toml", "1"]);
    assert!(out.status.success());
    let text_out = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "trial 1 of study inspect: complete",
        "lr = ",
        "wd = ",
        "attempts (1)",
        "warnings (1)",
        "not JSON",
        "kept checkpoints (",
        "(best)",
        "attempt-1.stderr",
        "train/loss",
        "valid/loss",
    ] {
        assert!(text_out.contains(needle), "{needle:?} missing from:\n{text_out}");
    }
    // The curve table has a row per evaluation step.
    assert_eq!(text_out.lines().filter(|l| l.trim_start().starts_with("60 ")).count(), 1, "{text_out}");

    let out = s.horizon(&["trial", "study.toml", "7"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no trial 7; its trials are numbered 0 to 1"));
}

#[test]
fn export_writes_every_stored_metric_as_csv_and_json_lines() {
    let s = study("export", 3, "");
    assert!(s.run(&["-j", "2"]).status.success());
    let all: Vec<(u64, u64, String, f64)> =
        (0..3).flat_map(|n| stored_metrics(&s, n).into_iter().map(move |(step, name, v)| (n, step, name, v))).collect();

    let out = s.horizon(&["export", "study.toml", "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out));
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("trial,rung,step,metric,value"));
    let rows: Vec<(u64, u64, String, f64)> = lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            assert_eq!(c[1], "0", "a study without a ladder has rung 0 only");
            (c[0].parse().unwrap(), c[2].parse().unwrap(), c[3].to_string(), c[4].parse().unwrap())
        })
        .collect();
    assert_eq!(rows, all, "every value, exactly (shortest round-trip text)");

    let out_file = s.path().join("trial-1.jsonl");
    let out = s.horizon(&["export", "study.toml", "--trial", "1", "--format", "jsonl", "-o", out_file.to_str().unwrap()]);
    assert!(out.status.success() && out.stdout.is_empty(), "{}", text(&out));
    let rows: Vec<(u64, u64, String, f64)> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["trial"].as_u64().unwrap(),
                v["step"].as_u64().unwrap(),
                v["metric"].as_str().unwrap().to_string(),
                v["value"].as_f64().unwrap(),
            )
        })
        .collect();
    let trial_1: Vec<_> = all.iter().filter(|r| r.0 == 1).cloned().collect();
    assert_eq!(rows, trial_1);
}

#[test]
fn best_prints_a_command_that_really_reproduces_the_trial() {
    let s = study("repro", 3, "");
    assert!(s.run(&[]).status.success());
    let scratch = s.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let out = s.cmd(&["best", "study.toml", "--json"]).env("TMPDIR", &scratch).output().unwrap();
    let best = json_doc(&out);
    let n = best["number"].as_u64().unwrap();
    let attempt = best["attempts"].as_u64().unwrap() as u32;
    let got = received(&s, n, attempt);

    // The environment horizon gave the trial, variable for variable; only the trial directory
    // and the metrics file are fresh ones (the trial's own files and checkpoints stay as they are).
    let env = best["env"].as_object().unwrap();
    let fresh = PathBuf::from(env["HORIZON_TRIAL_DIR"].as_str().unwrap());
    assert!(fresh.starts_with(&scratch), "{fresh:?}");
    for (k, v) in got["env"].as_object().unwrap() {
        match k.as_str() {
            "HORIZON_TRIAL_DIR" => {}
            "HORIZON_METRICS_FILE" => assert_eq!(env[k].as_str().unwrap(), fresh.join("metrics.jsonl").to_str().unwrap()),
            _ => assert_eq!(&env[k], v, "{k}"),
        }
    }
    assert_eq!(env.len(), got["env"].as_object().unwrap().len(), "no variable more or less: {env:?}");
    assert_eq!(env["SCALE"], "2.5", "trainer.env is part of it");
    assert!(env["HORIZON_PARAMS"].as_str().unwrap().contains("\"wd\""), "parameters that only come through HORIZON_PARAMS");
    let argv: Vec<&str> = best["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let original: Vec<&str> = got["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(argv[2], original[1], "--lr=...");
    assert_eq!(argv[3], format!("--out={}/out", fresh.display()));
    let work = s.path().join("work");
    assert_eq!(best["working_dir"].as_str().unwrap(), work.to_str().unwrap());
    assert_eq!(got["cwd"].as_str().unwrap(), std::fs::canonicalize(&work).unwrap().to_str().unwrap());

    // The kept checkpoint of the selected step, absolute.
    let ckpt = PathBuf::from(best["checkpoint"].as_str().unwrap());
    assert_eq!(ckpt, s.trial_dir(n).join(format!("ckpt-{}.json", best["best_step"])));
    assert!(ckpt.is_file());
    let before = std::fs::read(&ckpt).unwrap();

    // Run the printed line from elsewhere, with a shell: the same curve, line for line.
    let line = best["reproduce"].as_str().unwrap();
    let status = Command::new("sh").arg("-c").arg(line).current_dir("/").status().unwrap();
    assert!(status.success(), "{line}");
    let original_curve = std::fs::read_to_string(s.trial_dir(n).join(format!("attempt-{attempt}.metrics.jsonl"))).unwrap();
    assert_eq!(std::fs::read_to_string(fresh.join("metrics.jsonl")).unwrap(), original_curve);
    assert_eq!(std::fs::read(&ckpt).unwrap(), before, "the trial's own checkpoint is untouched");

    // The text form prints the same line; from the study directory the working directory is
    // inferred (the default `horizon-runs/<name>` beside the study file).
    let out = s.cmd(&["best", "study.toml"]).env("TMPDIR", &scratch).output().unwrap();
    let text_out = String::from_utf8_lossy(&out.stdout);
    assert!(text_out.contains(line), "{text_out}");
    assert!(text_out.contains(&format!("best checkpoint (step {}): {}", best["best_step"], ckpt.display())), "{text_out}");
    let from_dir =
        json_doc(&s.cmd(&["best", s.study_dir().to_str().unwrap(), "--json"]).env("TMPDIR", &scratch).output().unwrap());
    assert_eq!(from_dir["reproduce"], best["reproduce"]);
}

#[test]
fn failed_trials_are_requeued_with_their_history_and_retried_again() {
    let s = study("requeue", 2, "retries = 1");
    let flag = s.path().join("work").join("fail-flag");
    std::fs::write(&flag, "").unwrap();
    assert!(s.run(&[]).status.success());
    let trials = s.trials();
    assert!(trials.iter().all(|t| t["state"] == "failed" && t["attempts"] == 2 && t["failures"] == 2), "{trials:?}");
    // Raising retries does not bring failed trials back: that is what requeue is for.
    let spec = std::fs::read_to_string(&s.spec).unwrap();
    std::fs::write(&s.spec, spec.replace("retries = 1", "retries = 2")).unwrap();
    assert!(s.run(&[]).status.success());
    assert!(s.trials().iter().all(|t| t["state"] == "failed" && t["attempts"] == 2));

    // Requeue trial 1 only: its failures count from zero, so the retries apply again.
    let out = s.horizon(&["requeue", "study.toml", "--trial", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("requeued 1 trial of study"), "{}", text(&out));
    let t1 = &s.trials()[1];
    assert_eq!((&t1["state"], &t1["attempts"], &t1["failures"]), (&Value::from("waiting"), &Value::from(2), &Value::from(0)));
    assert!(s.run(&[]).status.success());
    let t = s.trials();
    assert_eq!((&t[0]["state"], &t[0]["attempts"]), (&Value::from("failed"), &Value::from(2)), "trial 0 was not chosen");
    assert_eq!(
        (&t[1]["state"], &t[1]["attempts"], &t[1]["failures"]),
        (&Value::from("failed"), &Value::from(5), &Value::from(3)),
        "attempts 3, 4 and 5: retries = 2"
    );

    // With the cause fixed, --failed requeues both; attempts continue, the history stays.
    std::fs::remove_file(&flag).unwrap();
    let out = s.horizon(&["requeue", "study.toml", "--failed"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("requeued 2 trials of study"), "{}", text(&out));
    assert!(s.run(&[]).status.success());
    let t = s.trials();
    assert_eq!((&t[0]["state"], &t[0]["attempts"]), (&Value::from("complete"), &Value::from(3)));
    assert_eq!((&t[1]["state"], &t[1]["attempts"]), (&Value::from("complete"), &Value::from(6)));
    let doc = json_doc(&s.horizon(&["trial", "study.toml", "1", "--json"]));
    let outcomes: Vec<&str> = doc["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["waiting", "failed", "waiting", "waiting", "failed", "complete"], "every attempt is kept, in order");
    for attempt in 1..=6 {
        assert!(s.trial_dir(1).join(format!("attempt-{attempt}.stderr")).is_file(), "attempt {attempt}'s files stay");
        assert_eq!(received(&s, 1, attempt)["env"]["HORIZON_ATTEMPT"], attempt.to_string());
    }
    assert!(
        doc["warnings"].as_array().unwrap().iter().all(|w| w["attempt"] == 6),
        "only the last attempt got far enough to warn"
    );

    // Nothing failed: nothing to requeue, and a missing trial is an error.
    let out = s.horizon(&["requeue", "study.toml", "--failed"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("no trial to requeue"), "{}", text(&out));
    let out = s.horizon(&["requeue", "study.toml", "--trial", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no trial 9"), "{}", text(&out));
}

#[test]
fn a_running_trial_is_not_requeued_and_the_message_says_why() {
    let s = study("busy", 1, "");
    let gate = s.path().join("gate");
    let mut child = s
        .cmd(&["run", "study.toml", "--no-progress"])
        .env("TEST_GATE", &gate)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the trial to start", LONG, || s.trial_dir(0).join("started").exists());
    let out = s.horizon(&["requeue", "study.toml", "--trial", "0"]);
    std::fs::write(&gate, "").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trial 0 cannot be requeued: it is running (attempt 1") && err.contains("stop that run first"), "{err}");
    let t = &s.trials()[0];
    assert_eq!((&t["state"], &t["attempts"]), (&Value::from("complete"), &Value::from(1)), "the running attempt was left alone");
}

#[test]
fn check_resolves_samples_and_shows_one_trial_without_writing_anything() {
    let s = study("check", 4, "");
    let out = s.horizon(&["check", "study.toml", "--json", "--points", "3"]);
    let doc = json_doc(&out);
    assert!(!s.path().join("horizon-runs").exists(), "no directory and no database were created");
    assert_eq!(doc["database"]["state"], "missing");
    assert_eq!(doc["study_dir"].as_str().unwrap(), s.study_dir().to_str().unwrap());
    assert_eq!(doc["working_dir"].as_str().unwrap(), s.path().join("work").to_str().unwrap());
    let points = doc["points"].as_array().unwrap().clone();
    assert_eq!(points.len(), 3);
    let text_out = s.horizon(&["run", "study.toml", "--dry-run"]);
    assert!(text_out.status.success() && String::from_utf8_lossy(&text_out.stdout).contains("nothing was run or written"));
    assert!(!s.path().join("horizon-runs").exists(), "--dry-run writes nothing either");

    // The run that follows gets exactly these points, and trial 0 exactly this launch.
    assert!(s.run(&[]).status.success());
    let trials = s.trials();
    for (p, t) in points.iter().zip(&trials) {
        assert_eq!(p["params"], t["params"], "sample index {}", p["sample_index"]);
    }
    let got = received(&s, 0, 1);
    let argv: Vec<&str> = doc["trial"]["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let original: Vec<&str> = got["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(argv[0], "python3");
    assert_eq!(&argv[1..], &original[..], "argv, every argument");
    let env = doc["trial"]["env"].as_object().unwrap();
    for (k, v) in got["env"].as_object().unwrap() {
        assert_eq!(&env[k], v, "{k}");
    }
    assert_eq!(env.len(), got["env"].as_object().unwrap().len());

    // Checked again against the stored study: it matches, so a run would resume it.
    let doc = json_doc(&s.horizon(&["check", "study.toml", "--json"]));
    assert_eq!((doc["database"]["state"].as_str(), doc["database"]["trials"].as_u64()), (Some("matches"), Some(4)));
    let bad = std::fs::read_to_string(&s.spec).unwrap().replace("low = 0.05", "low = 0");
    std::fs::write(&s.spec, bad).unwrap();
    let out = s.horizon(&["check", "study.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("params.lr.low"), "{}", text(&out));
}
