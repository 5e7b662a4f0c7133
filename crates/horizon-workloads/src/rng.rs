//! The workloads' random number generator: horizon-core's frozen SplitMix64, whose state is one
//! public `u64` that checkpoints store, so a resumed run continues the very same stream.
//!
//! Every random choice of a workload (initial weights, data order, crops, dropout masks) comes
//! from one of these, never from burn's backend generator: burn's flex backend keeps one global
//! generator per process, which would make two trials (or two tests) in one process interfere
//! and could not be checkpointed.

pub use horizon_core::rng::SplitMix64 as Rng;
