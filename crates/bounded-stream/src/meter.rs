//! The accounting every adapter shares: bytes against the cap and the declared length,
//! and the time limits. One state machine, so a Stream, an `AsyncRead` and a `Body`
//! behave identically.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::{Error, Limits, OnLimit, Stage};

/// How much of a chunk may pass.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Accept {
    /// All of it.
    All,
    /// Only the first `n` bytes; the stream is then over (truncate mode).
    Prefix(usize),
}

/// The time limits of one stream, behind a single timer armed at the earliest moment
/// any of them needs a look (`due`).
///
/// The timer wakes a task waiting for bytes. With a deadline, a chunk that arrives
/// without a wait is checked against the kernel's coarse clock instead (no system
/// call): the timer alone is not enough there, since on a current-thread runtime it
/// fires only when the task yields, and a source that is always ready (a fast peer, a
/// file, a buffer) with a consumer that never yields would never let it. Measured: a
/// 50 ms deadline over such a stream let 439 ms of chunks through before this check.
/// The other limits need no clock on that path: bytes that keep coming are not idle,
/// and `min_rate` judges only windows in which the source made the stream wait. On a
/// paused tokio clock (tests) the timer is the only clock that moves, and is checked
/// instead.
///
/// The reading costs about 2.5 ns in a loop. Per chunk of a stream copied at 30 GB/s
/// one session measured it at about 3% (`pass_through_timed`: the clock read and
/// ignored, 1.051 to 1.061x uncapped, against 1.019 to 1.025x without it); a later
/// 3-run set of the same code put the whole timed path at 1.004 to 1.011x, within the
/// machine's noise.
#[derive(Debug)]
struct Timers {
    deadline: Option<(Duration, Instant)>,
    idle: Option<Idle>,
    rate: Option<Rate>,
    sleep: Pin<Box<Sleep>>,
    /// When the earliest limit needs a look: what `sleep` is set to.
    due: Instant,
    /// `due` on the coarse clock (nanoseconds, see [`coarse_ns`]); `None` without a
    /// deadline or on a paused tokio clock.
    coarse_due: Option<u64>,
}

/// Idle detection without reading the clock per chunk: every `timeout / IDLE_STEPS`
/// the timer looks whether bytes arrived since its last look. So the error comes between
/// `timeout` and `timeout * (1 + 1 / IDLE_STEPS)` after the last byte, never earlier.
#[derive(Debug)]
struct Idle {
    timeout: Duration,
    /// When progress was last seen (at most one step after the byte itself).
    last_progress: Instant,
    /// Bytes received at the last look.
    mark: u64,
    next_check: Instant,
}

const IDLE_STEPS: u32 = 4;

#[derive(Debug)]
struct Rate {
    min_bytes: u64,
    window: Duration,
    at_last_check: u64,
    /// `false` until the grace period has passed: the first checkpoint only records.
    judging: bool,
    /// The source returned `Pending` since the last checkpoint. In a window where it
    /// never did, every byte was ready when asked for: the consumer set the pace, and
    /// the peer is not judged on it.
    waited: bool,
    next_check: Instant,
}

/// Counts bytes and watches the clock for one stream.
#[derive(Debug)]
pub(crate) struct Meter {
    limits: Limits,
    stage: Stage,
    received: u64,
    declared: Option<u64>,
    truncated: bool,
    /// `None` when no time limit is set: nothing to poll, nothing allocated.
    timers: Option<Box<Timers>>,
    /// Bytes already handed to the metrics facade.
    #[cfg(feature = "metrics")]
    published: u64,
}

impl Meter {
    pub(crate) fn new(limits: &Limits, stage: Stage) -> Self {
        Meter {
            limits: limits.clone(),
            stage,
            received: 0,
            declared: None,
            truncated: false,
            timers: None,
            #[cfg(feature = "metrics")]
            published: 0,
        }
    }

    /// A limit ended the stream: counted (feature `metrics`), then returned.
    fn refused(error: Error) -> Error {
        #[cfg(feature = "metrics")]
        crate::metrics::limit_error(&error);
        error
    }

    /// Checks a declared length (Content-Length) before anything is read: over the cap
    /// is an error unless truncating; otherwise the body must then match it exactly.
    pub(crate) fn declare(&mut self, declared: u64) -> Result<(), Error> {
        if declared > self.limits.max_bytes {
            if self.limits.on_limit == OnLimit::Reject {
                return Err(Self::refused(Error::ContentLengthTooLarge {
                    limit: self.limits.max_bytes,
                    declared,
                }));
            }
            return Ok(()); // Truncating: a prefix is wanted, the length cannot match.
        }
        self.declared = Some(declared);
        Ok(())
    }

    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Bytes still allowed before the cap.
    pub(crate) fn room(&self) -> u64 {
        self.limits.max_bytes.saturating_sub(self.received)
    }

    pub(crate) fn truncated(&self) -> bool {
        self.truncated
    }

    /// Accounts for a chunk of `len` bytes if all of it is within the cap and the
    /// declared length, and says whether it did; otherwise leaves the count alone for
    /// [`Meter::accept`] to decide. The one place that lets a chunk through whole:
    /// `accept` asks it first, and `Bounded::poll_next` directly.
    #[inline]
    pub(crate) fn take_whole(&mut self, len: usize) -> bool {
        let received = self.received.saturating_add(len as u64);
        if received > self.limits.max_bytes || self.declared.is_some_and(|d| received > d) {
            return false;
        }
        #[cfg(feature = "metrics")]
        if received - self.published >= crate::metrics::FLUSH_BYTES {
            return false;
        }
        self.received = received;
        true
    }

    /// Accounts for a chunk of `len` bytes.
    pub(crate) fn accept(&mut self, len: usize) -> Result<Accept, Error> {
        if self.take_whole(len) {
            return Ok(Accept::All);
        }
        let before = self.received;
        self.received = before.saturating_add(len as u64);
        #[cfg(feature = "metrics")]
        if self.received - self.published >= crate::metrics::FLUSH_BYTES {
            self.publish();
        }
        if let Some(declared) = self.declared
            && self.received > declared
        {
            return Err(Error::ContentLengthMismatch {
                declared,
                received: self.received,
            });
        }
        if self.received > self.limits.max_bytes {
            return match self.limits.on_limit {
                OnLimit::Reject => Err(Self::refused(Error::TooLarge {
                    limit: self.limits.max_bytes,
                    received: self.received,
                    stage: self.stage,
                })),
                OnLimit::Truncate => {
                    self.truncated = true;
                    self.received = self.limits.max_bytes;
                    Ok(Accept::Prefix((self.limits.max_bytes - before) as usize))
                }
            };
        }
        Ok(Accept::All)
    }

    /// Checks the end of the stream against the declared length.
    pub(crate) fn finish(&self) -> Result<(), Error> {
        match self.declared {
            Some(declared) if self.received < declared => Err(Error::ContentLengthMismatch {
                declared,
                received: self.received,
            }),
            _ => Ok(()),
        }
    }

    /// Polls `source` under the time limits: checks them first (the per-chunk fast path,
    /// an atomic load), then polls the source, and only when it is not ready registers
    /// the timer's wake-up. `Ready(Err)` when a time limit has run out. Every adapter
    /// polls its source through here.
    pub(crate) fn poll_source<T>(
        &mut self,
        cx: &mut Context<'_>,
        source: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<Result<T, Error>> {
        if let Some(error) = self.check_time() {
            return Poll::Ready(Err(error));
        }
        match source(cx) {
            Poll::Ready(value) => Poll::Ready(Ok(value)),
            Poll::Pending => self.poll_time(cx).map(Err),
        }
    }

    /// Checks the time limits without registering a wake-up.
    fn check_time(&mut self) -> Option<Error> {
        if !self.limits.has_timers() {
            return None;
        }
        let received = self.received;
        let timers = self
            .timers
            .get_or_insert_with(|| Box::new(Timers::start(&self.limits)));
        if !timers.is_due() {
            return None;
        }
        timers.catch_up(received).map(Self::refused)
    }

    /// Registers a wake-up for the next time limit; `Ready(error)` if one has run out.
    fn poll_time(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        if !self.limits.has_timers() {
            return Poll::Pending;
        }
        let received = self.received;
        let timers = self
            .timers
            .get_or_insert_with(|| Box::new(Timers::start(&self.limits)));
        if let Some(rate) = timers.rate.as_mut() {
            rate.waited = true;
        }
        while timers.sleep.as_mut().poll(cx).is_ready() {
            if let Some(error) = timers.evaluate(Instant::now(), received) {
                return Poll::Ready(Self::refused(error));
            }
        }
        Poll::Pending
    }
}

#[cfg(feature = "metrics")]
impl Meter {
    /// Hands the bytes counted since the last time to the metrics facade.
    fn publish(&mut self) {
        // `received` only shrinks when a truncation clamps it to the cap.
        crate::metrics::bytes(self.stage, self.received.saturating_sub(self.published));
        self.published = self.received.max(self.published);
    }
}

#[cfg(feature = "metrics")]
impl Drop for Meter {
    fn drop(&mut self) {
        self.publish();
    }
}

impl Timers {
    fn start(limits: &Limits) -> Timers {
        let now = Instant::now();
        let paused = now == Instant::now();
        let mut timers = Timers {
            deadline: limits.deadline.map(|d| (d, now + d)),
            idle: limits.idle.map(|timeout| Idle {
                timeout,
                last_progress: now,
                mark: 0,
                next_check: now + timeout / IDLE_STEPS,
            }),
            rate: limits.min_rate.map(|r| Rate {
                min_bytes: r.bytes,
                window: r.window,
                at_last_check: 0,
                judging: false,
                waited: false,
                next_check: now + r.grace,
            }),
            sleep: Box::pin(tokio::time::sleep_until(now)),
            due: now,
            coarse_due: (limits.deadline.is_some() && !paused).then_some(0),
        };
        timers.rearm();
        timers
    }

    /// Whether a limit may need a look now, for a chunk that came without a wait: the
    /// coarse clock has reached `due`, or without it, the timer fired. The coarse
    /// clock lags by up to one kernel tick, by a different amount at each tick, so a
    /// look may come up to a tick early (the precise clock then finds nothing due) or a
    /// tick late; a limit never runs out early.
    #[inline]
    fn is_due(&self) -> bool {
        match self.coarse_due {
            Some(at) => coarse_ns() >= at,
            None => self.sleep.is_elapsed(),
        }
    }

    /// A look that [`Timers::is_due`] asked for: the limits evaluated at the precise
    /// time, until none is due.
    #[cold]
    fn catch_up(&mut self, received: u64) -> Option<Error> {
        loop {
            let now = Instant::now();
            if now < self.due {
                // Early by the coarse clock's changing lag: measure it again (at most
                // once a tick). Without it, the timer fired early: set it again.
                if self.coarse_due.is_some() {
                    self.sync_coarse(now);
                } else {
                    self.rearm();
                }
                return None;
            }
            if let Some(error) = self.evaluate(now, received) {
                return Some(error);
            }
            if !self.is_due() {
                return None;
            }
        }
    }

    /// The earliest moment a limit could run out.
    fn due(&self) -> Instant {
        let candidates = [
            self.deadline.map(|(_, at)| at),
            self.idle.as_ref().map(|i| i.next_check),
            self.rate.as_ref().map(|r| r.next_check),
        ];
        candidates
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }

    fn rearm(&mut self) {
        let due = self.due();
        self.due = due;
        self.sleep.as_mut().reset(due);
        if self.coarse_due.is_some() {
            self.sync_coarse(Instant::now());
        }
    }

    /// Sets `coarse_due` from `due` and the precise time `now`.
    fn sync_coarse(&mut self, now: Instant) {
        if let Some(at) = self.coarse_due.as_mut() {
            let left = u64::try_from(self.due.saturating_duration_since(now).as_nanos());
            *at = coarse_ns().saturating_add(left.unwrap_or(u64::MAX));
        }
    }

    /// The timer fired: find out which limit (if any) ran out, then re-arm.
    fn evaluate(&mut self, now: Instant, received: u64) -> Option<Error> {
        if let Some((deadline, at)) = self.deadline
            && now >= at
        {
            return Some(Error::Deadline { deadline, received });
        }
        if let Some(idle) = self.idle.as_mut()
            && now >= idle.next_check
        {
            let expires = if received != idle.mark {
                idle.mark = received;
                idle.last_progress = now;
                now + idle.timeout
            } else {
                idle.last_progress + idle.timeout
            };
            if now >= expires {
                return Some(Error::IdleTimeout {
                    timeout: idle.timeout,
                    received,
                });
            }
            idle.next_check = (now + idle.timeout / IDLE_STEPS).min(expires);
        }
        if let Some(rate) = self.rate.as_mut() {
            if now >= rate.next_check + rate.window {
                // A whole window late: the timer would have woken the task on time, so
                // the stream was not being polled (its consumer was busy elsewhere).
                // The windows it missed say nothing about the peer: start a new one.
                rate.at_last_check = received;
                rate.next_check = now + rate.window;
                rate.waited = false;
            }
            while now >= rate.next_check {
                let observed = received - rate.at_last_check;
                if rate.judging && rate.waited && observed < rate.min_bytes {
                    return Some(Error::TooSlow {
                        min_bytes: rate.min_bytes,
                        window: rate.window,
                        observed,
                        received,
                    });
                }
                rate.at_last_check = received;
                rate.judging = true;
                rate.waited = false;
                rate.next_check += rate.window;
            }
        }
        self.rearm();
        None
    }
}

/// The kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`) in nanoseconds: read
/// from the vDSO without a system call, advanced once per kernel tick (1 to 10 ms).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
#[inline]
fn coarse_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

/// Where no coarse clock is offered: `std::time::Instant` from a process-wide zero
/// (exact, and a full clock read per chunk).
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
#[inline]
fn coarse_ns() -> u64 {
    static ZERO: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let zero = *ZERO.get_or_init(std::time::Instant::now);
    u64::try_from(zero.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
