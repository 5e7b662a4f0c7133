//! Optimizers (burn's SGD, Adam and AdamW) and global-norm gradient clipping.
//!
//! burn's own `GradientClipping::Norm` clips each parameter tensor by its own norm; the
//! workloads clip by the *global* norm over all parameters (as `torch.nn.utils.clip_grad_norm_`
//! does), so clipping is done here, on the gradients, before the optimizer sees them.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Tensor;

use crate::config::{Common, OptimizerKind};

/// The optimizer of a run. Weight decay is an L2 term added to the gradient for SGD and Adam
/// (burn's `WeightDecay`, as PyTorch's `weight_decay`), and decoupled for AdamW.
pub fn build(common: &Common) -> ModuleOptimizer {
    let l2 = (common.weight_decay > 0.0).then(|| WeightDecayConfig::new(common.weight_decay as f32));
    match common.optimizer {
        OptimizerKind::Sgd { momentum, nesterov } => {
            // burn's default dampening is 0.1; PyTorch's (and ours) is 0.
            let momentum = (momentum > 0.0)
                .then(|| MomentumConfig::new().with_momentum(momentum).with_dampening(0.0).with_nesterov(nesterov));
            SgdConfig::new().with_momentum(momentum).with_weight_decay(l2).init()
        }
        OptimizerKind::Adam { beta1, beta2, epsilon } => AdamConfig::new()
            .with_beta_1(beta1 as f32)
            .with_beta_2(beta2 as f32)
            .with_epsilon(epsilon as f32)
            .with_weight_decay(l2)
            .init(),
        OptimizerKind::AdamW { beta1, beta2, epsilon } => AdamWConfig::new()
            .with_beta_1(beta1 as f32)
            .with_beta_2(beta2 as f32)
            .with_epsilon(epsilon as f32)
            .with_weight_decay(common.weight_decay as f32)
            .init(),
    }
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: f64,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.sum += g.square().sum().into_scalar::<f32>() as f64;
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// The global L2 norm of the gradients (before clipping); when `max_norm > 0` and the norm
/// exceeds it, scale every gradient by `max_norm / (norm + 1e-6)`.
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let mut v = SquaredNorm { grads, sum: 0.0 };
    model.visit(&mut v);
    let norm = v.sum.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let factor = (max_norm / (norm + 1e-6)) as f32;
        model.visit(&mut Scale { grads, factor });
    }
    norm
}
