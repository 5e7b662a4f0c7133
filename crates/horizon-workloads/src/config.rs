//! A trial's parameters, checked against the catalog (`horizon_core::workloads`) and turned into
//! typed settings: the optimizer, the learning-rate schedule, regularization, and each
//! workload's own shape parameters.

use horizon_core::schedule::{Decay, Schedule};
use horizon_core::workloads::{WorkloadInfo, workload_param, workload_param_names};
use horizon_core::{ParamValue, Params};

use crate::WorkloadError;

/// The parameters of one workload: the study's values over the catalog's defaults.
#[derive(Debug, Clone)]
pub struct ParamSet {
    pub workload: &'static WorkloadInfo,
    /// Every accepted parameter, in catalog order (own, then common), with its value.
    pub values: Params,
}

impl ParamSet {
    /// Check the names and fill in defaults. Unknown names are refused.
    pub fn new(workload: &'static WorkloadInfo, given: &Params) -> Result<ParamSet, WorkloadError> {
        for (name, _) in given.iter() {
            if workload_param(workload, name).is_none() {
                return Err(WorkloadError::UnknownParam {
                    workload: workload.name.to_string(),
                    name: name.to_string(),
                    accepted: workload_param_names(workload).join(", "),
                });
            }
        }
        let mut values = Params::default();
        for name in workload_param_names(workload) {
            let p = workload_param(workload, name).expect("listed by the catalog");
            values.set(name, given.get(name).cloned().unwrap_or_else(|| p.default.value()));
        }
        Ok(ParamSet { workload, values })
    }

    fn value(&self, name: &str) -> &ParamValue {
        self.values.get(name).unwrap_or_else(|| panic!("{name} is not a parameter of {}", self.workload.name))
    }

    /// A float parameter (integers are accepted), finite.
    pub fn float(&self, name: &str) -> Result<f64, WorkloadError> {
        match self.value(name) {
            v @ (ParamValue::Float(_) | ParamValue::Int(_)) => {
                let x = v.as_f64().expect("a number");
                if x.is_finite() { Ok(x) } else { Err(WorkloadError::invalid(name, v, "a finite number")) }
            }
            v => Err(WorkloadError::invalid(name, quoted(v), "a number")),
        }
    }

    /// A float parameter within `[lo, hi)` (or `[lo, hi]` when `hi_inclusive`).
    pub fn float_in(&self, name: &str, lo: f64, hi: f64, hi_inclusive: bool) -> Result<f64, WorkloadError> {
        let x = self.float(name)?;
        let ok = x >= lo && if hi_inclusive { x <= hi } else { x < hi };
        if ok {
            Ok(x)
        } else {
            let range = if hi.is_infinite() {
                format!("a number >= {lo}")
            } else {
                format!("a number in [{lo}, {hi}{}", if hi_inclusive { "]" } else { ")" })
            };
            Err(WorkloadError::invalid(name, self.value(name), range))
        }
    }

    /// An integer parameter within `lo..=hi` (a float with an integral value is accepted).
    pub fn int_in(&self, name: &str, lo: i64, hi: i64) -> Result<i64, WorkloadError> {
        let v = self.value(name);
        let i = match v {
            ParamValue::Int(i) => *i,
            ParamValue::Float(x) if x.fract() == 0.0 && x.abs() < 9e15 => *x as i64,
            ParamValue::Float(_) => return Err(WorkloadError::invalid(name, v, "an integer")),
            v => return Err(WorkloadError::invalid(name, quoted(v), "an integer")),
        };
        if (lo..=hi).contains(&i) { Ok(i) } else { Err(WorkloadError::invalid(name, v, format!("an integer in {lo}..={hi}"))) }
    }

    pub fn usize_in(&self, name: &str, lo: usize, hi: usize) -> Result<usize, WorkloadError> {
        Ok(self.int_in(name, lo as i64, hi as i64)? as usize)
    }

    pub fn bool(&self, name: &str) -> Result<bool, WorkloadError> {
        match self.value(name) {
            ParamValue::Bool(b) => Ok(*b),
            v => Err(WorkloadError::invalid(name, quoted(v), "true or false")),
        }
    }

    /// A string parameter that must be one of `choices`.
    pub fn choice(&self, name: &str, choices: &[&'static str]) -> Result<&'static str, WorkloadError> {
        let v = self.value(name);
        let expected = || format!("one of {}", choices.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", "));
        match v {
            ParamValue::Str(s) => {
                choices.iter().find(|c| **c == s).copied().ok_or_else(|| WorkloadError::invalid(name, quoted(v), expected()))
            }
            v => Err(WorkloadError::invalid(name, v, expected())),
        }
    }
}

fn quoted(v: &ParamValue) -> String {
    match v {
        ParamValue::Str(s) => format!("{s:?}"),
        v => v.to_string(),
    }
}

/// Which optimizer, with its hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// SGD with (optionally Nesterov) momentum, PyTorch's convention: no dampening.
    Sgd {
        momentum: f64,
        nesterov: bool,
    },
    Adam {
        beta1: f64,
        beta2: f64,
        epsilon: f64,
    },
    AdamW {
        beta1: f64,
        beta2: f64,
        epsilon: f64,
    },
}

/// The settings every workload shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub optimizer: OptimizerKind,
    /// Decoupled (`lr * wd * w`) for AdamW, an L2 term added to the gradient otherwise.
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// Clip the global gradient norm to this; 0 = off.
    pub grad_clip: f64,
    pub batch_size: usize,
    pub dropout: f64,
    pub label_smoothing: f64,
}

impl Common {
    /// Read and check the common parameters. `max_batch` bounds `batch_size`.
    pub fn from_params(p: &ParamSet, max_train_steps: u64, max_batch: usize) -> Result<Common, WorkloadError> {
        let optimizer = match p.choice("optimizer", &["sgd", "adam", "adamw"])? {
            "sgd" => {
                let momentum = p.float_in("momentum", 0.0, 1.0, false)?;
                let nesterov = p.bool("nesterov")?;
                if nesterov && momentum == 0.0 {
                    return Err(WorkloadError::invalid(
                        "nesterov",
                        true,
                        "false when momentum = 0 (Nesterov momentum needs momentum > 0)",
                    ));
                }
                OptimizerKind::Sgd { momentum, nesterov }
            }
            kind => {
                let beta1 = p.float_in("beta1", 0.0, 1.0, false)?;
                let beta2 = p.float_in("beta2", 0.0, 1.0, false)?;
                let epsilon = p.float("epsilon")?;
                if epsilon <= 0.0 {
                    return Err(WorkloadError::invalid("epsilon", epsilon, "a positive number such as 1e-8"));
                }
                if kind == "adam" {
                    OptimizerKind::Adam { beta1, beta2, epsilon }
                } else {
                    OptimizerKind::AdamW { beta1, beta2, epsilon }
                }
            }
        };
        let learning_rate = p.float("learning_rate")?;
        if learning_rate <= 0.0 {
            return Err(WorkloadError::invalid("learning_rate", learning_rate, "a positive number"));
        }
        let weight_decay = p.float_in("weight_decay", 0.0, f64::INFINITY, false)?;
        let warmup_steps = p.int_in("warmup_steps", 0, i64::MAX)? as u64;
        if warmup_steps > max_train_steps {
            return Err(WorkloadError::invalid(
                "warmup_steps",
                warmup_steps,
                format!("at most max_train_steps ({max_train_steps})"),
            ));
        }
        let decay_steps = p.int_in("decay_steps", 0, i64::MAX)? as u64;
        let decay = match p.choice("schedule", &["constant", "linear", "cosine", "rsqrt", "wsd"])? {
            "constant" => Decay::Constant,
            "linear" => Decay::Linear,
            "cosine" => Decay::Cosine,
            "rsqrt" => Decay::Rsqrt,
            _ => {
                let room = max_train_steps - warmup_steps;
                if decay_steps == 0 || decay_steps > room {
                    return Err(WorkloadError::invalid(
                        "decay_steps",
                        decay_steps,
                        format!(
                            "an integer in 1..={room} for schedule = \"wsd\" (max_train_steps {max_train_steps} minus warmup_steps {warmup_steps})"
                        ),
                    ));
                }
                Decay::ConstantThenLinear { decay_steps }
            }
        };
        let schedule = Schedule::new(learning_rate, warmup_steps, max_train_steps, decay)
            .map_err(|e| WorkloadError::invalid("schedule", p.value("schedule"), format!("a valid schedule ({e})")))?;
        Ok(Common {
            optimizer,
            weight_decay,
            schedule,
            grad_clip: p.float_in("grad_clip", 0.0, f64::INFINITY, false)?,
            batch_size: p.usize_in("batch_size", 1, max_batch)?,
            dropout: p.float_in("dropout", 0.0, 1.0, false)?,
            label_smoothing: p.float_in("label_smoothing", 0.0, 1.0, false)?,
        })
    }

    /// The learning rate of the update that produces step `step` (steps count from 1).
    pub fn lr_at(&self, step: u64) -> f64 {
        self.schedule.lr(step - 1)
    }
}
