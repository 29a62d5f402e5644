//! The `metrics` feature, read from a recorder: each gate's figures at `publish`,
//! summed by name, monotonic when gates are dropped; a wait recorded once.

#![cfg(feature = "metrics")]

use std::time::Duration;

use leakproof_test_support::metrics::{recorder, value, watch_monotonic};
use rate_gate::{Gate, Quota, metrics};

#[test]
fn publish_sums_gates_by_name_and_keeps_dropped_totals() {
    recorder();
    let quota = Quota::per_second(1000).burst(10).unwrap();
    let a = Gate::builder()
        .name("sum")
        .quota(quota)
        .concurrency(5)
        .build();
    let b = Gate::builder().name("sum").quota(quota).build();
    let held: Vec<_> = (0..3).map(|_| a.try_acquire().unwrap()).collect();
    for _ in 0..4 {
        drop(b.try_acquire().unwrap());
    }
    // `b` has 6 of its 10 left at most: 10 more in a row meet a refusal.
    let refused = (0..10).filter(|_| b.try_acquire().is_err()).count() as f64;
    assert!(refused >= 1.0);
    metrics::publish();
    let read = |name| value(name, &[("gate", "sum")]);
    assert_eq!(read(metrics::GRANTED), Some(7.0 + 10.0 - refused));
    assert_eq!(read(metrics::REJECTED), Some(refused));
    assert_eq!(read(metrics::IN_FLIGHT), Some(3.0));
    assert_eq!(read(metrics::CONCURRENCY_LIMIT), Some(5.0));
    assert_eq!(read(metrics::PAUSED_SECONDS), Some(0.0));

    drop(held);
    drop(b); // its totals stay under its name
    metrics::publish();
    assert_eq!(read(metrics::GRANTED), Some(7.0 + 10.0 - refused));
    assert_eq!(read(metrics::IN_FLIGHT), Some(0.0));
    drop(a);
    metrics::publish();
    assert_eq!(read(metrics::GRANTED), Some(7.0 + 10.0 - refused));
}

#[test]
fn a_wait_is_recorded_once_and_the_fast_path_records_nothing() {
    recorder();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let gate = Gate::builder()
            .name("waits")
            .quota(Quota::per_second(10).burst(1).unwrap())
            .build();
        drop(gate.acquire().await.unwrap()); // no wait
        assert_eq!(value(metrics::WAIT_SECONDS, &[("gate", "waits")]), None);
        drop(gate.acquire().await.unwrap()); // waits 100 ms
        assert_eq!(gate.stats().waited, 1);
        let waits = value(
            &format!("{}_count", metrics::WAIT_SECONDS),
            &[("gate", "waits")],
        );
        assert_eq!(waits, Some(1.0));
        let sum = value(
            &format!("{}_sum", metrics::WAIT_SECONDS),
            &[("gate", "waits")],
        );
        assert!(sum.is_some_and(|s| (s - 0.1).abs() < 0.01), "{sum:?}");
        tokio::time::advance(Duration::from_secs(1)).await;
    });
}

#[test]
fn an_unnamed_gate_is_published_as_default() {
    recorder();
    let gate = Gate::builder().quota(Quota::per_second(5)).build();
    assert_eq!(gate.name(), "default");
    drop(gate.try_acquire().unwrap());
    metrics::publish();
    assert!(value(metrics::GRANTED, &[("gate", "default")]).is_some_and(|n| n >= 1.0));
}

#[test]
fn gates_dropped_while_publish_runs_neither_deadlock_nor_go_back() {
    recorder();
    // A gate whose last handle goes while `publish` holds it retires from its `Drop`
    // into the registry `publish` reads: both sides must not hold its lock at once.
    let quota = Quota::per_second(1000).burst(100).unwrap();
    let watch = watch_monotonic(metrics::publish, metrics::GRANTED, &[("gate", "churn")]);
    for _ in 0..20_000 {
        let gate = Gate::builder().name("churn").quota(quota).build();
        drop(gate.try_acquire().unwrap());
    }
    watch.stop();
    metrics::publish();
    assert_eq!(
        value(metrics::GRANTED, &[("gate", "churn")]),
        Some(20_000.0)
    );
}
