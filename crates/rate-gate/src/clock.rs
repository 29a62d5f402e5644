//! Where a gate reads the time: by default the CPU's counter, or tokio's clock where it
//! is paused (tests).

use std::fmt;
use std::time::Duration;

/// How much of a wait is left to the fine finish in [`Source::sleep`]: more than
/// tokio's timer can be late by rounding (one tick for the deadline, one for the
/// driver's wait).
const FINE: u64 = 2_000_000;

/// Where a gate reads the time. Every reading is nanoseconds since the gate was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Clock {
    /// The default: [`Clock::Tokio`] if tokio's clock is paused where the gate is built
    /// (a test under `tokio::time::pause` or `#[tokio::test(start_paused = true)]`),
    /// otherwise [`Clock::Tsc`] (with the feature `quanta`, on by default; without it,
    /// [`Clock::Tokio`]). Decided once, when the gate is built: build it after pausing
    /// the clock. "Paused" means two readings of tokio's clock in a row are equal; a
    /// host whose monotonic clock is too coarse to tell them apart gets tokio's clock,
    /// which is only slower.
    #[default]
    Auto,
    /// `tokio::time::Instant`: follows `tokio::time::pause` and `advance`, so a test can
    /// run three simulated hours in milliseconds. Costs a `clock_gettime` per reading
    /// (30 to 40 ns on a 2-core VM).
    Tokio,
    /// The CPU's time-stamp counter through `quanta` (feature `quanta`), the clock
    /// `governor` uses: 13 ns a reading against 30 to 40 ns for `clock_gettime` on a
    /// 2-core VM, which matters for in-process limits checked millions of times a
    /// second. quanta uses
    /// the counter only where the CPU declares it invariant (constant rate across
    /// cores, sleep states and frequency changes) and reads the OS's monotonic clock
    /// otherwise. It **ignores tokio's paused clock**: a gate on it, in a test that
    /// pauses time, waits for real time to pass.
    #[cfg(feature = "quanta")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quanta")))]
    Tsc,
}

/// A clock with its zero (the instant the gate was built).
pub(crate) enum Source {
    Tokio(tokio::time::Instant),
    #[cfg(feature = "quanta")]
    Tsc(Counter),
}

/// The CPU's counter as a gate reads it: quanta's raw reading, scaled to nanoseconds
/// by one multiplication with a factor read off quanta's calibration when the gate
/// is built. quanta's own scaling (`delta_as_nanos`) matches on its clock's kind and
/// checks the order of its two readings on every call, on the path from the counter
/// to the compare-and-swap: doing without it took a grant from 113 to about 100
/// instructions (callgrind) and 0.88 to 0.94x the time (paired, noisy machine).
#[cfg(feature = "quanta")]
pub(crate) struct Counter {
    clock: quanta::Clock,
    /// The raw reading when the gate was built.
    zero: u64,
    /// Nanoseconds per 2^40 raw units (2^40 exactly where quanta's raw reading is
    /// already in nanoseconds: no invariant counter, so the OS's monotonic clock). At
    /// 2^40 the factor's rounding is under a nanosecond in 2^40 (0.3 ms a year).
    per_2_40: u64,
}

#[cfg(feature = "quanta")]
impl Counter {
    fn new(clock: quanta::Clock) -> Self {
        let per_2_40 = clock.delta_as_nanos(0, 1 << 40);
        let zero = clock.raw();
        Counter {
            clock,
            zero,
            per_2_40,
        }
    }

    /// Nanoseconds since `zero`. The product fits in 128 bits for any counter faster
    /// than 60 Hz, and the result in 64 bits for 584 years (past that it wraps; it
    /// never panics).
    #[inline]
    fn now(&self) -> u64 {
        self.nanos(self.clock.raw().saturating_sub(self.zero))
    }

    /// `units` of the raw counter in nanoseconds.
    #[inline]
    fn nanos(&self, units: u64) -> u64 {
        ((u128::from(units) * u128::from(self.per_2_40)) >> 40) as u64
    }
}

impl Source {
    pub(crate) fn new(clock: Clock) -> Self {
        match clock {
            Clock::Auto if tokio_paused() => Source::tokio(),
            #[cfg(feature = "quanta")]
            Clock::Auto | Clock::Tsc => {
                // Built once per process: quanta's detection asks `cpuid` (a trap to
                // the hypervisor on a VM) and calibrates the counter (under 200 ms).
                static COUNTER: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
                Source::Tsc(Counter::new(
                    COUNTER.get_or_init(quanta::Clock::new).clone(),
                ))
            }
            _ => Source::tokio(),
        }
    }

    fn tokio() -> Self {
        Source::Tokio(tokio::time::Instant::now())
    }

    /// The clock read: never [`Clock::Auto`], which is resolved at build.
    pub(crate) fn kind(&self) -> Clock {
        match self {
            Source::Tokio(_) => Clock::Tokio,
            #[cfg(feature = "quanta")]
            Source::Tsc(..) => Clock::Tsc,
        }
    }

    /// Sleeps until this clock has moved `ns` on, and never wakes before that.
    ///
    /// tokio's timer works in 1 ms ticks and rounds each deadline up, and the driver
    /// rounds its own wait up again, so a waiter woken by it alone is about a
    /// millisecond late on average. For a quota with burst 1 that lateness is quota lost
    /// for good (the next request is spaced from the late one): at a 67 ms interval, 295
    /// of 300 per window. So tokio's timer carries the wait to [`FINE`] before the end,
    /// and the rest is slept on the blocking pool (`nanosleep`, about 50 µs of slack on
    /// Linux). On a paused tokio clock the rest goes back to tokio's timer, which is exact
    /// there (and real sleeping would stall simulated time).
    pub(crate) async fn sleep(&self, ns: u64) {
        let until = self.now().saturating_add(ns);
        if ns > FINE {
            tokio::time::sleep(Duration::from_nanos(ns - FINE)).await;
        }
        let left = until.saturating_sub(self.now());
        if left == 0 {
            return;
        }
        if self.frozen() {
            tokio::time::sleep(Duration::from_nanos(left)).await;
            return;
        }
        // A cancelled waiter leaves at most `FINE` of sleep behind on the pool.
        let slept = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_nanos(left));
        })
        .await;
        if slept.is_err() {
            // The blocking pool is shutting down: tokio's timer still keeps the order.
            tokio::time::sleep(Duration::from_nanos(until.saturating_sub(self.now()))).await;
        }
    }

    /// `true` on a paused tokio clock: two readings in a row are equal. (A host whose
    /// monotonic clock is too coarse to tell them apart reads as paused too, and only
    /// loses the fine finish.)
    fn frozen(&self) -> bool {
        match self {
            Source::Tokio(_) => tokio_paused(),
            #[cfg(feature = "quanta")]
            Source::Tsc(..) => false,
        }
    }

    /// Nanoseconds since the zero.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            Source::Tokio(zero) => u64::try_from(zero.elapsed().as_nanos()).unwrap_or(u64::MAX),
            #[cfg(feature = "quanta")]
            Source::Tsc(counter) => counter.now(),
        }
    }
}

/// `true` if tokio's clock is paused here: two readings in a row are equal.
fn tokio_paused() -> bool {
    tokio::time::Instant::now() == tokio::time::Instant::now()
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Tokio(_) => f.write_str("Tokio"),
            #[cfg(feature = "quanta")]
            Source::Tsc(..) => f.write_str("Tsc"),
        }
    }
}

#[cfg(all(test, feature = "quanta"))]
mod tests {
    use super::Counter;

    /// The gate's own scaling agrees with quanta's to within the factor's rounding
    /// (under a nanosecond per 2^40 units) and one nanosecond of flooring, from one
    /// unit to decades, and never goes backwards.
    #[test]
    fn the_counter_scales_as_quanta_does() {
        let counter = Counter::new(quanta::Clock::new());
        let mut last = 0;
        for shift in 0..63 {
            for units in [1u64 << shift, (1u64 << shift) + (1 << shift) / 3] {
                let ours = counter.nanos(units);
                let theirs = counter.clock.delta_as_nanos(0, units);
                let slack = (units >> 40) + 1;
                assert!(
                    ours.abs_diff(theirs) <= slack,
                    "{units} units: {ours} ns against quanta's {theirs}"
                );
                assert!(ours >= last, "{units} units went backwards");
                last = ours;
            }
        }
        let (a, b) = (counter.now(), counter.now());
        assert!(b >= a);
    }
}
