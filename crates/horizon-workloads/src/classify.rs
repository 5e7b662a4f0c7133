//! digits-mlp and mnist-mlp: an MLP classifying small grayscale digit images.

use burn::tensor::{Device, Tensor, TensorData};

use crate::WorkloadError;
use crate::checkpoint::DataState;
use crate::config::{Common, ParamSet};
use crate::data::{self, Images, Split};
use crate::nn::{Dropout, Init, Mlp};
use crate::rng::Rng;
use crate::train::{Evaluation, Task, cross_entropy, next_batch, score};

/// How many training examples the train/* metrics are computed on: the first ones of the
/// (fixed) training split, the same at every evaluation.
pub const TRAIN_EVAL_EXAMPLES: usize = 1_000;

pub struct Classifier {
    pub split: &'static Split,
    /// The fixed training subset of the train/* metrics.
    pub train_eval: Images,
    pub hidden: usize,
    pub layers: usize,
    /// Random shifts of up to this many pixels (0 = off).
    pub augment: usize,
    pub common: Common,
}

impl Classifier {
    /// digits-mlp: all 1,397 training images are evaluated (the whole training set, so that
    /// train/error = 0 means it is fitted perfectly).
    pub fn digits(p: &ParamSet, max_train_steps: u64) -> Result<Classifier, WorkloadError> {
        let common = Common::from_params(p, max_train_steps, data::DIGITS_TRAIN)?;
        let hidden = p.usize_in("hidden", 1, 16_384)?;
        let layers = p.usize_in("layers", 0, 64)?;
        let split = data::digits()?;
        let train_eval = split.train.clone();
        Ok(Classifier { split, train_eval, hidden, layers, augment: 0, common })
    }

    /// mnist-mlp: train/* on the first 1,000 of the 4,000 training images.
    pub fn mnist(p: &ParamSet, max_train_steps: u64) -> Result<Classifier, WorkloadError> {
        let common = Common::from_params(p, max_train_steps, data::MNIST_TRAIN)?;
        let hidden = p.usize_in("hidden", 1, 16_384)?;
        let layers = p.usize_in("layers", 0, 64)?;
        let augment = p.usize_in("augment", 0, 14)?;
        let split = data::mnist()?;
        let train_eval = split.train.head(TRAIN_EVAL_EXAMPLES);
        Ok(Classifier { split, train_eval, hidden, layers, augment, common })
    }

    fn batch(&self, idx: &[usize], rng: &mut Rng) -> (Vec<f32>, Vec<u16>) {
        let train = &self.split.train;
        let (side, dim) = (train.side, train.dim());
        let mut pixels = vec![0.0f32; idx.len() * dim];
        for (k, &i) in idx.iter().enumerate() {
            let src = train.image(i);
            let dst = &mut pixels[k * dim..(k + 1) * dim];
            if self.augment == 0 {
                dst.copy_from_slice(src);
                continue;
            }
            // Shift by (dx, dy), each uniform in -augment..=augment; pixels shifted in are 0.
            let span = 2 * self.augment as u64 + 1;
            let dx = rng.below(span) as isize - self.augment as isize;
            let dy = rng.below(span) as isize - self.augment as isize;
            for y in 0..side as isize {
                let sy = y - dy;
                if sy < 0 || sy >= side as isize {
                    continue;
                }
                for x in 0..side as isize {
                    let sx = x - dx;
                    if sx >= 0 && sx < side as isize {
                        dst[(y as usize) * side + x as usize] = src[(sy as usize) * side + sx as usize];
                    }
                }
            }
        }
        (pixels, idx.iter().map(|&i| train.labels[i] as u16).collect())
    }

    /// Mean loss and error rate over a whole set of images, in one forward pass.
    fn eval_set(&self, model: &Mlp, images: &Images) -> (f64, f64) {
        let device = Device::flex();
        let x = Tensor::<2>::from_data(TensorData::new(images.pixels.clone(), [images.len(), images.dim()]), &device);
        let logits = model.forward(x, None).into_data().try_into_vec::<f32>().expect("f32 logits");
        let targets: Vec<u16> = images.labels.iter().map(|&l| l as u16).collect();
        let (loss, errors) = score(&logits, 10, &targets);
        (loss / images.len() as f64, errors as f64 / images.len() as f64)
    }
}

impl Task for Classifier {
    type Model = Mlp;

    fn init(&self, rng: Rng, device: &Device) -> Mlp {
        Mlp::new(&mut Init::new(device, rng), self.split.train.dim(), self.hidden, self.layers, 10)
    }

    fn loss(&self, model: &Mlp, data: &mut DataState, dropout: &mut Dropout, device: &Device) -> Tensor<1> {
        let b = self.common.batch_size;
        let idx = next_batch(self.split.train.len(), b, data);
        let mut rng = Rng { state: data.rng };
        let (pixels, targets) = self.batch(&idx, &mut rng);
        data.rng = rng.state;
        let x = Tensor::<2>::from_data(TensorData::new(pixels, [b, self.split.train.dim()]), device);
        let logits = model.forward(x, Some(dropout));
        cross_entropy(logits, &targets, self.common.label_smoothing, device)
    }

    fn evaluate(&self, model: &Mlp) -> Evaluation {
        let (train_loss, train_error) = self.eval_set(model, &self.train_eval);
        let (valid_loss, valid_error) = self.eval_set(model, &self.split.valid);
        Evaluation {
            train: vec![("loss", train_loss), ("error", train_error)],
            valid: vec![("loss", valid_loss), ("error", valid_error)],
        }
    }
}
