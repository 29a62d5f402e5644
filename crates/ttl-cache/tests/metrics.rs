//! The `metrics` feature, read from a recorder: a named cache's exact stats at
//! `publish`, monotonic after it is dropped; unnamed caches are not published.

#![cfg(feature = "metrics")]

use leakproof_test_support::metrics::{recorder, value, watch_monotonic};
use ttl_cache::{Cache, metrics};

#[test]
fn a_named_cache_publishes_its_stats() {
    recorder();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_entries(2)
        .shards(1)
        .name("users")
        .build();
    assert_eq!(cache.name(), Some("users"));
    cache.insert(1, 10);
    cache.insert(2, 20);
    cache.insert(3, 30); // evicts 1
    assert_eq!(cache.get(&2), Some(20));
    assert_eq!(cache.get(&1), None);
    cache.insert(2, 21); // replaces
    metrics::publish();
    let read = |name, extra: &[(&str, &str)]| {
        let mut labels = vec![("cache", "users")];
        labels.extend_from_slice(extra);
        value(name, &labels)
    };
    assert_eq!(read(metrics::HITS, &[]), Some(1.0));
    assert_eq!(read(metrics::MISSES, &[]), Some(1.0));
    assert_eq!(
        read(metrics::EVICTIONS, &[("cause", "capacity")]),
        Some(1.0)
    );
    assert_eq!(
        read(metrics::EVICTIONS, &[("cause", "replaced")]),
        Some(1.0)
    );
    assert_eq!(read(metrics::ENTRIES, &[]), Some(2.0));
    let stats = cache.stats();
    drop(cache);
    metrics::publish();
    assert_eq!(read(metrics::HITS, &[]), Some(stats.hits as f64));
    assert_eq!(read(metrics::MISSES, &[]), Some(stats.misses as f64));
}

#[test]
fn an_unnamed_cache_is_not_published() {
    recorder();
    let cache: Cache<u32, u32> = Cache::builder().build();
    cache.insert(1, 1);
    assert_eq!(cache.get(&1), Some(1));
    metrics::publish();
    assert_eq!(value(metrics::HITS, &[("cache", "")]), None);
}

#[test]
fn caches_dropped_while_publish_runs_neither_deadlock_nor_go_back() {
    recorder();
    // The last handle of a cache may be `publish`'s own: its `Drop` retires into the
    // registry `publish` reads, so `publish` must not hold that lock then.
    let watch = watch_monotonic(metrics::publish, metrics::HITS, &[("cache", "churn")]);
    for i in 0..20_000u32 {
        let cache: Cache<u32, u32> = Cache::builder().max_entries(4).name("churn").build();
        cache.insert(i, i);
        assert_eq!(cache.get(&i), Some(i));
    }
    watch.stop();
    metrics::publish();
    assert_eq!(value(metrics::HITS, &[("cache", "churn")]), Some(20_000.0));
}
