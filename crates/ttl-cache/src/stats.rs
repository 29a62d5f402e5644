//! Why entries leave, and what the cache has done.

/// Why an entry left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// Its TTL or time-to-idle passed.
    Expired = 0,
    /// The cache was over its bound and S3-FIFO chose it, or it was turned away at its
    /// insert by the admission rule, or it was heavier than a shard's bound alone (see
    /// the crate docs).
    Capacity = 1,
    /// `remove`, `invalidate_if` or `clear`.
    Removed = 2,
    /// A new value was inserted for its key.
    Replaced = 3,
}

impl Cause {
    pub(crate) const COUNT: usize = 4;
}

/// What the cache has done so far. Always on and exact once the operations counted
/// have returned: hits and misses in a cell per thread (a plain load and store, no
/// atomic read-modify-write), evictions under the shard's write lock a write takes
/// anyway, loads and revalidations in atomics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups that found a live entry (`get`, and the first look of a load).
    pub hits: u64,
    /// Lookups that found nothing, or an expired entry.
    pub misses: u64,
    /// Loader runs (`get_or_try_insert_with`).
    pub loads: u64,
    /// Loader runs that failed (nothing was cached).
    pub load_failures: u64,
    /// Entries that left because they expired.
    pub expired: u64,
    /// Entries evicted to stay within the bound, turned away at their insert included
    /// ([`Cause::Capacity`]).
    pub evicted_capacity: u64,
    /// Entries removed by `remove`, `invalidate_if` or `clear`.
    pub removed: u64,
    /// Entries replaced by a new value for the same key.
    pub replaced: u64,
    /// Entries given a new TTL by [`Cache::refresh`](crate::Cache::refresh) (a 304).
    pub revalidated: u64,
    /// Stale values served while a refresh ran ([`Cache::get_or_refresh`](crate::Cache::get_or_refresh)).
    pub stale_served: u64,
}

impl Stats {
    /// Hits over lookups (0 when there was none).
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}
