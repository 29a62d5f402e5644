//! The cache's guarantees under paused tokio time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::advance;
use ttl_cache::{Cache, Cause, Clock};

const MS: Duration = Duration::from_millis(1);

fn cache(max: u64) -> Cache<String, u32> {
    Cache::builder().max_entries(max).shards(1).build()
}

#[tokio::test(start_paused = true)]
async fn an_entry_lives_until_its_ttl_and_not_an_instant_longer() {
    let c: Cache<&str, u32> = Cache::builder().ttl(Duration::from_secs(300)).build();
    c.insert("labels", 1);
    advance(Duration::from_secs(300) - MS).await;
    assert_eq!(c.get(&"labels"), Some(1), "just before the TTL");
    advance(MS).await;
    assert_eq!(c.get(&"labels"), None, "at the TTL");
    assert_eq!(c.len(), 0, "and it was removed, not kept");
}

#[tokio::test(start_paused = true)]
async fn a_per_entry_ttl_overrides_the_default() {
    let c: Cache<&str, u32> = Cache::builder().ttl(Duration::from_secs(300)).build();
    c.insert_with_ttl("404", 0, Duration::from_secs(60));
    c.insert("200", 1);
    advance(Duration::from_secs(60)).await;
    assert_eq!((c.get(&"404"), c.get(&"200")), (None, Some(1)));
}

#[tokio::test(start_paused = true)]
async fn time_to_idle_expires_entries_nobody_reads() {
    let c: Cache<&str, u32> = Cache::builder().tti(Duration::from_secs(60)).build();
    c.insert("read", 1);
    c.insert("unread", 2);
    for _ in 0..3 {
        advance(Duration::from_secs(59)).await;
        assert_eq!(c.get(&"read"), Some(1), "each read restarts its idle time");
    }
    assert_eq!(c.get(&"unread"), None);
}

#[tokio::test(start_paused = true)]
async fn an_entry_read_since_it_was_written_outlives_the_oldest_unread_one() {
    let c = cache(3);
    for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
        c.insert(k.into(), v);
    }
    assert_eq!(c.get(&"a".into()), Some(1)); // a was read: it moves on, not out
    c.insert("d".into(), 4);
    assert_eq!(
        c.get(&"b".into()),
        None,
        "b was the oldest entry never read"
    );
    assert!(c.contains(&"a".into()) && c.contains(&"c".into()) && c.contains(&"d".into()));
    assert_eq!(c.stats().evicted_capacity, 1);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_one_off_keys_does_not_push_out_the_keys_read_often() {
    // One shard, so the figures do not depend on how hashes fall.
    let c: Cache<u64, u64> = Cache::builder().max_entries(1_000).shards(1).build();
    let hot: Vec<u64> = (0..500).collect();
    for round in 0..3 {
        for &k in &hot {
            if c.get(&k).is_none() {
                assert_eq!(round, 0, "hot key {k} was lost before the scan");
                c.insert(k, k);
            }
        }
    }
    // A crawl: 100,000 keys, each read once and never again.
    for k in 1_000_000..1_100_000 {
        assert_eq!(c.get(&k), None);
        c.insert(k, k);
        assert!(c.len() <= 1_000);
    }
    let kept = hot.iter().filter(|&&k| c.get(&k).is_some()).count();
    assert_eq!(kept, 500, "every hot key survived the scan");
    // The scan went through the cache (plain LRU would have kept none of the hot keys).
    assert_eq!(c.stats().evicted_capacity, 100_500 - 1_000);
}

#[tokio::test(start_paused = true)]
async fn a_working_set_read_round_and_round_stays_when_it_is_a_little_too_big() {
    // 1,100 keys read in a loop through a cache of 1,000: plain LRU evicts each key just
    // before it is read again and never hits.
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    let c: Cache<u64, u64> = Cache::builder()
        .max_entries(1_000)
        .shards(1)
        .eviction_listener(move |k, v, cause| log.lock().unwrap().push((*k, *v, cause)))
        .build();
    let mut warm = c.stats();
    let mut missed = Vec::new();
    for round in 0..20 {
        if round == 10 {
            // Judged on the last ten rounds.
            warm = c.stats();
            heard.lock().unwrap().clear();
        }
        for k in 0..1_100 {
            if c.get(&k).is_none() {
                if round >= 10 {
                    missed.push(k);
                }
                c.insert(k, k);
            }
        }
    }
    let s = c.stats();
    let (hits, misses) = (s.hits - warm.hits, s.misses - warm.misses);
    // Each settled round misses only the 100 keys the bound cannot hold: those are
    // turned away at their insert (told as capacity evictions), not let in to push
    // out a key of the working set.
    assert_eq!((hits, misses), (10 * 1_000, 10 * 100));
    let turned_away: Vec<_> = missed.iter().map(|&k| (k, k, Cause::Capacity)).collect();
    assert_eq!(*heard.lock().unwrap(), turned_away);
    assert_eq!(s.evicted_capacity - warm.evicted_capacity, 10 * 100);
    assert_eq!(c.len(), 1_000);
}

#[tokio::test(start_paused = true)]
async fn the_default_clock_follows_a_paused_tokio_and_the_coarse_one_does_not() {
    let paused: Cache<&str, u32> = Cache::builder().ttl(Duration::from_secs(60)).build();
    assert_eq!(
        paused.clock(),
        Clock::Tokio,
        "built while tokio's clock is paused"
    );
    let coarse: Cache<&str, u32> = Cache::builder()
        .ttl(Duration::from_secs(60))
        .clock(Clock::Coarse)
        .build();
    assert_eq!(coarse.clock(), Clock::Coarse);
    paused.insert("k", 1);
    coarse.insert("k", 1);
    advance(Duration::from_secs(60)).await;
    assert_eq!(paused.get(&"k"), None, "expired on tokio's clock");
    assert_eq!(
        coarse.get(&"k"),
        Some(1),
        "the coarse clock did not move an hour"
    );
}

#[test]
fn outside_a_paused_runtime_the_default_clock_is_the_coarse_one() {
    let c: Cache<u8, u8> = Cache::builder().build();
    assert_eq!(c.clock(), Clock::Coarse);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let c: Cache<u8, u8> = rt.block_on(async { Cache::builder().build() });
    assert_eq!(c.clock(), Clock::Coarse, "tokio's clock runs: not paused");
}

#[tokio::test(start_paused = true)]
async fn a_weight_bound_holds_whatever_is_inserted() {
    let c: Cache<u32, Vec<u8>> = Cache::builder()
        .max_weight(1000, |_, v: &Vec<u8>| v.len() as u64)
        .shards(1)
        .build();
    for i in 0..200 {
        c.insert(i, vec![0; (i as usize * 37) % 300]);
        assert!(c.weight() <= 1000, "weight {} after {i}", c.weight());
    }
    c.insert(999, vec![0; 5000]);
    assert!(
        c.weight() <= 1000,
        "an entry over the bound alone is not kept"
    );
    assert!(!c.contains(&999));
}

#[tokio::test(start_paused = true)]
async fn invalidate_if_removes_exactly_the_matching_entries() {
    let c = cache(100);
    for repo in ["o/a", "o/b"] {
        for what in ["labels", "issues", "pulls"] {
            c.insert(format!("{repo}/{what}"), 1);
        }
    }
    assert_eq!(c.invalidate_if(|k, _| k.starts_with("o/a/")), 3);
    assert_eq!(c.len(), 3);
    assert!(c.contains(&"o/b/labels".into()) && !c.contains(&"o/a/labels".into()));
    c.clear();
    assert!(c.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_listener_hears_every_departure_with_its_cause() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    let c: Cache<&str, u32> = Cache::builder()
        .max_entries(2)
        .shards(1)
        .ttl(Duration::from_secs(10))
        .eviction_listener(move |k, v, cause| log.lock().unwrap().push((*k, *v, cause)))
        .build();
    c.insert("a", 1);
    c.insert("a", 2); // replaced
    c.insert("b", 3);
    c.insert("c", 4); // a evicted for capacity
    c.remove(&"b"); // removed
    advance(Duration::from_secs(10)).await;
    assert_eq!(c.get(&"c"), None); // expired
    assert_eq!(
        *heard.lock().unwrap(),
        [
            ("a", 1, Cause::Replaced),
            ("a", 2, Cause::Capacity),
            ("b", 3, Cause::Removed),
            ("c", 4, Cause::Expired),
        ]
    );
    let s = c.stats();
    assert_eq!(
        (s.replaced, s.evicted_capacity, s.removed, s.expired),
        (1, 1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn expired_entries_nobody_reads_are_swept_by_writes() {
    let c: Cache<u32, u32> = Cache::builder()
        .max_entries(100_000)
        .shards(1)
        .ttl(Duration::from_secs(1))
        .build();
    for i in 0..10_000 {
        c.insert(i, i);
    }
    advance(Duration::from_secs(2)).await;
    for i in 10_000..20_000 {
        c.insert(i, i);
    }
    // None of the first 10,000 was read again, yet they are gone.
    assert!(c.len() <= 10_064, "{} entries held", c.len());
    assert!(c.stats().expired >= 9_936, "{:?}", c.stats());
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_misses_run_the_loader_once() {
    let c: Cache<&str, u32> = Cache::builder().build();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (c, runs) = (c.clone(), runs.clone());
        tasks.spawn(async move {
            c.get_or_try_insert_with("repo", || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, std::io::Error>(42)
            })
            .await
            .unwrap()
        });
    }
    while let Some(v) = tasks.join_next().await {
        assert_eq!(v.unwrap(), 42);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let s = c.stats();
    assert_eq!((s.loads, s.load_failures), (1, 0));
    assert_eq!(c.loads_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_load_caches_nothing_and_every_waiter_gets_its_error() {
    let c: Cache<&str, u32> = Cache::builder().build();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let c = c.clone();
        tasks.spawn(async move {
            c.get_or_try_insert_with("repo", || async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err::<u32, _>(std::io::Error::other("502 from the API"))
            })
            .await
            .unwrap_err()
        });
    }
    let mut errors = Vec::new();
    while let Some(e) = tasks.join_next().await {
        errors.push(e.unwrap());
    }
    assert!(
        errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])),
        "one error, shared"
    );
    assert_eq!(c.stats().loads, 1);
    assert_eq!(c.stats().load_failures, 1);
    assert!(c.is_empty());
    // The next call loads again.
    let v = c
        .get_or_try_insert_with("repo", || async { Ok::<_, std::io::Error>(7) })
        .await
        .unwrap();
    assert_eq!((v, c.stats().loads), (7, 2));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_loader_hands_the_load_to_the_next_waiter() {
    let c: Cache<&str, u32> = Cache::builder().build();
    let leader = {
        let c = c.clone();
        tokio::spawn(async move {
            c.get_or_try_insert_with("repo", || async {
                std::future::pending::<()>().await;
                Ok::<_, std::io::Error>(1)
            })
            .await
        })
    };
    tokio::task::yield_now().await; // The leader is loading.
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.get_or_try_insert_with("repo", || async { Ok::<_, std::io::Error>(2) })
                .await
        })
    };
    tokio::task::yield_now().await; // The waiter is in line.
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    assert_eq!(waiter.await.unwrap().unwrap(), 2, "the waiter loaded it");
    assert_eq!(c.stats().loads, 2);
    assert_eq!(c.get(&"repo"), Some(2));
    assert_eq!(c.loads_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_loader_with_nobody_waiting_leaves_nothing_behind() {
    let c: Cache<&str, u32> = Cache::builder().build();
    let mut load = Box::pin(c.get_or_try_insert_with("repo", || async {
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(1)
    }));
    // Polled once (a zero timeout): the load is under way.
    assert!(
        tokio::time::timeout(Duration::ZERO, &mut load)
            .await
            .is_err()
    );
    assert_eq!(c.loads_in_flight(), 1);
    drop(load);
    assert_eq!(c.loads_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn negative_results_are_cached_for_their_own_ttl() {
    let c: Cache<&str, Option<u32>> = Cache::builder().ttl(Duration::from_secs(300)).build();
    let load = || async { Ok::<_, std::io::Error>((None, Duration::from_secs(60))) };
    assert_eq!(
        c.get_or_try_insert_with_ttl("missing", load).await.unwrap(),
        None
    );
    assert_eq!(
        c.get_or_try_insert_with_ttl("missing", load).await.unwrap(),
        None
    );
    assert_eq!(c.stats().loads, 1, "the 404 was cached");
    advance(Duration::from_secs(60)).await;
    c.get_or_try_insert_with_ttl("missing", load).await.unwrap();
    assert_eq!(c.stats().loads, 2, "and expired after its own TTL");
    let s = c.stats();
    assert_eq!((s.hits, s.misses), (1, 2));
    assert!((s.hit_rate() - 1.0 / 3.0).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn an_expired_response_with_validators_is_refreshed_by_a_304_not_refetched() {
    let c: Cache<&str, &str> = Cache::builder()
        .ttl(Duration::from_secs(300))
        .stale_for(Duration::from_secs(3600))
        .build();
    let etag = ttl_cache::Validators::new(Some("\"abc\"".into()), None);
    c.insert_with_validators("repos/o/r", "body", None, etag.clone());
    advance(Duration::from_secs(300)).await;
    assert_eq!(c.get(&"repos/o/r"), None, "expired: never returned");
    // The client sends If-None-Match: "abc"; the server answers 304.
    assert_eq!(c.revalidation(&"repos/o/r"), Some(("body", etag)));
    assert!(c.refresh(&"repos/o/r", None));
    advance(Duration::from_secs(299)).await;
    assert_eq!(c.get(&"repos/o/r"), Some("body"), "a new TTL, no new body");
    assert_eq!(c.stats().revalidated, 1);
    // Never refreshed again: past the stale window it is gone for good.
    advance(Duration::from_secs(1 + 3600)).await;
    assert_eq!(c.revalidation(&"repos/o/r"), None);
    assert!(!c.refresh(&"repos/o/r", None));
}

#[tokio::test(start_paused = true)]
async fn a_stale_value_is_served_while_one_refresh_runs() {
    let c: Cache<&str, u32> = Cache::builder()
        .ttl(Duration::from_secs(10))
        .stale_for(Duration::from_secs(60))
        .build();
    let runs = Arc::new(AtomicUsize::new(0));
    let loader = |runs: Arc<AtomicUsize>| {
        move || async move {
            let n = runs.fetch_add(1, Ordering::SeqCst) as u32 + 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, std::io::Error>(n)
        }
    };
    assert_eq!(
        c.get_or_refresh("k", loader(runs.clone())).await.unwrap(),
        1
    );
    advance(Duration::from_secs(10)).await;
    // Stale: served at once, twice, while a single refresh runs.
    assert_eq!(
        c.get_or_refresh("k", loader(runs.clone())).await.unwrap(),
        1
    );
    tokio::task::yield_now().await; // The refresh is under way.
    assert_eq!(
        c.get_or_refresh("k", loader(runs.clone())).await.unwrap(),
        1
    );
    // The refresh's loader takes 1 s (simulated); look after it has finished.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.get(&"k"), Some(2), "refreshed in the background");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one load, one refresh");
    assert_eq!(c.stats().stale_served, 2);
    // Past the stale window, the caller waits for a load.
    advance(Duration::from_secs(10 + 60 - 1)).await;
    assert_eq!(
        c.get_or_refresh("k", loader(runs.clone())).await.unwrap(),
        3
    );
}

#[test]
fn four_threads_of_mixed_operations_keep_the_bound_and_count_every_lookup() {
    use std::sync::atomic::AtomicU64;
    let left = Arc::new(AtomicU64::new(0));
    let heard = left.clone();
    let c: Cache<u64, Vec<u8>> = Cache::builder()
        .max_weight(4_000, |_, v: &Vec<u8>| v.len() as u64)
        .shards(2)
        .ttl(Duration::from_secs(3600))
        .eviction_listener(move |_, _, _| {
            heard.fetch_add(1, Ordering::Relaxed);
        })
        .build();
    let (gets, inserts) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (c, gets, inserts) = (&c, &gets, &inserts);
            s.spawn(move || {
                let mut x = 0x2545_f491_4f6c_dd1d ^ (t + 1);
                for _ in 0..50_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = x % 500;
                    match (x >> 20) % 8 {
                        0..=3 => {
                            gets.fetch_add(1, Ordering::Relaxed);
                            if let Some(v) = c.get(&k) {
                                assert_eq!(
                                    v.first().copied(),
                                    Some(k as u8),
                                    "a value with its key"
                                );
                            }
                        }
                        4 => {
                            c.remove(&k);
                        }
                        5 => {
                            let validators = ttl_cache::Validators::new(Some(format!("{k}")), None);
                            c.insert_with_validators(
                                k,
                                vec![k as u8; (x >> 40) as usize % 60 + 1],
                                None,
                                validators,
                            );
                            inserts.fetch_add(1, Ordering::Relaxed);
                        }
                        6 => {
                            if let Some((v, validators)) = c.revalidation(&k) {
                                assert_eq!(v[0], k as u8);
                                assert_eq!(
                                    validators.etag,
                                    Some(format!("{k}")),
                                    "validators stay with their key"
                                );
                            }
                        }
                        _ => {
                            c.insert(k, vec![k as u8; (x >> 40) as usize % 60 + 1]);
                            inserts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    assert!(c.weight() <= 4_000);
                }
            });
        }
    });
    let s = c.stats();
    assert_eq!(
        s.hits + s.misses,
        gets.load(Ordering::Relaxed),
        "every lookup counted once"
    );
    assert_eq!(
        left.load(Ordering::Relaxed) + c.len() as u64,
        inserts.load(Ordering::Relaxed),
        "every value inserted is held or was heard leaving"
    );
    assert_eq!(
        s.replaced + s.evicted_capacity + s.removed + s.expired,
        left.load(Ordering::Relaxed)
    );
}

#[test]
fn the_shards_together_hold_the_bound_exactly() {
    // 10,001 splits evenly between no number of shards: the shares add up to it, none
    // rounded up. Explicit shard counts, so that no host's CPU count matters, and the
    // default's.
    for shards in [Some(8), Some(32), None] {
        let mut builder = Cache::builder().max_entries(10_001);
        if let Some(n) = shards {
            builder = builder.shards(n);
        }
        let c: Cache<u64, u64> = builder.build();
        for k in 0..100_000 {
            c.insert(k, k);
            if k % 97 == 0 {
                assert!(c.len() <= 10_001, "{shards:?} shards: {} held", c.len());
            }
        }
        // 100,000 keys fill every shard.
        assert_eq!(c.len(), 10_001, "{shards:?} shards");
    }
    // More shards than entries: cut to 64 (a power of two no greater than 100), of 1
    // or 2 entries each. 10,000 sequential keys reach every shard under any hash seed
    // (with the shard taken from bits 40 and up of the hash, about 1 process in 300
    // ended holding 45 to 87, some shards never chosen).
    let c: Cache<u64, u64> = Cache::builder().max_entries(100).shards(1024).build();
    for k in 0..10_000 {
        c.insert(k, k);
        assert!(c.len() <= 100, "{} held", c.len());
    }
    assert_eq!(c.len(), 100);
}

/// Any bound is taken, `u64::MAX` in one shard included (its room set aside up front
/// once overflowed computing one more than the bound), and any number of shards, up to
/// `MAX_SHARDS` (`usize::MAX` overflowed rounding up; `1 << 40` over this bound asked for
/// terabytes of locks).
#[test]
fn any_bound_and_shard_count_is_taken() {
    for shards in [1, 64, 1 << 40, usize::MAX] {
        let c: Cache<u64, u64> = Cache::builder()
            .max_entries(u64::MAX)
            .shards(shards)
            .build();
        c.insert(1, 10);
        assert_eq!(c.get(&1), Some(10));
        let w: Cache<u64, u64> = Cache::builder()
            .max_weight(u64::MAX, |_, v| *v)
            .shards(shards)
            .build();
        w.insert(2, u64::MAX);
        assert_eq!(w.get(&2), Some(u64::MAX));
    }
}
