//! Keyed gates: independent quotas per key, and memory bounded with millions of keys,
//! without eviction ever granting more than the quota.

use std::time::Duration;

use rate_gate::{Feedback, Gate, KeyedGate, Quota};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn keys_have_independent_quotas() {
    let keyed = KeyedGate::new(Gate::builder().quota(Quota::per_second(1)));
    let start = Instant::now();
    keyed.acquire(&"a").await.unwrap();
    keyed.acquire(&"b").await.unwrap();
    assert!(start.elapsed().is_zero(), "b does not wait for a");
    keyed.acquire(&"a").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_million_idle_keys_do_not_stay_in_memory() {
    let keyed = KeyedGate::new(Gate::builder().quota(Quota::per_second(10)));
    for round in 0..10u64 {
        for i in 0..100_000u64 {
            let _ = keyed.gate(&(round * 100_000 + i)).try_acquire();
        }
        // Each key's quota refills after 100 ms: then it is idle and evictable.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One million keys used; only the live ones (at most the last round's, plus those
    // added since the last sweep) remain.
    assert!(keyed.len() <= 400_000, "{} keys held", keyed.len());
}

#[tokio::test(start_paused = true)]
async fn eviction_never_resets_a_key_with_state() {
    let keyed = KeyedGate::new(Gate::builder().quota(Quota::per_hour(1)));
    keyed.acquire(&0u32).await.unwrap(); // Key 0 used its hourly quota.
    keyed.observe(&1, Feedback::new().retry_after(Duration::from_secs(600))); // Key 1 paused.
    // Churn enough keys to force several sweeps.
    for i in 2..10_000u32 {
        let _ = keyed.gate(&i).try_acquire();
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    for i in 10_000..20_000u32 {
        let _ = keyed.gate(&i).try_acquire();
    }
    // Keys 0 and 1 kept their state: still no permit for them.
    assert!(
        keyed.gate(&0).try_acquire().is_err(),
        "key 0's used quota survived eviction sweeps"
    );
    assert!(
        keyed.gate(&1).try_acquire().is_err(),
        "key 1's pause survived eviction sweeps"
    );
}

#[tokio::test(start_paused = true)]
async fn a_keys_own_quota_survives_eviction_sweeps() {
    let keyed = KeyedGate::new(Gate::builder().quota(Quota::per_second(100)));
    let stricter = Quota::per_hour(1);
    keyed.gate(&0u32).set_quota(stricter);
    // Idle long enough for any ledger to refill, then churn through several sweeps.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    for i in 1..20_000u32 {
        let _ = keyed.gate(&i).try_acquire();
    }
    assert_eq!(
        keyed.gate(&0).quota(),
        Some(stricter),
        "key 0's own quota is kept, not the builder's"
    );
    assert!(keyed.gate(&0).try_acquire().is_ok());
    assert!(
        keyed.gate(&0).try_acquire().is_err(),
        "one an hour, as set for this key"
    );
}
