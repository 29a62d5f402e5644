//! Where a cache reads the time for TTLs: the kernel's coarse monotonic clock by
//! default, tokio's clock where tokio's clock is paused (tests).

/// The clock a cache reads its TTLs, time-to-idle and stale windows from. Chosen once,
/// when the cache is built ([`Builder::clock`](crate::Builder::clock)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Clock {
    /// The default: [`Clock::Tokio`] if tokio's clock is paused where the cache is
    /// built (two readings in a row are equal), [`Clock::Coarse`] otherwise. Build the
    /// cache after `tokio::time::pause()` in a test that advances time.
    #[default]
    Auto,
    /// tokio's clock: `tokio::time::pause` and `advance` move it. A reading is a
    /// `clock_gettime(CLOCK_MONOTONIC)` when not paused (30 to 45 ns on the virtual
    /// machine behind `BENCHMARKS.md`), about as much as the rest of a hit.
    Tokio,
    /// The kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE` on Linux and
    /// FreeBSD): a few nanoseconds a reading, advanced once per kernel tick (1 to 10 ms;
    /// 4 ms on most distributions' kernels). So an entry may be returned up to one tick
    /// after its TTL has passed, never before it. Elsewhere, `std::time::Instant`.
    /// It ignores tokio's paused clock.
    Coarse,
}

/// A clock and its zero (the instant the cache was built).
pub(crate) enum Source {
    Tokio(tokio::time::Instant),
    Coarse(u64),
}

impl Source {
    pub(crate) fn new(clock: Clock) -> Self {
        match clock {
            Clock::Auto if tokio_paused() => Source::Tokio(tokio::time::Instant::now()),
            Clock::Tokio => Source::Tokio(tokio::time::Instant::now()),
            Clock::Auto | Clock::Coarse => Source::Coarse(coarse_ns()),
        }
    }

    /// The clock read: never [`Clock::Auto`], which is resolved at build.
    pub(crate) fn kind(&self) -> Clock {
        match self {
            Source::Tokio(_) => Clock::Tokio,
            Source::Coarse(_) => Clock::Coarse,
        }
    }

    /// Nanoseconds since the zero.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            Source::Tokio(zero) => u64::try_from(zero.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Source::Coarse(zero) => coarse_ns().saturating_sub(*zero),
        }
    }
}

/// `true` if tokio's clock is paused here: two readings in a row are equal.
fn tokio_paused() -> bool {
    tokio::time::Instant::now() == tokio::time::Instant::now()
}

/// The coarse monotonic clock, in nanoseconds from an arbitrary zero.
///
/// Plain wrapping arithmetic: the kernel's monotonic seconds are never negative, its
/// nanoseconds are under 10^9, and the sum fits in 64 bits for 584 years of uptime.
/// Checked conversions with saturation (as in `bounded-stream`, read once per chunk)
/// took a one-thread hit to 1.05x this one's time (paired, six caches of each,
/// 2026-12-03, against 0.99 to 1.01x for two copies of the same code).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
#[inline]
fn coarse_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// `std::time::Instant` where no coarse clock is offered, from a process-wide zero.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
#[inline]
fn coarse_ns() -> u64 {
    static ZERO: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let zero = *ZERO.get_or_init(std::time::Instant::now);
    u64::try_from(zero.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
