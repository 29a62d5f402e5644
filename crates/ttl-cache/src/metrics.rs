//! Figures through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`),
//! labelled by the cache's [name](crate::Builder::name) (`cache="default"` unless set;
//! caches that share a name are summed).
//!
//! | name | type | labels | recorded |
//! |---|---|---|---|
//! | `ttl_cache_hits_total` | counter | `cache` | at [`publish`] |
//! | `ttl_cache_misses_total` | counter | `cache` | at [`publish`] |
//! | `ttl_cache_loads_total` | counter | `cache` | at [`publish`]: loader runs |
//! | `ttl_cache_load_failures_total` | counter | `cache` | at [`publish`] |
//! | `ttl_cache_evictions_total` | counter | `cache`, `cause`: `expired`, `capacity`, `removed`, `replaced` | at [`publish`] |
//! | `ttl_cache_revalidated_total` | counter | `cache` | at [`publish`]: entries refreshed by a 304 |
//! | `ttl_cache_stale_served_total` | counter | `cache` | at [`publish`] |
//! | `ttl_cache_entries` | gauge | `cache` | at [`publish`]: entries held |
//! | `ttl_cache_weight` | gauge | `cache` | at [`publish`]: weight held |
//!
//! Everything is the cache's own exact [`Stats`], read when [`publish`] runs
//! (leakproof's metrics endpoint runs it on every scrape; with an exporter of your own,
//! call it before each scrape or on an interval). A `get` costs nothing more with this
//! feature. Counters stay monotonic when caches are dropped: a dropped cache's totals
//! are kept under its name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::Stats;

/// Lookups that found a live entry.
pub const HITS: &str = "ttl_cache_hits_total";
/// Lookups that found nothing or an expired entry.
pub const MISSES: &str = "ttl_cache_misses_total";
/// Loader runs.
pub const LOADS: &str = "ttl_cache_loads_total";
/// Loader runs that failed.
pub const LOAD_FAILURES: &str = "ttl_cache_load_failures_total";
/// Entries that left, by cause.
pub const EVICTIONS: &str = "ttl_cache_evictions_total";
/// Entries given a new TTL by a 304.
pub const REVALIDATED: &str = "ttl_cache_revalidated_total";
/// Stale values served while a refresh ran.
pub const STALE_SERVED: &str = "ttl_cache_stale_served_total";
/// Entries held now.
pub const ENTRIES: &str = "ttl_cache_entries";
/// Weight held now.
pub const WEIGHT: &str = "ttl_cache_weight";

/// What a live cache shows at a scrape.
pub(crate) trait Source: Send + Sync {
    fn name(&self) -> &Arc<str>;
    fn stats(&self) -> Stats;
    /// Entries and weight held.
    fn levels(&self) -> (u64, u64);
}

/// The counters of [`Stats`], in one order.
type Counts = [u64; 10];

fn counts(s: &Stats) -> Counts {
    [
        s.hits,
        s.misses,
        s.loads,
        s.load_failures,
        s.expired,
        s.evicted_capacity,
        s.removed,
        s.replaced,
        s.revalidated,
        s.stale_served,
    ]
}

fn add(into: &mut Counts, from: &Counts) {
    into.iter_mut().zip(from).for_each(|(a, b)| *a += b);
}

#[derive(Default)]
struct Registry {
    live: Vec<Weak<dyn Source>>,
    /// Totals of dropped caches, by name.
    retired: HashMap<Arc<str>, Counts>,
    /// The last totals published, by name: what was published never goes back.
    published: HashMap<Arc<str>, Counts>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut guard = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    f(guard.get_or_insert_with(Registry::default))
}

pub(crate) fn register(source: Weak<dyn Source>) {
    with(|r| {
        if r.live.len() >= 64 && r.live.len().is_power_of_two() {
            r.live.retain(|w| w.strong_count() > 0);
        }
        r.live.push(source);
    });
}

pub(crate) fn retire(name: &Arc<str>, stats: &Stats) {
    with(|r| add(r.retired.entry(name.clone()).or_default(), &counts(stats)));
}

/// Describes this crate's metrics to the installed recorder (help text).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(HITS, "ttl-cache lookups that found a live entry.");
    describe_counter!(
        MISSES,
        "ttl-cache lookups that found nothing or an expired entry."
    );
    describe_counter!(LOADS, "ttl-cache loader runs.");
    describe_counter!(LOAD_FAILURES, "ttl-cache loader runs that failed.");
    describe_counter!(EVICTIONS, "Entries that left a ttl-cache, by cause.");
    describe_counter!(REVALIDATED, "ttl-cache entries given a new TTL by a 304.");
    describe_counter!(
        STALE_SERVED,
        "Stale ttl-cache values served while a refresh ran."
    );
    describe_gauge!(ENTRIES, "Entries a ttl-cache holds.");
    describe_gauge!(WEIGHT, "Weight a ttl-cache holds.");
}

/// Hands every live cache's figures to the facade, summed by name. It locks each
/// shard briefly, as [`Cache::stats`](crate::Cache::stats) does; run it before each
/// scrape.
pub fn publish() {
    // The live caches, held while they are read, outside the registry's lock: one
    // dropped meanwhile retires into the registry from its `Drop`, which takes it.
    let live: Vec<Arc<dyn Source>> = with(|r| {
        r.live.retain(|weak| weak.strong_count() > 0);
        r.live.iter().filter_map(Weak::upgrade).collect()
    });
    let mut sums: HashMap<Arc<str>, (Counts, u64, u64)> = HashMap::new();
    for cache in &live {
        let (entries, weight) = cache.levels();
        let sum = sums.entry(cache.name().clone()).or_default();
        add(&mut sum.0, &counts(&cache.stats()));
        sum.1 += entries;
        sum.2 += weight;
    }
    with(|r| {
        for (name, retired) in &r.retired {
            add(&mut sums.entry(name.clone()).or_default().0, retired);
        }
        for (name, sum) in &mut sums {
            let last = r.published.entry(name.clone()).or_default();
            last.iter_mut()
                .zip(&sum.0)
                .for_each(|(l, n)| *l = (*l).max(*n));
            sum.0 = *last;
        }
    });
    drop(live);
    for (name, (c, entries, weight)) in sums {
        let cache = name.to_string();
        let plain = [
            (HITS, c[0]),
            (MISSES, c[1]),
            (LOADS, c[2]),
            (LOAD_FAILURES, c[3]),
            (REVALIDATED, c[8]),
            (STALE_SERVED, c[9]),
        ];
        for (metric, value) in plain {
            metrics::counter!(metric, "cache" => cache.clone()).absolute(value);
        }
        let causes = [
            ("expired", c[4]),
            ("capacity", c[5]),
            ("removed", c[6]),
            ("replaced", c[7]),
        ];
        for (cause, value) in causes {
            metrics::counter!(EVICTIONS, "cache" => cache.clone(), "cause" => cause)
                .absolute(value);
        }
        metrics::gauge!(ENTRIES, "cache" => cache.clone()).set(entries as f64);
        metrics::gauge!(WEIGHT, "cache" => cache).set(weight as f64);
    }
}
