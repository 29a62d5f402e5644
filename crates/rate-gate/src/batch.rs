//! The batcher: calls arriving within a window (or up to N) become one batch call.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Why a batched call has no result of its own.
#[derive(Debug, thiserror::Error)]
pub enum BatchError<E> {
    /// The batch function failed; every caller in that batch gets the same error.
    #[error("the batch call failed: {0}")]
    Failed(Arc<E>),
    /// The batch function returned a different number of results than it was given
    /// items, so no result can be matched to its caller.
    #[error("the batch call returned {returned} results for {sent} items")]
    Mismatch {
        /// Items in the batch.
        sent: usize,
        /// Results returned.
        returned: usize,
    },
    /// The batch call panicked, or the runtime shut down before it answered.
    #[error("the batch call was lost (it panicked, or the runtime shut down)")]
    Lost,
}

impl<E> Clone for BatchError<E> {
    fn clone(&self) -> Self {
        match self {
            BatchError::Failed(e) => BatchError::Failed(e.clone()),
            BatchError::Mismatch { sent, returned } => BatchError::Mismatch {
                sent: *sent,
                returned: *returned,
            },
            BatchError::Lost => BatchError::Lost,
        }
    }
}

/// What a batcher has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchStats {
    /// Batch calls made.
    pub batches: u64,
    /// Items sent in them.
    pub items: u64,
    /// Items dropped before their batch was sent, because their caller had gone.
    pub abandoned: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    items: AtomicU64,
    abandoned: AtomicU64,
}

type Reply<O, E> = oneshot::Sender<Result<O, BatchError<E>>>;

/// Coalesces calls that arrive within a window, or up to `max_items`, into one call of
/// a batch function, and hands each caller its own result: e.g. many single lookups
/// folded into one GraphQL query or one bulk endpoint, so they cost one request of quota.
///
/// A batch opens with its first item and is sent when it holds `max_items` or when
/// `window` has passed since that item. A caller who stops waiting (its future dropped)
/// before its batch is sent is left out of it. Batch calls run on spawned tasks, at most
/// `concurrency` at once (1 unless told); while they are all busy, new items wait in a
/// queue of `max_items`, so callers feel back-pressure instead of memory growing.
/// The batcher's task ends when the last handle is dropped, after sending what is queued.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use rate_gate::Batcher;
///
/// // One "bulk" call squares many numbers at once.
/// let squares = Batcher::builder()
///     .max_items(100)
///     .window(Duration::from_millis(5))
///     .spawn(|xs: Vec<u64>| async move { Ok::<_, std::io::Error>(xs.iter().map(|x| x * x).collect()) })
///     .unwrap();
/// let (a, b) = tokio::join!(squares.call(3), squares.call(4));
/// assert_eq!((a.unwrap(), b.unwrap()), (9, 16));
/// assert_eq!(squares.stats().batches, 1);
/// # }
/// ```
#[derive(Debug)]
pub struct Batcher<I, O, E> {
    queue: mpsc::Sender<(I, Reply<O, E>)>,
    counters: Arc<Counters>,
}

impl<I, O, E> Clone for Batcher<I, O, E> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
            counters: self.counters.clone(),
        }
    }
}

/// Builds a [`Batcher`].
#[derive(Debug, Clone, Copy)]
pub struct BatcherBuilder {
    max_items: usize,
    window: Duration,
    concurrency: usize,
}

impl Default for BatcherBuilder {
    fn default() -> Self {
        BatcherBuilder {
            max_items: 100,
            window: Duration::from_millis(10),
            concurrency: 1,
        }
    }
}

/// The longest batch window kept as given: 100 years.
const LONGEST_WINDOW: Duration = Duration::from_secs(100 * 365 * 86_400);

impl BatcherBuilder {
    /// At most this many items per batch (at least 1, at most tokio's
    /// `Semaphore::MAX_PERMITS`, which the queue of callers counts in; default 100).
    /// `usize::MAX` for "no limit" is taken as that most (it once panicked `spawn`).
    pub fn max_items(mut self, max: usize) -> Self {
        self.max_items = max.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How long a batch stays open after its first item (default 10 ms). Longer than
    /// 100 years (`Duration::MAX`, say) is taken as 100 years: added to the clock's
    /// reading it would overflow (it once panicked the batching task).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window.min(LONGEST_WINDOW);
        self
    }

    /// Batch calls in flight at once (at least 1, at most tokio's
    /// `Semaphore::MAX_PERMITS`; default 1).
    pub fn concurrency(mut self, max: usize) -> Self {
        self.concurrency = max.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// Starts the batcher's task on the current tokio runtime. `batch` gets the items in
    /// arrival order and returns one result per item, in the same order. Fails with
    /// [`Error::NoRuntime`](crate::Error::NoRuntime) outside a runtime.
    pub fn spawn<I, O, E, F, Fut>(self, batch: F) -> crate::Result<Batcher<I, O, E>>
    where
        I: Send + 'static,
        O: Send + 'static,
        E: Send + Sync + 'static,
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, E>> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| crate::Error::NoRuntime)?;
        let (queue, rx) = mpsc::channel(self.max_items);
        let counters = Arc::new(Counters::default());
        runtime.spawn(run(self, rx, Arc::new(batch), counters.clone()));
        Ok(Batcher { queue, counters })
    }
}

impl Batcher<(), (), ()> {
    /// Settings for a batcher, with defaults; [`BatcherBuilder::spawn`] starts it (the
    /// item, output and error types come from the batch function).
    pub fn builder() -> BatcherBuilder {
        BatcherBuilder::default()
    }
}

impl<I, O, E> Batcher<I, O, E> {
    /// Adds `item` to the open batch and waits for its own result. Dropping this future
    /// before the batch is sent takes the item out of it.
    pub async fn call(&self, item: I) -> Result<O, BatchError<E>> {
        let (reply, answer) = oneshot::channel();
        if self.queue.send((item, reply)).await.is_err() {
            return Err(BatchError::Lost);
        }
        answer.await.unwrap_or(Err(BatchError::Lost))
    }

    /// What the batcher has done so far.
    pub fn stats(&self) -> BatchStats {
        let c = &self.counters;
        BatchStats {
            batches: c.batches.load(Ordering::Relaxed),
            items: c.items.load(Ordering::Relaxed),
            abandoned: c.abandoned.load(Ordering::Relaxed),
        }
    }
}

async fn run<I, O, E, F, Fut>(
    settings: BatcherBuilder,
    mut rx: mpsc::Receiver<(I, Reply<O, E>)>,
    batch: Arc<F>,
    counters: Arc<Counters>,
) where
    I: Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
    F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<O>, E>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    let mut calls = JoinSet::new();
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        let closes = Instant::now() + settings.window;
        while pending.len() < settings.max_items {
            tokio::select! {
                biased;
                next = rx.recv() => match next {
                    Some(next) => pending.push(next),
                    None => break,
                },
                _ = tokio::time::sleep_until(closes) => break,
            }
        }
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the batcher never closes its semaphore");
        // Callers who gave up while the batch filled or waited for a slot are left out.
        let before = pending.len();
        pending.retain(|(_, reply)| !reply.is_closed());
        let abandoned = (before - pending.len()) as u64;
        counters.abandoned.fetch_add(abandoned, Ordering::Relaxed);
        if pending.is_empty() {
            continue;
        }
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters
            .items
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        let (items, replies): (Vec<I>, Vec<Reply<O, E>>) = pending.into_iter().unzip();
        let batch = batch.clone();
        calls.spawn(async move {
            let _slot = slot;
            // A panic here drops `replies`: each caller sees `Lost`.
            let outcome = batch(items).await;
            answer(outcome, replies);
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
}

fn answer<O, E>(outcome: Result<Vec<O>, E>, replies: Vec<Reply<O, E>>) {
    match outcome {
        Ok(results) if results.len() == replies.len() => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Ok(results) => {
            let error = BatchError::Mismatch {
                sent: replies.len(),
                returned: results.len(),
            };
            tracing::warn!(
                sent = replies.len(),
                returned = results.len(),
                "rate-gate: batch result count mismatch"
            );
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            let error = Arc::new(error);
            for reply in replies {
                let _ = reply.send(Err(BatchError::Failed(error.clone())));
            }
        }
    }
}
