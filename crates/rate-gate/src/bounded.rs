//! Bounded parallelism: run work items with at most K in flight, results in input order.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

type Slot<'a, R> = (usize, Pin<Box<dyn Future<Output = R> + 'a>>);

/// Runs `f` over `items` with at most `limit` futures in flight, inside the calling task
/// (nothing is spawned, so `f` may borrow), and returns every outcome in input order.
/// `progress(done, total)` is called after each item completes. Each wake-up polls the
/// futures in flight, so this suits `limit` up to a few hundred; beyond that, spawn.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let lengths = rate_gate::map_bounded(["a", "bb", "ccc"], 2, |s| async move { s.len() }, |_, _| {}).await;
/// assert_eq!(lengths, [1, 2, 3]);
/// # }
/// ```
pub async fn map_bounded<'a, T, R, F, Fut>(
    items: impl IntoIterator<Item = T>,
    limit: usize,
    f: F,
    mut progress: impl FnMut(usize, usize),
) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + 'a,
{
    let results = drive(items, limit, f, &mut progress, |_: &R| false).await;
    results
        .into_iter()
        .map(|r| r.expect("every item ran to completion"))
        .collect()
}

/// Like [`map_bounded`] for fallible work, stopping at the first error: the futures
/// still in flight are dropped (cancelled) and no new item starts.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let parsed = rate_gate::try_map_bounded(["1", "x", "3"], 2, |s| async move { s.parse::<u32>() }, |_, _| {}).await;
/// assert!(parsed.is_err());
/// # }
/// ```
pub async fn try_map_bounded<'a, T, R, E, F, Fut>(
    items: impl IntoIterator<Item = T>,
    limit: usize,
    f: F,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<R>, E>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<R, E>> + 'a,
{
    let results = drive(items, limit, f, &mut progress, |r: &Result<R, E>| {
        r.is_err()
    })
    .await;
    let mut out = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Some(Ok(value)) => out.push(value),
            Some(Err(error)) => return Err(error),
            None => {} // Not run: an error stopped the run (its error is returned above).
        }
    }
    Ok(out)
}

/// Runs items with at most `limit` in flight; stops starting new ones (and drops those
/// in flight) once `stop` holds for an outcome. `None` for items never finished.
async fn drive<'a, T, R, F, Fut>(
    items: impl IntoIterator<Item = T>,
    limit: usize,
    f: F,
    progress: &mut impl FnMut(usize, usize),
    stop: impl Fn(&R) -> bool,
) -> Vec<Option<R>>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + 'a,
{
    let items: Vec<T> = items.into_iter().collect();
    let total = items.len();
    let mut pending = items.into_iter().enumerate();
    let mut results: Vec<Option<R>> = (0..total).map(|_| None).collect();
    // No more slots than items: a `limit` of `usize::MAX` ("no limit") is taken as is.
    let mut running: Vec<Slot<'a, R>> = Vec::with_capacity(limit.clamp(1, total.max(1)));
    let mut done = 0;
    let mut stopped = false;
    loop {
        while !stopped && running.len() < limit.max(1) {
            match pending.next() {
                Some((index, item)) => running.push((index, Box::pin(f(item)))),
                None => break,
            }
        }
        if running.is_empty() {
            return results;
        }
        // Poll every running future once per wake-up; collect those that finished.
        let finished: Vec<(usize, R)> = std::future::poll_fn(|cx| {
            let mut ready = Vec::new();
            let mut i = 0;
            while i < running.len() {
                if let Poll::Ready(value) = running[i].1.as_mut().poll(cx) {
                    let (index, _) = running.swap_remove(i);
                    ready.push((index, value));
                } else {
                    i += 1;
                }
            }
            if ready.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(ready)
            }
        })
        .await;
        for (index, value) in finished {
            done += 1;
            progress(done, total);
            if stop(&value) {
                stopped = true;
                running.clear(); // Cancel what is in flight.
            }
            results[index] = Some(value);
        }
        if stopped && running.is_empty() {
            return results;
        }
    }
}
