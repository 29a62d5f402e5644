//! The memory budget never over-grants, and returns what cancelled waiters did not get.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mem_watch::{Error, MemoryBudget};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_over_grants_under_concurrency() {
    let budget = MemoryBudget::new(10 << 20);
    let in_use = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        let (budget, in_use, peak) = (budget.clone(), in_use.clone(), peak.clone());
        tasks.spawn(async move {
            let bytes = ((i * 7919) % 4096 + 1) * 1024; // 1 KiB to 4 MiB, whole KiB
            let held = budget.reserve(bytes).await.unwrap();
            let now = in_use.fetch_add(bytes, Ordering::SeqCst) + bytes;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::task::yield_now().await;
            in_use.fetch_sub(bytes, Ordering::SeqCst);
            drop(held);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 10 << 20,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert_eq!(budget.available(), 10 << 20);
}

#[tokio::test]
async fn a_request_over_capacity_fails_at_once() {
    let budget = MemoryBudget::new(1 << 20);
    match budget.reserve((1 << 20) + 1).await {
        Err(Error::OverBudget {
            requested,
            capacity,
        }) => assert_eq!((requested, capacity), ((1 << 20) + 1, 1 << 20)),
        other => panic!("expected OverBudget, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cancelled_waiter_takes_nothing_and_a_panic_returns_what_it_held() {
    let budget = MemoryBudget::new(1 << 20);
    let held = budget.reserve(800 << 10).await.unwrap();
    // Waits (not enough free), then is cancelled.
    let waiting = tokio::spawn({
        let budget = budget.clone();
        async move { budget.reserve(500 << 10).await.map(|_| ()) }
    });
    tokio::task::yield_now().await;
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    drop(held);
    assert_eq!(budget.available(), 1 << 20);

    let panicking = tokio::spawn({
        let budget = budget.clone();
        async move {
            let _held = budget.reserve(600 << 10).await.unwrap();
            panic!("injected");
        }
    });
    assert!(panicking.await.unwrap_err().is_panic());
    assert_eq!(budget.available(), 1 << 20);
    assert!(budget.try_reserve(1 << 20).is_some());
}
