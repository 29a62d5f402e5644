//! Bounded parallelism: never more than K in flight, results in input order, stop at
//! the first error cancelling the rest.

use std::cell::Cell;
use std::time::Duration;

use rate_gate::{map_bounded, try_map_bounded};

#[tokio::test(start_paused = true)]
async fn at_most_k_in_flight_and_results_in_input_order() {
    let (in_flight, peak) = (Cell::new(0), Cell::new(0));
    let mut progress = Vec::new();
    // Later items finish first (shorter sleeps): order must still be the input's.
    let out = map_bounded(
        0..20u64,
        4,
        |i| {
            let (in_flight, peak) = (&in_flight, &peak);
            async move {
                in_flight.set(in_flight.get() + 1);
                peak.set(peak.get().max(in_flight.get()));
                tokio::time::sleep(Duration::from_millis(100 - i * 5)).await;
                in_flight.set(in_flight.get() - 1);
                i * 10
            }
        },
        |done, total| progress.push((done, total)),
    )
    .await;
    assert_eq!(out, (0..20).map(|i| i * 10).collect::<Vec<_>>());
    assert_eq!(peak.get(), 4);
    assert_eq!(progress.len(), 20);
    assert_eq!(progress.last(), Some(&(20, 20)));
}

#[tokio::test(start_paused = true)]
async fn the_first_error_stops_the_run_and_cancels_the_rest() {
    let started = Cell::new(0);
    let finished = Cell::new(0);
    let result: Result<Vec<u32>, String> = try_map_bounded(
        0..100u32,
        5,
        |i| {
            let (started, finished) = (&started, &finished);
            async move {
                started.set(started.get() + 1);
                tokio::time::sleep(Duration::from_millis(if i == 7 { 10 } else { 1000 })).await;
                finished.set(finished.get() + 1);
                if i == 7 {
                    Err(format!("item {i} failed"))
                } else {
                    Ok(i)
                }
            }
        },
        |_, _| {},
    )
    .await;
    assert_eq!(result, Err("item 7 failed".to_string()));
    // Items 0-4 ran first (1 s each); 5-9 started as they finished; 7 failed at once
    // and everything else in flight was dropped: nothing past item 9 ever started.
    assert!(started.get() <= 10, "{} items started", started.get());
    assert_eq!(finished.get(), 6, "items 0-4 and the failing 7");
}

/// "No limit" as `usize::MAX` is taken: every item runs at once, nothing is allocated
/// for the limit itself (a slot list of `limit` entries once panicked).
#[tokio::test(start_paused = true)]
async fn a_limit_of_usize_max_runs_everything_at_once() {
    let (in_flight, peak) = (Cell::new(0), Cell::new(0));
    let out = map_bounded(
        0..5u64,
        usize::MAX,
        |i| {
            let (in_flight, peak) = (&in_flight, &peak);
            async move {
                in_flight.set(in_flight.get() + 1);
                peak.set(peak.get().max(in_flight.get()));
                tokio::time::sleep(Duration::from_millis(10)).await;
                in_flight.set(in_flight.get() - 1);
                i
            }
        },
        |_, _| {},
    )
    .await;
    assert_eq!((out, peak.get()), ((0..5).collect::<Vec<_>>(), 5));
}
