//! TensorBoard event files: real files written by tensorboardX (`fixtures/tensorboard`, made by
//! `make_fixtures.py`, whose values are asserted here), and files built byte by byte for the
//! framing: a truncated tail of the run's last file is ignored, a truncated earlier file or a bad
//! checksum is an error naming the file, record and offset.

use std::fs;
use std::path::{Path, PathBuf};

use horizon_analysis::{AnalysisConfig, analyze};
use horizon_core::{Direction, ParamValue, TrialState};
use horizon_import::{EVENT_PREFIX, ImportError, Run, event_runs, parse_tensorboard_dir, study_from_runs};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tensorboard")
}

fn curve(run: &Run) -> Vec<(u64, &str, f64)> {
    run.trial.metrics.iter().map(|m| (m.step, m.name.as_str(), m.value)).collect()
}

fn param<'a>(run: &'a Run, name: &str) -> Option<&'a ParamValue> {
    run.trial.params.get(name)
}

#[test]
fn reads_the_tensorboardx_fixtures() {
    let runs = parse_tensorboard_dir(fixtures()).unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_deref().unwrap()).collect();
    assert_eq!(names, ["a", "b", "diverged", "grid/lr=0.01,wd=1e-4", "grid/lr=1_weight_decay=0.001_opt=sgd"]);

    // add_scalar over two event files; the second rewrites step 200's valid/loss; the
    // histogram and the text summary are skipped; float32 values read as written (0.8, not
    // 0.800000011920929).
    let a = &runs[0];
    assert_eq!(
        curve(a),
        [
            (0, "valid/loss", 2.5),
            (100, "valid/loss", 0.8),
            (100, "train/loss", 0.9),
            (200, "valid/loss", 0.55),
            (200, "train/loss", 0.5),
            (300, "valid/loss", 0.45),
        ]
    );
    assert_eq!(param(a, "lr"), Some(&ParamValue::Float(0.1)));
    assert_eq!(param(a, "batch_size"), Some(&ParamValue::Int(128)));
    assert_eq!(param(a, "optimizer"), Some(&ParamValue::Str("sgd".into())));
    assert_eq!(param(a, "nesterov"), Some(&ParamValue::Bool(true)));
    assert_eq!((a.trial.params.len(), a.trial.max_train_steps), (4, 300), "max_train_steps is the budget, not a parameter");
    assert_eq!(
        (a.trial.state, a.trial.source.as_deref(), a.trial.message.as_deref()),
        (TrialState::Complete, None, Some("1 evaluation was written more than once (a restarted run?); its last value was kept"))
    );
    assert_eq!(runs[1].trial.message, None, "no value written twice");
    assert_eq!(Path::new(&a.trial.origin), fixtures().join("a/events.out.tfevents.1700000000.fixture"));

    // Scalar tensors in each encoding (float_val, double_val, float32 and float64
    // tensor_content); a two-element tensor and another plugin's tag are skipped. No budget in
    // params.json: the largest step.
    let b = &runs[1];
    assert_eq!(
        curve(b),
        [
            (10, "valid/loss", 1.5),
            (10, "valid/error", 0.123456789012 * 10.0),
            (10, "train/loss", 2.5),
            (10, "train/error", 1.0),
            (20, "valid/loss", 0.75),
            (20, "valid/error", 0.123456789012 * 20.0),
            (20, "train/loss", 5.0),
            (20, "train/error", 2.0),
        ]
    );
    assert_eq!(b.trial.max_train_steps, 20);
    assert_eq!(param(b, "nesterov"), Some(&ParamValue::Bool(false)));
    assert_eq!(param(b, "optimizer"), Some(&ParamValue::Str("adam".into())));

    // NaN and inf: diverged. Parameters and budget from hparams.yaml.
    let d = &runs[2];
    assert_eq!(d.trial.state, TrialState::Diverged);
    assert_eq!(d.trial.max_train_steps, 40);
    let values: Vec<f64> = d.trial.metrics.iter().map(|m| m.value).collect();
    assert_eq!((values.len(), values[0], values[2]), (3, 4.0, f64::INFINITY));
    assert!(values[1].is_nan());
    assert_eq!(param(d, "lr"), Some(&ParamValue::Float(10.0)));
    assert_eq!(param(d, "schedule"), Some(&ParamValue::Str("cosine".into())));
    assert_eq!(param(d, "warmup"), Some(&ParamValue::Int(5)));
    assert_eq!(d.trial.params.len(), 3);

    // Parameters from directory names, with either separator.
    let g = &runs[3];
    assert_eq!(g.trial.params.0, [("lr".to_string(), ParamValue::Float(0.01)), ("wd".to_string(), ParamValue::Float(1e-4))]);
    assert_eq!((curve(g), g.trial.max_train_steps), (vec![(50, "valid/loss", 1.25), (100, "valid/loss", 1.0)], 100));
    let h = &runs[4];
    assert_eq!(
        h.trial.params.0,
        [
            ("lr".to_string(), ParamValue::Int(1)),
            ("weight_decay".to_string(), ParamValue::Float(0.001)),
            ("opt".to_string(), ParamValue::Str("sgd".into()))
        ]
    );
    assert_eq!(h.trial.max_train_steps, 50);

    let study = study_from_runs("valid/loss", Direction::Minimize, &runs);
    assert_eq!((study.trials[0].record.best_step, study.trials[0].record.best_value), (Some(300), Some(0.45)));
    let analysis = analyze(&study, &AnalysisConfig::default());
    assert_eq!((analysis.counts.trials, analysis.counts.diverged), (5, 1));
}

#[test]
fn a_run_directory_is_a_root_too() {
    let runs = parse_tensorboard_dir(fixtures().join("a")).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].name.as_deref(), Some("a"));
    assert_eq!(runs[0].trial.metrics.len(), 6);
    // A directory of runs two levels up names them by their relative path.
    let grid = parse_tensorboard_dir(fixtures().join("grid")).unwrap();
    let names: Vec<&str> = grid.iter().map(|r| r.name.as_deref().unwrap()).collect();
    assert_eq!(names, ["lr=0.01,wd=1e-4", "lr=1_weight_decay=0.001_opt=sgd"]);
}

#[test]
fn the_directory_walk_finds_the_runs_the_parser_reads() {
    // One walk: what `horizon import` detects a log directory by is what is read.
    let found = event_runs(&fixtures()).unwrap();
    let dirs: Vec<String> = found.iter().map(|r| r.dir.display().to_string()).collect();
    let runs = parse_tensorboard_dir(fixtures()).unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_deref().unwrap()).collect();
    assert_eq!(dirs, names);
    assert_eq!(found[0].files.len(), 2, "run a: two event files, in name order");
    assert!(found.iter().flat_map(|r| &r.files).all(|f| f.file_name().unwrap().to_string_lossy().starts_with(EVENT_PREFIX)));
    assert!(found[0].files.windows(2).all(|w| w[0] < w[1]));

    // A link to a directory is not followed (no cycles, no run counted twice).
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("run")).unwrap();
    fs::write(dir.path().join("run/events.out.tfevents.1.host"), records().concat()).unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("run/loop")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("run"), dir.path().join("again")).unwrap();
    let found = event_runs(dir.path()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].dir, Path::new("run"));
    assert!(event_runs(&dir.path().join("run/events.out.tfevents.1.host")).is_err(), "a file is not a directory");
}

// A minimal encoder: TFRecord frames of `Event { step, summary { value { tag, simple_value } } }`.

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn len_delimited(field: u64, body: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

fn event(step: i64, scalars: &[(&str, f32)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, x) in scalars {
        let mut value = Vec::new();
        len_delimited(1, tag.as_bytes(), &mut value);
        value.push(2 << 3 | 5); // simple_value: fixed32
        value.extend_from_slice(&x.to_le_bytes());
        len_delimited(1, &value, &mut summary);
    }
    let mut out = vec![1 << 3 | 1]; // wall_time: fixed64
    out.extend_from_slice(&1.7e9f64.to_le_bytes());
    out.push(2 << 3);
    varint(step as u64, &mut out);
    len_delimited(5, &summary, &mut out);
    out
}

fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = len.to_vec();
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// Three records: a version-only event, then loss at steps 1 and 2.
fn records() -> Vec<Vec<u8>> {
    let mut version = vec![3 << 3 | 2, 13];
    version.extend_from_slice(b"brain.Event:2");
    vec![frame(&version), frame(&event(1, &[("loss", 1.0)])), frame(&event(2, &[("loss", 0.5), ("acc", 0.75)]))]
}

fn run_dir(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    fs::create_dir(&run).unwrap();
    let file = run.join("events.out.tfevents.1.host");
    fs::write(&file, bytes).unwrap();
    (dir, file)
}

fn read(bytes: &[u8]) -> Result<Vec<Run>, ImportError> {
    let (dir, _file) = run_dir(bytes);
    parse_tensorboard_dir(dir.path())
}

#[test]
fn a_truncated_last_record_is_ignored() {
    let records = records();
    let whole = records.concat();
    let runs = read(&whole).unwrap();
    assert_eq!(curve(&runs[0]), [(1, "loss", 1.0), (2, "loss", 0.5), (2, "acc", 0.75)]);
    assert_eq!((runs[0].name.as_deref(), runs[0].trial.max_train_steps), (Some("run"), 2));
    // Cut anywhere in the last record (header, data, footer): the first two records remain.
    let two = records[..2].concat();
    for cut in two.len()..whole.len() {
        let runs = read(&whole[..cut]).unwrap();
        assert_eq!(curve(&runs[0]), [(1, "loss", 1.0)], "cut at byte {cut}");
    }
}

#[test]
fn a_bad_checksum_names_the_file_record_and_offset() {
    let records = records();
    let offset = records[0].len();
    // A flipped bit in record 2's data, a complete record followed by another.
    let mut bytes = records.concat();
    bytes[offset + 12 + 3] ^= 0x10;
    let (dir, file) = run_dir(&bytes);
    let e = parse_tensorboard_dir(dir.path()).unwrap_err();
    // A record is not a line: the number is in the problem only.
    assert_eq!((e.file.as_path(), e.line), (file.as_path(), None));
    assert!(e.problem.contains(&format!("record 2 at byte offset {offset}")), "{}", e.problem);
    assert!(e.problem.contains("data's checksum"), "{}", e.problem);
    assert!(e.to_string().contains("events.out.tfevents.1.host: record 2 at byte offset"), "{e}");

    // The length's checksum.
    let mut bytes = records.concat();
    bytes[offset + 9] ^= 0x01;
    let e = read(&bytes).unwrap_err();
    assert_eq!(e.line, None);
    assert!(e.problem.contains("length's checksum"), "{}", e.problem);

    // The last record, complete but damaged: an error, not a truncation.
    let mut bytes = records.concat();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let e = read(&bytes).unwrap_err();
    let third = records[0].len() + records[1].len();
    assert!(e.problem.contains(&format!("record 3 at byte offset {third}")), "{}", e.problem);
}

#[test]
fn a_truncated_record_in_an_earlier_file_is_an_error() {
    let records = records();
    let whole = records.concat();
    let two = records[..2].concat();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("events.out.tfevents.1.host");
    fs::write(dir.path().join("events.out.tfevents.2.host"), frame(&event(3, &[("loss", 0.25)]))).unwrap();
    // Cut anywhere in record 3 (header, data, footer) of the first of two files.
    for cut in two.len() + 1..whole.len() {
        fs::write(&first, &whole[..cut]).unwrap();
        let e = parse_tensorboard_dir(dir.path()).unwrap_err();
        assert_eq!((e.file.as_path(), e.line), (first.as_path(), None));
        assert!(
            e.problem.starts_with(&format!(
                "record 3 at byte offset {}: cut short by the end of the file {} bytes into the record",
                two.len(),
                cut - two.len()
            )),
            "cut at {cut}: {}",
            e.problem
        );
        assert!(e.fix.contains("the file is damaged"), "{}", e.fix);
    }
    // Ending between records is not a truncation; the same cut in the last file is tolerated.
    fs::write(&first, &two).unwrap();
    let runs = parse_tensorboard_dir(dir.path()).unwrap();
    assert_eq!(curve(&runs[0]), [(1, "loss", 1.0), (3, "loss", 0.25)]);
    fs::write(&first, frame(&event(3, &[("loss", 0.25)]))).unwrap();
    fs::write(dir.path().join("events.out.tfevents.2.host"), &whole[..whole.len() - 1]).unwrap();
    let runs = parse_tensorboard_dir(dir.path()).unwrap();
    assert_eq!(curve(&runs[0]), [(1, "loss", 1.0), (3, "loss", 0.25)]);
    assert_eq!(runs[0].trial.message, None);
}

#[test]
fn event_files_are_read_in_name_order_and_the_last_value_wins() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("events.out.tfevents.2.host"), frame(&event(5, &[("loss", 0.25)]))).unwrap();
    let first = [frame(&event(5, &[("loss", 0.5), ("loss", 0.4)])), frame(&event(3, &[("loss", 1.0)]))].concat();
    fs::write(dir.path().join("events.out.tfevents.1.host"), first).unwrap();
    fs::write(dir.path().join("notes.txt"), "not an event file").unwrap();
    let runs = parse_tensorboard_dir(dir.path()).unwrap();
    assert_eq!(curve(&runs[0]), [(3, "loss", 1.0), (5, "loss", 0.25)]);
    assert!(runs[0].trial.origin.ends_with("events.out.tfevents.1.host"));
    // Step 5's loss, written three times, counts once.
    assert_eq!(
        runs[0].trial.message.as_deref(),
        Some("1 evaluation was written more than once (a restarted run?); its last value was kept")
    );

    // A restarted run: the second file writes steps 2 and 3 again, and step 4.
    fs::write(
        dir.path().join("events.out.tfevents.2.host"),
        [
            frame(&event(2, &[("loss", 0.7), ("acc", 0.1)])),
            frame(&event(3, &[("loss", 0.6)])),
            frame(&event(4, &[("loss", 0.5)])),
        ]
        .concat(),
    )
    .unwrap();
    fs::write(
        dir.path().join("events.out.tfevents.1.host"),
        [frame(&event(2, &[("loss", 0.8), ("acc", 0.2)])), frame(&event(3, &[("loss", 0.75)]))].concat(),
    )
    .unwrap();
    let runs = parse_tensorboard_dir(dir.path()).unwrap();
    assert_eq!(curve(&runs[0]), [(2, "loss", 0.7), (2, "acc", 0.1), (3, "loss", 0.6), (4, "loss", 0.5)]);
    assert_eq!(
        runs[0].trial.message.as_deref(),
        Some("3 evaluations were written more than once (a restarted run?); the last value of each was kept")
    );
}

#[test]
fn problems_are_errors_with_a_fix() {
    let records = records().concat();

    // A step beyond the budget given in the parameters.
    let (dir, file) = run_dir(&records);
    fs::write(file.with_file_name("params.json"), r#"{"lr": 0.1, "max_train_steps": 1}"#).unwrap();
    let e = parse_tensorboard_dir(dir.path()).unwrap_err();
    assert_eq!((e.file.as_path(), e.line), (file.as_path(), None));
    assert!(e.problem.starts_with("record 3 at byte offset"), "{}", e.problem);
    assert!(e.problem.contains("step 2 is beyond max_train_steps 1"), "{}", e.problem);
    assert!(e.fix.contains("raise max_train_steps"), "{}", e.fix);

    // A budget that is not a positive integer.
    fs::write(file.with_file_name("params.json"), r#"{"max_train_steps": 0.5}"#).unwrap();
    let e = parse_tensorboard_dir(dir.path()).unwrap_err();
    assert_eq!((e.field.as_deref(), e.file.as_path()), (Some("max_train_steps"), file.with_file_name("params.json").as_path()));

    // A list of objects (nested objects are dotted names: tests/params.rs).
    fs::write(file.with_file_name("params.json"), r#"{"optimizer": {"groups": [{"lr": 0.1}]}}"#).unwrap();
    let e = parse_tensorboard_dir(dir.path()).unwrap_err();
    assert_eq!((e.field.as_deref(), e.file.file_name().unwrap().to_str()), (Some("optimizer.groups"), Some("params.json")));
    assert!(e.fix.contains("flatten"), "{}", e.fix);

    // Two parameter files.
    fs::write(file.with_file_name("params.json"), "{}").unwrap();
    fs::write(file.with_file_name("hparams.yaml"), "lr: 0.1\n").unwrap();
    let e = parse_tensorboard_dir(dir.path()).unwrap_err();
    assert!(e.problem.contains("params.json, hparams.yaml"), "{}", e.problem);

    // No scalar at a positive step and no budget.
    let e = read(&frame(&event(0, &[("loss", 1.0)]))).unwrap_err();
    assert!(e.problem.contains("budget cannot be inferred"), "{}", e.problem);

    // Nothing to read.
    let empty = tempfile::tempdir().unwrap();
    let e = parse_tensorboard_dir(empty.path()).unwrap_err();
    assert!(e.problem.contains("no TensorBoard event files"), "{}", e.problem);
    let e = parse_tensorboard_dir(empty.path().join("missing")).unwrap_err();
    assert_eq!(e.problem, "not a directory");

    // An unreadable directory name.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("lr=0.1=0.2");
    fs::create_dir(&run).unwrap();
    fs::write(run.join("events.out.tfevents.1.host"), &records).unwrap();
    let e = parse_tensorboard_dir(dir.path()).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("lr=0.1=0.2"));
    assert!(e.fix.contains("params.json"), "{}", e.fix);
}
