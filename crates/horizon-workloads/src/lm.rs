//! jargon-lm: a character-level transformer language model on the Jargon File.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::WorkloadError;
use crate::checkpoint::DataState;
use crate::config::{Common, ParamSet};
use crate::data::{self, Text};
use crate::nn::{Dropout, Init, Lm, LmShape};
use crate::rng::Rng;
use crate::train::{Evaluation, Task, cross_entropy, score};

/// How many windows of `context + 1` characters each evaluation reads from each split: spread
/// evenly over the split, the same at every evaluation. Every position of a window is
/// predicted (from the characters before it in the window).
pub const EVAL_WINDOWS: usize = 256;

/// Largest training batch (windows per step).
pub const MAX_BATCH: usize = 4_096;

pub struct LanguageModel {
    pub text: &'static Text,
    pub shape: LmShape,
    pub common: Common,
    /// Window starts of the train/* and valid/* metrics.
    pub train_windows: Vec<usize>,
    pub valid_windows: Vec<usize>,
}

fn even_windows(len: usize, window: usize, count: usize) -> Vec<usize> {
    let last = len - window;
    (0..count).map(|i| if count == 1 { 0 } else { i * last / (count - 1) }).collect()
}

impl LanguageModel {
    pub fn jargon(p: &ParamSet, max_train_steps: u64) -> Result<LanguageModel, WorkloadError> {
        let common = Common::from_params(p, max_train_steps, MAX_BATCH)?;
        let context = p.usize_in("context", 1, 2_048)?;
        let d_model = p.usize_in("d_model", 1, 4_096)?;
        let heads = p.usize_in("heads", 1, 256)?;
        if d_model % heads != 0 {
            return Err(WorkloadError::invalid("heads", heads, format!("a divisor of d_model ({d_model})")));
        }
        let layers = p.usize_in("layers", 0, 64)?;
        let text = data::jargon()?;
        let shape = LmShape { vocab: text.vocab.len(), context, d_model, heads, layers };
        let train_windows = even_windows(text.train.len(), context + 1, EVAL_WINDOWS);
        let valid_windows = even_windows(text.valid.len(), context + 1, EVAL_WINDOWS);
        Ok(LanguageModel { text, shape, common, train_windows, valid_windows })
    }

    /// Inputs `[n, context]` and targets (flattened) of windows starting at `starts`.
    fn windows(&self, ids: &[u16], starts: &[usize]) -> (Vec<i64>, Vec<u16>) {
        let t = self.shape.context;
        let mut inputs = Vec::with_capacity(starts.len() * t);
        let mut targets = Vec::with_capacity(starts.len() * t);
        for &s in starts {
            inputs.extend(ids[s..s + t].iter().map(|&i| i as i64));
            targets.extend_from_slice(&ids[s + 1..s + t + 1]);
        }
        (inputs, targets)
    }

    /// Mean loss and error rate over the fixed windows of one split.
    fn eval_split(&self, model: &Lm, ids: &[u16], starts: &[usize]) -> (f64, f64) {
        let device = Device::flex();
        let t = self.shape.context;
        // At least the training batch, and about 4,096 tokens per forward pass.
        let per_pass = self.common.batch_size.max(4_096 / t).max(1);
        let (mut loss, mut errors, mut count) = (0.0, 0usize, 0usize);
        for chunk in starts.chunks(per_pass) {
            let (inputs, targets) = self.windows(ids, chunk);
            let x = Tensor::<2, Int>::from_data(TensorData::new(inputs, [chunk.len(), t]), &device);
            let logits = model.forward(x, None).into_data().try_into_vec::<f32>().expect("f32 logits");
            let (l, e) = score(&logits, self.shape.vocab, &targets);
            loss += l;
            errors += e;
            count += targets.len();
        }
        (loss / count as f64, errors as f64 / count as f64)
    }
}

impl Task for LanguageModel {
    type Model = Lm;

    fn init(&self, rng: Rng, device: &Device) -> Lm {
        Lm::new(&mut Init::new(device, rng), self.shape)
    }

    fn loss(&self, model: &Lm, data: &mut DataState, dropout: &mut Dropout, device: &Device) -> Tensor<1> {
        let (b, t) = (self.common.batch_size, self.shape.context);
        let mut rng = Rng { state: data.rng };
        let room = (self.text.train.len() - t) as u64;
        let starts: Vec<usize> = (0..b).map(|_| rng.below(room) as usize).collect();
        data.rng = rng.state;
        let (inputs, targets) = self.windows(&self.text.train, &starts);
        let x = Tensor::<2, Int>::from_data(TensorData::new(inputs, [b, t]), device);
        let logits = model.forward(x, Some(dropout)).reshape([b * t, self.shape.vocab]);
        cross_entropy(logits, &targets, self.common.label_smoothing, device)
    }

    fn evaluate(&self, model: &Lm) -> Evaluation {
        let (train_loss, train_error) = self.eval_split(model, &self.text.train, &self.train_windows);
        let (valid_loss, valid_error) = self.eval_split(model, &self.text.valid, &self.valid_windows);
        Evaluation {
            train: vec![("loss", train_loss), ("error", train_error)],
            valid: vec![("loss", valid_loss), ("error", valid_error), ("perplexity", valid_loss.exp())],
        }
    }
}
