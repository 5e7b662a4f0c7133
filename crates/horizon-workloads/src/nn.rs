//! The models: an MLP and a small GPT-style transformer, as burn modules whose parameters are
//! initialized from the workload's own generator and numbered deterministically (the optimizer
//! keys its state by parameter id, so a resumed run must give the same parameter the same id).

use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::{gelu, relu};
use burn::tensor::module::{attention, embedding, layer_norm, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::rng::Rng;

/// Hands out parameter ids 1, 2, 3... in construction order, and the initial values.
pub struct Init<'a> {
    pub device: &'a Device,
    pub rng: Rng,
    next_id: u64,
}

impl<'a> Init<'a> {
    pub fn new(device: &'a Device, rng: Rng) -> Self {
        Init { device, rng, next_id: 1 }
    }

    fn param<const D: usize>(&mut self, shape: [usize; D], values: Vec<f32>) -> Param<Tensor<D>> {
        let id = ParamId::from(self.next_id);
        self.next_id += 1;
        let tensor = Tensor::<D>::from_data(TensorData::new(values, shape), self.device).require_grad();
        Param::initialized(id, tensor)
    }

    fn uniform<const D: usize>(&mut self, shape: [usize; D], bound: f64) -> Param<Tensor<D>> {
        let n = shape.iter().product();
        let values = (0..n).map(|_| ((self.rng.next_f64() * 2.0 - 1.0) * bound) as f32).collect();
        self.param(shape, values)
    }

    fn normal<const D: usize>(&mut self, shape: [usize; D], std: f64) -> Param<Tensor<D>> {
        let n = shape.iter().product();
        let values = (0..n).map(|_| (self.rng.normal() * std) as f32).collect();
        self.param(shape, values)
    }

    fn constant<const D: usize>(&mut self, shape: [usize; D], value: f32) -> Param<Tensor<D>> {
        let n = shape.iter().product();
        self.param(shape, vec![value; n])
    }
}

/// Dropout masks from the workload's dropout generator (part of the checkpoint): each kept unit
/// is scaled by `1 / (1 - p)`.
pub struct Dropout<'a> {
    pub p: f64,
    pub rng: &'a mut Rng,
    pub device: &'a Device,
}

impl Dropout<'_> {
    pub fn apply<const D: usize>(&mut self, x: Tensor<D>) -> Tensor<D> {
        if self.p == 0.0 {
            return x;
        }
        let shape = x.shape();
        let n = shape.num_elements();
        let keep = 1.0 - self.p;
        let scale = (1.0 / keep) as f32;
        let mask: Vec<f32> = (0..n).map(|_| if self.rng.next_f64() < keep { scale } else { 0.0 }).collect();
        x * Tensor::<D>::from_data(TensorData::new(mask, shape), self.device)
    }
}

/// A fully connected layer, `x W + b` with `W: [d_in, d_out]`.
#[derive(Module, Debug)]
pub struct Dense {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Dense {
    /// PyTorch's default initialization: weight and bias uniform in `±1/sqrt(d_in)`.
    fn uniform(init: &mut Init, d_in: usize, d_out: usize) -> Dense {
        let bound = 1.0 / (d_in as f64).sqrt();
        Dense { weight: init.uniform([d_in, d_out], bound), bias: init.uniform([d_out], bound) }
    }

    /// GPT-2's initialization: weight normal with standard deviation `std`, bias 0.
    fn normal(init: &mut Init, d_in: usize, d_out: usize, std: f64) -> Dense {
        Dense { weight: init.normal([d_in, d_out], std), bias: init.constant([d_out], 0.0) }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(x, self.weight.val(), Some(self.bias.val()))
    }
}

/// A multi-layer perceptron: `layers` hidden layers of `hidden` ReLU units, dropout after each,
/// then a linear layer to the class logits.
#[derive(Module, Debug)]
pub struct Mlp {
    pub layers: Vec<Dense>,
}

impl Mlp {
    pub fn new(init: &mut Init, d_in: usize, hidden: usize, layers: usize, classes: usize) -> Mlp {
        let mut dims = vec![d_in];
        dims.extend(std::iter::repeat_n(hidden, layers));
        dims.push(classes);
        Mlp { layers: dims.windows(2).map(|w| Dense::uniform(init, w[0], w[1])).collect() }
    }

    /// Logits `[batch, classes]`; dropout only when given.
    pub fn forward(&self, mut x: Tensor<2>, mut dropout: Option<&mut Dropout>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
                if let Some(d) = dropout.as_deref_mut() {
                    x = d.apply(x);
                }
            }
        }
        x
    }
}

#[derive(Module, Debug)]
pub struct LayerNorm {
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
}

impl LayerNorm {
    fn new(init: &mut Init, d: usize) -> LayerNorm {
        LayerNorm { gamma: init.constant([d], 1.0), beta: init.constant([d], 0.0) }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        layer_norm(x, self.gamma.val(), Some(self.beta.val()), 1e-5)
    }
}

/// A pre-norm transformer block: causal multi-head self-attention, then a GELU MLP of width
/// `4 * d_model`, each added to the residual stream after dropout.
#[derive(Module, Debug)]
pub struct Block {
    pub ln1: LayerNorm,
    pub qkv: Dense,
    pub proj: Dense,
    pub ln2: LayerNorm,
    pub fc: Dense,
    pub out: Dense,
}

/// The shape of the language model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LmShape {
    pub vocab: usize,
    pub context: usize,
    pub d_model: usize,
    pub heads: usize,
    pub layers: usize,
}

/// A character-level GPT: token and learned position embeddings, `layers` blocks, a final layer
/// norm and a linear head to the vocabulary.
#[derive(Module, Debug)]
pub struct Lm {
    pub tok: Param<Tensor<2>>,
    pub pos: Param<Tensor<2>>,
    pub blocks: Vec<Block>,
    pub ln_f: LayerNorm,
    pub head: Dense,
    #[module(skip)]
    pub heads: usize,
}

impl Lm {
    pub fn new(init: &mut Init, s: LmShape) -> Lm {
        let d = s.d_model;
        // GPT-2: N(0, 0.02), residual projections scaled down by sqrt(2 * layers).
        let std = 0.02;
        let resid_std = std / (2.0 * s.layers.max(1) as f64).sqrt();
        let tok = init.normal([s.vocab, d], std);
        let pos = init.normal([s.context, d], std);
        let blocks = (0..s.layers)
            .map(|_| Block {
                ln1: LayerNorm::new(init, d),
                qkv: Dense::normal(init, d, 3 * d, std),
                proj: Dense::normal(init, d, d, resid_std),
                ln2: LayerNorm::new(init, d),
                fc: Dense::normal(init, d, 4 * d, std),
                out: Dense::normal(init, 4 * d, d, resid_std),
            })
            .collect();
        let ln_f = LayerNorm::new(init, d);
        let head = Dense::normal(init, d, s.vocab, std);
        Lm { tok, pos, blocks, ln_f, head, heads: s.heads }
    }

    /// Logits `[batch, time, vocab]` for token ids `[batch, time]` (time <= context).
    pub fn forward(&self, ids: Tensor<2, Int>, mut dropout: Option<&mut Dropout>) -> Tensor<3> {
        let [b, t] = ids.dims();
        let d = self.tok.val().dims()[1];
        let h = self.heads;
        let pos = self.pos.val().slice([0..t, 0..d]).unsqueeze::<3>();
        let mut x = embedding(self.tok.val(), ids) + pos;
        if let Some(drop) = dropout.as_deref_mut() {
            x = drop.apply(x);
        }
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: true };
        for block in &self.blocks {
            let qkv = block.qkv.forward(block.ln1.forward(x.clone()));
            let heads =
                |part: usize| qkv.clone().slice([0..b, 0..t, part * d..(part + 1) * d]).reshape([b, t, h, d / h]).swap_dims(1, 2);
            let y = attention(heads(0), heads(1), heads(2), None, None, options);
            let mut y = block.proj.forward(y.swap_dims(1, 2).reshape([b, t, d]));
            if let Some(drop) = dropout.as_deref_mut() {
                y = drop.apply(y);
            }
            x = x + y;
            let mut y = block.out.forward(gelu(block.fc.forward(block.ln2.forward(x.clone()))));
            if let Some(drop) = dropout.as_deref_mut() {
                y = drop.apply(y);
            }
            x = x + y;
        }
        self.head.forward(self.ln_f.forward(x))
    }
}
