//! TensorBoard event files as imported runs: one run per directory of `events.out.tfevents.*`
//! files, scalar summaries only (format documented in `docs/analysis.md`, section 7).
//!
//! Why no TensorBoard crate: `tfrecord` (the one maintained reader) pins `prost` 0.12 and
//! brings generated code for all of TensorFlow's protos plus `num`, `itertools`, `noisy_float`
//! and more; `tboard` pins `prost` 0.12 and needs `protoc` at build time; `tensorboard-rs` only
//! writes. What we need is the TFRecord framing (a few lines) and six protobuf messages, declared
//! below by hand with `prost`'s derive (no `protoc`, no build script).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use horizon_core::{MetricPoint, ParamValue, Params, TrialState};
use prost::Message;
use serde_json::Value as Json;

use crate::params::{Flat, Scalar, json_object, value};
use crate::{ImportError, Run, as_read, list_dir, read};

/// The name of every TensorBoard event file starts with this.
pub const EVENT_PREFIX: &str = "events.out.tfevents.";
const PARAM_FILES: &[&str] = &["params.json", "hparams.json", "params.yaml", "hparams.yaml"];
const BUDGET: &str = "max_train_steps";
const DT_FLOAT: i32 = 1;
const DT_DOUBLE: i32 = 2;

// The subset of TensorFlow's `event.proto`, `summary.proto`, `tensor.proto` and
// `tensor_shape.proto` that scalars use; every other field is skipped as unknown.

#[derive(Clone, PartialEq, Message)]
struct Event {
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(message, optional, tag = "5")]
    summary: Option<Summary>,
}

#[derive(Clone, PartialEq, Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    /// A member of the `value` oneof: present only when written.
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
    #[prost(message, optional, tag = "8")]
    tensor: Option<TensorProto>,
    #[prost(message, optional, tag = "9")]
    metadata: Option<SummaryMetadata>,
}

#[derive(Clone, PartialEq, Message)]
struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    plugin_data: Option<PluginData>,
}

#[derive(Clone, PartialEq, Message)]
struct PluginData {
    #[prost(string, tag = "1")]
    plugin_name: String,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int32, tag = "1")]
    dtype: i32,
    #[prost(message, optional, tag = "2")]
    tensor_shape: Option<TensorShape>,
    #[prost(bytes = "vec", tag = "4")]
    tensor_content: Vec<u8>,
    #[prost(float, repeated, tag = "5")]
    float_val: Vec<f32>,
    #[prost(double, repeated, tag = "6")]
    double_val: Vec<f64>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShape {
    #[prost(message, repeated, tag = "2")]
    dim: Vec<Dim>,
}

#[derive(Clone, PartialEq, Message)]
struct Dim {
    #[prost(int64, tag = "1")]
    size: i64,
}

/// The checksum of a TFRecord frame: CRC-32C "masked", `((crc >> 15) | (crc << 17)) + 0xa282ead8`.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn err(file: &Path, line: Option<u64>, field: Option<String>, problem: impl Into<String>, fix: impl Into<String>) -> ImportError {
    ImportError { file: file.to_path_buf(), line, field, problem: problem.into(), fix: fix.into() }
}

/// A directory that holds event files: a run.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRun {
    /// Its path relative to the root (empty when the root is itself a run).
    pub dir: PathBuf,
    /// Its `events.out.tfevents.*` files, sorted by name.
    pub files: Vec<PathBuf>,
}

/// Every directory at or below `root` that holds event files, sorted by relative path. Depth
/// first; symbolic links to directories are not followed (no cycles). This is the one walk:
/// [`parse_tensorboard_dir`] reads what it finds, and `horizon import` detects the format by it.
pub fn event_runs(root: &Path) -> Result<Vec<EventRun>, ImportError> {
    let mut out = Vec::new();
    walk(root, PathBuf::new(), &mut out)?;
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(out)
}

fn walk(dir: &Path, rel: PathBuf, out: &mut Vec<EventRun>) -> Result<(), ImportError> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in list_dir(dir)? {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.file_name());
        } else if entry.file_name().to_string_lossy().starts_with(EVENT_PREFIX) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    dirs.sort();
    if !files.is_empty() {
        out.push(EventRun { dir: rel.clone(), files });
    }
    for d in dirs {
        walk(&dir.join(&d), rel.join(&d), out)?;
    }
    Ok(())
}

/// Read every TensorBoard run under `root`: `root` itself when it holds event files, and every
/// directory below it that holds some, sorted by relative path.
///
/// A run's name is its directory's path relative to `root` (starting with `root`'s own name
/// when `root` is a run). Parameters come from `params.json`, `hparams.json`, `params.yaml` or
/// `hparams.yaml` beside the event files, else from `key=value` directory names; the budget from
/// a `max_train_steps` parameter, else the largest step. Every `events.out.tfevents.*` file of a
/// run is read in name order; a record cut short at the end of the run's last file (a file still
/// being written) is ignored, in any earlier file it is an error. A value written twice for the
/// same step and tag (a restarted run) is replaced by the later one, and the run's `message` says
/// how many were.
pub fn parse_tensorboard_dir(root: impl AsRef<Path>) -> Result<Vec<Run>, ImportError> {
    let root = root.as_ref();
    if !root.is_dir() {
        return Err(err(
            root,
            None,
            None,
            "not a directory",
            "give a run directory (it holds events.out.tfevents.* files) or a directory of runs",
        ));
    }
    let found = event_runs(root)?;
    if found.is_empty() {
        return Err(err(
            root,
            None,
            None,
            "no TensorBoard event files (events.out.tfevents.*) in the directory or below it",
            "give the log directory your SummaryWriter wrote to",
        ));
    }
    // When the root is itself a run, names start with its own name rather than being empty.
    let base = if found[0].dir.as_os_str().is_empty() {
        let name =
            root.file_name().map(PathBuf::from).or_else(|| std::fs::canonicalize(root).ok()?.file_name().map(PathBuf::from));
        name.unwrap_or_else(|| PathBuf::from("."))
    } else {
        PathBuf::new()
    };
    found.into_iter().map(|run| read_run(root, &base.join(&run.dir), &run.files)).collect()
}

fn read_run(root: &Path, rel: &Path, files: &[PathBuf]) -> Result<Run, ImportError> {
    let dir = files[0].parent().unwrap_or(root);
    let name: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let (mut params, params_from) = match param_file(dir)? {
        Some(path) => (read_params(&path)?, path),
        None => (name_params(dir, &name)?, dir.to_path_buf()),
    };
    let budget = take_budget(&mut params, &params_from)?;

    let mut points: BTreeMap<u64, Vec<(String, f64)>> = BTreeMap::new();
    // The (step, tag) pairs written more than once, whose last value was kept.
    let mut rewritten: BTreeSet<(u64, String)> = BTreeSet::new();
    let mut plugins: HashMap<String, String> = HashMap::new();
    for (i, file) in files.iter().enumerate() {
        let last_file = i + 1 == files.len();
        read_records(file, last_file, |index, offset, data| {
            // The record number and offset are in the problem; a record is not a line.
            let at = |problem: String, fix: &str| {
                err(file, None, None, format!("record {index} at byte offset {offset}: {problem}"), fix)
            };
            let event = Event::decode(data).map_err(|e| {
                at(
                    format!("not a TensorBoard event ({e})"),
                    "the file is damaged or not an event file: move it out of the run directory",
                )
            })?;
            let Some(summary) = event.summary else {
                return Ok(());
            };
            for value in summary.value {
                // Metadata (the plugin) is written with a tag's first value only.
                if let Some(plugin) = value.metadata.and_then(|m| m.plugin_data).map(|p| p.plugin_name).filter(|p| !p.is_empty())
                {
                    plugins.entry(value.tag.clone()).or_insert(plugin);
                }
                if plugins.get(&value.tag).is_some_and(|p| p != "scalars") {
                    continue;
                }
                let x = match (value.simple_value, &value.tensor) {
                    (Some(x), _) => widen(x),
                    (None, Some(t)) => match scalar(t) {
                        Some(x) => x,
                        None => continue,
                    },
                    (None, None) => continue,
                };
                let step = u64::try_from(event.step).map_err(|_| {
                    at(format!("negative step {}", event.step), "steps are non-negative: fix the writer's global_step")
                })?;
                if let Some(b) = budget
                    && step > b
                {
                    return Err(at(
                        format!("{}: step {step} is beyond max_train_steps {b}", value.tag),
                        &format!(
                            "raise max_train_steps in the parameters to at least {step}, or remove it (the largest step is then the budget)"
                        ),
                    ));
                }
                let row = points.entry(step).or_default();
                match row.iter_mut().find(|(tag, _)| *tag == value.tag) {
                    Some(slot) => {
                        slot.1 = x;
                        rewritten.insert((step, value.tag));
                    }
                    None => row.push((value.tag, x)),
                }
            }
            Ok(())
        })?;
    }

    let largest = points.keys().next_back().copied().unwrap_or(0);
    let max_train_steps = match budget {
        Some(b) => b,
        None if largest > 0 => largest,
        None => {
            return Err(err(
                dir,
                None,
                None,
                "no scalar at a positive step, so the budget cannot be inferred",
                "give it in params.json (\"max_train_steps\": N), or move the run out if it never reported",
            ));
        }
    };
    let curve: Vec<MetricPoint> = points
        .into_iter()
        .flat_map(|(step, row)| row.into_iter().map(move |(name, value)| MetricPoint { step, name, value }))
        .collect();
    let state = if curve.iter().any(|m| !m.value.is_finite()) { TrialState::Diverged } else { TrialState::Complete };
    let message = match rewritten.len() {
        0 => None,
        1 => Some("1 evaluation was written more than once (a restarted run?); its last value was kept".to_string()),
        n => Some(format!("{n} evaluations were written more than once (a restarted run?); the last value of each was kept")),
    };
    let trial = as_read(files[0].display().to_string(), params, max_train_steps, state, curve, message, None);
    Ok(Run { name: Some(name.join("/")), trial })
}

/// Call `each(index, offset, data)` for every record of a TFRecord file, `index` 1-based.
/// A record cut short by the end of the file ends the reading without error when the file is the
/// run's last (`last_file`: it may still be being written); in an earlier file it is an error.
fn read_records(
    path: &Path,
    last_file: bool,
    each: impl FnMut(u64, u64, &[u8]) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let file =
        File::open(path).map_err(|e| err(path, None, None, format!("cannot read: {e}"), "check the path and its permissions"))?;
    read_frames(path, BufReader::new(file), last_file, each)
}

/// [`read_records`] over any reader; `path` names it in errors.
fn read_frames(
    path: &Path,
    mut reader: impl Read,
    last_file: bool,
    mut each: impl FnMut(u64, u64, &[u8]) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let damaged = "the file is damaged: restore it, or move it out of the run directory (its scalars are then not imported)";
    let mut offset = 0u64;
    let mut data = Vec::new();
    let mut index = 0u64;
    loop {
        index += 1;
        // The record number and offset are in the problem; a record is not a line.
        let at = |problem: &str| err(path, None, None, format!("record {index} at byte offset {offset}: {problem}"), damaged);
        let io = |e: std::io::Error| {
            err(
                path,
                None,
                None,
                format!("record {index} at byte offset {offset}: cannot read: {e}"),
                "check the file, its permissions and the disk it is on",
            )
        };
        // Only the end of the file cuts a record short; every other error is reported.
        let cut_short = |read: u64| -> Result<(), ImportError> {
            if last_file {
                Ok(())
            } else {
                Err(at(&format!(
                    "cut short by the end of the file {read} bytes into the record, but a later event file follows (only the run's last file can still be being written)"
                )))
            }
        };
        let mut header = [0u8; 12];
        match fill(&mut reader, &mut header).map_err(io)? {
            0 => return Ok(()),
            12 => {}
            n => return cut_short(n as u64),
        }
        let len = u64::from_le_bytes(header[..8].try_into().unwrap());
        if masked_crc(&header[..8]) != u32::from_le_bytes(header[8..].try_into().unwrap()) {
            return Err(at("the length's checksum does not match"));
        }
        data.clear();
        (&mut reader).take(len).read_to_end(&mut data).map_err(io)?;
        if data.len() as u64 != len {
            return cut_short(12 + data.len() as u64);
        }
        let mut footer = [0u8; 4];
        let n = fill(&mut reader, &mut footer).map_err(io)?;
        if n != 4 {
            return cut_short(12 + len + n as u64);
        }
        if masked_crc(&data) != u32::from_le_bytes(footer) {
            return Err(at("the data's checksum does not match"));
        }
        each(index, offset, &data)?;
        offset += 16 + len;
    }
}

/// Read into `buf` until it is full or the reader ends; the number of bytes read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut read = 0;
    while read < buf.len() {
        match reader.read(&mut buf[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(read)
}

/// A float32 as the shortest decimal that reads back as it (`0.1`, not `0.10000000149011612`).
fn widen(x: f32) -> f64 {
    if x.is_finite() { x.to_string().parse().unwrap_or(f64::from(x)) } else { f64::from(x) }
}

/// The value of a one-element float32 or float64 tensor; `None` for anything else.
fn scalar(t: &TensorProto) -> Option<f64> {
    if !t.tensor_shape.as_ref().is_none_or(|s| s.dim.iter().all(|d| d.size == 1)) {
        return None;
    }
    let content = &t.tensor_content;
    match t.dtype {
        DT_FLOAT if content.is_empty() => t.float_val.first().copied().map(widen),
        DT_FLOAT => Some(widen(f32::from_le_bytes(content.as_slice().try_into().ok()?))),
        DT_DOUBLE if content.is_empty() => t.double_val.first().copied(),
        DT_DOUBLE => Some(f64::from_le_bytes(content.as_slice().try_into().ok()?)),
        _ => None,
    }
}

fn param_file(dir: &Path) -> Result<Option<PathBuf>, ImportError> {
    let present: Vec<&str> = PARAM_FILES.iter().copied().filter(|f| dir.join(f).is_file()).collect();
    match present.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(dir.join(one))),
        many => Err(err(dir, None, None, format!("several parameter files: {}", many.join(", ")), "keep one of them")),
    }
}

fn read_params(path: &Path) -> Result<Params, ImportError> {
    let text = read(path)?;
    if path.extension().is_some_and(|x| x == "json") { json_params(path, &text) } else { crate::yaml::params(path, &text) }
}

/// A JSON object of parameters, nested objects as dotted names ([`crate::params`]).
fn json_params(path: &Path, text: &str) -> Result<Params, ImportError> {
    let shape = "write one JSON object: {\"lr\": 0.1, \"optimizer\": \"sgd\"}";
    let value: Json =
        serde_json::from_str(text).map_err(|e| err(path, Some(e.line() as u64), None, format!("not valid JSON: {e}"), shape))?;
    let Json::Object(obj) = value else {
        return Err(err(path, None, None, "must be a JSON object", shape));
    };
    let mut params = Flat::default();
    json_object(&obj, "", &mut params).map_err(|(name, r)| err(path, None, Some(name), r.problem, r.fix))?;
    Ok(params.into_params())
}

/// Parameters from the `key=value` components of the run's name: `lr=0.1,wd=1e-4` or
/// `lr=0.1_wd=1e-4` (with `_`, a value ends at its first `_`, so keys may hold `_` but values
/// cannot). Components without `=` hold none.
fn name_params(dir: &Path, components: &[String]) -> Result<Params, ImportError> {
    let mut params = Params::default();
    for component in components.iter().filter(|c| c.contains('=')) {
        let bad = |problem: String| {
            err(
                dir,
                None,
                Some(component.clone()),
                problem,
                "name the directory key=value,key=value (or key=value_key=value), or write the parameters in a params.json beside the event files",
            )
        };
        for token in component.split(',') {
            let mut pieces = token.split('=');
            let mut key = pieces.next().unwrap_or_default().to_string();
            let mut rest: Vec<&str> = pieces.collect();
            let last = rest.pop().ok_or_else(|| bad(format!("{token:?} is not key=value")))?;
            let mut pairs = Vec::new();
            for middle in rest {
                let (text, next) =
                    middle.split_once('_').ok_or_else(|| bad(format!("{token:?}: cannot tell where {key:?}'s value ends")))?;
                pairs.push((std::mem::replace(&mut key, next.to_string()), text.to_string()));
            }
            pairs.push((key, last.to_string()));
            for (k, v) in pairs {
                if k.is_empty() || v.is_empty() {
                    return Err(bad(format!("{token:?}: empty key or value")));
                }
                if params.get(&k).is_some() {
                    return Err(bad(format!("parameter {k:?} given twice")));
                }
                if let Some(v) = value(Scalar::Plain(&v)).map_err(|r| bad(r.problem))? {
                    params.set(&k, v);
                }
            }
        }
    }
    Ok(params)
}

/// Remove `max_train_steps` from the parameters: the run's budget when given.
fn take_budget(params: &mut Params, from: &Path) -> Result<Option<u64>, ImportError> {
    let Some(pos) = params.0.iter().position(|(k, _)| k == BUDGET) else {
        return Ok(None);
    };
    let (_, value) = params.0.remove(pos);
    match value {
        ParamValue::Int(n) if n > 0 => Ok(Some(n as u64)),
        other => Err(err(
            from,
            None,
            Some(BUDGET.into()),
            format!("must be a positive integer, found {other}"),
            "give the run's step budget as a whole number of steps, or leave it out (the largest step is then used)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_test_vectors() {
        // RFC 3720 (iSCSI), B.4: 32 bytes of zeros; and the standard check value.
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    /// Gives `good` bytes, then fails with `kind`.
    struct Failing {
        good: Vec<u8>,
        kind: ErrorKind,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.good.is_empty() {
                return Err(std::io::Error::new(self.kind, "disk on fire"));
            }
            let n = buf.len().min(self.good.len());
            buf[..n].copy_from_slice(&self.good[..n]);
            self.good.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_is_not_a_truncation() {
        let data = b"not checked here";
        let len = (data.len() as u64).to_le_bytes();
        let mut record = len.to_vec();
        record.extend_from_slice(&masked_crc(&len).to_le_bytes());
        record.extend_from_slice(data);
        record.extend_from_slice(&masked_crc(data).to_le_bytes());
        let path = Path::new("events.out.tfevents.1.host");
        // Failing in each part of the second record (header, data, footer), even in the run's
        // last file.
        for cut in [0, 5, 12, 20, record.len() - 1] {
            let mut good = record.clone();
            good.extend_from_slice(&record[..cut]);
            let reader = Failing { good, kind: ErrorKind::Other };
            let mut seen = 0;
            let e = read_frames(path, reader, true, |_, _, _| {
                seen += 1;
                Ok(())
            })
            .unwrap_err();
            assert_eq!(seen, 1, "cut at {cut}");
            assert_eq!((e.file.as_path(), e.line), (path, None));
            assert_eq!(e.problem, format!("record 2 at byte offset {}: cannot read: disk on fire", record.len()));
        }
        // Interrupted is retried, not an error.
        let mut calls = 0;
        struct Flaky<'a>(&'a mut u32, &'a [u8]);
        impl Read for Flaky<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                *self.0 += 1;
                if *self.0 % 2 == 1 {
                    return Err(ErrorKind::Interrupted.into());
                }
                let n = buf.len().min(self.1.len()).min(3);
                buf[..n].copy_from_slice(&self.1[..n]);
                self.1 = &self.1[n..];
                Ok(n)
            }
        }
        let mut seen = 0;
        read_frames(path, Flaky(&mut calls, &record), false, |_, _, d| {
            assert_eq!(d, data);
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, 1);
    }

    #[test]
    fn directory_names() {
        let p = |s: &str| name_params(Path::new("x"), &[s.to_string()]);
        let got = p("lr=1_weight_decay=1e-4_opt=adam").unwrap();
        assert_eq!(got.get("lr"), Some(&ParamValue::Int(1)));
        assert_eq!(got.get("weight_decay"), Some(&ParamValue::Float(1e-4)));
        assert_eq!(got.get("opt"), Some(&ParamValue::Str("adam".into())));
        assert_eq!(p("lr=0.1,nesterov=true").unwrap().get("nesterov"), Some(&ParamValue::Bool(true)));
        assert!(p("version_0").unwrap().is_empty());
        assert!(p("lr=").is_err());
        assert!(p("lr=0.1=2").is_err());
        assert!(p("lr=1,lr=2").is_err());
    }

    #[test]
    fn tensor_scalars() {
        let t = |dtype, dims: &[i64], content: Vec<u8>, f: Vec<f32>, d: Vec<f64>| TensorProto {
            dtype,
            tensor_shape: Some(TensorShape { dim: dims.iter().map(|&size| Dim { size }).collect() }),
            tensor_content: content,
            float_val: f,
            double_val: d,
        };
        assert_eq!(scalar(&t(DT_FLOAT, &[], vec![], vec![0.1], vec![])), Some(0.1));
        assert_eq!(scalar(&t(DT_DOUBLE, &[1, 1], 0.3f64.to_le_bytes().to_vec(), vec![], vec![])), Some(0.3));
        assert_eq!(scalar(&t(DT_FLOAT, &[2], vec![], vec![1.0, 2.0], vec![])), None);
        assert_eq!(scalar(&t(DT_FLOAT, &[], vec![1, 2, 3], vec![], vec![])), None);
        assert_eq!(scalar(&t(7, &[], vec![], vec![], vec![])), None, "DT_STRING");
    }
}
