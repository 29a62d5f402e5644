//! The quota: N requests per period with a burst, as GCRA (one timestamp of state).

use std::time::Duration;

use crate::{Error, Result};

/// The longest quota period taken: 10 years. A gate keeps its times in nanoseconds
/// since it was built, up to 2^60 (36 years), and a longer period left no room: a quota
/// of one per `Duration::MAX` refused its first request.
pub const LONGEST_PERIOD: Duration = Duration::from_secs(10 * 365 * 86_400);

/// N requests per period, with a burst (how many may go at once after an idle spell).
///
/// ```
/// use rate_gate::Quota;
/// let github = Quota::per_hour(5000);                 // burst 1: evenly spaced
/// let api = Quota::per_second(10).burst(20)?;         // 20 at once, then 10/s
/// assert_eq!(api.emission_interval(), std::time::Duration::from_millis(100));
/// # let _ = github;
/// # Ok::<(), rate_gate::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    count: u32,
    period: Duration,
    burst: u32,
}

impl Quota {
    /// `count` per `period`, burst 1. Fails on a zero count or period, and on a period
    /// over [`LONGEST_PERIOD`].
    pub fn new(count: u32, period: Duration) -> Result<Self> {
        Self::check(count, period, 1)
    }

    fn check(count: u32, period: Duration, burst: u32) -> Result<Self> {
        if count == 0 || period.is_zero() || period > LONGEST_PERIOD || burst == 0 {
            return Err(Error::InvalidQuota {
                count,
                period_ms: period.as_millis(),
                burst,
            });
        }
        Ok(Quota {
            count,
            period,
            burst,
        })
    }

    /// `count` per second (at least 1).
    pub fn per_second(count: u32) -> Self {
        Quota {
            count: count.max(1),
            period: Duration::from_secs(1),
            burst: 1,
        }
    }

    /// `count` per minute (at least 1).
    pub fn per_minute(count: u32) -> Self {
        Quota {
            count: count.max(1),
            period: Duration::from_secs(60),
            burst: 1,
        }
    }

    /// `count` per hour (at least 1).
    pub fn per_hour(count: u32) -> Self {
        Quota {
            count: count.max(1),
            period: Duration::from_secs(3600),
            burst: 1,
        }
    }

    /// How many may go at once after an idle spell (at least 1).
    ///
    /// With burst 1 requests are evenly spaced, at least one emission interval apart,
    /// so no sliding window of one period ever holds more than `count`. The price: a
    /// waiter woken late is quota lost for good, since the next request is spaced from
    /// the late one. tokio's timer alone wakes about a millisecond late (1 ms ticks,
    /// rounded up), so the gate sleeps the last 2 ms of each wait on the blocking pool
    /// instead: on this project's 2-core test VM, a 50/s quota used 148 of 150 permits in
    /// 3 s, against 141 with tokio's timer alone (`cargo xtask stress --only rate`).
    /// A runtime too busy to poll the woken waiter still loses what it delays. A burst
    /// of 2 or more absorbs lateness up to `burst - 1` intervals and keeps the full rate,
    /// at the cost of that many requests at once after an idle spell.
    pub fn burst(self, burst: u32) -> Result<Self> {
        Self::check(self.count, self.period, burst)
    }

    /// Requests per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The burst.
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// The time between two requests at the sustained rate, rounded up to the
    /// nanosecond so that the rate never exceeds the quota (3 per second is one request
    /// every 333,333,334 ns).
    pub fn emission_interval(&self) -> Duration {
        let count = u128::from(self.count);
        let ns = self.period.as_nanos().div_ceil(count);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}
