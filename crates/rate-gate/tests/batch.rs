//! The batcher, observed under paused tokio time: what each batch call received, and
//! what each caller got back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rate_gate::{BatchError, Batcher, Error};
use tokio::time::Instant;

type Seen = Arc<Mutex<Vec<(Duration, Vec<u32>)>>>;

/// A batcher that doubles numbers and records each batch with the time it was sent.
fn doubler(max_items: usize, window_ms: u64) -> (Batcher<u32, u32, String>, Seen) {
    let seen: Seen = Arc::default();
    let start = Instant::now();
    let record = seen.clone();
    let batcher = Batcher::builder()
        .max_items(max_items)
        .window(Duration::from_millis(window_ms))
        .spawn(move |items: Vec<u32>| {
            record
                .lock()
                .unwrap()
                .push((start.elapsed(), items.clone()));
            async move { Ok(items.iter().map(|x| x * 2).collect()) }
        })
        .unwrap();
    (batcher, seen)
}

fn sizes(seen: &Seen) -> Vec<usize> {
    seen.lock().unwrap().iter().map(|(_, b)| b.len()).collect()
}

#[tokio::test(start_paused = true)]
async fn calls_within_the_window_become_one_batch_and_each_gets_its_own_result() {
    let (batcher, seen) = doubler(100, 10);
    let calls: Vec<_> = (0..10)
        .map(|i| {
            let b = batcher.clone();
            tokio::spawn(async move { b.call(i).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), 2 * i as u32);
    }
    assert_eq!(sizes(&seen), [10]);
    assert_eq!(seen.lock().unwrap()[0].0, Duration::from_millis(10));
    let stats = batcher.stats();
    assert_eq!((stats.batches, stats.items, stats.abandoned), (1, 10, 0));
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_at_once_and_the_rest_waits_for_the_window() {
    let (batcher, seen) = doubler(10, 50);
    let calls: Vec<_> = (0..25)
        .map(|i| {
            let b = batcher.clone();
            tokio::spawn(async move { b.call(i).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), 2 * i as u32);
    }
    let seen = seen.lock().unwrap().clone();
    let sent: Vec<_> = seen.iter().map(|(at, b)| (*at, b.len())).collect();
    assert_eq!(
        sent,
        [
            (Duration::ZERO, 10),
            (Duration::ZERO, 10),
            (Duration::from_millis(50), 5)
        ]
    );
    // Arrival order is kept within and across batches.
    let order: Vec<u32> = seen.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(order, (0..25).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn a_call_after_the_window_goes_in_the_next_batch() {
    let (batcher, seen) = doubler(100, 10);
    assert_eq!(batcher.call(1).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(batcher.call(2).await.unwrap(), 4);
    assert_eq!(sizes(&seen), [1, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_caller_who_gives_up_is_left_out_of_the_batch() {
    let (batcher, seen) = doubler(100, 10);
    let b = batcher.clone();
    let quitter = tokio::spawn(async move { b.call(7).await });
    let b = batcher.clone();
    let stayer = tokio::spawn(async move { b.call(8).await });
    tokio::time::sleep(Duration::from_millis(1)).await;
    quitter.abort();
    assert!(quitter.await.unwrap_err().is_cancelled());
    assert_eq!(stayer.await.unwrap().unwrap(), 16);
    assert_eq!(seen.lock().unwrap()[0].1, [8]);
    assert_eq!(batcher.stats().abandoned, 1);
    assert_eq!(batcher.stats().items, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_gives_every_caller_the_same_error() {
    let batcher = Batcher::builder()
        .spawn(|_: Vec<u32>| async { Err::<Vec<u32>, _>("bulk endpoint down".to_string()) })
        .unwrap();
    let (a, b) = tokio::join!(batcher.call(1), batcher.call(2));
    match (a, b) {
        (Err(BatchError::Failed(a)), Err(BatchError::Failed(b))) => {
            assert!(Arc::ptr_eq(&a, &b));
            assert_eq!(*a, "bulk endpoint down");
        }
        other => panic!("expected two Failed, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_wrong_number_of_results_is_an_error_not_a_mix_up() {
    let batcher = Batcher::builder()
        .spawn(|items: Vec<u32>| async move { Ok::<_, String>(items[..1].to_vec()) })
        .unwrap();
    let (a, b) = tokio::join!(batcher.call(1), batcher.call(2));
    for outcome in [a, b] {
        assert!(matches!(
            outcome,
            Err(BatchError::Mismatch {
                sent: 2,
                returned: 1
            })
        ));
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_batch_loses_only_its_own_callers() {
    let batcher = Batcher::builder()
        .spawn(|items: Vec<u32>| async move {
            assert!(items != [13], "unlucky batch");
            Ok::<_, String>(items)
        })
        .unwrap();
    assert!(matches!(batcher.call(13).await, Err(BatchError::Lost)));
    assert_eq!(batcher.call(14).await.unwrap(), 14);
}

#[tokio::test(start_paused = true)]
async fn at_most_the_configured_batch_calls_run_at_once() {
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let batcher = Batcher::builder()
        .max_items(1)
        .concurrency(2)
        .spawn(move |items: Vec<u32>| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                p.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                r.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, String>(items)
            }
        })
        .unwrap();
    let start = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let b = batcher.clone();
            tokio::spawn(async move { b.call(i).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Six one-item batches, two at a time, 100 ms each.
    assert_eq!(start.elapsed(), Duration::from_millis(300));
}

#[test]
fn starting_a_batcher_outside_a_runtime_is_an_error() {
    let outcome = Batcher::builder().spawn(|items: Vec<u32>| async move { Ok::<_, String>(items) });
    assert!(matches!(outcome, Err(Error::NoRuntime)));
}

/// A window of `Duration::MAX` is taken (it once panicked the batching task, losing
/// every call): a batch goes when it is full.
#[tokio::test(start_paused = true)]
async fn a_window_of_duration_max_sends_full_batches() {
    let batcher = Batcher::builder()
        .window(Duration::MAX)
        .max_items(2)
        .spawn(|items: Vec<u32>| async move { Ok::<_, String>(items) })
        .unwrap();
    let (a, b) = tokio::join!(batcher.call(1), batcher.call(2));
    assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
}

/// `usize::MAX` for "no limit" is taken as the most items and calls in flight (tokio's
/// semaphore refuses more, and `spawn` once panicked on it): the window sends the batch.
#[tokio::test(start_paused = true)]
async fn usize_max_items_and_concurrency_are_taken() {
    let batcher = Batcher::builder()
        .max_items(usize::MAX)
        .concurrency(usize::MAX)
        .spawn(|items: Vec<u32>| async move { Ok::<_, String>(items) })
        .unwrap();
    let (a, b) = tokio::join!(batcher.call(1), batcher.call(2));
    assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
    assert_eq!(batcher.stats().batches, 1);
}
