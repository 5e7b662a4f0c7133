//! Multi-stage work as pure policy: a plan reads what storage holds of the stages run so far and
//! says which stage runs next, or that the work is finished and with what result.
//!
//! Three kinds of work have this shape, and one loop runs them all
//! (`horizon_runner::stages::drive`):
//! - the learning-rate sweep ([`crate::lr_sweep::next_stage`]): each stage is a grid of constant
//!   learning rates, an ordinary study of its own, and an edge of the grid asks for another;
//! - rounds ([`crate::claim::RoundsPolicy::current_round`]): each stage is a round of one study,
//!   its claims capped at that round ([`crate::claim::RoundsPolicy::through`]), and the end of a
//!   round is where its checks are read;
//! - a plain study or a ladder: one stage, the whole study (the ladder's rungs interleave, so
//!   they are claims within the stage, not stages).
//!
//! A plan never runs anything: from the same stored state it makes the same decision, so a
//! multi-stage command resumes after any crash from the database alone.

/// What a multi-stage plan decides from the stored stages.
#[derive(Debug, Clone, PartialEq)]
pub enum Next<S, R> {
    /// Run this stage (again, if it was interrupted: its study resumes).
    Run(S),
    /// Everything has run; this is the result.
    Done(R),
}
