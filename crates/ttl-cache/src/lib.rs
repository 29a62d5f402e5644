//! A concurrent TTL cache with scan-resistant eviction (S3-FIFO), honest stats and
//! cancellation-safe single-flight loading, for API responses.
//!
//! # The guarantee
//!
//! An expired entry is never returned, and it does not sit in memory forever: expiry is
//! checked on every access, the oldest entries are checked on every write, and every
//! `len` writes a shard is swept whole (amortised O(1), no background thread).
//! "Expired" is by the cache's clock: the default, coarse one trails real time by at
//! most one kernel tick (1 to 10 ms); [`Clock::Tokio`] is exact. The cache never holds
//! more than its bound (entries, or weight with a weigher). Stats are always on and
//! exact once the calls they count have returned. Concurrent misses for one key run
//! one loader; a failed load caches nothing and every waiter gets its error; a
//! cancelled loader hands the load to the next waiter instead of leaving it waiting
//! forever.
//!
//! The peers: `moka` has no stats and its single-flight stalls when the leader is not
//! polled; `quick_cache` has no TTL; `lru` is single-threaded.
//!
//! # Eviction: S3-FIFO
//!
//! For an API cache the hit ratio is quota: every miss is a request. Eviction follows
//! S3-FIFO (Yang et al., SOSP 2023), per shard:
//! - a new key enters a small FIFO (0.5% of the bound) and moves to the main FIFO only if
//!   it is read again before it reaches the small FIFO's head; otherwise it leaves, and
//!   its hash is remembered in a ghost FIFO (up to 60% as many hashes as entries held);
//! - a key that comes back while its hash is in the ghost goes to main if one of the
//!   first four entries at main's head has not been read since it last came round (it
//!   takes that one's place); otherwise it is not held at all, and its hash stays in the
//!   ghost (an admission rule of ours, in the spirit of TinyLFU's, that keeps a working
//!   set read round and round). Such an insert is told to the eviction listener and
//!   counted as an eviction for capacity, as moka's rejected candidates are dropped;
//! - main's head leaves unless it was read since it last came round (a read count of up
//!   to 3 gives it as many more rounds).
//!
//! So a burst of one-off keys (a crawl, a scan) passes through the small FIFO and does
//! not push out keys that are read often, and a hit sets a counter under a shared lock
//! instead of moving the entry. On the traces in `BENCHMARKS.md` the hit ratio was
//! 79.2% on Zipf (moka 78.8%, quick_cache 78.9%, plain LRU 73.6%), 71.0% on Zipf with
//! one-off scans (70.5%, 70.9%, 63.9%) and 90.35% on a loop 10% larger than the cache
//! (moka 87.5 to 90.2%, quick_cache 81.7%, LRU 0%).
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
//! A hit takes one hash, a shared (read) lock on its shard, one clock read if the
//! entry can expire, a read count on the entry (a store while it is under 3) and a hit
//! counted in this thread's own cell (a load and a store; the cells are summed when
//! [`Cache::stats`] runs), and a clone of the value: store `Arc`s or `Bytes`. The clock
//! is the kernel's coarse monotonic clock ([`Clock::Coarse`], one tick of resolution,
//! 1 to 10 ms), or tokio's where tokio's clock is paused when the cache is built, so
//! `tokio::time::pause` works in tests ([`Clock`]). On the machine behind
//! `BENCHMARKS.md` a hit took 16.6 to 18.9 ns; `perf` puts about 63% of it on the read
//! lock's two atomic operations (taking and releasing it; quick_cache and a
//! `Mutex<LruCache>` pay two as well) and about 7% on the clock read.
//!
//! Memory: an entry takes its key, its value and 16 bytes of its own (its expiry and
//! two 32-bit link words) in one array per shard, 8 bytes more with a time-to-idle and
//! 4 more with a weigher (in arrays beside it), plus a 4-byte index in the lookup table
//! (about 10 bytes an entry with the table's spare room); nothing is allocated per
//! entry. A shard holds at most 536,870,910 entries (29-bit indices). Once the cache evicts, the
//! ghost FIFO adds up to about 18 bytes per entry held (60% as many 8-byte hashes, in a
//! queue and a table; 17.8 bytes measured on a million entries). A cache bounded by
//! entries reserves its table up front, up to a million entries (about 2 MiB written at
//! once). Each thread that looks up in a cache gets a 128-byte cell for its counts; a
//! thread's cell is folded into the totals once the thread has ended.
//!
//! `BENCHMARKS.md` has the figures against moka, quick_cache and a `Mutex<LruCache>`.
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
//! FreeBSD). The default clock is `CLOCK_MONOTONIC_COARSE` (through `rustix`) on Linux
//! and FreeBSD; elsewhere it is `std::time::Instant`, exact and dearer per hit. Nothing
//! else differs.
//!
//! # What this does not protect against
//!
//! - **A leader that is never polled.** A loader whose future is held but not polled
//!   (not dropped) holds up its waiters; only a dropped loader hands over.
//! - **Values that are large but unweighed.** Bounded by entry count, a cache of 10,000
//!   responses of 10 MiB holds 100 GiB; bound by weight (`max_weight`) for that.
//! - **Loops larger than the cache, perfectly.** A working set read round and round,
//!   10% larger than the bound, keeps 90.35% hits here against moka's 87.5 to 90.2%
//!   and Belady's optimum of about 90.4% on that trace: the first round misses while
//!   the cache fills (the second in part), and each shard has its own bound, so a
//!   shard that gets fewer of the loop's keys than its bound leaves the rest unused
//!   (`BENCHMARKS.md`; 90.22% at worst over 30 hash seeds with 16 shards, 89.76% with
//!   32).
//! - **A key turned away keeps missing while main is all hot.** A key back from the
//!   ghost is not held while the entries at main's head are all being read; each try
//!   wears one read off four of them, so a key read often gets in after a few misses,
//!   and one read no more often than main's entries does not.
//! - **A global eviction order.** Each shard evicts on its own (a key's shard is fixed
//!   by its hash); use `.shards(1)` for one order at the cost of one lock.
//! - **Expiry to the nanosecond by default.** With the coarse clock an entry may be
//!   returned up to one kernel tick (1 to 10 ms) after its TTL; [`Clock::Tokio`] is
//!   exact and costs a `clock_gettime` per hit.
//! - **Clock changes.** Time is a monotonic clock; wall-clock jumps do not expire or
//!   revive entries.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
mod clock;
mod counters;
mod load;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod stats;
mod store;

pub use cache::{Builder, Cache, Listener, MAX_SHARDS, Validators, Weigher};
pub use clock::Clock;
pub use stats::{Cause, Stats};
