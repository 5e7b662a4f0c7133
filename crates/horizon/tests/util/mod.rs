//! A small harness for end-to-end tests of the real `horizon` binary, after ripgrep's
//! `tests/util.rs`: each test gets a temporary directory with a study file that runs the
//! protocol-speaking fixture trainer (`tests/fixtures/trainer.py`), real SQLite and real processes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trainer.py");

/// Options of a generated study file.
pub struct StudyOptions {
    pub name: &'static str,
    pub trials: u64,
    pub max_train_steps: u64,
    pub eval_every: u64,
    pub mode: &'static str,
    /// Extra lines for the [trainer] table.
    pub trainer: String,
    /// Extra arguments for the command (after --mode and --lr).
    pub args: Vec<String>,
    /// Extra TOML after the generated tables (more params, [checkpoints], ...).
    pub extra: String,
}

impl Default for StudyOptions {
    fn default() -> Self {
        StudyOptions {
            name: "test",
            trials: 4,
            max_train_steps: 100,
            eval_every: 10,
            mode: "ok",
            trainer: String::new(),
            args: Vec::new(),
            extra: String::new(),
        }
    }
}

impl StudyOptions {
    pub fn toml(&self) -> String {
        let mut command = vec!["python3".to_string(), FIXTURE.to_string(), "--mode={mode}".to_string(), "--lr={lr}".to_string()];
        command.extend(self.args.iter().cloned());
        let command: Vec<String> = command.iter().map(|a| format!("{a:?}")).collect();
        format!(
            r#"
[study]
name = "{name}"
trials = {trials}
max_train_steps = {max}
eval_every = {every}

[objective]
metric = "valid/loss"
direction = "minimize"

[trainer]
command = [{command}]
metrics = ["train/loss", "valid/loss"]
{trainer}

[params.lr]
type = "float"
low = 0.01
high = 1.0
scale = "log"

[params.mode]
type = "fixed"
value = "{mode}"

{extra}
"#,
            name = self.name,
            trials = self.trials,
            max = self.max_train_steps,
            every = self.eval_every,
            command = command.join(", "),
            trainer = self.trainer,
            mode = self.mode,
            extra = self.extra,
        )
    }
}

/// A study in a temporary directory.
pub struct TestStudy {
    pub tmp: tempfile::TempDir,
    pub spec: PathBuf,
}

impl TestStudy {
    pub fn new(options: StudyOptions) -> TestStudy {
        let tmp = tempfile::tempdir().unwrap();
        let spec = tmp.path().join("study.toml");
        std::fs::write(&spec, options.toml()).unwrap();
        TestStudy { tmp, spec }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn write_spec(&self, options: &StudyOptions) {
        std::fs::write(&self.spec, options.toml()).unwrap();
    }

    /// The study directory (the default `horizon-runs/<name>`).
    pub fn study_dir(&self) -> PathBuf {
        let name = std::fs::read_to_string(&self.spec)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("name = \"").map(|r| r.trim_end_matches('"').to_string()));
        self.path().join("horizon-runs").join(name.unwrap())
    }

    pub fn trial_dir(&self, number: u64) -> PathBuf {
        self.study_dir().join("trials").join(format!("{number:05}"))
    }

    /// `horizon` with these arguments, run in the study's directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_horizon"));
        cmd.args(args).current_dir(self.path()).stdin(Stdio::null());
        cmd
    }

    /// Run `horizon` to completion.
    pub fn horizon(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `horizon run study.toml` plus arguments, to completion.
    pub fn run(&self, extra: &[&str]) -> Output {
        let mut args = vec!["run", "study.toml"];
        args.extend_from_slice(extra);
        self.horizon(&args)
    }

    /// Start `horizon run` in the background with its output going to files.
    pub fn spawn_run(&self, extra: &[&str], tag: &str) -> Child {
        let mut args = vec!["run", "study.toml", "--no-progress"];
        args.extend_from_slice(extra);
        self.cmd(&args)
            .stdout(std::fs::File::create(self.path().join(format!("{tag}.stdout"))).unwrap())
            .stderr(std::fs::File::create(self.path().join(format!("{tag}.stderr"))).unwrap())
            .spawn()
            .unwrap()
    }

    pub fn output_of(&self, tag: &str) -> String {
        std::fs::read_to_string(self.path().join(format!("{tag}.stderr"))).unwrap_or_default()
            + &std::fs::read_to_string(self.path().join(format!("{tag}.stdout"))).unwrap_or_default()
    }

    /// `horizon trials --json`, parsed.
    pub fn trials(&self) -> Vec<Value> {
        let out = self.horizon(&["trials", "study.toml", "--json"]);
        assert!(out.status.success(), "trials --json failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The study's database, opened directly.
    pub fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.study_dir().join("horizon.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn
    }

    /// One integer from a query on the database.
    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// The fixture's record of what it received (argv, params, pid, ...) in a trial.
    pub fn argv_record(&self, number: u64) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.trial_dir(number).join("argv.json")).unwrap()).unwrap()
    }

    /// How many trial directories hold a "started" marker.
    pub fn started_markers(&self) -> usize {
        let trials = self.study_dir().join("trials");
        std::fs::read_dir(trials).map(|d| d.filter(|e| e.as_ref().unwrap().path().join("started").exists()).count()).unwrap_or(0)
    }
}

/// Poll `cond` until it holds, failing the test with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const LONG: Duration = Duration::from_secs(90);

pub fn pid_alive(pid: i64) -> bool {
    // A zombie still answers kill(0); check /proc for its state instead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

pub fn send_signal(child: &Child, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}
