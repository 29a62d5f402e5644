//! The gate: rate and concurrency in one FIFO `acquire`, bounded by the server's word.
//!
//! The quota is GCRA on one 64-bit atomic, the ledger's `word`: the theoretical arrival
//! time of the next request in nanoseconds since the gate was built (its low 60 bits),
//! and the count of permits granted modulo 16 (its high 4 bits). A grant is one
//! compare-and-swap on it; one grant in 16 then adds the carry to a second counter
//! beside it (the two alone on their cache lines), so `try_acquire` takes no lock and,
//! most of the time, one atomic read-modify-write while the server has imposed nothing.
//! (The count once had its own word, added to on every grant: that add cost as much as
//! the compare-and-swap. The two once shared one 128-bit word; its load and
//! compare-and-swap cost about twice a 64-bit pair on x86_64.) A server pause or
//! budget raises the `restricted` flag and every take goes through the `state` mutex
//! until it lapses. That flag, a count of queued acquirers and whether the gate has a
//! concurrency cap or Redis share one word (`Detours`), so `try_acquire` learns with
//! one load that nothing sends it off the lock-free path. The quota itself is read
//! through a sequence lock, so a runtime change is never seen half-made.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{Clock, Source};
use crate::slots::Slots;
use crate::{Error, Feedback, Quota, Result};

/// How long to pause on a rate-limit refusal that gives no `Retry-After` (GitHub's
/// advice for secondary limits: wait at least a minute).
pub const DEFAULT_REFUSAL_PAUSE: Duration = Duration::from_secs(60);

/// What the server imposed; times in nanoseconds on the gate's clock.
#[derive(Debug, Default)]
struct Imposed {
    /// No request before this time (Retry-After, a refusal).
    paused_until: Option<u64>,
    /// The server's budget: requests left until the time.
    server: Option<(u64, u64)>,
    /// The lowest `X-RateLimit-Remaining` seen in the server's current window, and that
    /// window's reset.
    server_seen: Option<(u64, u64)>,
    /// The configured quota, for readers (the hot path reads `Rates`).
    quota: Option<Quota>,
}

impl Imposed {
    fn is_empty(&self) -> bool {
        self.paused_until.is_none() && self.server.is_none()
    }
}

/// The quota in nanoseconds, behind a sequence lock (writers hold `Inner::state`).
#[derive(Debug, Default)]
struct Rates {
    seq: AtomicU64,
    /// Nanoseconds between requests at the sustained rate; 0 means no quota.
    interval: AtomicU64,
    burst: AtomicU32,
    /// `interval` times `burst` (saturating): how far ahead of now the theoretical
    /// arrival time may run. Kept so that a grant needs no multiplication.
    tolerance: AtomicU64,
}

/// One consistent reading of [`Rates`].
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    interval: u64,
    burst: u32,
    tolerance: u64,
}

impl Rates {
    /// A consistent reading, or `None` while a writer is mid-change.
    #[inline]
    fn read(&self) -> Option<Rate> {
        let seq = self.seq.load(Ordering::Acquire);
        if seq & 1 == 1 {
            return None;
        }
        let rate = Rate {
            interval: self.interval.load(Ordering::Relaxed),
            burst: self.burst.load(Ordering::Relaxed),
            tolerance: self.tolerance.load(Ordering::Relaxed),
        };
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == seq).then_some(rate)
    }

    /// Writes a new quota and returns what it wrote; the caller holds `Inner::state`,
    /// so writers never overlap.
    fn write(&self, quota: Option<Quota>) -> Rate {
        let (interval, burst) = quota.map_or((0, 0), |q| {
            let ns = u64::try_from(q.emission_interval().as_nanos()).unwrap_or(u64::MAX);
            (ns.max(1), q.burst_size())
        });
        let rate = Rate {
            interval,
            burst,
            tolerance: interval.saturating_mul(u64::from(burst)),
        };
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.interval.store(rate.interval, Ordering::Relaxed);
        self.burst.store(rate.burst, Ordering::Relaxed);
        self.tolerance.store(rate.tolerance, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
        rate
    }
}

/// What one attempt to take quota found.
pub(crate) enum Take {
    Granted,
    /// Nanoseconds until it might be possible.
    Wait(u64),
    /// More than the burst: never possible.
    OverBurst(u32),
}

#[derive(Debug, Default)]
struct Counters {
    waited: AtomicU64,
    wait_ns: AtomicU64,
    rejected: AtomicU64,
}

/// What a gate has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Permits granted (an `acquire_n(n)` counts `n`). Exact once the grants under way
    /// have returned; read while other threads are granted permits, it may be off by up
    /// to 15 per such thread (the grant and its count's carry are two steps).
    pub granted: u64,
    /// Acquisitions that had to wait.
    pub waited: u64,
    /// Total time spent waiting.
    pub total_wait: Duration,
    /// `try_acquire` refusals and impossible requests.
    pub rejected: u64,
    /// Concurrency permits held now.
    pub in_flight: u64,
    /// The concurrency limit now: the configured one, or below it while an
    /// [adaptive](GateBuilder::adaptive) gate has backed off. `None` without one.
    pub concurrency: Option<u32>,
    /// Time left of a pause the server imposed, if any.
    pub paused_for: Option<Duration>,
    /// The Redis backend's figures, for a gate built with one.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub redis: Option<crate::RedisStats>,
}

/// What every grant writes, alone on its cache lines (128 bytes: x86 fetches lines in
/// pairs): the fields every take only reads (the quota, the flags) would otherwise
/// share a line with it, and two threads taking at once would each miss on them after
/// the other's write.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Ledger {
    /// GCRA's theoretical arrival time in ns on `clock` (the low 60 bits), and above it
    /// the permits granted modulo 16.
    word: AtomicU64,
    /// Permits granted, less the count in `word`: the carries out of it, and the grants
    /// of a gate without a quota (which never touch `word`).
    carried: AtomicU64,
}

/// Where the grant count starts in `Ledger::word`. It sits above the arrival time so
/// that a grant's new word is the new time with the count or-ed in: no shift between
/// the clock's reading and the compare-and-swap.
const COUNT_SHIFT: u32 = 60;
/// The latest theoretical arrival time `Ledger::word` holds: 2^60 ns, 36 years after
/// the gate was built. No grant is allowed past it (a gate 36 years old refuses: never
/// over the quota), and a quota change that would move the time later keeps this.
const TAT_MAX: u64 = (1 << COUNT_SHIFT) - 1;
/// One more than the largest count `Ledger::word` holds.
const COUNT_WRAP: u64 = 1 << (64 - COUNT_SHIFT);

impl Ledger {
    /// The theoretical arrival time.
    fn tat(&self) -> u64 {
        self.word.load(Ordering::Acquire) & TAT_MAX
    }

    /// Sets the theoretical arrival time where `f` says, keeping the count.
    fn update_tat(&self, f: impl Fn(u64) -> Option<u64>) {
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |word| {
                f(word & TAT_MAX).map(|tat| tat.min(TAT_MAX) | (word & !TAT_MAX))
            });
    }

    /// Permits granted. Exact once the grants under way have returned; while others
    /// grant, a reading may miss (or count ahead) up to 15 per granting thread, for the
    /// moment between a grant's compare-and-swap and its carry.
    fn granted(&self) -> u64 {
        let count = self.word.load(Ordering::Acquire) >> COUNT_SHIFT;
        self.carried.load(Ordering::Acquire) + count
    }
}

#[derive(Debug)]
struct Inner {
    /// The two words every grant writes, on a line of their own.
    ledger: Ledger,
    rates: Rates,
    /// What sends a take off the lock-free path, in one word for `try_acquire` to read.
    detours: Detours,
    state: Mutex<Imposed>,
    /// The head of the line holds a concurrency slot while it waits for quota: that
    /// slot is not a request in flight.
    head_slot: AtomicBool,
    /// The head of the line: waiters queue here in arrival order (tokio's mutex is
    /// FIFO); only the head sleeps on the clock.
    line: tokio::sync::Mutex<()>,
    changed: Notify,
    concurrency: Option<Slots>,
    counters: Counters,
    clock: Source,
    /// The quota it was built with: a gate whose quota was changed since is not
    /// pristine (evicting it would forget the change).
    built_quota: Option<Quota>,
    /// The shared ledger, for a gate kept in Redis.
    #[cfg(feature = "redis")]
    remote: Option<std::sync::Arc<crate::shared::Remote>>,
    /// Its name, in metrics and logs.
    name: std::sync::Arc<str>,
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
    inner: std::sync::Arc<Inner>,
}

/// Builds a [`Gate`].
#[derive(Debug, Default, Clone)]
pub struct GateBuilder {
    quota: Option<Quota>,
    concurrency: Option<u32>,
    adaptive: bool,
    clock: Clock,
    name: Option<std::sync::Arc<str>>,
    #[cfg(feature = "redis")]
    redis: Option<crate::RedisQuota>,
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

    /// Makes the concurrency limit adaptive (AIMD, as TCP's congestion window): each
    /// rate-limit refusal ([`Feedback::limited`]: a 429, a secondary limit) halves it,
    /// at least 1, once per round of requests (a refusal to a request sent before the
    /// last cut does not cut again); each limit's worth of answers that were not
    /// refusals raises it by one, back up to the configured `concurrency`. Every
    /// caller of the gate shares it, so a server that allows fewer requests in flight
    /// than configured is met at its level instead of refusing a burst after every
    /// pause. Needs a [`concurrency`](Self::concurrency); [`Stats::concurrency`] shows
    /// the limit now.
    pub fn adaptive(mut self) -> Self {
        self.adaptive = true;
        self
    }

    /// Where the gate reads the time ([`Clock::Auto`] unless told: the CPU's counter,
    /// or tokio's clock where it is paused).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps the quota in Redis, shared by every gate built with the same key on any
    /// process or machine, with the server's word (pauses, budgets) shared too. The
    /// gate's API is unchanged; concurrency stays per process. Needs a
    /// [`quota`](Self::quota); without one the gate stays local.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, shared: crate::RedisQuota) -> Self {
        self.redis = Some(shared);
        self
    }

    /// The gate's name, for its metrics label (`gate="..."`, feature `metrics`) and
    /// [`Gate::name`]. `"default"` unless set.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The gate.
    pub fn build(&self) -> Gate {
        #[cfg(feature = "redis")]
        let remote =
            match (&self.redis, self.quota) {
                (Some(shared), Some(quota)) => Some(std::sync::Arc::new(
                    crate::shared::Remote::new(shared.clone(), quota, self.clock),
                )),
                (Some(_), None) => {
                    tracing::warn!("rate-gate: a Redis backend without a quota is ignored");
                    None
                }
                _ => None,
            };
        // With Redis, the ledger is there; locally only the server's word applies.
        #[cfg(feature = "redis")]
        let local_quota = if remote.is_some() { None } else { self.quota };
        #[cfg(not(feature = "redis"))]
        let local_quota = self.quota;
        let rates = Rates::default();
        rates.write(local_quota);
        #[cfg(feature = "redis")]
        let fixed = self.concurrency.is_some() || remote.is_some();
        #[cfg(not(feature = "redis"))]
        let fixed = self.concurrency.is_some();
        let gate = Gate {
            inner: std::sync::Arc::new(Inner {
                ledger: Ledger::default(),
                rates,
                detours: Detours::new(fixed),
                state: Mutex::new(Imposed {
                    quota: self.quota,
                    ..Imposed::default()
                }),
                head_slot: AtomicBool::new(false),
                line: tokio::sync::Mutex::new(()),
                changed: Notify::new(),
                concurrency: self.concurrency.map(|n| Slots::new(n, self.adaptive)),
                counters: Counters::default(),
                clock: Source::new(self.clock),
                built_quota: self.quota,
                #[cfg(feature = "redis")]
                remote,
                name: self.name.clone().unwrap_or_else(|| "default".into()),
            }),
        };
        #[cfg(feature = "metrics")]
        {
            let inner: std::sync::Arc<dyn crate::metrics::Source> = gate.inner.clone();
            crate::metrics::register(std::sync::Arc::downgrade(&inner));
        }
        gate
    }
}

/// Leave to send a request: holds a concurrency slot until dropped (on panic and
/// cancellation too). [`Gate::acquire`] borrows the gate; [`Gate::acquire_owned`] gives
/// a `Permit<'static>` to move into a task.
#[derive(Debug)]
pub struct Permit<'a> {
    gate: Cow<'a, Gate>,
    holds_slot: bool,
    /// The adaptive limit's epoch when the slot was taken.
    epoch: u64,
}

impl Permit<'_> {
    /// Reports the response's rate-limit feedback; this permit's own request is not
    /// counted among those still in flight. On an [adaptive](GateBuilder::adaptive)
    /// gate, a refusal cuts the concurrency limit (once for all requests sent before
    /// the cut) and any other answer counts towards raising it.
    pub fn observe(&self, feedback: Feedback) {
        self.gate
            .observe_with(feedback, u64::from(self.holds_slot), self.epoch);
    }

    /// The gate this permit came from.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Gives the concurrency slot back: out of line, so that dropping a permit that
    /// holds none (a gate without a concurrency limit) stays a few inlined instructions.
    /// (Inlined, the semaphore's code made the compiler call the permit's whole drop out
    /// of line: `try_acquire` measured 1.12x governor's `check` then, 1.085x now.)
    #[inline(never)]
    fn give_back_slot(&self) {
        if let Some(slots) = &self.gate.inner.concurrency {
            slots.give_back();
        }
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.holds_slot {
            self.give_back_slot();
        }
    }
}

/// A concurrency slot taken but not yet handed to a permit: given back if dropped.
struct Slot<'a>(Option<&'a Slots>);

impl Slot<'_> {
    #[inline]
    fn into_permit<'g>(mut self, gate: Cow<'g, Gate>) -> Permit<'g> {
        let epoch = self.0.map_or(0, Slots::epoch);
        let holds_slot = self.0.take().is_some();
        Permit {
            gate,
            holds_slot,
            epoch,
        }
    }
}

impl Drop for Slot<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(slots) = self.0 {
            slots.give_back();
        }
    }
}

/// Marks the head's slot as not in flight while it sleeps; cleared on drop.
struct HeadSlot<'a>(&'a AtomicBool);

impl HeadSlot<'_> {
    fn set(&self, waiting: bool) {
        self.0.store(waiting, Ordering::SeqCst);
    }
}

impl Drop for HeadSlot<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// What sends a take off the lock-free path, in one word, so that `try_acquire`'s
/// common case asks with one load: whether the server imposed something (the take
/// then goes through the `state` mutex), whether the gate has a concurrency cap or
/// Redis (fixed when it is built), and how many acquirers are queued (`try_acquire`
/// never jumps ahead of them).
#[derive(Debug)]
struct Detours(AtomicUsize);

impl Detours {
    /// Set while anything in `state` is imposed.
    const RESTRICTED: usize = 1;
    /// A concurrency cap or Redis: never cleared.
    const FIXED: usize = 2;
    /// One queued acquirer (the count takes the bits above the flags).
    const WAITER: usize = 4;

    fn new(fixed: bool) -> Self {
        Detours(AtomicUsize::new(if fixed { Self::FIXED } else { 0 }))
    }

    /// Nothing to detour for: no waiter, nothing imposed, no cap or Redis.
    #[inline(always)]
    fn none(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }

    /// Anyone queued.
    #[inline]
    fn waiting(&self) -> bool {
        self.0.load(Ordering::SeqCst) >= Self::WAITER
    }

    /// Anything imposed.
    #[inline]
    fn restricted(&self) -> bool {
        self.0.load(Ordering::Acquire) & Self::RESTRICTED != 0
    }

    /// Raises or lowers the flag; the caller holds `Inner::state`, under which alone
    /// the flag changes, so lowering one that is down writes nothing.
    fn set_restricted(&self, on: bool) {
        if on {
            self.0.fetch_or(Self::RESTRICTED, Ordering::AcqRel);
        } else if self.restricted() {
            self.0.fetch_and(!Self::RESTRICTED, Ordering::AcqRel);
        }
    }

    /// One more acquirer queued.
    fn enqueue(&self) {
        self.0.fetch_add(Self::WAITER, Ordering::SeqCst);
    }

    /// One acquirer fewer queued.
    fn dequeue(&self) {
        self.0.fetch_sub(Self::WAITER, Ordering::SeqCst);
    }
}

/// Counts a queued acquirer for as long as it is queued (cancellation included).
struct Queued<'a>(&'a Detours);

impl<'a> Queued<'a> {
    fn new(detours: &'a Detours) -> Self {
        detours.enqueue();
        Queued(detours)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.dequeue();
    }
}

impl Gate {
    /// A gate with no limits yet: see [`Gate::builder`].
    pub fn builder() -> GateBuilder {
        GateBuilder::default()
    }

    fn state(&self) -> MutexGuard<'_, Imposed> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The quota now, if any.
    pub fn quota(&self) -> Option<Quota> {
        self.state().quota
    }

    /// GCRA on the ledger with a consistent [`Rate`]; the grant is counted in
    /// the same compare-and-swap.
    #[inline(always)]
    fn take_quota(&self, n: u32, now: u64, rate: Rate) -> Take {
        let Rate {
            interval,
            burst,
            tolerance,
        } = rate;
        let ledger = &self.inner.ledger;
        if interval == 0 {
            ledger.carried.fetch_add(u64::from(n), Ordering::Relaxed);
            return Take::Granted;
        }
        if n > burst {
            return Take::OverBurst(burst);
        }
        let step = interval.saturating_mul(u64::from(n));
        // Capped so that a time allowed is one the word holds.
        let horizon = now.saturating_add(tolerance).min(TAT_MAX);
        let mut word = ledger.word.load(Ordering::Relaxed);
        loop {
            let next = (word & TAT_MAX).max(now).saturating_add(step);
            if next > horizon {
                return Take::Wait(next - horizon);
            }
            let count = (word >> COUNT_SHIFT) + u64::from(n);
            let new = next | ((count % COUNT_WRAP) << COUNT_SHIFT);
            match ledger
                .word
                .compare_exchange_weak(word, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if count >= COUNT_WRAP {
                        ledger
                            .carried
                            .fetch_add(count - count % COUNT_WRAP, Ordering::Relaxed);
                    }
                    return Take::Granted;
                }
                Err(seen) => word = seen,
            }
        }
    }

    /// Takes `n` at `now`, deciding with Redis when the quota lives there: the shared
    /// ledger first, then what this process learned from the server (a permit it then
    /// cannot use goes back to the local batch).
    async fn take_async(&self, n: u32, now: u64) -> Result<Take> {
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.inner.remote {
            if n > remote.burst() {
                return Ok(Take::OverBurst(remote.burst()));
            }
            return Ok(match remote.decide(n, now).await? {
                crate::shared::Decision::Granted => match self.take(n, self.inner.clock.now()) {
                    Take::Granted => Take::Granted,
                    other => {
                        remote.refund(n, now);
                        other
                    }
                },
                crate::shared::Decision::Wait(ns) => Take::Wait(ns),
            });
        }
        Ok(self.take(n, now))
    }

    /// Marks the whole burst as used at `now`: a local fallback taking over from a
    /// shared ledger starts with nothing saved up.
    #[cfg(feature = "redis")]
    pub(crate) fn spend_burst(&self, now: u64) {
        let Some(rate) = self.inner.rates.read() else {
            return;
        };
        let full = now.saturating_add(rate.tolerance);
        self.inner
            .ledger
            .update_tat(|tat| (tat < full).then_some(full));
    }

    /// Takes `n` at `now`: lock-free unless the server imposed something.
    #[inline]
    pub(crate) fn take(&self, n: u32, now: u64) -> Take {
        if !self.inner.detours.restricted()
            && let Some(rates) = self.inner.rates.read()
        {
            return self.take_quota(n, now, rates);
        }
        self.take_restricted(n, now)
    }

    /// The server's pause and budget, then the quota, under the state mutex.
    fn take_restricted(&self, n: u32, now: u64) -> Take {
        let mut state = self.state();
        if let Some(until) = state.paused_until {
            if until > now {
                return Take::Wait(until - now);
            }
            state.paused_until = None;
        }
        if let Some((left, reset)) = state.server {
            if reset <= now {
                state.server = None;
            } else if left < u64::from(n) {
                return Take::Wait(reset - now);
            }
        }
        if state.is_empty() {
            self.inner.detours.set_restricted(false);
        }
        // Writers of `rates` hold this mutex, so the read is consistent.
        let rates = self.inner.rates.read().unwrap_or_default();
        let outcome = self.take_quota(n, now, rates);
        if let (Take::Granted, Some((left, _))) = (&outcome, state.server.as_mut()) {
            *left -= u64::from(n);
        }
        outcome
    }

    fn over_burst(&self, requested: u32, burst: u32) -> Error {
        self.inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
        Error::OverBurst { requested, burst }
    }

    /// Waits for one permit: a concurrency slot, then its turn at the quota.
    pub async fn acquire(&self) -> Result<Permit<'_>> {
        self.acquire_n(1).await
    }

    /// [`Gate::acquire`] for a permit that owns a handle to the gate, to move into a task.
    pub async fn acquire_owned(&self) -> Result<Permit<'static>> {
        let permit = self.acquire_n(1).await?;
        Ok(permit.into_owned())
    }

    /// Waits for `n` permits of quota at once (one concurrency slot). Fails at once if
    /// `n` is over the burst, since it could never be granted.
    pub async fn acquire_n(&self, n: u32) -> Result<Permit<'_>> {
        // Nobody waiting and the quota allows: no queueing at all.
        match self.try_take_now(n) {
            Ok(permit) => return Ok(permit),
            Err(Err(error)) => return Err(error),
            Err(Ok(_)) => {}
        }
        let started = self.inner.clock.now();
        let _queued = Queued::new(&self.inner.detours);
        // 1. The line (FIFO). Dropped on cancellation: the next waiter moves up.
        let _head = self.inner.line.lock().await;
        // 2. At the head: a concurrency slot, so slots held are exactly the permits out
        //    (what `observe` counts as in flight), and nobody holds quota waiting for one.
        let slot = match &self.inner.concurrency {
            Some(slots) => {
                let permit = slots
                    .semaphore()
                    .acquire()
                    .await
                    .expect("the gate never closes its semaphore");
                permit.forget();
                Slot(Some(slots))
            }
            None => Slot(None),
        };
        let head_slot = HeadSlot(&self.inner.head_slot);
        // 3. The quota, on one timer. While it tries, the head's slot counts as in flight
        //    (so a grant is never missed by `observe`); while it sleeps, it does not.
        loop {
            let changed = self.inner.changed.notified();
            head_slot.set(false);
            match self.take_async(n, self.inner.clock.now()).await? {
                Take::Granted => break,
                Take::OverBurst(burst) => return Err(self.over_burst(n, burst)),
                Take::Wait(ns) => {
                    head_slot.set(true);
                    // One timer, woken early if the quota or a pause changes.
                    tokio::select! {
                        _ = self.inner.clock.sleep(ns) => {}
                        _ = changed => {}
                    }
                }
            }
        }
        let counters = &self.inner.counters;
        counters.waited.fetch_add(1, Ordering::Relaxed);
        let waited = self.inner.clock.now().saturating_sub(started);
        counters.wait_ns.fetch_add(waited, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::metrics::waited(&self.inner.name, waited as f64 / 1e9);
        drop(head_slot);
        Ok(slot.into_permit(Cow::Borrowed(self)))
    }

    /// A permit now, if nobody waits, a slot is free and the quota allows; otherwise
    /// the nanoseconds until it might be (zero for a wait on others), or the error when
    /// it never could be.
    ///
    /// Always inlined into `acquire_n`'s first try and `try_acquire`'s full path: left
    /// to the compiler it was a call, and the permit came back through memory.
    /// `try_acquire`'s common grant does not come here (see `take_one_at_once`).
    #[inline(always)]
    fn try_take_now(&self, n: u32) -> Result<Permit<'_>, Result<u64, Error>> {
        if self.inner.detours.waiting() {
            return Err(Ok(0));
        }
        let slot = match &self.inner.concurrency {
            Some(slots) => match slots.semaphore().try_acquire() {
                Ok(permit) => {
                    permit.forget();
                    Slot(Some(slots))
                }
                Err(_) => return Err(Ok(0)),
            },
            None => Slot(None),
        };
        let now = self.inner.clock.now();
        // With Redis, only a batched permit can be had without a round trip.
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.inner.remote {
            if !remote.take_credit(n, now) {
                return Err(Ok(0));
            }
            return match self.take(n, now) {
                Take::Granted => Ok(slot.into_permit(Cow::Borrowed(self))),
                Take::Wait(ns) => {
                    remote.refund(n, now);
                    Err(Ok(ns))
                }
                Take::OverBurst(burst) => Err(Err(self.over_burst(n, burst))),
            };
        }
        match self.take(n, now) {
            Take::Granted => Ok(slot.into_permit(Cow::Borrowed(self))),
            Take::Wait(ns) => Err(Ok(ns)),
            Take::OverBurst(burst) => Err(Err(self.over_burst(n, burst))),
        }
    }

    /// A permit now, or how long until one could be had (zero when the wait is for
    /// other waiters or a concurrency slot). Never jumps ahead of waiters: while anyone
    /// waits, it refuses.
    #[inline(always)]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Duration> {
        match self.take_one_at_once() {
            Some(Take::Granted) => Ok(Permit {
                gate: Cow::Borrowed(self),
                holds_slot: false,
                epoch: 0,
            }),
            Some(Take::Wait(ns)) => Err(self.refused(ns)),
            _ => self.try_acquire_slow(),
        }
    }

    /// A refusal of `try_acquire`: counted, and the wait.
    #[inline]
    fn refused(&self, ns: u64) -> Duration {
        self.inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
        Duration::from_nanos(ns)
    }

    /// The common case of [`Gate::try_acquire`], as one straight line: when nobody
    /// waits and there is no concurrency cap, no Redis and nothing imposed by the
    /// server, what the quota says to one permit now (a grant takes it). `None`: the
    /// full path decides, and reads the clock again.
    ///
    /// Always inlined, with `try_acquire` and `take_quota`, into the caller's code: left
    /// to the compiler, `try_acquire` was a call whose permit came back through memory.
    /// What could send a take elsewhere is one word ([`Detours`]), read once.
    ///
    /// Measured on the 2-core VM (2026-12-03, callgrind against a copy of the previous
    /// code in one process): with the clock's own scaling and the stored
    /// `interval * burst`, a grant went from 113 to 90 instructions; then, inlined and
    /// with the one word (built as the bench builds it, with Redis support), from 127
    /// to 87 (governor's `check`: 53).
    #[inline(always)]
    fn take_one_at_once(&self) -> Option<Take> {
        let inner = &*self.inner;
        if !inner.detours.none() {
            return None;
        }
        let now = inner.clock.now();
        let rates = inner.rates.read()?;
        Some(self.take_quota(1, now, rates))
    }

    /// The rest of [`Gate::try_acquire`]: waiters, slots, the server's word, a
    /// refusal.
    #[inline(never)]
    fn try_acquire_slow(&self) -> Result<Permit<'_>, Duration> {
        self.try_take_now(1)
            .map_err(|refusal| self.refused(refusal.unwrap_or(u64::MAX)))
    }

    /// Changes the quota at runtime, keeping what was already used: the debt is carried
    /// over, capped at one full burst of the new quota. Waiters re-evaluate at once.
    pub fn set_quota(&self, quota: Quota) {
        let now = self.inner.clock.now();
        let mut state = self.state();
        state.quota = Some(quota);
        let rate = self.inner.rates.write(Some(quota));
        let cap = now.saturating_add(rate.tolerance);
        self.inner
            .ledger
            .update_tat(|tat| (tat > cap).then_some(cap));
        drop(state);
        self.inner.changed.notify_waiters();
    }

    /// Takes the server's word: never more requests than it said remain before its
    /// reset (counting requests already in flight against it), and no request at all
    /// during a `Retry-After` or after a refusal ([`DEFAULT_REFUSAL_PAUSE`] when it
    /// gives no time). Applies to every waiter.
    pub fn observe(&self, feedback: Feedback) {
        let epoch = self.inner.concurrency.as_ref().map_or(0, Slots::epoch);
        self.observe_with(feedback, 0, epoch);
    }

    fn observe_with(&self, feedback: Feedback, own: u64, epoch: u64) {
        if let Some(slots) = &self.inner.concurrency {
            if feedback.limited {
                slots.refused(epoch);
            } else {
                slots.answered();
            }
        }
        let now = self.inner.clock.now();
        let ns = |d: Duration| now.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let in_flight = self.in_flight().saturating_sub(own);
        let mut state = self.state();
        let mut pause = feedback.retry_after.map(ns);
        if feedback.limited && pause.is_none() {
            pause = Some(ns(feedback.reset_in.unwrap_or(DEFAULT_REFUSAL_PAUSE)));
        }
        if let (Some(remaining), Some(reset_in)) = (feedback.remaining, feedback.reset_in) {
            let reset = ns(reset_in);
            // What the server said less every request still in flight (it may not have
            // counted them yet). A figure no higher than the lowest seen in this window
            // is the freshest, and replaces what is left even upwards: requests that
            // were in flight when the last one was taken, and counted by the server
            // since, are then no longer subtracted twice. A higher figure for the same
            // window is a late answer (responses cross): ignored. A new window
            // replaces the old.
            let stale = state.server_seen.is_some_and(|(lowest, old_reset)| {
                old_reset > now && old_reset >= reset && remaining > lowest
            });
            if !stale {
                state.server = Some((remaining.saturating_sub(in_flight), reset));
                state.server_seen = Some((remaining, reset));
            }
        }
        if let Some(until) = pause {
            state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
            tracing::warn!(
                pause_ms = (until - now) / 1_000_000,
                "rate-gate: server asked to pause"
            );
        }
        if !state.is_empty() {
            self.inner.detours.set_restricted(true);
        }
        drop(state);
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.inner.remote {
            remote.share(&feedback, in_flight);
        }
        self.inner.changed.notify_waiters();
    }

    /// `true` when this gate is indistinguishable from a new one built the same way:
    /// nobody else holds it (no clone, no permit), its quota is the one it was built
    /// with and has refilled, and no server pause or budget stands. Evicting such a gate
    /// loses nothing.
    pub(crate) fn is_pristine(&self) -> bool {
        if std::sync::Arc::strong_count(&self.inner) != 1 || self.in_flight() != 0 {
            return false;
        }
        let now = self.inner.clock.now();
        let state = self.state();
        state.quota == self.inner.built_quota
            && self.inner.concurrency.as_ref().is_none_or(Slots::at_max)
            && state.paused_until.is_none_or(|u| u <= now)
            && state.server.is_none_or(|(_, reset)| reset <= now)
            && self.inner.ledger.tat() <= now
    }

    /// Permits out: slots held, less the one the head holds while it waits for quota.
    fn in_flight(&self) -> u64 {
        self.inner.in_flight()
    }

    /// The name given by [`GateBuilder::name`] (`"default"` unless set).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The clock this gate reads: [`Clock::Tokio`] or [`Clock::Tsc`], the default
    /// [`Clock::Auto`] resolved when the gate was built.
    pub fn clock(&self) -> Clock {
        self.inner.clock.kind()
    }

    /// What the gate has done so far.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

impl Inner {
    /// Permits out: slots held, less the one the head holds while it waits for quota.
    fn in_flight(&self) -> u64 {
        match &self.concurrency {
            Some(slots) => slots
                .taken()
                .saturating_sub(u64::from(self.head_slot.load(Ordering::SeqCst))),
            None => 0,
        }
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        let now = self.clock.now();
        let paused_for = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .paused_until
            .filter(|u| *u > now)
            .map(|u| Duration::from_nanos(u - now));
        Stats {
            granted: self.ledger.granted(),
            waited: c.waited.load(Ordering::Relaxed),
            total_wait: Duration::from_nanos(c.wait_ns.load(Ordering::Relaxed)),
            rejected: c.rejected.load(Ordering::Relaxed),
            in_flight: self.in_flight(),
            concurrency: self.concurrency.as_ref().map(Slots::limit),
            paused_for,
            #[cfg(feature = "redis")]
            redis: self.remote.as_ref().map(|r| r.stats()),
        }
    }
}

#[cfg(feature = "metrics")]
impl crate::metrics::Source for Inner {
    fn name(&self) -> &std::sync::Arc<str> {
        &self.name
    }

    fn totals(&self) -> crate::metrics::Totals {
        let stats = self.stats();
        crate::metrics::Totals {
            granted: stats.granted,
            rejected: stats.rejected,
            waited: stats.waited,
        }
    }

    fn levels(&self) -> (u64, Option<u32>, f64) {
        let stats = self.stats();
        let paused = stats.paused_for.map_or(0.0, |d| d.as_secs_f64());
        (stats.in_flight, stats.concurrency, paused)
    }
}

#[cfg(feature = "metrics")]
impl Drop for Inner {
    fn drop(&mut self) {
        use crate::metrics::Source;
        crate::metrics::retire(&self.name, self.totals());
    }
}

impl Permit<'_> {
    /// This permit with its own handle to the gate, to move into a task.
    pub fn into_owned(mut self) -> Permit<'static> {
        let gate = self.gate.clone().into_owned();
        let holds_slot = std::mem::take(&mut self.holds_slot);
        Permit {
            gate: Cow::Owned(gate),
            holds_slot,
            epoch: self.epoch,
        }
    }
}
