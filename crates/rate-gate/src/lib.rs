//! API quota and concurrency limits that are exact, fair, and obey the server.
//!
//! # The guarantee
//!
//! A [`Gate`] never lets out more requests than its [`Quota`] allows (GCRA: N per period
//! with a burst), never more at once than its concurrency cap, and never more than the
//! server said remain: after [`Gate::observe`] sees `X-RateLimit-Remaining: 0` it waits
//! for `X-RateLimit-Reset`, and after `Retry-After` or a 403/429 refusal it pauses every
//! waiter. Waiters are served first come, first served; only the first in line sleeps,
//! on one timer (no polling loop; the last 2 ms on the blocking pool, finer than tokio's
//! 1 ms ticks); a cancelled waiter takes no quota and holds up
//! nobody. The quota can change at runtime. The server's remaining count is taken as
//! its freshest figure in each window less the requests still in flight, so a window's
//! quota is used to its end without going over it.
//!
//! With [`GateBuilder::adaptive`], the concurrency cap also follows the server: each
//! round of rate-limit refusals halves it and answers grow it back (AIMD), so a server
//! that takes fewer requests at once than configured is met at its level.
//!
//! The peers: `governor` waits by check-sleep-retry, is not fair, cannot change its
//! quota at runtime and does not read rate headers; tower's `RateLimit` keeps state per
//! clone; no Rust limiter adjusts itself from the server's headers.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), rate_gate::Error> {
//! use std::time::Duration;
//! use rate_gate::{Feedback, Gate, Quota};
//!
//! // GitHub: 5,000 requests an hour per token, about 100 at once.
//! let gate = Gate::builder().quota(Quota::per_hour(5000).burst(100)?).concurrency(100).build();
//! let permit = gate.acquire().await?;
//! // ... send the request, then report what the response said:
//! permit.observe(Feedback::new().remaining(0, Duration::from_secs(1800)));
//! drop(permit);
//! // No further request is let out until the server's window resets.
//! assert!(gate.try_acquire().is_err());
//! # Ok(()) }
//! ```
//!
//! # What is here
//!
//! - [`Quota`] and [`Gate`]: rate (GCRA), concurrency (fixed or adaptive), FIFO
//!   waiting, server feedback from headers or plain values, runtime quota changes,
//!   [`Stats`].
//! - [`KeyedGate`]: a gate per key (token, host, route group) with safe idle eviction.
//! - [`map_bounded`] / [`try_map_bounded`]: at most K in flight, results in input order.
//! - [`Batcher`]: calls within a window (or up to N) coalesced into one batch call.
//! - [`GateLayer`] (feature `tower`, on by default): the gate in front of a tower
//!   service, shared by every clone, reading [`HttpHeaders`] from responses.
//! - `RedisQuota` (feature `redis`): the quota, and the server's word, shared by every
//!   process and machine through Redis; `GateBuilder::redis` is the only change. It
//!   fails closed or falls back to a local share of the quota when Redis is away,
//!   and can take permits in batches to save round trips (`BENCHMARKS.md` has the
//!   latencies).
//! - `metrics` (feature `metrics`): every gate's grants, refusals, waits, permits in
//!   flight and pauses through the `metrics` facade, labelled by
//!   [`GateBuilder::name`]; the counters are read from [`Stats`] when
//!   `metrics::publish` runs, so the hot path costs nothing more.
//!
//! # Cost
//!
//! A grant that does not wait is lock-free: a clock read and one 64-bit
//! compare-and-swap that moves GCRA's timestamp and counts the grant in the same word
//! (one grant in 16 then carries the count into a second counter). The default
//! clock ([`Clock::Auto`]) reads the CPU's counter through `quanta` (feature `quanta`,
//! on by default), as `governor` does: 13 ns a reading against 30 to 40 ns for a
//! `clock_gettime`, measured on a 2-core VM;
//! a gate built where tokio's clock is paused reads tokio's clock instead, so
//! `tokio::time::pause` works in tests (build the gate after pausing). `BENCHMARKS.md`
//! has the figures against governor.
//!
//! # Platforms
//!
//! Pure Rust on tokio: every platform tokio supports (checked for Linux, macOS and
//! FreeBSD). `Clock::Tsc` (feature `quanta`) reads the time-stamp counter where the CPU
//! declares it invariant and falls back to the OS's monotonic clock elsewhere (as does
//! the default `Clock::Auto`).
//!
//! # What this does not protect against
//!
//! - **Requests made around the gate.** Only requests that hold a [`Permit`] count.
//! - **Other processes and machines, without Redis.** One gate is one process's view;
//!   twenty workers on one token need the Redis backend (feature `redis`,
//!   `GateBuilder::redis`) or a quota split among them. With Redis, concurrency is
//!   still per process, and a pause learned elsewhere reaches batched permits within
//!   their lease.
//! - **A response body still streaming.** [`GateLayer`] holds the concurrency slot
//!   until the response (its head, for HTTP) arrives, not until the body is read.
//! - **Clock skew in `X-RateLimit-Reset`.** It is an epoch time read against this
//!   machine's clock; a skewed clock shifts the pause.
//! - **Server windows it was never told about.** Until a response reports the server's
//!   budget, only the configured quota applies.
//! - **A clock paused after the gate was built.** The default clock is chosen when the
//!   gate is built; a gate built before `tokio::time::pause` reads real time, and its
//!   waits take real time in the paused test. Build it after pausing, or pick
//!   [`Clock::Tokio`].

#![cfg_attr(docsrs, feature(doc_cfg))]

mod batch;
mod bounded;
mod clock;
mod error;
mod feedback;
mod gate;
mod keyed;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod quota;
#[cfg(feature = "redis")]
mod shared;
mod slots;
#[cfg(feature = "tower")]
mod tower;

pub use batch::{BatchError, BatchStats, Batcher, BatcherBuilder};
pub use bounded::{map_bounded, try_map_bounded};
pub use clock::Clock;
pub use error::{Error, Result};
pub use feedback::{Feedback, http_date_in, until_epoch};
pub use gate::{DEFAULT_REFUSAL_PAUSE, Gate, GateBuilder, Permit, Stats};
pub use keyed::KeyedGate;
pub use quota::{LONGEST_PERIOD, Quota};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use shared::{OnRedisError, RedisQuota, RedisStats};
#[cfg(all(feature = "tower", feature = "http"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "tower", feature = "http"))))]
pub use tower::HttpHeaders;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use tower::{BoxError, GateLayer, GateService, NoFeedback, ObserveResponse, ResponseFuture};
