//! What a bounded stream allows: bytes, and time.

use std::time::Duration;

/// The longest time limit kept as given: 100 years, "never" in practice. A longer one
/// (`Duration::MAX`, say) is taken as this, since adding it to the clock's reading would
/// overflow (it once panicked on the stream's first poll).
pub const LONGEST_LIMIT: Duration = Duration::from_secs(100 * 365 * 86_400);

/// What happens at the byte cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLimit {
    /// Fail with [`Error::TooLarge`](crate::Error::TooLarge) at `limit + 1` bytes.
    Reject,
    /// End the stream after exactly `limit` bytes and report that it was truncated.
    Truncate,
}

/// A minimum data rate: at least `bytes` in every `window`, once `grace` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes required per window.
    pub bytes: u64,
    /// The window.
    pub window: Duration,
    /// Time from the first poll before the first window is judged (slow starts, TLS).
    pub grace: Duration,
}

/// The limits of one bounded stream: a byte cap and optional time limits.
///
/// ```
/// use std::time::Duration;
/// use bounded_stream::Limits;
///
/// let limits = Limits::new(50 * 1024 * 1024)
///     .idle_timeout(Duration::from_secs(30))
///     .deadline(Duration::from_secs(600))
///     .min_rate(64 * 1024, Duration::from_secs(10), Duration::from_secs(5));
/// assert_eq!(limits.max_bytes(), 50 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub(crate) max_bytes: u64,
    pub(crate) on_limit: OnLimit,
    pub(crate) idle: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) min_rate: Option<MinRate>,
}

impl Limits {
    /// At most `max_bytes`; `max_bytes + 1` is an error. No time limits.
    pub fn new(max_bytes: u64) -> Self {
        Limits {
            max_bytes,
            on_limit: OnLimit::Reject,
            idle: None,
            deadline: None,
            min_rate: None,
        }
    }

    /// Stop at the cap and keep the prefix, instead of failing.
    pub fn truncate(mut self) -> Self {
        self.on_limit = OnLimit::Truncate;
        self
    }

    /// Fail if no byte arrives for `timeout`. To keep a precise clock off the per-chunk
    /// path, progress is sampled four times per `timeout`: the error comes between
    /// `timeout` and `1.25 * timeout` after the last byte, never before `timeout`.
    /// Longer than [`LONGEST_LIMIT`] (`Duration::MAX` for "never", say) is taken as it.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle = Some(timeout.min(LONGEST_LIMIT));
        self
    }

    /// Fail if the stream has not ended `deadline` after its first poll: kept while the
    /// source waits (tokio's timer) and while it is always ready, however long the
    /// consumer holds the thread between chunks (each chunk is checked against the
    /// coarse clock, so the error may come up to one kernel tick late, never early).
    /// Longer than [`LONGEST_LIMIT`] is taken as it.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline.min(LONGEST_LIMIT));
        self
    }

    /// Fail if fewer than `bytes` arrive in any `window`, judged from `grace` after the
    /// first poll: the defence against slow-drip peers that an idle timeout misses.
    ///
    /// Only the peer is judged: a window the stream was not polled in (its consumer was
    /// busy, say unpacking what it read) is not counted, and judging resumes with a new
    /// window at the next poll; nor is a window in which the source never made the
    /// stream wait (every byte was ready when asked for, so the consumer set the pace).
    ///
    /// A `window` under 1 ms is taken as 1 ms (a zero window once looped for ever), and
    /// a `window` or `grace` longer than [`LONGEST_LIMIT`] as it.
    pub fn min_rate(mut self, bytes: u64, window: Duration, grace: Duration) -> Self {
        self.min_rate = Some(MinRate {
            bytes,
            window: window.clamp(Duration::from_millis(1), LONGEST_LIMIT),
            grace: grace.min(LONGEST_LIMIT),
        });
        self
    }

    /// The byte cap.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// What happens at the cap.
    pub fn on_limit(&self) -> OnLimit {
        self.on_limit
    }

    pub(crate) fn has_timers(&self) -> bool {
        self.idle.is_some() || self.deadline.is_some() || self.min_rate.is_some()
    }
}
