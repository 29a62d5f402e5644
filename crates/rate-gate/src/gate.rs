//! The gate: rate and concurrency in one FIFO `acquire`, bounded by the server's word.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::quota::Gcra;
use crate::{Feedback, Quota, Result};

/// How long to pause on a rate-limit refusal that gives no `Retry-After` (GitHub's
/// advice for secondary limits: wait at least a minute).
pub const DEFAULT_REFUSAL_PAUSE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct State {
    gcra: Option<Gcra>,
    /// No request before this instant (Retry-After, a refusal, Remaining: 0).
    paused_until: Option<Instant>,
    /// The server's budget: requests left until the instant.
    server: Option<(u64, Instant)>,
}

impl State {
    /// Takes `n` at `now`, or says how long until it might be possible.
    fn try_take(&mut self, n: u32, now: Instant) -> Result<Result<(), Duration>> {
        if let Some(until) = self.paused_until {
            if until > now {
                return Ok(Err(until - now));
            }
            self.paused_until = None;
        }
        if let Some((left, reset)) = self.server {
            if reset <= now {
                self.server = None;
            } else if left < n as u64 {
                return Ok(Err(reset - now));
            }
        }
        if let Some(gcra) = self.gcra.as_mut() {
            if let Err(wait) = gcra.take(n, now)? {
                return Ok(Err(wait));
            }
        }
        if let Some((left, _)) = self.server.as_mut() {
            *left -= n as u64;
        }
        Ok(Ok(()))
    }
}

#[derive(Debug, Default)]
struct Counters {
    granted: AtomicU64,
    waited: AtomicU64,
    wait_ns: AtomicU64,
    rejected: AtomicU64,
}

/// What a gate has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Permits granted.
    pub granted: u64,
    /// Acquisitions that had to wait.
    pub waited: u64,
    /// Total time spent waiting.
    pub total_wait: Duration,
    /// `try_acquire` refusals and impossible requests.
    pub rejected: u64,
    /// Concurrency permits held now.
    pub in_flight: u64,
    /// Time left of a pause the server imposed, if any.
    pub paused_for: Option<Duration>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// The head of the line: waiters queue here in arrival order (tokio's mutex is
    /// FIFO); only the head sleeps on the clock.
    line: tokio::sync::Mutex<()>,
    changed: Notify,
    concurrency: Option<(Arc<Semaphore>, u32)>,
    counters: Counters,
}

/// Rate and concurrency limits in one `acquire`: a quota (GCRA), an optional cap on
/// requests in flight, and the server's own word ([`Gate::observe`]). Waiters are served
/// first come, first served; a cancelled waiter takes no quota and holds up nobody.
/// Clones share the gate.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), rate_gate::Error> {
/// use rate_gate::{Gate, Quota};
///
/// let gate = Gate::builder().quota(Quota::per_hour(5000)).concurrency(100).build();
/// let permit = gate.acquire().await?; // waits its turn, takes one request of quota
/// // ... send the request; on the response: permit.observe(Feedback::from_headers(..))
/// drop(permit); // frees the concurrency slot (also on panic or cancellation)
/// assert_eq!(gate.stats().granted, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

/// Builds a [`Gate`].
#[derive(Debug, Default, Clone, Copy)]
pub struct GateBuilder {
    quota: Option<Quota>,
    concurrency: Option<u32>,
}

impl GateBuilder {
    /// The rate limit.
    pub fn quota(mut self, quota: Quota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// At most `max` permits held at once (at least 1).
    pub fn concurrency(mut self, max: u32) -> Self {
        self.concurrency = Some(max.max(1));
        self
    }

    /// The gate.
    pub fn build(&self) -> Gate {
        let now = Instant::now();
        Gate {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    gcra: self.quota.map(|q| Gcra::new(q, now)),
                    paused_until: None,
                    server: None,
                }),
                line: tokio::sync::Mutex::new(()),
                changed: Notify::new(),
                concurrency: self
                    .concurrency
                    .map(|n| (Arc::new(Semaphore::new(n as usize)), n)),
                counters: Counters::default(),
            }),
        }
    }
}

/// Leave to send `n` requests: holds a concurrency slot until dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Gate,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Permit {
    /// Reports the response's rate-limit feedback; this permit's own request is not
    /// counted among those still in flight.
    pub fn observe(&self, feedback: Feedback) {
        self.gate.observe_with(feedback, 1);
    }
}

impl Gate {
    /// A gate with no limits yet: see [`Gate::builder`].
    pub fn builder() -> GateBuilder {
        GateBuilder::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for one permit: a concurrency slot, then its turn at the quota.
    pub async fn acquire(&self) -> Result<Permit> {
        self.acquire_n(1).await
    }

    /// Waits for `n` permits of quota at once (one concurrency slot). Fails at once if
    /// `n` is over the burst, since it could never be granted.
    pub async fn acquire_n(&self, n: u32) -> Result<Permit> {
        // Refuse the impossible before queueing.
        if let Some(gcra) = self.state().gcra.as_ref() {
            let burst = gcra.quota().burst_size();
            if n > burst {
                self.inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(crate::Error::OverBurst {
                    requested: n,
                    burst,
                });
            }
        }
        let started = Instant::now();
        // 1. A concurrency slot (FIFO), so nobody holds quota while waiting for one.
        let slot = match &self.inner.concurrency {
            Some((semaphore, _)) => Some(
                semaphore
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the gate never closes its semaphore"),
            ),
            None => None,
        };
        // 2. The head of the line (FIFO). Dropped on cancellation: the next waiter moves up.
        let _head = self.inner.line.lock().await;
        loop {
            let changed = self.inner.changed.notified();
            let outcome = self.state().try_take(n, Instant::now())?;
            match outcome {
                Ok(()) => break,
                Err(wait) => {
                    // One timer, woken early if the quota or a pause changes.
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = changed => {}
                    }
                }
            }
        }
        let counters = &self.inner.counters;
        counters.granted.fetch_add(n as u64, Ordering::Relaxed);
        let waited = started.elapsed();
        if !waited.is_zero() {
            counters.waited.fetch_add(1, Ordering::Relaxed);
            counters
                .wait_ns
                .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        }
        Ok(Permit {
            gate: self.clone(),
            _slot: slot,
        })
    }

    /// A permit now, or how long until one could be had. Never jumps ahead of waiters:
    /// while anyone waits, it refuses.
    pub fn try_acquire(&self) -> Result<Permit, Duration> {
        let refuse = |wait| {
            self.inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
            Err(wait)
        };
        let Ok(_head) = self.inner.line.try_lock() else {
            return refuse(Duration::ZERO);
        };
        let slot = match &self.inner.concurrency {
            Some((semaphore, _)) => match semaphore.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => return refuse(Duration::ZERO),
            },
            None => None,
        };
        match self.state().try_take(1, Instant::now()) {
            Ok(Ok(())) => {}
            Ok(Err(wait)) => return refuse(wait),
            Err(_) => return refuse(Duration::MAX),
        }
        self.inner.counters.granted.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            gate: self.clone(),
            _slot: slot,
        })
    }

    /// Changes the quota at runtime; waiters re-evaluate at once.
    pub fn set_quota(&self, quota: Quota) {
        let now = Instant::now();
        let mut state = self.state();
        match state.gcra.as_mut() {
            Some(gcra) => gcra.set_quota(quota, now),
            None => state.gcra = Some(Gcra::new(quota, now)),
        }
        drop(state);
        self.inner.changed.notify_waiters();
    }

    /// Takes the server's word: never more requests than it said remain before its
    /// reset (counting requests already in flight against it), and no request at all
    /// during a `Retry-After` or after a refusal ([`DEFAULT_REFUSAL_PAUSE`] when it
    /// gives no time). Applies to every waiter.
    pub fn observe(&self, feedback: Feedback) {
        self.observe_with(feedback, 0);
    }

    fn observe_with(&self, feedback: Feedback, own: u64) {
        let now = Instant::now();
        let in_flight = self.in_flight().saturating_sub(own);
        let mut state = self.state();
        let mut pause = feedback.retry_after.map(|d| now + d);
        if feedback.limited && pause.is_none() {
            pause = Some(now + feedback.reset_in.unwrap_or(DEFAULT_REFUSAL_PAUSE));
        }
        if let (Some(remaining), Some(reset_in)) = (feedback.remaining, feedback.reset_in) {
            let left = remaining.saturating_sub(in_flight);
            let reset = now + reset_in;
            // A late response for the same window (responses arrive out of order) never
            // raises what is left; a new window replaces the old.
            state.server = match state.server {
                Some((old, old_reset)) if old_reset > now && old_reset >= reset && old <= left => {
                    Some((old, old_reset))
                }
                _ => Some((left, reset)),
            };
        }
        if let Some(until) = pause {
            state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
            tracing::warn!(
                pause_ms = (until - now).as_millis() as u64,
                "rate-gate: server asked to pause"
            );
        }
        drop(state);
        self.inner.changed.notify_waiters();
    }

    /// `true` when this gate is indistinguishable from a new one built the same way:
    /// nobody else holds it (no clone, no permit), its quota has refilled and no server
    /// pause or budget stands. Evicting such a gate loses nothing.
    pub(crate) fn is_pristine(&self, now: Instant) -> bool {
        if Arc::strong_count(&self.inner) != 1 {
            return false;
        }
        let state = self.state();
        state.paused_until.is_none_or(|u| u <= now)
            && state.server.is_none_or(|(_, reset)| reset <= now)
            && state.gcra.as_ref().is_none_or(|g| g.is_full(now))
    }

    fn in_flight(&self) -> u64 {
        match &self.inner.concurrency {
            Some((semaphore, max)) => {
                (*max as u64).saturating_sub(semaphore.available_permits() as u64)
            }
            None => 0,
        }
    }

    /// What the gate has done so far.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let now = Instant::now();
        let paused_for = self
            .state()
            .paused_until
            .filter(|u| *u > now)
            .map(|u| u - now);
        Stats {
            granted: c.granted.load(Ordering::Relaxed),
            waited: c.waited.load(Ordering::Relaxed),
            total_wait: Duration::from_nanos(c.wait_ns.load(Ordering::Relaxed)),
            rejected: c.rejected.load(Ordering::Relaxed),
            in_flight: self.in_flight(),
            paused_for,
        }
    }
}
