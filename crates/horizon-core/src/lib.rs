//! The pure domain of horizon: everything that decides, nothing that does I/O.
//!
//! - [`spec::StudySpec`]: a study file (TOML) parsed and checked field by field.
//! - [`space::SearchSpace`] and [`params::Params`]: what a trial varies and the values it got.
//! - [`sampler`]: quasi-random (scrambled, shifted Halton), uniform random and grid samplers,
//!   all deterministic functions of `(seed, index)`, so storage only has to hand out indices.
//! - [`trial`]: the trial state machine and the rule that turns an attempt's outcome into the
//!   trial's next state (retry, requeue, finish).
//! - [`protocol`]: parsing of the metric lines a trainer writes (trial protocol v1).
//! - [`selection`]: retrospective best-checkpoint selection over a trial's evaluations.
//! - [`checkpoint`]: which announced checkpoints to keep and which to delete.
//! - [`lr_sweep`]: the constant-learning-rate sweep that picks an initial `max_train_steps`.
//! - [`ladder`]: asynchronous successive halving over growing budgets (promotion decisions).
//! - [`decision`]: what a policy decides about running trials (stop one, and why), as data.
//! - [`claim`]: what a worker asking for work gets (retry, launch, promote, wait, done): the
//!   fixed budget, the ladder and rounds as claim policies.
//! - [`rounds`]: what carries from one round to the next (the transfer table, narrowing).
//! - [`stored`]: the typed read model of a stored study's spec.
//! - [`stages`]: multi-stage work (the sweep's grids, rounds) as plans over stored stages.
//!
//! ```
//! use horizon_core::spec::StudySpec;
//! let spec = StudySpec::parse(r#"
//!     [study]
//!     name = "demo"
//!     trials = 8
//!     max_train_steps = 1000
//!     eval_every = 100
//!     [objective]
//!     metric = "valid/loss"
//!     direction = "minimize"
//!     [trainer]
//!     command = ["python3", "train.py", "--lr={learning_rate}"]
//!     metrics = ["valid/loss"]
//!     [params.learning_rate]
//!     type = "float"
//!     low = 1e-4
//!     high = 1.0
//!     scale = "log"
//! "#, "demo.toml").unwrap();
//! let sampler = spec.sampler.build(&spec.space, spec.seed).unwrap();
//! let first = sampler.sample(0).unwrap();
//! let lr = first.get("learning_rate").unwrap().as_f64().unwrap();
//! assert!((1e-4..=1.0).contains(&lr));
//! ```

pub mod analysis_config;
pub mod checkpoint;
pub mod claim;
pub mod criterion;
pub mod decision;
pub mod ladder;
pub mod lr_sweep;
pub mod numfmt;
pub mod params;
pub mod protocol;
pub mod rng;
pub mod rounds;
pub mod sampler;
pub mod schedule;
pub mod selection;
pub mod space;
pub mod spec;
pub mod stages;
pub mod stored;
pub mod trial;
pub mod workloads;

pub use params::{ParamValue, Params};
pub use spec::{Direction, StudySpec};
pub use trial::{TrialRecord, TrialState};

/// One evaluation of one named metric at one training step, as stored.
///
/// Names carry their split (`valid/loss`, `train/error`). A non-finite `value` is kept as is:
/// NaN or infinity in a loss is how a trial reports that it diverged.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricPoint {
    pub step: u64,
    pub name: String,
    pub value: f64,
}
