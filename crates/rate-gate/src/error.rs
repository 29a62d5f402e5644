//! The crate's one error type.

/// What a gate can refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// More permits asked at once than the burst allows: this can never be granted.
    #[error("asked for {requested} permits at once, but the burst is {burst}")]
    OverBurst {
        /// Permits asked for.
        requested: u32,
        /// The quota's burst.
        burst: u32,
    },

    /// A quota with zero requests, a zero burst, or a period that is zero or over
    /// [`LONGEST_PERIOD`](crate::LONGEST_PERIOD).
    #[error("invalid quota: {count} per {period_ms} ms with burst {burst}")]
    InvalidQuota {
        /// Requests per period.
        count: u32,
        /// The period, in milliseconds.
        period_ms: u128,
        /// The burst.
        burst: u32,
    },

    /// A batcher was started outside a tokio runtime: it needs one for its task.
    #[error("a batcher needs a tokio runtime to run its task in")]
    NoRuntime,

    /// The Redis backend could not be reached (or answered too late) and the gate fails
    /// closed. Nothing was granted.
    #[error("quota `{key}` in Redis: {reason}")]
    Backend {
        /// The gate's key.
        key: String,
        /// What went wrong.
        reason: String,
    },

    /// A tower `call` on a gated service without a permit: `poll_ready` must return
    /// `Ready(Ok)` first. Nothing was sent.
    #[error("call without a permit: poll_ready must return Ready(Ok) first")]
    NotReady,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
