//! The bounded spin a worker does before it sleeps, and how long it may be.
//!
//! A worker that had frames keeps looking for more (without a system call where it can)
//! for up to a budget before it sleeps in `poll`: a spin that finds frames saves a sleep
//! and a wake-up; one that finds none is time taken from the other threads of the core
//! (on 2 vCPUs, the traffic's own generator). Busy polling in the kernel (`SO_BUSY_POLL`)
//! is no alternative here: packet sockets never record the NAPI context a frame came
//! from, so the kernel has nothing to poll for them.
//!
//! With `adaptive`, the budget follows what the idle times say, as the kernel's halt
//! polling does for idle vCPUs (`kvm_vcpu_halt`, which counts the poll in the block time):
//! frames that came sooner after the worker ran dry (spin and sleep together) than the
//! longest spin allowed would have been caught by a spin that long, so the budget doubles
//! (from [`START`], up to the maximum); a longer wait, or a sleep that ended with nothing,
//! means spinning was wasted, so it halves (to zero below [`FLOOR`]). Frames that keep
//! coming just after the maximum thus stop the spin rather than keep it missing. The cost is measured as it goes: spins that found frames, spins that did
//! not, and the time those spun for nothing ([`SpinStats`]).

use core::time::Duration;
use std::time::Instant;

/// The budget a grown spin starts from.
pub const START: Duration = Duration::from_micros(4);
/// Below this a shrinking budget becomes zero (no spin).
pub const FLOOR: Duration = Duration::from_micros(1);

/// What the spins cost and saved since the last [`Spin::take_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpinStats {
    /// Spins that found frames (a sleep and a wake-up saved).
    pub hits: u64,
    /// Spins that ran out of budget and slept after all.
    pub misses: u64,
    /// Time spent in the spins that missed.
    pub wasted: Duration,
}

/// A worker's spin budget.
#[derive(Clone, Debug)]
pub struct Spin {
    max: Duration,
    budget: Duration,
    adaptive: bool,
    stats: SpinStats,
}

impl Spin {
    /// Always spin `max`.
    pub fn fixed(max: Duration) -> Self {
        Self {
            max,
            budget: max,
            adaptive: false,
            stats: SpinStats::default(),
        }
    }

    /// Spin at most `max`, as long as the sleeps say it pays.
    pub fn adaptive(max: Duration) -> Self {
        Self {
            adaptive: true,
            ..Self::fixed(max)
        }
    }

    /// The budget now.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// A spin that began at `start` is over.
    pub fn expired(&self, start: Instant) -> bool {
        start.elapsed() >= self.budget
    }

    /// Record a spin that began at `start`: it found frames (`hit`) or not.
    pub fn spun(&mut self, start: Instant, hit: bool) {
        if hit {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
            self.stats.wasted += start.elapsed();
        }
    }

    /// The worker was idle for `idle` (from its first look that found nothing, spin
    /// included, to the wake-up) and woke with frames (`woke`) or not: adapt the budget.
    pub fn slept(&mut self, idle: Duration, woke: bool) {
        if !self.adaptive || self.max.is_zero() {
            return;
        }
        self.budget = if woke && idle < self.max {
            (self.budget * 2).max(START).min(self.max)
        } else {
            let half = self.budget / 2;
            if half < FLOOR { Duration::ZERO } else { half }
        };
    }

    /// What the spins did since the last call.
    pub fn take_stats(&mut self) -> SpinStats {
        core::mem::take(&mut self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn short_sleeps_grow_the_budget_to_the_maximum_and_long_ones_shrink_it_to_zero() {
        let mut s = Spin::adaptive(50 * US);
        assert_eq!(s.budget(), 50 * US, "it starts at the maximum");
        // Frames after a long sleep: spinning would not have caught them.
        for want_ns in [25_000, 12_500, 6_250, 3_125, 1_562] {
            s.slept(200 * US, true);
            assert_eq!(s.budget(), Duration::from_nanos(want_ns));
        }
        s.slept(200 * US, true);
        assert_eq!(s.budget(), Duration::ZERO, "no spin at all below the floor");
        // A sleep that timed out with nothing shrinks too.
        s.slept(10 * US, false);
        assert_eq!(s.budget(), Duration::ZERO);
        // Frames sooner than the maximum: a spin would have saved the sleep.
        for want in [4, 8, 16, 32, 50, 50] {
            s.slept(10 * US, true);
            assert_eq!(s.budget(), want * US);
        }
    }

    #[test]
    fn a_fixed_spin_never_changes_and_zero_never_spins() {
        let mut s = Spin::fixed(50 * US);
        s.slept(200 * US, true);
        s.slept(1 * US, true);
        assert_eq!(s.budget(), 50 * US);
        let mut off = Spin::adaptive(Duration::ZERO);
        off.slept(1 * US, true);
        assert_eq!(off.budget(), Duration::ZERO);
    }

    #[test]
    fn misses_count_their_time_and_hits_none() {
        let mut s = Spin::fixed(50 * US);
        let start = Instant::now();
        while !s.expired(start) {
            core::hint::spin_loop();
        }
        s.spun(start, false);
        s.spun(Instant::now(), true);
        let st = s.take_stats();
        assert_eq!((st.hits, st.misses), (1, 1));
        assert!(st.wasted >= 50 * US, "{:?}", st.wasted);
        assert_eq!(s.take_stats(), SpinStats::default(), "taken");
    }
}
