//! The cache: shards of S3-FIFO stores (`store.rs`), each behind a read-write lock,
//! with TTL, TTI, weights, amortised expiry, an eviction listener and stats.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::clock::{Clock, Source};
use crate::counters::Counters;
use crate::load::Flights;
use crate::stats::{Cause, Stats};
use crate::store::{Admission, Entry, Live, Store};

/// Called with each entry that leaves the cache, and why (outside the shard's lock).
pub type Listener<K, V> = Arc<dyn Fn(&K, &V, Cause) + Send + Sync>;

/// Gives an entry's weight (e.g. a response's size in bytes).
pub type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u64 + Send + Sync>;

/// The cache-wide times an entry is judged by, in nanoseconds (`u64::MAX`: none).
#[derive(Clone, Copy)]
pub(crate) struct Policy {
    tti: u64,
    stale: u64,
}

/// Expired at `now`: at the TTL's instant exactly, or a TTI without a read (`touched`
/// is read only when there is a TTI).
#[inline]
fn expired(expires: u64, touched: impl FnOnce() -> u64, now: u64, p: Policy) -> bool {
    now >= expires || (p.tti != u64::MAX && now >= touched().saturating_add(p.tti))
}

/// Past keeping: expired, and `stale_for` beyond that (an entry kept stale can still
/// be revalidated or served while a refresh runs, never returned by `get`).
#[inline]
fn dead(expires: u64, touched: impl FnOnce() -> u64, now: u64, p: Policy) -> bool {
    now >= expires.saturating_add(p.stale)
        || (p.tti != u64::MAX && now >= touched().saturating_add(p.tti).saturating_add(p.stale))
}

impl<V> Entry<V> {
    pub(crate) fn expired(&self, now: u64, p: Policy) -> bool {
        expired(self.expires, || self.touched, now, p)
    }
}

impl<V> Live<'_, V> {
    #[inline]
    pub(crate) fn expired(&self, now: u64, p: Policy) -> bool {
        expired(self.expires, || self.touched(), now, p)
    }

    #[inline]
    pub(crate) fn dead(&self, now: u64, p: Policy) -> bool {
        dead(self.expires, || self.touched(), now, p)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What a server said to revalidate a response with: send them back as `If-None-Match`
/// and `If-Modified-Since`; on a `304 Not Modified`, [`Cache::refresh`] the entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Validators {
    /// The `ETag` header.
    pub etag: Option<String>,
    /// The `Last-Modified` header.
    pub last_modified: Option<String>,
}

impl Validators {
    /// Validators from the two header values (either may be absent).
    pub fn new(etag: Option<String>, last_modified: Option<String>) -> Self {
        Validators {
            etag,
            last_modified,
        }
    }
}

/// The hasher for shard choice and lookups: one hash per operation.
type Hasher = foldhash::fast::RandomState;

struct Shard<K, V> {
    store: Store<K, V, Hasher>,
    /// Writes since the last full sweep for expired entries.
    writes: usize,
    evicted: [u64; Cause::COUNT],
}

/// One shard and its lock, on cache lines of their own.
type Slot<K, V> = Padded<RwLock<Shard<K, V>>>;

/// A shard on cache lines of its own (no false sharing between neighbours).
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What leaves a shard during one operation, handed to the listener after the lock.
type Gone<K, V> = Vec<(K, V, Cause)>;

/// An entry-bounded cache reserves room for this many entries at most when it is
/// built: about 2 MiB of table written at once, 48 MiB more of `u64 -> u64` entries
/// reserved and touched only as they fill.
const RESERVED: usize = 1 << 20;

/// The fewest entries a default shard holds. Each shard has its own bound, and the keys
/// of a working set fall into shards unevenly (by about the square root of a shard's
/// share): a shard that gets fewer keys than its bound leaves the rest unused while its
/// neighbours turn keys away. A loop 10% larger than a 10,000-entry cache, 30 hash
/// seeds each (2026-12-04): 32 shards of 312 entries hit 89.76 to 90.35% (a third of
/// the seeds under 90.20%), 16 of 625 90.22 to 90.35%, 8 of 1,250 90.35% in all 30.
/// Under 64 entries a shard loses hits on every trace (31 entries: 0.1 point on Zipf,
/// 0.9 on the loop).
const MIN_SHARD_ENTRIES: u64 = 512;

/// The default number of shards (see [`Builder::shards`]): a power of two.
fn default_shards(total: u64, weighted: bool) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if weighted {
        return cpus.saturating_mul(4).next_power_of_two();
    }
    let wanted = cpus.saturating_mul(16).next_power_of_two();
    // The most shards that each hold `MIN_SHARD_ENTRIES`.
    wanted.min(power_of_two_at_most(total / MIN_SHARD_ENTRIES))
}

/// The largest power of two no greater than `n` (1 for 0 and 1), as a shard count.
fn power_of_two_at_most(n: u64) -> usize {
    let n = usize::try_from(n).unwrap_or(usize::MAX).max(1);
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// The most shards a cache has, whatever [`Builder::shards`] asks (8 MiB of padded
/// locks): `usize::MAX` once overflowed rounding up, and `1 << 40` over a large bound
/// asked for terabytes.
pub const MAX_SHARDS: usize = 1 << 16;

/// At most this many entries in one shard, whatever the bound or the weights: a slot's
/// index has 29 bits (536,870,910 entries; see `store.rs`).
const MAX_SHARD_ENTRIES: usize = crate::store::NIL as usize - 1;

pub(crate) struct Inner<K, V> {
    shards: Box<[Slot<K, V>]>,
    hasher: Hasher,
    clock: Source,
    policy: Policy,
    /// Per shard: the bound on entries or on weight, rounded down (see `larger`).
    limit: u64,
    /// How many shards (the first ones) are bounded by one more than `limit`: the
    /// remainder of the bound, so that the shards' bounds add up to it exactly.
    larger: usize,
    /// `64 - log2(shards)`, at most 63: a key's shard is the top bits of its mixed hash.
    shard_shift: u32,
    weigher: Option<Weigher<K, V>>,
    ttl: Option<Duration>,
    listener: Option<Listener<K, V>>,
    /// Hits and misses, counted per thread.
    counters: Counters,
    pub(crate) loads: AtomicU64,
    pub(crate) revalidated: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    pub(crate) load_failures: AtomicU64,
    pub(crate) flights: Flights<K, V>,
    /// The name given by [`Builder::name`].
    name: Option<Arc<str>>,
}

impl<K, V> Inner<K, V> {
    /// The shard a hash belongs to.
    #[inline]
    fn shard(&self, hash: u64) -> &RwLock<Shard<K, V>> {
        &self.shards[self.shard_index(hash)]
    }

    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        shard_index(hash, self.shard_shift, self.shards.len())
    }

    /// The bound of the shard a hash belongs to.
    fn limit(&self, hash: u64) -> u64 {
        self.limit + u64::from(self.shard_index(hash) < self.larger)
    }
}

/// The shard of a hash: the top bits of the hash multiplied by an odd constant
/// (Fibonacci hashing), so that every bit of the hash has a say. foldhash's hash of
/// sequential integer keys can leave a fixed bit range nearly constant under some
/// per-process seeds: taking the shard from bits 40 and up left shards unused in 11 of
/// 3,000 processes at 64 shards (and 3 at 16), which then held nothing while the others
/// evicted. One multiply per lookup. Any `shift` works with `shards` a power of two (the
/// mask covers one shard, where `shift` is 63).
///
/// The price: under most seeds those raw bits spread sequential keys more evenly than
/// chance (a Weyl sequence), and the mixed ones spread them as chance does. The 1,000
/// hottest of 11,000 sequential keys over 32 shards: the fullest shard held a median of
/// 34 (raw) against 43 (mixed), over 3,000 seeds; the stress harness's cache group
/// (Zipf over 20,000 integer endpoints) evicted about 2,500 for capacity instead of
/// 1,000 and made about 1% more API calls. Kept: the raw bits' worst seeds were a cache
/// that held half its bound.
#[inline]
fn shard_index(hash: u64, shift: u32, shards: usize) -> usize {
    ((hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize) & (shards - 1)
}

/// The `shift` of [`shard_index`] for `shards` (a power of two): `64 - log2(shards)`,
/// at most 63.
fn shard_shift(shards: usize) -> u32 {
    64u32.saturating_sub(shards.trailing_zeros()).min(63)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// A concurrent cache bounded by entry count or weight, with a default TTL, per-entry
/// TTLs and an optional time-to-idle. Clones share the cache.
///
/// Eviction is S3-FIFO within each shard (a key's shard is fixed by its hash): new
/// keys pass through a small FIFO and stay only if they are read again, so a burst of
/// one-off keys does not push out the keys that are read often. A key that comes back
/// soon after leaving small unread may be turned away at its insert, while every entry
/// at main's head is being read (the listener hears it as [`Cause::Capacity`]; see the
/// crate's doc). A hit takes a shared lock and sets a counter; it moves nothing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use ttl_cache::Cache;
///
/// let labels: Cache<String, Vec<String>> = Cache::builder()
///     .max_entries(10_000)
///     .ttl(Duration::from_secs(30 * 60))
///     .build();
/// labels.insert("o/r".into(), vec!["bug".into()]);
/// assert_eq!(labels.get(&"o/r".to_string()), Some(vec!["bug".to_string()]));
/// tokio::time::advance(Duration::from_secs(30 * 60)).await;
/// assert_eq!(labels.get(&"o/r".to_string()), None); // expired, and removed
/// # }
/// ```
pub struct Cache<K, V> {
    pub(crate) inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("shards", &self.inner.shards.len())
            .field("limit_per_shard", &self.inner.limit)
            .field("ttl", &self.inner.ttl)
            .field("tti_ns", &self.inner.policy.tti)
            .field("clock", &self.inner.clock.kind())
            .finish_non_exhaustive()
    }
}

/// Puts a built cache in the metrics registry.
#[cfg(feature = "metrics")]
type Register<K, V> = fn(&Arc<Inner<K, V>>);

/// Builds a [`Cache`].
pub struct Builder<K, V> {
    max_entries: Option<u64>,
    max_weight: Option<(u64, Weigher<K, V>)>,
    ttl: Option<Duration>,
    tti: Option<Duration>,
    stale_for: Duration,
    shards: Option<usize>,
    listener: Option<Listener<K, V>>,
    clock: Clock,
    name: Option<Arc<str>>,
    /// Registers the built cache with the metrics registry: set by [`Builder::name`],
    /// where the bounds a registry entry needs are known.
    #[cfg(feature = "metrics")]
    register: Option<Register<K, V>>,
}

impl<K, V> std::fmt::Debug for Builder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("max_entries", &self.max_entries)
            .field("max_weight", &self.max_weight.as_ref().map(|(w, _)| w))
            .field("ttl", &self.ttl)
            .field("tti", &self.tti)
            .field("shards", &self.shards)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Builder<K, V> {
    /// At most `max` entries (the default bound: 10,000). One shard holds at most
    /// 536,870,910 entries; a bound above that times the shards evicts at that.
    pub fn max_entries(mut self, max: u64) -> Self {
        self.max_entries = Some(max.max(1));
        self.max_weight = None;
        self
    }

    /// At most `max` in total weight, each entry weighed by `weigher` (e.g. bytes).
    pub fn max_weight(
        mut self,
        max: u64,
        weigher: impl Fn(&K, &V) -> u64 + Send + Sync + 'static,
    ) -> Self {
        self.max_weight = Some((max.max(1), Arc::new(weigher)));
        self.max_entries = None;
        self
    }

    /// Entries expire this long after they were written (unless inserted with their own).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Entries also expire after this long without a read (time-to-idle).
    pub fn tti(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Keep expired entries this long more: never returned by `get`, but available to
    /// revalidate ([`Cache::revalidation`], [`Cache::refresh`]) and to serve while one
    /// refresh runs ([`Cache::get_or_refresh`]). Default: zero.
    pub fn stale_for(mut self, keep: Duration) -> Self {
        self.stale_for = keep;
        self
    }

    /// The number of shards (rounded up to a power of two, at most [`MAX_SHARDS`], and
    /// down to no more than the bound, so that each shard holds at least one entry or
    /// unit). The shards split the bound between them, their shares adding up to it
    /// exactly. Default, for a cache bounded by entries: 16 per CPU, fewer for a small
    /// cache so that each shard holds at least 512 entries (a 10,000-entry cache has 16
    /// shards); for one bounded by weight, 4 per CPU (a shard's share of the weight is
    /// the heaviest entry it can hold).
    ///
    /// Two threads' hits on one shard at once contend for its lock's cache line: on the
    /// machine behind `BENCHMARKS.md`, 4 per CPU took about 1.01x quick_cache's time for
    /// a hit from 2 threads, 16 per CPU 0.84x, with the same hit ratios. Small shards
    /// lose hits: each has its own bound, and a shard that gets fewer of a working
    /// set's keys than its bound leaves the rest unused (a loop 10% larger than a
    /// 10,000-entry cache: 89.76 to 90.35% of hits over 32 shards, 90.22 to 90.35%
    /// over 16).
    ///
    /// A key's shard is the top bits of its hash times an odd constant, so that every
    /// bit of the hash counts: sequential integer keys spread evenly over any number of
    /// shards (10,000 keys over 16 to 256 shards, 3,000 processes' hash seeds: every
    /// shard used in each, the fullest under 1.4x its share at 64 shards).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards.clamp(1, MAX_SHARDS).next_power_of_two());
        self
    }

    /// Called with every entry that leaves the cache, and why.
    pub fn eviction_listener(mut self, f: impl Fn(&K, &V, Cause) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(f));
        self
    }

    /// The clock for TTLs (default [`Clock::Auto`]: coarse, or tokio's where tokio's
    /// clock is paused when the cache is built).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The cache.
    pub fn build(self) -> Cache<K, V> {
        let (total, weigher) = match self.max_weight {
            Some((max, weigher)) => (max, Some(weigher)),
            None => (self.max_entries.unwrap_or(10_000), None),
        };
        // The shards' bounds add up to the bound exactly (a ceiling let 32 shards of a
        // 10,000-entry cache hold 10,016); no more shards than leave each at least 1.
        let shards = self
            .shards
            .unwrap_or_else(|| default_shards(total, weigher.is_some()))
            .min(power_of_two_at_most(total));
        let shift = shard_shift(shards);
        let limit = total / shards as u64;
        let larger = usize::try_from(total % shards as u64).unwrap_or(0);
        // An entry bound reserves its room up front, up to `RESERVED` entries in all:
        // growing by doubling would leave the old tables behind in the allocator.
        let reserve = if weigher.is_none() {
            limit.saturating_add(1).min((RESERVED / shards) as u64) as usize
        } else {
            0
        };
        let hasher = Hasher::default();
        let shards = (0..shards)
            .map(|_| {
                let mut store = Store::new(hasher.clone(), self.tti.is_some(), weigher.is_some());
                store.reserve(reserve);
                Padded(RwLock::new(Shard {
                    store,
                    writes: 0,
                    evicted: [0; Cause::COUNT],
                }))
            })
            .collect();
        let cache = Cache {
            inner: Arc::new(Inner {
                shards,
                hasher,
                clock: Source::new(self.clock),
                counters: Counters::default(),
                policy: Policy {
                    tti: self.tti.map_or(u64::MAX, nanos),
                    stale: nanos(self.stale_for),
                },
                limit,
                larger,
                shard_shift: shift,
                weigher,
                ttl: self.ttl,
                listener: self.listener,
                loads: AtomicU64::new(0),
                revalidated: AtomicU64::new(0),
                stale_served: AtomicU64::new(0),
                load_failures: AtomicU64::new(0),
                flights: Flights::default(),
                name: self.name,
            }),
        };
        #[cfg(feature = "metrics")]
        if let Some(register) = self.register {
            register(&cache.inner);
        }
        cache
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static, V: Clone + Send + Sync + 'static> Builder<K, V> {
    /// The cache's name, shown by [`Cache::name`]. With feature `metrics`, a named
    /// cache's figures are published under `cache="<name>"` (see the `metrics`
    /// module); caches without a name are not published.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        #[cfg(feature = "metrics")]
        {
            self.register = Some(|inner| {
                let source: Arc<dyn crate::metrics::Source> = inner.clone();
                crate::metrics::register(Arc::downgrade(&source));
            });
        }
        self
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// A builder: 10,000 entries, no TTL, unless told otherwise.
    pub fn builder() -> Builder<K, V> {
        Builder {
            max_entries: None,
            max_weight: None,
            ttl: None,
            tti: None,
            stale_for: Duration::ZERO,
            shards: None,
            listener: None,
            clock: Clock::Auto,
            name: None,
            #[cfg(feature = "metrics")]
            register: None,
        }
    }

    /// Nanoseconds since the cache was built, on its clock.
    #[inline]
    fn now(&self) -> u64 {
        self.inner.clock.now()
    }

    /// The key's hash and its shard.
    #[inline]
    fn locate(&self, key: &K) -> (u64, &RwLock<Shard<K, V>>) {
        let hash = self.inner.hasher.hash_one(key);
        (hash, self.inner.shard(hash))
    }

    fn tell(&self, gone: Gone<K, V>) {
        if let Some(listener) = &self.inner.listener {
            for (key, value, cause) in &gone {
                listener(key, value, *cause);
            }
        }
    }

    /// The value for `key`, if present and not expired (an expired entry found here is
    /// removed). Counts a hit or a miss.
    #[inline]
    pub fn get(&self, key: &K) -> Option<V> {
        let (hash, lock) = self.locate(key);
        {
            let shard = read(lock);
            let Some(i) = shard.store.find(hash, key) else {
                self.inner.counters.miss();
                return None;
            };
            let entry = shard.store.entry(i);
            let p = self.inner.policy;
            // An entry that never expires needs no clock.
            let now = if entry.expires == u64::MAX && p.tti == u64::MAX {
                0
            } else {
                self.now()
            };
            if !entry.expired(now, p) {
                entry.read();
                if p.tti != u64::MAX {
                    entry.touch(now);
                }
                self.inner.counters.hit();
                return Some(entry.value.clone());
            }
        }
        self.get_expired(hash, key, lock)
    }

    /// The rest of a `get` that found its entry expired (kept out of the hit's code):
    /// a miss, and the entry removed if it is past keeping.
    #[cold]
    #[inline(never)]
    fn get_expired(&self, hash: u64, key: &K, lock: &RwLock<Shard<K, V>>) -> Option<V> {
        self.inner.counters.miss();
        let p = self.inner.policy;
        let now = self.now();
        let dead = |shard: &Shard<K, V>| {
            shard
                .store
                .find(hash, key)
                .filter(|&i| shard.store.entry(i).dead(now, p))
        };
        // Kept stale (or refreshed meanwhile): nothing to remove, no write lock. The
        // read guard is gone at the end of this statement.
        dead(&read(lock))?;
        let mut gone = Vec::new();
        {
            let mut shard = write(lock);
            if let Some(i) = dead(&shard) {
                shard.remove(i, Cause::Expired, &mut gone);
            }
        }
        self.tell(gone);
        None
    }

    pub(crate) fn inner_ttl(&self) -> Option<Duration> {
        self.inner.ttl
    }

    /// The live value for `key`, counting nothing and moving nothing.
    pub(crate) fn peek_live(&self, key: &K) -> Option<V> {
        let now = self.now();
        let (hash, lock) = self.locate(key);
        let shard = read(lock);
        let i = shard.store.find(hash, key)?;
        let entry = shard.store.entry(i);
        (!entry.expired(now, self.inner.policy)).then(|| entry.value.clone())
    }

    /// `true` if `key` is present and not expired; counts nothing, moves nothing.
    pub fn contains(&self, key: &K) -> bool {
        let now = self.now();
        let (hash, lock) = self.locate(key);
        let shard = read(lock);
        shard
            .store
            .find(hash, key)
            .is_some_and(|i| !shard.store.entry(i).expired(now, self.inner.policy))
    }

    /// Inserts with the default TTL; returns the value it replaced, if any.
    ///
    /// A new key is held until it expires or is evicted, with one exception: a key
    /// that left the cache unread not long ago (its hash is in the ghost), inserted
    /// while its shard is full and every entry near main's head is being read, is
    /// turned away instead, and the eviction listener hears it leave at once as
    /// [`Cause::Capacity`]. So a key that comes back no more often than the cache's
    /// entries are read does not push one of them out (see the crate's doc). The same
    /// holds for [`Cache::insert_with_ttl`], [`Cache::insert_with_validators`] and the
    /// value a load stores.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.insert_entry(key, value, self.inner.ttl)
    }

    /// Inserts with its own TTL (e.g. a 404 cached for less time than a 200).
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) -> Option<V> {
        self.insert_entry(key, value, Some(ttl))
    }

    pub(crate) fn insert_entry(&self, key: K, value: V, ttl: Option<Duration>) -> Option<V> {
        self.insert_full(key, value, ttl, None)
    }

    /// Inserts a response with its validators (and its own TTL, or the default), so
    /// that once it expires it can be revalidated instead of fetched again.
    pub fn insert_with_validators(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
        validators: Validators,
    ) -> Option<V> {
        self.insert_full(key, value, ttl.or(self.inner.ttl), Some(validators))
    }

    /// For a conditional request: the value held for `key` (fresh or stale) and its
    /// validators, if it has any. Counts nothing, moves nothing.
    pub fn revalidation(&self, key: &K) -> Option<(V, Validators)> {
        let now = self.now();
        let (hash, lock) = self.locate(key);
        let shard = read(lock);
        let i = shard.store.find(hash, key)?;
        let entry = shard.store.entry(i);
        if entry.dead(now, self.inner.policy) {
            return None;
        }
        let validators = shard.store.validators(i)?.clone();
        Some((entry.value.clone(), validators))
    }

    /// The server said `304 Not Modified`: the value held for `key` (even if expired,
    /// within `stale_for`) lives for `ttl` more (or the default TTL), without a new
    /// body. Returns `false` if nothing is held to refresh.
    pub fn refresh(&self, key: &K, ttl: Option<Duration>) -> bool {
        let now = self.now();
        let ttl = ttl.or(self.inner.ttl);
        let (hash, lock) = self.locate(key);
        let mut shard = write(lock);
        let Some(i) = shard.store.find(hash, key) else {
            return false;
        };
        let entry = shard.store.entry(i);
        if entry.dead(now, self.inner.policy) {
            return false;
        }
        entry.touch(now);
        shard.store.set_expires(
            i,
            ttl.map_or(u64::MAX, |ttl| now.saturating_add(nanos(ttl))),
        );
        self.inner.revalidated.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The value for `key` and whether it is fresh: stale values (expired, within
    /// `stale_for`) too. Counts a hit (fresh) or a miss (stale or absent).
    pub(crate) fn get_maybe_stale(&self, key: &K) -> Option<(V, bool)> {
        let now = self.now();
        let p = self.inner.policy;
        let (hash, lock) = self.locate(key);
        let shard = read(lock);
        let found = shard.store.find(hash, key).and_then(|i| {
            let entry = shard.store.entry(i);
            if entry.dead(now, p) {
                return None;
            }
            let fresh = !entry.expired(now, p);
            if fresh {
                entry.read();
                entry.touch(now);
            }
            Some((entry.value.clone(), fresh))
        });
        if matches!(found, Some((_, true))) {
            self.inner.counters.hit();
        } else {
            self.inner.counters.miss();
        }
        found
    }

    fn insert_full(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
        validators: Option<Validators>,
    ) -> Option<V> {
        let now = self.now();
        let p = self.inner.policy;
        let weight = self.inner.weigher.as_ref().map_or(1, |w| w(&key, &value));
        let weight = u32::try_from(weight).unwrap_or(u32::MAX);
        let expires = ttl.map_or(u64::MAX, |ttl| now.saturating_add(nanos(ttl)));
        let entry = Entry::new(value, expires, now, weight);
        let (hash, lock) = self.locate(&key);
        let limit = self.inner.limit(hash);
        let mut gone = Vec::new();
        let replaced = {
            let mut guard = write(lock);
            let shard = &mut *guard;
            let found = shard.store.find(hash, &key);
            let replaced = if u64::from(weight) > limit {
                // Over the bound alone: never held, and what it replaces goes too.
                let replaced = found.and_then(|i| shard.replaced(i, now, p, &mut gone));
                shard.evicted[Cause::Capacity as usize] += 1;
                gone.push((key, entry.value, Cause::Capacity));
                replaced
            } else if let Some(i) = found {
                let mut room = Vec::new();
                let (old, i) = {
                    let Shard { store, evicted, .. } = shard;
                    store.replace(hash, i, entry, |store, need| {
                        let room_for = Room {
                            limit,
                            need,
                            newest_first: false,
                        };
                        make_room(store, evicted, room_for, now, p, &mut room);
                    })
                };
                let replaced = shard.replaced_by(key, old, now, p, &mut gone);
                gone.append(&mut room);
                if let Some(i) = i {
                    shard.store.set_validators(i, validators);
                }
                replaced
            } else {
                let admission = shard.store.admit(hash, u64::from(weight), limit);
                if admission == Admission::Reject {
                    // Turned away by the admission rule (see `Store::admit`): gone at
                    // once, for capacity, as an entry over the bound alone is.
                    shard.evicted[Cause::Capacity as usize] += 1;
                    gone.push((key, entry.value, Cause::Capacity));
                } else {
                    let room_for = Room {
                        limit,
                        need: u64::from(weight),
                        newest_first: admission.newest_first(),
                    };
                    make_room(
                        &mut shard.store,
                        &mut shard.evicted,
                        room_for,
                        now,
                        p,
                        &mut gone,
                    );
                    let i = shard.store.insert(hash, key, entry, admission.to_main());
                    if validators.is_some() {
                        shard.store.set_validators(i, validators);
                    }
                }
                None
            };
            shard.tidy(now, p, &mut gone);
            replaced
        };
        self.tell(gone);
        replaced
    }

    /// Removes `key`; returns its value if it was present and not expired.
    pub fn remove(&self, key: &K) -> Option<V> {
        let now = self.now();
        let (hash, lock) = self.locate(key);
        let mut gone = Vec::new();
        let value = {
            let mut shard = write(lock);
            match shard.store.find(hash, key) {
                Some(i) => {
                    let expired = shard.store.entry(i).expired(now, self.inner.policy);
                    let cause = if expired {
                        Cause::Expired
                    } else {
                        Cause::Removed
                    };
                    shard.remove(i, cause, &mut gone);
                    gone.last().filter(|_| !expired).map(|(_, v, _)| v.clone())
                }
                None => None,
            }
        };
        self.tell(gone);
        value
    }

    /// Removes every entry for which `predicate` holds (e.g. every key of a repository
    /// after a push); returns how many.
    pub fn invalidate_if(&self, mut predicate: impl FnMut(&K, &V) -> bool) -> usize {
        let mut removed = 0;
        for lock in self.inner.shards.iter() {
            let mut gone = Vec::new();
            {
                let mut shard = write(lock);
                // From the end: a removal moves the last entry, already seen, into the hole.
                for i in (0..shard.store.len() as u32).rev() {
                    if predicate(shard.store.key(i), shard.store.entry(i).value) {
                        shard.remove(i, Cause::Removed, &mut gone);
                    }
                }
            }
            removed += gone.len();
            self.tell(gone);
        }
        removed
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.invalidate_if(|_, _| true);
    }

    /// Entries held now, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| read(s).store.len()).sum()
    }

    /// `true` when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight held (the entry count when no weigher is set).
    pub fn weight(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| read(s).store.weight())
            .sum()
    }

    /// Hits, misses, loads, evictions by cause.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The name given by [`Builder::name`], if any.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The clock this cache reads (never [`Clock::Auto`], which is resolved at build).
    pub fn clock(&self) -> Clock {
        self.inner.clock.kind()
    }
}

/// The room a write needs: `need` more weight under `limit`, from small's newest
/// entries first when `newest_first` (see [`Store::admit`]).
struct Room {
    limit: u64,
    need: u64,
    newest_first: bool,
}

/// Evicts by S3-FIFO until the room is made (or nothing is left to evict), counting
/// each departure; an entry found dead on the way goes as expired.
fn make_room<K: Hash + Eq, V>(
    store: &mut Store<K, V, Hasher>,
    evicted: &mut [u64; Cause::COUNT],
    room: Room,
    now: u64,
    p: Policy,
    gone: &mut Gone<K, V>,
) {
    let Room {
        limit,
        need,
        newest_first,
    } = room;
    while store.weight().saturating_add(need) > limit || store.len() >= MAX_SHARD_ENTRIES {
        let Some(i) = store.victim(limit, newest_first, |e| e.dead(now, p)) else {
            break;
        };
        let (key, entry, _) = store.remove(i);
        let cause = if entry.expired(now, p) {
            Cause::Expired
        } else {
            Cause::Capacity
        };
        evicted[cause as usize] += 1;
        gone.push((key, entry.value, cause));
    }
}

impl<K, V> Inner<K, V> {
    fn stats(&self) -> Stats {
        let (hits, misses) = self.counters.totals();
        let mut stats = Stats {
            hits,
            misses,
            loads: self.loads.load(Ordering::Relaxed),
            load_failures: self.load_failures.load(Ordering::Relaxed),
            ..Stats::default()
        };
        for shard in self.shards.iter() {
            let shard = read(shard);
            stats.expired += shard.evicted[Cause::Expired as usize];
            stats.evicted_capacity += shard.evicted[Cause::Capacity as usize];
            stats.removed += shard.evicted[Cause::Removed as usize];
            stats.replaced += shard.evicted[Cause::Replaced as usize];
        }
        stats.revalidated = self.revalidated.load(Ordering::Relaxed);
        stats.stale_served = self.stale_served.load(Ordering::Relaxed);
        stats
    }
}

#[cfg(feature = "metrics")]
impl<K: Hash + Eq, V> Inner<K, V> {
    /// Entries and weight held.
    fn levels(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(n, w), shard| {
            let shard = read(shard);
            (n + shard.store.len() as u64, w + shard.store.weight())
        })
    }
}

#[cfg(feature = "metrics")]
impl<K: Hash + Eq + Send + Sync, V: Send + Sync> crate::metrics::Source for Inner<K, V> {
    fn name(&self) -> &Arc<str> {
        static UNNAMED: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| "".into());
        self.name.as_ref().unwrap_or(&UNNAMED)
    }

    fn stats(&self) -> Stats {
        Inner::stats(self)
    }

    fn levels(&self) -> (u64, u64) {
        Inner::levels(self)
    }
}

#[cfg(feature = "metrics")]
impl<K, V> Drop for Inner<K, V> {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            crate::metrics::retire(name, &self.stats());
        }
    }
}

impl<K: Hash + Eq, V> Shard<K, V> {
    fn remove(&mut self, i: u32, cause: Cause, gone: &mut Gone<K, V>) {
        let (key, entry, _) = self.store.remove(i);
        self.evicted[cause as usize] += 1;
        gone.push((key, entry.value, cause));
    }

    /// Removes the entry at `i`, replaced by a value too heavy to keep; gives back its
    /// value if it was live.
    fn replaced(&mut self, i: u32, now: u64, p: Policy, gone: &mut Gone<K, V>) -> Option<V>
    where
        V: Clone,
    {
        let (key, entry, _) = self.store.remove(i);
        self.replaced_by(key, entry, now, p, gone)
    }

    /// Counts `old`, taken out of the store for a new value, as replaced (or expired,
    /// if it was); gives back its value if it was live.
    fn replaced_by(
        &mut self,
        key: K,
        old: Entry<V>,
        now: u64,
        p: Policy,
        gone: &mut Gone<K, V>,
    ) -> Option<V>
    where
        V: Clone,
    {
        let expired = old.expired(now, p);
        let cause = if expired {
            Cause::Expired
        } else {
            Cause::Replaced
        };
        self.evicted[cause as usize] += 1;
        let live = (!expired).then(|| old.value.clone());
        gone.push((key, old.value, cause));
        live
    }

    /// After a write: dead entries at the head of either FIFO go (a few per write), and
    /// every `len` writes, a full sweep for dead entries (amortised O(1) per write).
    fn tidy(&mut self, now: u64, p: Policy, gone: &mut Gone<K, V>) {
        for _ in 0..4 {
            let dead = self
                .store
                .heads()
                .find(|&h| self.store.entry(h).dead(now, p));
            match dead {
                Some(i) => self.remove(i, Cause::Expired, gone),
                None => break,
            }
        }
        self.writes += 1;
        if self.writes >= self.store.len().max(64) {
            self.writes = 0;
            // From the end: a removal moves the last entry, already seen, into the hole.
            for i in (0..self.store.len() as u32).rev() {
                if self.store.entry(i).dead(now, p) {
                    self.remove(i, Cause::Expired, gone);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_of_the_hash_chooses_the_shard() {
        // Hashes that differ only in a narrow range of bits, as foldhash's hashes of
        // sequential keys nearly do under some seeds: low bits, middle bits, high bits.
        // Each set must reach every shard, none over twice its share.
        for shards in [1usize, 2, 16, 64, 1024] {
            let shift = shard_shift(shards);
            for at in [0u32, 20, 40, 48] {
                let mut held = vec![0u32; shards];
                let n = 64 * shards as u64;
                for k in 0..n {
                    held[shard_index(k << at, shift, shards)] += 1;
                }
                let (least, most) = (held.iter().min(), held.iter().max());
                assert!(
                    least > Some(&0),
                    "{shards} shards, bits from {at}: {held:?}"
                );
                assert!(
                    most <= Some(&128),
                    "{shards} shards, bits from {at}: {held:?}"
                );
            }
        }
    }

    #[test]
    fn default_shards_are_a_power_of_two_of_at_least_min_shard_entries_each() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let most = (cpus * 16).next_power_of_two();
        for total in [
            1,
            63,
            64,
            127,
            128,
            1_000,
            10_000,
            100_000,
            10_000_000,
            u64::MAX,
        ] {
            let shards = default_shards(total, false);
            assert!(shards.is_power_of_two(), "{total}: {shards}");
            assert!(shards <= most, "{total}: {shards} > {most}");
            if shards > 1 {
                assert!(
                    total / shards as u64 >= MIN_SHARD_ENTRIES,
                    "{total}: {shards}"
                );
            }
            // As many as allowed: twice as many would break one of the two bounds.
            assert!(
                shards == most || total / (2 * shards as u64) < MIN_SHARD_ENTRIES,
                "{total}: {shards}"
            );
        }
        assert_eq!(default_shards(1, false), 1);
        let weighted = default_shards(1_000, true);
        assert_eq!(weighted, (cpus * 4).next_power_of_two());
        assert_eq!(
            [0, 1, 2, 3, 64, 65, 127, 128].map(power_of_two_at_most),
            [1, 1, 2, 2, 64, 64, 64, 128]
        );
    }
}
