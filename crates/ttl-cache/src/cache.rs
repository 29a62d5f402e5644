//! The cache: shards of `lru::LruCache`, each behind a mutex, with TTL, TTI, weights,
//! amortised expiry, an eviction listener and stats.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

use crate::load::Flights;
use crate::stats::{Cause, Stats};

/// Called with each entry that leaves the cache, and why (outside the shard's lock).
pub type Listener<K, V> = Arc<dyn Fn(&K, &V, Cause) + Send + Sync>;

/// Gives an entry's weight (e.g. a response's size in bytes).
pub type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u64 + Send + Sync>;

/// One entry. Times are nanoseconds since the cache's epoch (`u64::MAX`: never), so an
/// entry carries 28 bytes of its own beside its value.
pub(crate) struct Entry<V> {
    pub(crate) value: V,
    expires: u64,
    touched: u64,
    weight: u32,
    validators: Option<Box<Validators>>,
}

/// The cache-wide times an entry is judged by, in nanoseconds (`u64::MAX`: none).
#[derive(Clone, Copy)]
struct Policy {
    tti: u64,
    stale: u64,
}

impl<V> Entry<V> {
    /// Expired at `now`: at the TTL's instant exactly, or a TTI without a read.
    #[inline]
    fn expired(&self, now: u64, p: Policy) -> bool {
        now >= self.expires || (p.tti != u64::MAX && now >= self.touched.saturating_add(p.tti))
    }

    /// Past keeping: expired, and `stale_for` beyond that (an entry kept stale can still
    /// be revalidated or served while a refresh runs, never returned by `get`).
    #[inline]
    fn dead(&self, now: u64, p: Policy) -> bool {
        now >= self.expires.saturating_add(p.stale)
            || (p.tti != u64::MAX
                && now >= self.touched.saturating_add(p.tti).saturating_add(p.stale))
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

struct Shard<K, V> {
    lru: LruCache<K, Entry<V>, foldhash::fast::RandomState>,
    weight: u64,
    /// Writes since the last full sweep for expired entries.
    writes: usize,
    hits: u64,
    misses: u64,
    evicted: [u64; Cause::COUNT],
}

/// What leaves a shard during one operation, handed to the listener after the lock.
type Gone<K, V> = Vec<(K, V, Cause)>;

pub(crate) struct Inner<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    hasher: foldhash::fast::RandomState,
    epoch: Instant,
    policy: Policy,
    /// Per shard: the bound on entries or on weight.
    limit: u64,
    weigher: Option<Weigher<K, V>>,
    ttl: Option<Duration>,
    listener: Option<Listener<K, V>>,
    pub(crate) loads: AtomicU64,
    pub(crate) revalidated: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    pub(crate) load_failures: AtomicU64,
    pub(crate) flights: Flights<K, V>,
    /// The name given by [`Builder::name`].
    name: Option<Arc<str>>,
}

/// A concurrent cache bounded by entry count or weight, with a default TTL, per-entry
/// TTLs and an optional time-to-idle. Clones share the cache.
///
/// Eviction is LRU within each shard (a key's shard is fixed by its hash), so across
/// the cache it is approximately LRU; build with `.shards(1)` for exact LRU.
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
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Builder<K, V> {
    /// At most `max` entries (the default bound: 10,000).
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

    /// The number of shards (rounded up to a power of two; default: 4 per CPU, fewer
    /// for a small cache so that no shard holds fewer than 16 entries).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards.max(1).next_power_of_two());
        self
    }

    /// Called with every entry that leaves the cache, and why.
    pub fn eviction_listener(mut self, f: impl Fn(&K, &V, Cause) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(f));
        self
    }

    /// The cache.
    pub fn build(self) -> Cache<K, V> {
        let (total, weigher) = match self.max_weight {
            Some((max, weigher)) => (max, Some(weigher)),
            None => (self.max_entries.unwrap_or(10_000), None),
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let by_size = if weigher.is_some() {
            usize::MAX
        } else {
            (total / 16).max(1) as usize
        };
        let shards = self
            .shards
            .unwrap_or_else(|| (cpus * 4).min(by_size).max(1).next_power_of_two());
        let limit = total.div_ceil(shards as u64).max(1);
        let shards = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    lru: LruCache::unbounded_with_hasher(foldhash::fast::RandomState::default()),
                    weight: 0,
                    writes: 0,
                    hits: 0,
                    misses: 0,
                    evicted: [0; Cause::COUNT],
                })
            })
            .collect();
        let cache = Cache {
            inner: Arc::new(Inner {
                shards,
                hasher: foldhash::fast::RandomState::default(),
                epoch: Instant::now(),
                policy: Policy {
                    tti: self.tti.map_or(u64::MAX, nanos),
                    stale: nanos(self.stale_for),
                },
                limit,
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
            name: None,
            #[cfg(feature = "metrics")]
            register: None,
        }
    }

    /// Nanoseconds since the cache's epoch, on tokio's clock (so `pause` works).
    #[inline]
    fn now(&self) -> u64 {
        nanos(self.inner.epoch.elapsed())
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, Shard<K, V>> {
        let shards = &self.inner.shards;
        let i = (self.inner.hasher.hash_one(key) as usize) & (shards.len() - 1);
        shards[i].lock().unwrap_or_else(PoisonError::into_inner)
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
    pub fn get(&self, key: &K) -> Option<V> {
        let now = self.now();
        let mut gone = Vec::new();
        let found = {
            let mut shard = self.shard(key);
            let found = match shard.lru.get_mut(key) {
                Some(entry) if !entry.expired(now, self.inner.policy) => {
                    entry.touched = now;
                    Some(entry.value.clone())
                }
                Some(entry) => {
                    if entry.dead(now, self.inner.policy) {
                        shard.remove(key, Cause::Expired, &mut gone);
                    }
                    None
                }
                None => None,
            };
            if found.is_some() {
                shard.hits += 1;
            } else {
                shard.misses += 1;
            }
            found
        };
        self.tell(gone);
        found
    }

    pub(crate) fn inner_ttl(&self) -> Option<Duration> {
        self.inner.ttl
    }

    /// The live value for `key`, counting nothing and moving nothing.
    pub(crate) fn peek_live(&self, key: &K) -> Option<V> {
        let now = self.now();
        self.shard(key)
            .lru
            .peek(key)
            .filter(|e| !e.expired(now, self.inner.policy))
            .map(|e| e.value.clone())
    }

    /// `true` if `key` is present and not expired; counts nothing, moves nothing.
    pub fn contains(&self, key: &K) -> bool {
        let now = self.now();
        self.shard(key)
            .lru
            .peek(key)
            .is_some_and(|e| !e.expired(now, self.inner.policy))
    }

    /// Inserts with the default TTL; returns the value it replaced, if any.
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
        self.insert_full(
            key,
            value,
            ttl.or(self.inner.ttl),
            Some(Box::new(validators)),
        )
    }

    /// For a conditional request: the value held for `key` (fresh or stale) and its
    /// validators, if it has any. Counts nothing, moves nothing.
    pub fn revalidation(&self, key: &K) -> Option<(V, Validators)> {
        let now = self.now();
        let shard = self.shard(key);
        let entry = shard.lru.peek(key)?;
        if entry.dead(now, self.inner.policy) {
            return None;
        }
        let validators = entry.validators.as_deref()?.clone();
        Some((entry.value.clone(), validators))
    }

    /// The server said `304 Not Modified`: the value held for `key` (even if expired,
    /// within `stale_for`) lives for `ttl` more (or the default TTL), without a new
    /// body. Returns `false` if nothing is held to refresh.
    pub fn refresh(&self, key: &K, ttl: Option<Duration>) -> bool {
        let now = self.now();
        let ttl = ttl.or(self.inner.ttl);
        let mut shard = self.shard(key);
        match shard.lru.get_mut(key) {
            Some(entry) if !entry.dead(now, self.inner.policy) => {
                entry.expires = ttl.map_or(u64::MAX, |ttl| now.saturating_add(nanos(ttl)));
                entry.touched = now;
                self.inner.revalidated.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// The value for `key` and whether it is fresh: stale values (expired, within
    /// `stale_for`) too. Counts a hit (fresh) or a miss (stale or absent).
    pub(crate) fn get_maybe_stale(&self, key: &K) -> Option<(V, bool)> {
        let now = self.now();
        let mut shard = self.shard(key);
        let found = match shard.lru.get_mut(key) {
            Some(entry) if !entry.dead(now, self.inner.policy) => {
                let fresh = !entry.expired(now, self.inner.policy);
                if fresh {
                    entry.touched = now;
                }
                Some((entry.value.clone(), fresh))
            }
            _ => None,
        };
        if matches!(found, Some((_, true))) {
            shard.hits += 1;
        } else {
            shard.misses += 1;
        }
        found
    }

    fn insert_full(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
        validators: Option<Box<Validators>>,
    ) -> Option<V> {
        let now = self.now();
        let weight = self.inner.weigher.as_ref().map_or(1, |w| w(&key, &value));
        let weight = u32::try_from(weight).unwrap_or(u32::MAX);
        let entry = Entry {
            value,
            weight,
            expires: ttl.map_or(u64::MAX, |ttl| now.saturating_add(nanos(ttl))),
            touched: now,
            validators,
        };
        let mut gone = Vec::new();
        let replaced = {
            let mut shard = self.shard(&key);
            let replaced = shard
                .lru
                .push(key.clone(), entry)
                .and_then(|(old_key, old)| {
                    // `push` returns the replaced entry (same key), never an eviction: the
                    // LruCache is unbounded, the bound is ours.
                    shard.weight -= u64::from(old.weight);
                    let expired = old.expired(now, self.inner.policy);
                    let value = old.value.clone();
                    let cause = if expired {
                        Cause::Expired
                    } else {
                        Cause::Replaced
                    };
                    shard.evicted[cause as usize] += 1;
                    gone.push((old_key, old.value, cause));
                    (!expired).then_some(value)
                });
            shard.weight += u64::from(weight);
            shard.tidy(now, self.inner.limit, self.inner.policy, &key, &mut gone);
            replaced
        };
        self.tell(gone);
        replaced
    }

    /// Removes `key`; returns its value if it was present and not expired.
    pub fn remove(&self, key: &K) -> Option<V> {
        let now = self.now();
        let mut gone = Vec::new();
        let value = {
            let mut shard = self.shard(key);
            let expired = shard
                .lru
                .peek(key)
                .map(|e| e.expired(now, self.inner.policy));
            match expired {
                Some(expired) => {
                    let cause = if expired {
                        Cause::Expired
                    } else {
                        Cause::Removed
                    };
                    shard.remove(key, cause, &mut gone);
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
        for shard in self.inner.shards.iter() {
            let mut gone = Vec::new();
            {
                let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                let keys: Vec<K> = shard
                    .lru
                    .iter()
                    .filter(|(k, e)| predicate(k, &e.value))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in keys {
                    shard.remove(&key, Cause::Removed, &mut gone);
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
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).lru.len())
            .sum()
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
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).weight)
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
}

impl<K, V> Inner<K, V> {
    fn stats(&self) -> Stats {
        let mut stats = Stats {
            loads: self.loads.load(Ordering::Relaxed),
            load_failures: self.load_failures.load(Ordering::Relaxed),
            ..Stats::default()
        };
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            stats.hits += shard.hits;
            stats.misses += shard.misses;
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
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            (n + shard.lru.len() as u64, w + shard.weight)
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

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    fn remove(&mut self, key: &K, cause: Cause, gone: &mut Gone<K, V>) {
        if let Some((key, entry)) = self.lru.pop_entry(key) {
            self.weight -= u64::from(entry.weight);
            self.evicted[cause as usize] += 1;
            gone.push((key, entry.value, cause));
        }
    }

    /// After a write: expired entries at the LRU end go, then least recently used ones
    /// while over the limit (never the one just written, unless it alone is over); and
    /// every `len` writes, a full sweep for expired entries (amortised O(1) per write).
    fn tidy(&mut self, now: u64, limit: u64, p: Policy, just_written: &K, gone: &mut Gone<K, V>) {
        for _ in 0..4 {
            match self.lru.peek_lru() {
                Some((k, e)) if e.dead(now, p) && k != just_written => {
                    let k = k.clone();
                    self.remove(&k, Cause::Expired, gone);
                }
                _ => break,
            }
        }
        while self.weight > limit {
            let Some((key, entry)) = self.lru.pop_lru() else {
                break;
            };
            self.weight -= u64::from(entry.weight);
            let cause = if entry.expired(now, p) {
                Cause::Expired
            } else {
                Cause::Capacity
            };
            self.evicted[cause as usize] += 1;
            gone.push((key, entry.value, cause));
        }
        self.writes += 1;
        if self.writes >= self.lru.len().max(64) {
            self.writes = 0;
            let expired: Vec<K> = self
                .lru
                .iter()
                .filter(|(_, e)| e.dead(now, p))
                .map(|(k, _)| k.clone())
                .collect();
            for key in expired {
                self.remove(&key, Cause::Expired, gone);
            }
        }
    }
}
