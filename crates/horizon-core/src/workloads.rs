//! The catalog of built-in workloads: names, the metrics they report and the parameters they
//! take, as plain data. The training code lives in `horizon-workloads`; the catalog lives here
//! so that a study file naming a workload is checked (objective, parameter names) without
//! loading any model code.

use crate::params::ParamValue;

/// One parameter a built-in workload takes.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadParam {
    pub name: &'static str,
    /// The value used when the study does not set the parameter.
    pub default: Default,
    pub doc: &'static str,
}

/// A default value (const-friendly mirror of [`ParamValue`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Default {
    Float(f64),
    Int(i64),
    Bool(bool),
    Str(&'static str),
}

impl Default {
    pub fn value(self) -> ParamValue {
        match self {
            Default::Float(x) => ParamValue::Float(x),
            Default::Int(i) => ParamValue::Int(i),
            Default::Bool(b) => ParamValue::Bool(b),
            Default::Str(s) => ParamValue::Str(s.to_string()),
        }
    }
}

/// A built-in workload.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadInfo {
    pub name: &'static str,
    pub summary: &'static str,
    /// The metrics a study may name as its objective (or in `trainer.metrics`). For most
    /// workloads, exactly what they report; for `replay`, whatever the recorded file holds, of
    /// which these are the names a study may judge by.
    pub metrics: &'static [&'static str],
    /// The workload's own parameters.
    pub params: &'static [WorkloadParam],
    /// The shared parameters it takes as well: [`COMMON_PARAMS`] for the trainers, none for
    /// `replay` (a recorded curve has no optimizer to set).
    pub common: &'static [WorkloadParam],
}

impl WorkloadInfo {
    pub fn param(&self, name: &str) -> Option<&WorkloadParam> {
        self.params.iter().find(|p| p.name == name)
    }
}

const fn p(name: &'static str, default: Default, doc: &'static str) -> WorkloadParam {
    WorkloadParam { name, default, doc }
}

/// Optimizer, schedule and regularization parameters every workload takes. Each default is the
/// feature's "off" where it has one; the ones the learning-rate sweep switches off are
/// [`REGULARIZATION_OFF`].
pub const COMMON_PARAMS: &[WorkloadParam] = &[
    p("optimizer", Default::Str("sgd"), "\"sgd\" (with momentum), \"adam\" or \"adamw\""),
    p("learning_rate", Default::Float(0.1), "base learning rate"),
    p("momentum", Default::Float(0.9), "SGD momentum (0 = plain SGD)"),
    p("nesterov", Default::Bool(false), "Nesterov momentum for SGD"),
    p("beta1", Default::Float(0.9), "Adam/AdamW first-moment decay"),
    p("beta2", Default::Float(0.999), "Adam/AdamW second-moment decay"),
    p("epsilon", Default::Float(1e-8), "Adam/AdamW epsilon"),
    p("weight_decay", Default::Float(0.0), "weight decay (0 = off); decoupled for AdamW, L2 otherwise"),
    p(
        "schedule",
        Default::Str("constant"),
        "\"constant\", \"linear\", \"cosine\", \"rsqrt\" or \"wsd\" (constant then linear decay)",
    ),
    p("warmup_steps", Default::Int(0), "linear warmup from 0 (0 = off)"),
    p("decay_steps", Default::Int(0), "length of the final linear decay of \"wsd\""),
    p("grad_clip", Default::Float(0.0), "clip the global gradient norm to this (0 = off)"),
    p("batch_size", Default::Int(64), "training batch size"),
    p("dropout", Default::Float(0.0), "dropout probability (0 = off)"),
    p("label_smoothing", Default::Float(0.0), "label smoothing (0 = off)"),
];

/// Metrics every classification workload reports.
pub const CLASSIFIER_METRICS: &[&str] =
    &["train/loss", "train/error", "valid/loss", "valid/error", "train/lr", "train/grad_norm"];

/// The names a `replay` study may use as its objective or in `trainer.metrics`. A replay reports
/// every metric its file records, under the file's names (they are all stored); these are the
/// usual ones, and the ones of the AlexNet data (`examples/opda_to_jsonl.py`).
pub const REPLAY_METRICS: &[&str] = &[
    "train/loss",
    "train/error",
    "train/accuracy",
    "valid/loss",
    "valid/error",
    "valid/accuracy",
    "valid/top5_error",
    "valid/perplexity",
    "test/loss",
    "test/error",
    "test/accuracy",
];

/// The built-in workloads. Each takes its own parameters and its `common` ones
/// ([`COMMON_PARAMS`] for the trainers, none for `replay`).
pub const WORKLOADS: &[WorkloadInfo] = &[
    WorkloadInfo {
        name: "digits-mlp",
        summary: "UCI handwritten digits (1,797 8x8 images), an MLP that can fit the training set perfectly; not compute-bound",
        metrics: CLASSIFIER_METRICS,
        params: &[
            p("hidden", Default::Int(128), "width of each hidden layer"),
            p("layers", Default::Int(2), "number of hidden layers"),
        ],
        common: COMMON_PARAMS,
    },
    WorkloadInfo {
        name: "mnist-mlp",
        summary: "5,000 MNIST digits (28x28), an MLP; harder, with optional random-shift augmentation",
        metrics: CLASSIFIER_METRICS,
        params: &[
            p("hidden", Default::Int(256), "width of each hidden layer"),
            p("layers", Default::Int(2), "number of hidden layers"),
            p("augment", Default::Int(0), "random shifts of up to this many pixels (0 = off)"),
        ],
        common: COMMON_PARAMS,
    },
    WorkloadInfo {
        name: "jargon-lm",
        summary: "a character-level transformer language model on the Jargon File (public domain); compute-bound",
        metrics: &["train/loss", "train/error", "valid/loss", "valid/error", "valid/perplexity", "train/lr", "train/grad_norm"],
        params: &[
            p("context", Default::Int(64), "characters of context"),
            p("d_model", Default::Int(64), "model width"),
            p("heads", Default::Int(4), "attention heads"),
            p("layers", Default::Int(2), "transformer blocks"),
        ],
        common: COMMON_PARAMS,
    },
    WorkloadInfo {
        name: "replay",
        summary: "answers each trial from a recorded learning curve (a JSON Lines file in horizon's import format): reports the run's evaluations as recorded, under the file's metric names; costs nothing",
        metrics: REPLAY_METRICS,
        params: &[
            p(
                "runs",
                Default::Str(""),
                "(required) the JSON Lines file of recorded runs; relative to the trainer's working directory",
            ),
            p("run", Default::Int(0), "which run to replay: its 0-based index in the file, or its name"),
        ],
        common: &[],
    },
];

/// The workload with this name.
pub fn workload(name: &str) -> Option<&'static WorkloadInfo> {
    WORKLOADS.iter().find(|w| w.name == name)
}

/// A parameter of a workload: its own, or one of the common ones it takes.
pub fn workload_param(w: &WorkloadInfo, name: &str) -> Option<&'static WorkloadParam> {
    let w = WORKLOADS.iter().find(|x| x.name == w.name)?;
    w.params.iter().chain(w.common).find(|p| p.name == name)
}

/// Every parameter name a workload accepts.
pub fn workload_param_names(w: &WorkloadInfo) -> Vec<&'static str> {
    w.params.iter().chain(w.common).map(|p| p.name).collect()
}

/// The regularization and augmentation parameters of the built-in workloads, with their "off"
/// values (what the learning-rate sweep sets them to).
pub const REGULARIZATION_OFF: &[(&str, Default)] = &[
    ("weight_decay", Default::Float(0.0)),
    ("dropout", Default::Float(0.0)),
    ("label_smoothing", Default::Float(0.0)),
    ("augment", Default::Int(0)),
];

/// The "off" value of a built-in workload's regularization or augmentation parameter.
pub fn regularization_off(name: &str) -> Option<ParamValue> {
    REGULARIZATION_OFF.iter().find(|(n, _)| *n == name).map(|(_, v)| v.value())
}

/// Where the schedule of a built-in workload's run with `params` and `budget` stops depending on
/// the budget ([`Schedule::budget_independent_until`](crate::schedule::Schedule::budget_independent_until)),
/// computed as the workload computes its schedule (unset parameters take the catalog's
/// defaults). `None` when the parameters do not make a valid schedule (the run will fail and
/// say why).
pub fn budget_independent_until(params: &crate::Params, budget: u64) -> Option<u64> {
    schedule_of(params, budget).map(|s| s.budget_independent_until())
}

/// What each built-in trainer parameter is, for the rounds' transfer table
/// ([`crate::rounds`]): the catalog's answer to "freeze, narrow or search it next round?".
pub fn param_role(workload: &str, name: &str) -> Option<crate::rounds::ParamRole> {
    use crate::rounds::ParamRole as R;
    let info = self::workload(workload)?;
    info.params.iter().chain(info.common).find(|p| p.name == name)?;
    Some(match name {
        "optimizer" | "learning_rate" | "momentum" | "nesterov" | "beta1" | "beta2" | "epsilon" => R::Optimizer,
        "weight_decay" | "dropout" | "label_smoothing" | "grad_clip" => R::Regularization,
        "augment" => R::Augmentation,
        "warmup_steps" => R::Warmup,
        "schedule" | "decay_steps" => R::Schedule,
        // The model, and the batch size it is trained with (the method fixes it first).
        "hidden" | "layers" | "context" | "d_model" | "heads" | "batch_size" => R::Architecture,
        _ => R::Other,
    })
}

/// Where a built-in workload's run with `params` and `budget` stops depending on the budget, as
/// horizon knows it before the run: from the schedule for the trainers (they take the common
/// parameters), the whole run for `replay` (a recorded curve does not depend on the budget).
/// `None` for a workload horizon does not know.
pub fn known_budget_independent_until(workload: &str, params: &crate::Params, budget: u64) -> Option<u64> {
    let info = self::workload(workload)?;
    if info.common.is_empty() { Some(budget) } else { budget_independent_until(params, budget) }
}

/// The learning-rate schedule a built-in trainer's run with `params` and `budget` follows (for
/// the workloads that take the common parameters; `replay` has none), as
/// the workload computes it (unset parameters take the catalog's defaults); `None` when the
/// parameters do not make a valid schedule.
pub fn schedule_of(params: &crate::Params, budget: u64) -> Option<crate::schedule::Schedule> {
    use crate::schedule::{Decay, Schedule};
    let get = |name: &str| {
        params.get(name).cloned().or_else(|| COMMON_PARAMS.iter().find(|p| p.name == name).map(|p| p.default.value()))
    };
    let int = |name: &str| match get(name)? {
        ParamValue::Int(i) => u64::try_from(i).ok(),
        ParamValue::Float(x) if x.fract() == 0.0 && x >= 0.0 => Some(x as u64),
        _ => None,
    };
    let lr = get("learning_rate")?.as_f64()?;
    let decay = match get("schedule")? {
        ParamValue::Str(s) => match s.as_str() {
            "constant" => Decay::Constant,
            "linear" => Decay::Linear,
            "cosine" => Decay::Cosine,
            "rsqrt" => Decay::Rsqrt,
            "wsd" => Decay::ConstantThenLinear { decay_steps: int("decay_steps")? },
            _ => return None,
        },
        _ => return None,
    };
    Schedule::new(lr, int("warmup_steps")?, budget, decay).ok()
}

/// A built-in trainer's parameters carried from a run of `from` steps to one of `to` steps by
/// the method's schedule rules ([`Schedule::transfer`](crate::schedule::Schedule::transfer)),
/// as parameters the trainer reads: a linear decay becomes warmup-stable-decay with the shorter
/// run's decay length (`schedule = "wsd"`, `decay_steps`); warmup-stable-decay and cosine keep
/// their parameters (the decay length, the base rate and warmup in steps); the families the
/// method expects to transfer poorly come with its warning. `None` for parameters that do not
/// make a valid schedule at either budget.
pub fn transfer_params(params: &crate::Params, from: u64, to: u64) -> Option<(crate::Params, Option<&'static str>)> {
    use crate::schedule::Decay;
    let short = schedule_of(params, from)?;
    let long = short.transfer(to).ok()?;
    let mut carried = params.clone();
    if let Decay::ConstantThenLinear { decay_steps } = long.decay
        && short.decay == Decay::Linear
    {
        carried.set("schedule", ParamValue::Str("wsd".into()));
        carried.set("decay_steps", ParamValue::Int(decay_steps as i64));
    }
    // The carried parameters must make the transferred schedule, as the trainer computes it.
    (schedule_of(&carried, to)? == long).then_some((carried, short.transfer_warning()))
}

#[cfg(test)]
mod prefix_tests {
    use super::*;
    use crate::Params;

    fn params(pairs: &[(&str, ParamValue)]) -> Params {
        let mut p = Params::default();
        for (k, v) in pairs {
            p.set(k, v.clone());
        }
        p
    }

    #[test]
    fn built_in_schedules_say_where_they_stop_depending_on_the_budget() {
        let wsd = params(&[("schedule", ParamValue::Str("wsd".into())), ("decay_steps", ParamValue::Int(100))]);
        assert_eq!(budget_independent_until(&wsd, 300), Some(200));
        // Defaults: constant learning rate, the whole run.
        assert_eq!(budget_independent_until(&Params::default(), 300), Some(300));
        let cosine = params(&[("schedule", ParamValue::Str("cosine".into())), ("warmup_steps", ParamValue::Int(20))]);
        assert_eq!(budget_independent_until(&cosine, 300), Some(20));
        // A decay longer than the rung: no valid schedule, nothing known.
        assert_eq!(budget_independent_until(&wsd, 50), None);
        // What horizon knows before the run, by workload.
        assert_eq!(known_budget_independent_until("digits-mlp", &wsd, 300), Some(200));
        assert_eq!(known_budget_independent_until("replay", &Params::default(), 81), Some(81), "a recorded curve");
        assert_eq!(known_budget_independent_until("no-such", &wsd, 300), None);
    }

    #[test]
    fn every_trainer_parameter_has_a_role_in_the_transfer_table() {
        use crate::rounds::ParamRole;
        for w in WORKLOADS.iter().filter(|w| !w.common.is_empty()) {
            for p in w.params.iter().chain(w.common) {
                assert_ne!(param_role(w.name, p.name), Some(ParamRole::Other), "{}: {}", w.name, p.name);
            }
        }
        assert_eq!(param_role("digits-mlp", "learning_rate"), Some(ParamRole::Optimizer));
        assert_eq!(param_role("jargon-lm", "d_model"), Some(ParamRole::Architecture));
        assert_eq!(param_role("digits-mlp", "no_such"), None);
    }

    #[test]
    fn schedules_carry_to_a_longer_budget_as_parameters_by_the_methods_rules() {
        let linear = params(&[("schedule", ParamValue::Str("linear".into())), ("warmup_steps", ParamValue::Int(10))]);
        let (carried, warning) = transfer_params(&linear, 100, 400).unwrap();
        assert_eq!(carried.get("schedule"), Some(&ParamValue::Str("wsd".into())));
        assert_eq!(carried.get("decay_steps"), Some(&ParamValue::Int(90)), "the decay length of the 100-step run");
        assert_eq!(warning, None);
        // Warmup-stable-decay and cosine keep their parameters; constant warns.
        let wsd = params(&[("schedule", ParamValue::Str("wsd".into())), ("decay_steps", ParamValue::Int(30))]);
        assert_eq!(transfer_params(&wsd, 100, 400).unwrap(), (wsd.clone(), None));
        let (same, warning) = transfer_params(&Params::default(), 100, 400).unwrap();
        assert_eq!(same, Params::default());
        assert!(warning.unwrap().contains("constant"));
        // Invalid at the shorter budget: nothing to carry.
        assert_eq!(transfer_params(&wsd, 20, 400), None);
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;
    use crate::Params;

    #[test]
    fn replay_takes_its_own_two_parameters_and_none_of_the_common_ones() {
        let replay = workload("replay").unwrap();
        assert_eq!(workload_param_names(replay), vec!["runs", "run"]);
        assert!(workload_param(replay, "learning_rate").is_none());
        assert!(workload_param(replay, "run").is_some());
        // The trainers still take both kinds.
        let digits = workload("digits-mlp").unwrap();
        assert!(workload_param(digits, "learning_rate").is_some() && workload_param(digits, "hidden").is_some());
        assert!(workload_param(digits, "runs").is_none());
    }

    #[test]
    fn a_replay_is_budget_independent_for_the_whole_run() {
        // The ladder's own knowledge of built-in schedules reads a replay's parameters as the
        // defaults (constant): the whole run, which is what a recorded curve is (each rung reads
        // the same recording further), and what the replay declares.
        let mut p = Params::default();
        p.set("runs", ParamValue::Str("runs.jsonl".into()));
        p.set("run", ParamValue::Int(3));
        for budget in [1, 9, 81] {
            assert_eq!(budget_independent_until(&p, budget), Some(budget));
        }
    }
}
