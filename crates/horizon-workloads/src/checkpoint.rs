//! Checkpoints: `ckpt-<step>/` in the trial directory, holding
//!
//! * `model.safetensors`: every parameter, by its module path (`layers.0.weight`), f32;
//! * `optimizer.bpk`: the optimizer state (momentum, Adam moments and step counts) in burn's
//!   burnpack format, keyed by parameter id;
//! * `state.json`: the step, the data-order and augmentation generator, the dropout generator,
//!   the last step's learning rate and gradient norm, and the parameters the run was started
//!   with (a checkpoint only resumes a run of the same workload and parameters).
//!
//! The directory is written as `ckpt-<step>.tmp` and renamed when complete.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::ModuleOptimizer;
use burn::tensor::{Tensor, TensorData};
use horizon_core::Params;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::WorkloadError;
use crate::rng::Rng;

const MODEL_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "state.json";

/// Where the data stream stands: the epoch and position in it (for workloads that walk through
/// a shuffled training set), and the generator of random windows and augmentations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DataState {
    /// Seeds the shuffle of each epoch (with the epoch number).
    pub order_seed: u64,
    pub epoch: u64,
    pub position: u64,
    /// The generator of random windows and augmentations.
    pub rng: u64,
}

/// Everything but the model and the optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub workload: String,
    pub step: u64,
    pub params: serde_json::Value,
    pub data: DataState,
    pub dropout_rng: u64,
    /// The learning rate of the last step.
    pub last_lr: f64,
    /// The global gradient norm of the last step, as `f64::to_bits` (it may be infinite).
    pub last_grad_norm_bits: u64,
}

impl TrainState {
    /// The state before the first step of a run with this seed: the data order, the data
    /// generator and the dropout generator are streams 2, 3 and 4 of the seed (1 initializes
    /// the weights).
    pub fn new(workload: &str, params: &Params, seed: u64) -> TrainState {
        TrainState {
            workload: workload.to_string(),
            step: 0,
            params: serde_json::to_value(params).expect("parameters are JSON"),
            data: DataState {
                order_seed: Rng::stream(seed, 2).next_u64(),
                epoch: 0,
                position: 0,
                rng: Rng::stream(seed, 3).state,
            },
            dropout_rng: Rng::stream(seed, 4).state,
            last_lr: 0.0,
            last_grad_norm_bits: f64::NAN.to_bits(),
        }
    }

    pub fn last_grad_norm(&self) -> f64 {
        f64::from_bits(self.last_grad_norm_bits)
    }
}

/// The checkpoint directory's name for a step, as announced (relative to the trial directory).
pub fn dir_name(step: u64) -> String {
    format!("ckpt-{step}")
}

/// Write `ckpt-<step>/` in `trial_dir`; returns its name.
pub fn save<M: Module>(
    trial_dir: &Path,
    model: &M,
    optim: &ModuleOptimizer,
    state: &TrainState,
) -> Result<String, WorkloadError> {
    let name = dir_name(state.step);
    let dir = trial_dir.join(&name);
    let tmp = trial_dir.join(format!("{name}.tmp"));
    let fail = |reason: String| WorkloadError::Checkpoint { path: dir.clone(), reason };
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| fail(format!("removing the leftover {}: {e}", tmp.display())))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| fail(format!("creating {}: {e}", tmp.display())))?;

    let bytes = model_to_safetensors(model).map_err(|e| fail(format!("serializing the model: {e}")))?;
    fs::write(tmp.join(MODEL_FILE), bytes).map_err(|e| fail(format!("writing {MODEL_FILE}: {e}")))?;
    optim.save(tmp.join(OPTIMIZER_FILE)).map_err(|e| fail(format!("writing {OPTIMIZER_FILE}: {e}")))?;
    let json = serde_json::to_string_pretty(state).expect("the state is JSON");
    fs::write(tmp.join(STATE_FILE), json).map_err(|e| fail(format!("writing {STATE_FILE}: {e}")))?;

    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| fail(format!("replacing the existing directory: {e}")))?;
    }
    fs::rename(&tmp, &dir).map_err(|e| fail(format!("renaming {} into place: {e}", tmp.display())))?;
    Ok(name)
}

/// Read a checkpoint into `model` and `optim` (freshly built with the run's parameters).
pub fn load<M: Module>(path: &Path, model: M, optim: ModuleOptimizer) -> Result<(M, ModuleOptimizer, TrainState), WorkloadError> {
    let fail = |reason: String| WorkloadError::Resume { path: path.to_path_buf(), reason };
    if !path.is_dir() {
        return Err(fail(
            "not a directory (a built-in workload's checkpoints are ckpt-<step> directories in the trial directory)".into(),
        ));
    }
    let read = |file: &str| fs::read(path.join(file)).map_err(|e| fail(format!("reading {file}: {e}")));
    let state: TrainState = serde_json::from_slice(&read(STATE_FILE)?).map_err(|e| fail(format!("{STATE_FILE}: {e}")))?;
    let bytes = read(MODEL_FILE)?;
    let model = model_from_safetensors(model, &bytes).map_err(|e| fail(format!("{MODEL_FILE}: {e}")))?;
    let optim = optim.load(path.join(OPTIMIZER_FILE)).map_err(|e| fail(format!("{OPTIMIZER_FILE}: {e}")))?;
    Ok((model, optim, state))
}

/// Collects `(path, shape, f32 values)` of every float parameter.
#[derive(Default)]
struct Collect {
    path: Vec<String>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    error: Option<String>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data();
        let shape = data.shape().to_vec();
        match data.try_into_vec::<f32>() {
            Ok(values) => self.tensors.push((self.path.join("."), shape, values)),
            Err(e) => self.error = Some(format!("{}: {e:?}", self.path.join("."))),
        }
    }
}

pub fn model_to_safetensors<M: Module>(model: &M) -> Result<Vec<u8>, String> {
    let mut c = Collect::default();
    model.visit(&mut c);
    if let Some(e) = c.error {
        return Err(e);
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = c
        .tensors
        .into_iter()
        .map(|(path, shape, values)| (path, shape, values.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(path, shape, data)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|v| (path.clone(), v))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

/// Replaces every float parameter's value by the tensor stored under its path, keeping its id.
struct Restore {
    path: Vec<String>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    errors: Vec<String>,
}

impl ModuleMapper for Restore {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let Some((shape, values)) = self.tensors.remove(&path) else {
            self.errors.push(format!("{path} is missing"));
            return param;
        };
        let current = param.val();
        if shape != current.dims().to_vec() {
            self.errors.push(format!("{path} has shape {shape:?}, the model has {:?}", current.dims()));
            return param;
        }
        let device = current.device();
        let tensor = Tensor::<D>::from_data(TensorData::new(values, shape), &device);
        let tensor = if current.is_require_grad() { tensor.require_grad() } else { tensor };
        Param::initialized(param.id, tensor)
    }
}

pub fn model_from_safetensors<M: Module>(model: M, bytes: &[u8]) -> Result<M, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut tensors = HashMap::new();
    for name in st.names() {
        let view = st.tensor(name).map_err(|e| e.to_string())?;
        if view.dtype() != Dtype::F32 {
            return Err(format!("{name} is {:?}, expected F32", view.dtype()));
        }
        let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        tensors.insert(name.to_string(), (view.shape().to_vec(), values));
    }
    let mut r = Restore { path: Vec::new(), tensors, errors: Vec::new() };
    let model = model.map(&mut r);
    let mut unused: Vec<&String> = r.tensors.keys().collect();
    unused.sort();
    if !unused.is_empty() {
        r.errors.push(format!("tensors the model does not have: {unused:?}"));
    }
    if r.errors.is_empty() { Ok(model) } else { Err(r.errors.join("; ")) }
}

/// The absolute path of a checkpoint directory.
pub fn path_in(trial_dir: &Path, name: &str) -> PathBuf {
    trial_dir.join(name)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::nn::{Init, Lm, LmShape, Mlp};

    fn names(bytes: &[u8]) -> Vec<String> {
        let mut n: Vec<String> = SafeTensors::deserialize(bytes).unwrap().names().into_iter().map(str::to_string).collect();
        n.sort();
        n
    }

    #[test]
    fn models_are_stored_by_module_path_and_load_back_exactly() {
        let device = Device::flex().autodiff();
        let mlp = Mlp::new(&mut Init::new(&device, Rng::stream(1, 1)), 4, 3, 1, 2);
        let bytes = model_to_safetensors(&mlp).unwrap();
        assert_eq!(names(&bytes), ["layers.0.bias", "layers.0.weight", "layers.1.bias", "layers.1.weight"]);
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("layers.0.weight").unwrap().shape(), [4, 3]);

        // Into a model initialized differently: every value comes back, ids stay.
        let other = Mlp::new(&mut Init::new(&device, Rng::stream(2, 1)), 4, 3, 1, 2);
        let ids: Vec<_> = other.layers.iter().map(|l| l.weight.id).collect();
        let loaded = model_from_safetensors(other, &bytes).unwrap();
        assert_eq!(loaded.layers.iter().map(|l| l.weight.id).collect::<Vec<_>>(), ids);
        assert_eq!(model_to_safetensors(&loaded).unwrap(), bytes);
        assert!(loaded.layers[0].weight.val().is_require_grad());

        // A model of another shape is refused, naming the tensor.
        let wider = Mlp::new(&mut Init::new(&device, Rng::stream(2, 1)), 4, 5, 1, 2);
        let e = model_from_safetensors(wider, &bytes).unwrap_err();
        assert!(e.contains("layers.0.weight has shape [4, 3]"), "{e}");

        let shape = LmShape { vocab: 7, context: 5, d_model: 4, heads: 2, layers: 1 };
        let lm = Lm::new(&mut Init::new(&device, Rng::stream(1, 1)), shape);
        let n = names(&model_to_safetensors(&lm).unwrap());
        for expected in
            ["tok", "pos", "blocks.0.qkv.weight", "blocks.0.ln1.gamma", "blocks.0.out.bias", "ln_f.beta", "head.weight"]
        {
            assert!(n.iter().any(|x| x == expected), "{expected} in {n:?}");
        }
    }
}
