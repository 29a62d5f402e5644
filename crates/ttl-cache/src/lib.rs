//! A concurrent TTL + LRU cache with honest stats and cancellation-safe single-flight
//! loading, for API responses.
//!
//! # The guarantee
//!
//! An expired entry is never returned, and it does not sit in memory forever: expiry is
//! checked on every access, the least recently used entries are checked on every write,
//! and every `len` writes a shard is swept whole (amortised O(1), no background thread).
//! The cache never holds more than its bound (entries, or weight with a weigher). Stats
//! are always on and exact. Concurrent misses for one key run one loader; a failed load
//! caches nothing and every waiter gets its error; a cancelled loader hands the load to
//! the next waiter instead of leaving it waiting forever.
//!
//! The peers: `moka` has no stats and its single-flight stalls when the leader is not
//! polled; `quick_cache` has no TTL; `lru` is single-threaded.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use ttl_cache::Cache;
//!
//! // GitHub reads for 5 minutes; a 404 is remembered for 1.
//! let api: Cache<String, Option<String>> = Cache::builder()
//!     .max_entries(50_000)
//!     .ttl(Duration::from_secs(300))
//!     .build();
//! let body = api
//!     .get_or_try_insert_with_ttl("repos/o/missing".to_string(), || async {
//!         // ... the request; here, a 404:
//!         Ok::<_, std::io::Error>((None, Duration::from_secs(60)))
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!(body, None);
//! assert_eq!(api.stats().loads, 1);
//! # }
//! ```
//!
//! # Revalidation and stale-while-revalidate
//!
//! Insert a response with its [`Validators`] (`ETag`, `Last-Modified`) and keep expired
//! entries a while with [`Builder::stale_for`]: once it expires, [`Cache::revalidation`]
//! gives the value and validators for a conditional request, and on a `304`
//! [`Cache::refresh`] gives it a new TTL without a new body (GitHub does not count a
//! 304 against the quota). [`Cache::get_or_refresh`] serves a stale value at once while
//! one refresh runs in the background.
//!
//! # Cost
//!
//! A hit takes one clock read (tokio's, so `tokio::time::pause` works in tests), one
//! hash, one shard lock and a clone of the value: store `Arc`s or `Bytes`.
//! `BENCHMARKS.md` has the figures against moka, quick_cache and a `Mutex<LruCache>`.
//! Each entry carries 28 bytes of its own beside the `lru` node.
//!
//! # Metrics
//!
//! With feature `metrics` (off by default), each named cache's hits, misses, loads, evictions by cause, entries and weight go (read from its exact stats when `metrics::publish` runs, so a `get` costs nothing more) through the
//! [`metrics`](https://docs.rs/metrics) facade, to whichever recorder the program
//! installs: the `metrics` module lists each one and when it is recorded.
//!
//! # Platforms
//!
//! Pure Rust on tokio: every platform tokio supports (checked for Linux, macOS and
//! FreeBSD); nothing degrades.
//!
//! # What this does not protect against
//!
//! - **A leader that is never polled.** A loader whose future is held but not polled
//!   (not dropped) holds up its waiters; only a dropped loader hands over.
//! - **Values that are large but unweighed.** Bounded by entry count, a cache of 10,000
//!   responses of 10 MiB holds 100 GiB; bound by weight (`max_weight`) for that.
//! - **Scan-resistant admission.** Eviction is plain LRU: a burst of one-off keys pushes
//!   out hot ones, where moka's TinyLFU would refuse them (on a Zipf trace moka's hit
//!   ratio is about 5 points higher; `BENCHMARKS.md`).
//! - **Exact global LRU order.** Eviction is LRU within each shard; use `.shards(1)` for
//!   exact order at the cost of one lock.
//! - **Clock changes.** Time is tokio's monotonic clock; wall-clock jumps do not expire
//!   or revive entries.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
mod load;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod stats;

pub use cache::{Builder, Cache, Listener, Validators, Weigher};
pub use stats::{Cause, Stats};
