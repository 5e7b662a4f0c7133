//! Learning-rate schedules as pure functions of the step.
//!
//! A schedule is a validated config ([`Schedule`]); [`Schedule::lr`] gives the learning rate
//! at any step, so a trial resumed from a checkpoint continues the very same schedule, and
//! later rounds can transfer a schedule to a longer budget by the method's rules
//! (docs/method.md, section 3): keep the *decay length* of a linear decay and extend the constant
//! period; keep the *base learning rate* of a cosine decay and extend `max_train_steps`.
//!
//! Every kind may start with a linear warmup from 0 to `base_lr` over `warmup_steps`.
//! Steps count from 0: `lr(0)` is the rate of the first update.

/// The shape after warmup.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decay {
    /// `base_lr` throughout.
    Constant,
    /// Linear from `base_lr` to `final_lr` at `total_steps`.
    Linear,
    /// Half a cosine from `base_lr` to `final_lr` at `total_steps`.
    Cosine,
    /// `base_lr * sqrt(max(warmup, 1) / max(step, warmup, 1))`: inverse square root after warmup.
    Rsqrt,
    /// Warmup-stable-decay: constant `base_lr`, then linear to `final_lr` over the last
    /// `decay_steps` steps before `total_steps`.
    ConstantThenLinear { decay_steps: u64 },
}

/// A learning-rate schedule for one run of `total_steps` steps.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub base_lr: f64,
    /// Where decaying schedules end (0 by default).
    pub final_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub decay: Decay,
}

/// Why a schedule's config is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

impl Schedule {
    /// A checked schedule.
    pub fn new(base_lr: f64, warmup_steps: u64, total_steps: u64, decay: Decay) -> Result<Schedule, ScheduleError> {
        Schedule { base_lr, final_lr: 0.0, warmup_steps, total_steps, decay }.validated()
    }

    /// Check the fields: positive finite rates, warmup within the run, decay within the run.
    pub fn validated(self) -> Result<Schedule, ScheduleError> {
        if !(self.base_lr.is_finite() && self.base_lr > 0.0) {
            return Err(ScheduleError(format!("base learning rate must be positive and finite, got {}", self.base_lr)));
        }
        if !(self.final_lr.is_finite() && self.final_lr >= 0.0 && self.final_lr <= self.base_lr) {
            return Err(ScheduleError(format!("final learning rate must be in [0, base], got {}", self.final_lr)));
        }
        if self.total_steps == 0 {
            return Err(ScheduleError("total_steps must be at least 1".into()));
        }
        if self.warmup_steps > self.total_steps {
            return Err(ScheduleError(format!(
                "warmup ({} steps) is longer than the run ({} steps)",
                self.warmup_steps, self.total_steps
            )));
        }
        if let Decay::ConstantThenLinear { decay_steps } = self.decay
            && (decay_steps == 0 || decay_steps + self.warmup_steps > self.total_steps)
        {
            return Err(ScheduleError(format!(
                "decay_steps must be in 1..={} (the run minus warmup), got {decay_steps}",
                self.total_steps - self.warmup_steps
            )));
        }
        Ok(self)
    }

    /// The learning rate of the update at `step` (0-based). Past `total_steps` the last rate
    /// holds.
    pub fn lr(&self, step: u64) -> f64 {
        let step = step.min(self.total_steps);
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let (base, end) = (self.base_lr, self.final_lr);
        // Progress through the decay phase, 0 at its start and 1 at total_steps.
        let progress = |start: u64| {
            let span = self.total_steps.saturating_sub(start).max(1);
            (step.saturating_sub(start)) as f64 / span as f64
        };
        match self.decay {
            Decay::Constant => base,
            Decay::Linear => base + (end - base) * progress(self.warmup_steps),
            Decay::Cosine => end + (base - end) * 0.5 * (1.0 + (std::f64::consts::PI * progress(self.warmup_steps)).cos()),
            Decay::Rsqrt => {
                let w = self.warmup_steps.max(1) as f64;
                base * (w / (step as f64).max(w)).sqrt()
            }
            Decay::ConstantThenLinear { decay_steps } => {
                let start = self.total_steps - decay_steps;
                if step < start { base } else { base + (end - base) * progress(start) }
            }
        }
    }

    /// The schedule for a longer (or shorter) run of `total_steps`, carried over by the method's
    /// rules: linear decay keeps its decay *length* and extends the constant period before it
    /// (becoming constant-then-linear); constant-then-linear keeps its decay length; cosine,
    /// rsqrt and constant keep their base learning rate and warmup and stretch to the new end.
    pub fn transfer(&self, total_steps: u64) -> Result<Schedule, ScheduleError> {
        let decay = match self.decay {
            Decay::Linear => Decay::ConstantThenLinear { decay_steps: self.total_steps - self.warmup_steps },
            other => other,
        };
        Schedule { total_steps, decay, ..*self }.validated()
    }

    /// What the method says of carrying this schedule to a longer budget: `None` where its rule
    /// is the method's (linear and warmup-stable-decay keep the decay length, cosine keeps the
    /// base rate and stretches), a warning for the families it expects to transfer poorly.
    pub fn transfer_warning(&self) -> Option<&'static str> {
        match self.decay {
            Decay::Linear | Decay::ConstantThenLinear { .. } | Decay::Cosine => None,
            Decay::Rsqrt => Some(
                "an inverse-square-root schedule is carried by keeping its base rate and warmup; the method expects such schedules to transfer poorly between budgets: re-tune the learning rate at the new budget",
            ),
            Decay::Constant => Some(
                "a constant learning rate is carried unchanged; the method expects the best constant rate to shift with the budget: re-tune it at the new budget (or use a decaying schedule)",
            ),
        }
    }

    /// The tuned schedule stretched in proportion to a longer (or shorter) run, warmup and decay
    /// lengths included: the naive carry-over whose short-horizon bias the method warns about
    /// (a linear decay stretched over a 4x longer run spends most of it at small rates). For
    /// comparison with [`Schedule::transfer`]; horizon itself never carries a schedule this way.
    pub fn stretch(&self, total_steps: u64) -> Result<Schedule, ScheduleError> {
        let ratio = total_steps as f64 / self.total_steps as f64;
        let scale = |n: u64| ((n as f64 * ratio).round() as u64).min(total_steps);
        let decay = match self.decay {
            Decay::ConstantThenLinear { decay_steps } => Decay::ConstantThenLinear { decay_steps: scale(decay_steps).max(1) },
            other => other,
        };
        Schedule { total_steps, warmup_steps: scale(self.warmup_steps), decay, ..*self }.validated()
    }
}

impl Schedule {
    /// How many leading updates two schedules give the same learning rate: steps `0..p` agree,
    /// so a run under `self` and a run under `other` (same data order and seed) are in the same
    /// state after `p` updates, and the one can resume from the other's checkpoint at step `p`.
    /// This is what lets a ladder resume a promoted trial instead of restarting it: a
    /// warmup-stable-decay schedule whose decay starts later under the longer budget shares
    /// everything before the shorter run's decay; a constant or inverse-square-root schedule
    /// does not depend on the budget at all; linear and cosine decay from the start share only
    /// their warmup. Never more than the shorter run.
    pub fn identical_until(&self, other: &Schedule) -> u64 {
        let shorter = self.total_steps.min(other.total_steps);
        if self.base_lr.to_bits() != other.base_lr.to_bits() || self.warmup_steps != other.warmup_steps {
            return 0;
        }
        let warmup = self.warmup_steps.min(shorter);
        let same_end = self.final_lr.to_bits() == other.final_lr.to_bits();
        let p = match (self.decay, other.decay) {
            // The rate after warmup is base_lr whatever the budget.
            (Decay::Constant, Decay::Constant) => shorter,
            // base * sqrt(w / step): the budget only says where it stops.
            (Decay::Rsqrt, Decay::Rsqrt) => shorter,
            (Decay::Linear, Decay::Linear) | (Decay::Cosine, Decay::Cosine)
                if same_end && self.total_steps == other.total_steps =>
            {
                shorter
            }
            // Constant at base_lr until each decay starts; identical after only when the whole
            // schedule is.
            (Decay::ConstantThenLinear { decay_steps: a }, Decay::ConstantThenLinear { decay_steps: b }) => {
                if same_end && a == b && self.total_steps == other.total_steps {
                    shorter
                } else {
                    (self.total_steps - a).min(other.total_steps - b)
                }
            }
            // Constant against a stable phase: base_lr until the decay starts.
            (Decay::Constant, Decay::ConstantThenLinear { decay_steps }) => (other.total_steps - decay_steps).min(shorter),
            (Decay::ConstantThenLinear { decay_steps }, Decay::Constant) => (self.total_steps - decay_steps).min(shorter),
            // Anything else decays from the end of warmup on, at a budget-dependent rate.
            _ => warmup,
        };
        p.max(warmup).min(shorter)
    }

    /// How many leading updates of this run are the same under *any* longer budget (the same
    /// schedule with a later `total_steps`): the step a trainer declares as budget-independent
    /// (docs/protocol.md), and the checkpoint a ladder resumes a promoted trial from. The whole
    /// run for constant and inverse-square-root schedules, everything before the decay for
    /// warmup-stable-decay (its decay length is fixed in steps), the warmup for linear and
    /// cosine decay.
    pub fn budget_independent_until(&self) -> u64 {
        let longer =
            Schedule { total_steps: self.total_steps.saturating_mul(2).max(self.total_steps.saturating_add(1)), ..*self };
        self.identical_until(&longer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_prefixes_are_exact() {
        // Every pair of small schedules: the rates agree on 0..p (what resuming needs), and p is
        // where schedules of one family part.
        let mut schedules = Vec::new();
        for total in [10u64, 16, 40] {
            for warmup in [0u64, 3] {
                for decay in [
                    Decay::Constant,
                    Decay::Linear,
                    Decay::Cosine,
                    Decay::Rsqrt,
                    Decay::ConstantThenLinear { decay_steps: 4 },
                    Decay::ConstantThenLinear { decay_steps: 5 },
                ] {
                    for base in [0.1, 0.2] {
                        if let Ok(s) = Schedule::new(base, warmup, total, decay) {
                            schedules.push(s);
                        }
                    }
                }
            }
        }
        for a in &schedules {
            for b in &schedules {
                let p = a.identical_until(b);
                assert_eq!(p, b.identical_until(a), "symmetric: {a:?} {b:?}");
                let shorter = a.total_steps.min(b.total_steps);
                assert!(p <= shorter);
                for step in 0..p {
                    assert_eq!(a.lr(step).to_bits(), b.lr(step).to_bits(), "step {step} of {a:?} vs {b:?} (p = {p})");
                }
                // Tight for schedules of one family: they differ at p, or at p + 1 (a decay's
                // first step still has the base rate; p stops before it, at the decay start).
                let same_family = std::mem::discriminant(&a.decay) == std::mem::discriminant(&b.decay);
                if same_family && p + 1 < shorter {
                    let differs = |s: u64| a.lr(s).to_bits() != b.lr(s).to_bits();
                    assert!(differs(p) || differs(p + 1), "p = {p} is not where they part: {a:?} vs {b:?}");
                }
            }
        }
        // The ladder's case: warmup-stable-decay with a decay of fixed length or fixed fraction.
        let wsd =
            |total: u64, decay: u64| Schedule::new(0.1, 100, total, Decay::ConstantThenLinear { decay_steps: decay }).unwrap();
        assert_eq!(wsd(900, 100).identical_until(&wsd(2700, 100)), 800, "fixed length: up to the shorter run's decay start");
        assert_eq!(wsd(900, 180).identical_until(&wsd(2700, 540)), 720, "fixed fraction (20%)");
        let cos = |total: u64| Schedule::new(0.1, 100, total, Decay::Cosine).unwrap();
        assert_eq!(cos(900).identical_until(&cos(2700)), 100, "cosine shares only its warmup");
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn the_budget_independent_prefix_holds_for_every_longer_budget() {
        for decay in [Decay::Constant, Decay::Linear, Decay::Cosine, Decay::Rsqrt, Decay::ConstantThenLinear { decay_steps: 30 }]
        {
            let s = Schedule::new(0.1, 10, 100, decay).unwrap();
            let p = s.budget_independent_until();
            for longer in [101u64, 150, 300, 10_000] {
                let l = Schedule { total_steps: longer, ..s };
                for step in 0..p {
                    assert_eq!(s.lr(step).to_bits(), l.lr(step).to_bits(), "{decay:?} step {step} under {longer}");
                }
            }
            let expected = match decay {
                Decay::Constant | Decay::Rsqrt => 100,
                Decay::ConstantThenLinear { .. } => 70,
                _ => 10,
            };
            assert_eq!(p, expected, "{decay:?}");
        }
    }

    #[test]
    fn warmup_is_linear_and_reaches_the_base_rate() {
        let s = Schedule::new(0.1, 10, 100, Decay::Constant).unwrap();
        close(s.lr(0), 0.01);
        close(s.lr(4), 0.05);
        close(s.lr(9), 0.1);
        close(s.lr(10), 0.1);
        close(s.lr(99), 0.1);
    }

    #[test]
    fn linear_and_cosine_end_at_zero_and_halve_midway() {
        let lin = Schedule::new(1.0, 0, 100, Decay::Linear).unwrap();
        close(lin.lr(0), 1.0);
        close(lin.lr(50), 0.5);
        close(lin.lr(100), 0.0);
        let cos = Schedule::new(1.0, 0, 100, Decay::Cosine).unwrap();
        close(cos.lr(0), 1.0);
        close(cos.lr(50), 0.5);
        close(cos.lr(25), 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos()));
        close(cos.lr(100), 0.0);
        close(cos.lr(1000), 0.0);
        let with_warmup = Schedule::new(1.0, 20, 120, Decay::Linear).unwrap();
        close(with_warmup.lr(20), 1.0);
        close(with_warmup.lr(70), 0.5);
    }

    #[test]
    fn rsqrt_decays_as_the_inverse_square_root() {
        let s = Schedule::new(1.0, 100, 10_000, Decay::Rsqrt).unwrap();
        close(s.lr(100), 1.0);
        close(s.lr(400), 0.5);
        close(s.lr(10_000), 0.1);
    }

    #[test]
    fn constant_then_linear_decays_only_at_the_end() {
        let s = Schedule::new(1.0, 0, 1000, Decay::ConstantThenLinear { decay_steps: 200 }).unwrap();
        close(s.lr(799), 1.0);
        close(s.lr(800), 1.0);
        close(s.lr(900), 0.5);
        close(s.lr(1000), 0.0);
    }

    #[test]
    fn transfer_follows_the_method() {
        // Linear decay: keep the decay length (100 steps), extend the constant period.
        let lin = Schedule::new(1.0, 0, 100, Decay::Linear).unwrap();
        let long = lin.transfer(400).unwrap();
        close(long.lr(299), 1.0);
        close(long.lr(350), 0.5);
        close(long.lr(400), 0.0);
        // Cosine: keep the base rate, stretch to the new end.
        let cos = Schedule::new(0.3, 10, 100, Decay::Cosine).unwrap();
        let long = cos.transfer(1000).unwrap();
        close(long.base_lr, 0.3);
        close(long.lr(505), 0.15);
    }

    #[test]
    fn transfer_pins_and_warnings_and_the_naive_stretch() {
        // Warmup-stable-decay keeps its decay length and warmup in steps at 4x.
        let wsd = Schedule::new(0.2, 20, 1000, Decay::ConstantThenLinear { decay_steps: 200 }).unwrap();
        let t = wsd.transfer(4000).unwrap();
        assert_eq!((t.warmup_steps, t.decay, t.total_steps), (20, Decay::ConstantThenLinear { decay_steps: 200 }, 4000));
        assert_eq!(t.lr(3799), 0.2, "constant until the same-length decay");
        assert!(wsd.transfer_warning().is_none());
        // The same schedule stretched: warmup 80, decay 800; at step 3300 the rate is already
        // below the transferred one.
        let s = wsd.stretch(4000).unwrap();
        assert_eq!((s.warmup_steps, s.decay), (80, Decay::ConstantThenLinear { decay_steps: 800 }));
        assert!(s.lr(3300) < t.lr(3300));
        // Linear stretched over 4x decays all along: at a quarter of the run it is at 3/4 of the rate.
        let lin = Schedule::new(1.0, 0, 100, Decay::Linear).unwrap();
        close(lin.stretch(400).unwrap().lr(100), 0.75);
        close(lin.transfer(400).unwrap().lr(100), 1.0);
        // The families the method expects to transfer poorly say so.
        assert!(Schedule::new(0.1, 10, 100, Decay::Rsqrt).unwrap().transfer_warning().unwrap().contains("poorly"));
        assert!(Schedule::new(0.1, 0, 100, Decay::Constant).unwrap().transfer_warning().unwrap().contains("re-tune"));
        assert!(Schedule::new(0.1, 0, 100, Decay::Cosine).unwrap().transfer_warning().is_none());
    }

    #[test]
    fn invalid_configs_are_refused() {
        assert!(Schedule::new(0.0, 0, 10, Decay::Constant).is_err());
        assert!(Schedule::new(0.1, 11, 10, Decay::Constant).is_err());
        assert!(Schedule::new(0.1, 5, 10, Decay::ConstantThenLinear { decay_steps: 6 }).is_err());
        assert!(Schedule::new(f64::NAN, 0, 10, Decay::Constant).is_err());
    }
}
