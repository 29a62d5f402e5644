//! Where a gate reads the time: tokio's clock by default, the CPU's counter on request.

use std::fmt;

/// Where a gate reads the time. Every reading is nanoseconds since the gate was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Clock {
    /// `tokio::time::Instant`: follows `tokio::time::pause` and `advance`, so a test can
    /// run three simulated hours in milliseconds. The default.
    #[default]
    Tokio,
    /// The CPU's time-stamp counter through `quanta` (feature `quanta`), the clock
    /// `governor` uses: on a VM about a third of the cost of `clock_gettime`, which
    /// matters only for in-process limits checked millions of times a second. It
    /// **ignores tokio's paused clock**: a gate on it, in a test that pauses time, waits
    /// for real time to pass.
    #[cfg(feature = "quanta")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quanta")))]
    Tsc,
}

/// A clock with its zero (the instant the gate was built).
pub(crate) enum Source {
    Tokio(tokio::time::Instant),
    #[cfg(feature = "quanta")]
    Tsc(quanta::Clock, u64),
}

impl Source {
    pub(crate) fn new(clock: Clock) -> Self {
        match clock {
            Clock::Tokio => Source::Tokio(tokio::time::Instant::now()),
            #[cfg(feature = "quanta")]
            Clock::Tsc => {
                let clock = quanta::Clock::new();
                let zero = clock.raw();
                Source::Tsc(clock, zero)
            }
        }
    }

    /// Nanoseconds since the zero.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            Source::Tokio(zero) => u64::try_from(zero.elapsed().as_nanos()).unwrap_or(u64::MAX),
            // The raw counter, scaled: the cheapest reading quanta offers.
            #[cfg(feature = "quanta")]
            Source::Tsc(clock, zero) => clock.delta_as_nanos(*zero, clock.raw()),
        }
    }
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
