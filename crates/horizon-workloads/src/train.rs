//! The training loop every workload shares: steps, evaluation and reports, checkpoints, resume,
//! divergence and stopping.
//!
//! What a run writes to the metrics file (trial protocol v1, docs/protocol.md), in order:
//!
//! 1. `{"event":"budget_independent","step":S}` first, once, where `S` is
//!    [`Schedule::budget_independent_until`](horizon_core::schedule::Schedule::budget_independent_until)
//!    of the run's schedule: the first `S` steps are the same under any longer budget (the whole
//!    run for `constant` and `rsqrt`, all but the last `decay_steps` for `wsd`, the warmup for
//!    `linear` and `cosine`), so a ladder can promote the trial by resuming its checkpoint at
//!    step `S` with a longer `HORIZON_MAX_TRAIN_STEPS`;
//! 2. when resuming, the checkpoint step's evaluation again (if it is an evaluation step);
//! 3. at each evaluation step, a `train` line (the task's training metrics, `lr` and
//!    `grad_norm` of the step) and a `valid` line (at a step whose training loss is not
//!    finite, that step's `train` loss, `lr` and `grad_norm`, and the run ends);
//! 4. after a step's metrics, `{"event":"checkpoint","step":S,"path":"ckpt-S"}` when horizon
//!    asked for a checkpoint at it, or when stopped.
//!
//! A checkpoint resumes under a budget at least as long as its step, whatever budget wrote it:
//! the following steps take their learning rate from the new run's schedule, and everything else
//! they depend on (weights, optimizer state, data position, generators) is in the checkpoint, so
//! a checkpoint of step `S` written at budget B1 (with `S` budget-independent there) continues
//! exactly as a run started at budget B2.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::checkpoint::{self, DataState, TrainState};
use crate::config::{Common, ParamSet};
use crate::nn::Dropout;
use crate::report::Reporter;
use crate::rng::Rng;
use crate::{RunEnd, TrialEnv, WorkloadError, optim};

/// The stream of the trial seed that initializes the weights (see `TrainState::new` for the
/// others).
pub const STREAM_INIT: u64 = 1;

/// Metrics of one evaluation, by split.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub train: Vec<(&'static str, f64)>,
    pub valid: Vec<(&'static str, f64)>,
}

impl Evaluation {
    fn diverged(&self) -> bool {
        self.train.iter().chain(&self.valid).any(|(name, x)| name.ends_with("loss") && !x.is_finite())
    }
}

/// What a workload supplies to the loop.
pub trait Task {
    type Model: Module;

    /// The model with its initial weights, drawn from `init`.
    fn init(&self, init: Rng, device: &Device) -> Self::Model;

    /// The training loss of the next batch (with dropout and label smoothing), advancing the
    /// data state.
    fn loss(&self, model: &Self::Model, data: &mut DataState, dropout: &mut Dropout, device: &Device) -> Tensor<1>;

    /// Evaluate a model without autodiff (`model.valid()`): loss, error... on the fixed
    /// training subset and on the validation set.
    fn evaluate(&self, model: &Self::Model) -> Evaluation;
}

/// Run a task under the protocol: `params` are the checked parameters, `common` the shared
/// settings read from them.
pub fn run<T: Task>(
    task: &T,
    params: &ParamSet,
    common: &Common,
    env: &TrialEnv,
    stop: &AtomicBool,
) -> Result<RunEnd, WorkloadError> {
    let device = Device::flex().autodiff();
    let mut reporter = Reporter::open(&env.metrics_file)?;
    let mut model = task.init(Rng::stream(env.seed, STREAM_INIT), &device);
    let mut optim: ModuleOptimizer = optim::build(common);
    let mut state = TrainState::new(params.workload.name, &params.values, env.seed);

    if let Some(path) = &env.resume_from {
        let (m, o, s) = checkpoint::load(path, model, optim)?;
        let fail = |reason: String| WorkloadError::Resume { path: path.clone(), reason };
        if s.workload != params.workload.name {
            return Err(fail(format!("it is a checkpoint of workload {}, not {}", s.workload, params.workload.name)));
        }
        // The schedule's shape may differ: a round carries a schedule to a longer budget by the
        // method's rule (a linear decay becomes warmup-stable-decay with the same decay length),
        // and horizon resumes only within the prefix the two schedules share. Everything else
        // must be the run's own.
        if without_schedule(&s.params) != without_schedule(&state.params) {
            return Err(fail(format!("it was written with parameters {} but this run has {}", s.params, state.params)));
        }
        // A checkpoint written under a shorter budget (a ladder's earlier rung) continues under
        // this run's schedule: the learning rate of every step comes from `common`, never from
        // the checkpoint (its `last_lr` is only reported). One past this budget cannot.
        if s.step > env.max_train_steps {
            return Err(fail(format!(
                "it is at step {}, past this run's budget HORIZON_MAX_TRAIN_STEPS = {} (a checkpoint resumes only a run at least as long as its step)",
                s.step, env.max_train_steps
            )));
        }
        (model, optim, state) = (m, o, s);
    }

    // How much of this run a longer budget would train identically (docs/protocol.md): a ladder
    // resumes the trial's promotion from a checkpoint at or before it.
    reporter.budget_independent(common.schedule.budget_independent_until())?;

    // Resumed: report the checkpoint's evaluation again, so that the new attempt's records hold
    // it.
    if env.resume_from.is_some() && env.is_eval_step(state.step) {
        let eval = task.evaluate(&model.valid());
        report(&mut reporter, state.step, &state, &eval)?;
        if eval.diverged() {
            return Ok(RunEnd::Finished);
        }
    }

    while state.step < env.max_train_steps {
        let step = state.step + 1;
        let lr = common.lr_at(step);
        let mut dropout_rng = Rng { state: state.dropout_rng };
        let loss = {
            let mut dropout = Dropout { p: common.dropout, rng: &mut dropout_rng, device: &device };
            task.loss(&model, &mut state.data, &mut dropout, &device)
        };
        state.dropout_rng = dropout_rng.state;
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let grad_norm = optim::clip_global_norm(&model, &mut grads, common.grad_clip);
        state.step = step;
        state.last_lr = lr;
        state.last_grad_norm_bits = grad_norm.to_bits();
        if !loss_value.is_finite() {
            // Diverged: report the training loss of this step and stop; horizon records the
            // trial as diverged.
            reporter.metrics(step, "train", &[("loss", loss_value), ("lr", lr), ("grad_norm", grad_norm)])?;
            return Ok(RunEnd::Finished);
        }
        model = optim.step(lr, model, grads);

        if env.is_eval_step(step) {
            let eval = task.evaluate(&model.valid());
            report(&mut reporter, step, &state, &eval)?;
            if eval.diverged() {
                return Ok(RunEnd::Finished);
            }
        }
        let stopping = stop.load(Ordering::SeqCst) && step < env.max_train_steps;
        if stopping || env.is_checkpoint_step(step) {
            let name = checkpoint::save(&env.trial_dir, &model, &optim, &state)?;
            reporter.checkpoint(step, &name)?;
        }
        if stopping {
            return Ok(RunEnd::Stopped { step });
        }
    }
    Ok(RunEnd::Finished)
}

/// Parameters as stored in a checkpoint, less those that only shape the schedule after its
/// shared prefix (`schedule`, `decay_steps`).
fn without_schedule(params: &serde_json::Value) -> serde_json::Value {
    let mut p = params.clone();
    if let Some(map) = p.as_object_mut() {
        map.remove("schedule");
        map.remove("decay_steps");
    }
    p
}

fn report(reporter: &mut Reporter, step: u64, state: &TrainState, eval: &Evaluation) -> Result<(), WorkloadError> {
    let mut train = eval.train.clone();
    train.push(("lr", state.last_lr));
    train.push(("grad_norm", state.last_grad_norm()));
    reporter.metrics(step, "train", &train)?;
    reporter.metrics(step, "valid", &eval.valid)
}

/// Mean cross-entropy of `logits: [n, classes]` against `targets` (one per row), with label
/// smoothing `eps`: `(1 - eps) * nll + eps * mean over classes of -log p`.
pub fn cross_entropy(logits: Tensor<2>, targets: &[u16], eps: f64, device: &Device) -> Tensor<1> {
    let n = targets.len();
    let logp = log_softmax(logits, 1);
    let idx = Tensor::<2, Int>::from_data(TensorData::new(targets.iter().map(|&t| t as i64).collect::<Vec<_>>(), [n, 1]), device);
    let nll = logp.clone().gather(1, idx).mean().neg();
    if eps == 0.0 {
        return nll;
    }
    let uniform = logp.mean().neg();
    nll.mul_scalar(1.0 - eps) + uniform.mul_scalar(eps)
}

/// Sums of the per-row cross-entropy (no smoothing) and of the errors (argmax != target, the
/// first maximum on ties) of row-major `logits` with `classes` columns, computed in f64.
pub fn score(logits: &[f32], classes: usize, targets: &[u16]) -> (f64, usize) {
    assert_eq!(logits.len(), classes * targets.len());
    let mut loss = 0.0;
    let mut errors = 0;
    for (row, &t) in logits.chunks_exact(classes).zip(targets) {
        let mut best = 0;
        for (j, &x) in row.iter().enumerate() {
            if x > row[best] || (x.is_nan() && !row[best].is_nan()) {
                best = j;
            }
        }
        let max = row[best] as f64;
        let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        loss += lse - row[t as usize] as f64;
        if best != t as usize {
            errors += 1;
        }
    }
    (loss, errors)
}

/// Rows of a data set in training order: a fresh shuffle of all `n` examples each epoch (from
/// the data state's order seed and the epoch number), walked in batches that continue across
/// epochs.
pub fn next_batch(n: usize, batch: usize, data: &mut DataState) -> Vec<usize> {
    let order_seed = data.order_seed;
    let perm = |epoch: u64| {
        let mut p: Vec<usize> = (0..n).collect();
        Rng::stream(order_seed, epoch).shuffle(&mut p);
        p
    };
    let mut order = perm(data.epoch);
    let mut out = Vec::with_capacity(batch);
    while out.len() < batch {
        if data.position as usize >= n {
            data.epoch += 1;
            data.position = 0;
            order = perm(data.epoch);
        }
        out.push(order[data.position as usize]);
        data.position += 1;
    }
    out
}
