//! The quota: N requests per period with a burst, as GCRA (one timestamp of state).

use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result};

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
    /// `count` per `period`, burst 1. Fails on a zero count or period.
    pub fn new(count: u32, period: Duration) -> Result<Self> {
        Self::check(count, period, 1)
    }

    fn check(count: u32, period: Duration, burst: u32) -> Result<Self> {
        if count == 0 || period.is_zero() || burst == 0 {
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

    /// The time between two requests at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.count
    }
}

/// GCRA state: the theoretical arrival time of the next request.
#[derive(Debug)]
pub(crate) struct Gcra {
    quota: Quota,
    interval: Duration,
    tolerance: Duration,
    tat: Instant,
}

impl Gcra {
    pub(crate) fn new(quota: Quota, now: Instant) -> Self {
        let interval = quota.emission_interval();
        Gcra {
            quota,
            interval,
            tolerance: interval * (quota.burst - 1),
            tat: now,
        }
    }

    pub(crate) fn quota(&self) -> Quota {
        self.quota
    }

    /// `true` when the full burst is available again: the same state as a fresh one.
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        self.tat <= now
    }

    /// Takes `n` at `now`, or says how long until they would be allowed (taking nothing).
    pub(crate) fn take(&mut self, n: u32, now: Instant) -> Result<Result<(), Duration>> {
        if n > self.quota.burst {
            return Err(Error::OverBurst {
                requested: n,
                burst: self.quota.burst,
            });
        }
        let tat = self.tat.max(now);
        let new_tat = tat + self.interval * n;
        let allowed_at = new_tat
            .checked_sub(self.tolerance + self.interval)
            .unwrap_or(now);
        if allowed_at > now {
            return Ok(Err(allowed_at - now));
        }
        self.tat = new_tat;
        Ok(Ok(()))
    }

    /// Changes the quota, keeping what was already used: the debt carried in `tat` is
    /// kept, capped at what the new quota would allow for a full burst.
    pub(crate) fn set_quota(&mut self, quota: Quota, now: Instant) {
        let owed = self.tat.saturating_duration_since(now);
        let fresh = Gcra::new(quota, now);
        let max_owed = fresh.tolerance + fresh.interval;
        *self = Gcra {
            tat: now + owed.min(max_owed),
            ..fresh
        };
    }
}
