//! `Shutdown`: one signal, a deadline, then force; a report naming what was forced.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result, ScopeReport, scope};

/// The default deadline: under Kubernetes' 30 s between SIGTERM and SIGKILL, with room
/// for the forced release.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(25);

/// How long child trees still alive at the end get between SIGTERM and SIGKILL, when
/// the deadline leaves that much.
pub const DEFAULT_CHILD_GRACE: Duration = Duration::from_secs(2);

/// How long forced (aborted) async work gets to unwind, so the drops of what its scopes
/// held run before the final sweep; at most a quarter of what is left before the
/// deadline, so never past it.
const UNWIND: Duration = Duration::from_millis(500);

/// How far past the deadline the process may end, measured from outside: the forced
/// release (the unwind of forced work, the SIGKILL of child trees still alive, the
/// removal of temp entries still live) may run into its first half, and the second half
/// is left for what follows the report up to [`ShutdownReport::exit`] (18 to 28 ms in
/// `tests/signal.rs` on a 2-core VM). Everything before it takes the deadline itself as
/// its end.
pub const PAST_DEADLINE: Duration = Duration::from_millis(100);

/// How far past the deadline the forced release itself may run: half of
/// [`PAST_DEADLINE`]. A release that had run to `PAST_DEADLINE` left the process's own
/// exit after it: one stalled run of `tests/signal.rs` reported 94 ms past the deadline
/// and exited 122 ms past it.
const RELEASE_PAST: Duration = Duration::from_millis(50);

/// What started the shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Cause {
    /// SIGTERM (Kubernetes, systemd, `kill`).
    Sigterm,
    /// SIGINT (Ctrl-C).
    Sigint,
    /// [`Shutdown::trigger`] was called.
    Requested,
}

/// Why in-flight work was forced instead of waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ForcedBy {
    /// The deadline passed.
    Deadline,
    /// A second SIGTERM or SIGINT arrived.
    SecondSignal,
    /// [`Shutdown::force`] was called.
    Requested,
}

/// The kind of a tracked piece of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Kind {
    /// An operation run with [`Shutdown::run`]: forcing drops its future, which releases
    /// its scope.
    Scope,
    /// A task from [`Shutdown::spawn`]: forcing aborts it.
    Task,
    /// A closure from [`Shutdown::spawn_blocking`]: it cannot be stopped; forcing stops
    /// waiting for it.
    Blocking,
}

/// A piece of work that was still running when it was forced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ForcedWork {
    /// Its name.
    pub name: String,
    /// What kind of work.
    pub kind: Kind,
    /// How long it had been running.
    pub ran: Duration,
}

/// What a shutdown did, from the signal to the end of the forced release.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ShutdownReport {
    /// What started it.
    pub cause: Cause,
    /// `None` when all work finished within the deadline.
    pub forced_by: Option<ForcedBy>,
    /// Work in flight at the signal that finished in time, by name.
    pub finished: Vec<String>,
    /// Work that had to be forced.
    pub forced: Vec<ForcedWork>,
    /// Child process trees still alive at the end, ended by the final sweep (SIGTERM,
    /// then SIGKILL for those still alive after the grace).
    pub children_ended: usize,
    /// Of those, the trees that had to be SIGKILLed: they did not end on SIGTERM within
    /// the grace the deadline left.
    pub children_killed: usize,
    /// Temp entries still live at the end, removed by the final sweep.
    pub temp_removed: usize,
    /// What the final sweep could not do.
    pub errors: Vec<String>,
    /// From the signal to the end of the sweep.
    pub took: Duration,
}

impl ShutdownReport {
    /// `true` when everything finished in time, no child tree had to be SIGKILLed (a
    /// child that ends on the sweep's SIGTERM is a normal end), no temp entry was left
    /// for the sweep, and the sweep met no error.
    pub fn is_clean(&self) -> bool {
        self.forced_by.is_none()
            && self.forced.is_empty()
            && self.children_killed == 0
            && self.temp_removed == 0
            && self.errors.is_empty()
    }

    /// `0` when [clean](Self::is_clean), else `1`.
    pub fn exit_code(&self) -> i32 {
        if self.is_clean() { 0 } else { 1 }
    }

    /// Exits the process with [`exit_code`](Self::exit_code), without waiting for
    /// blocking threads (returning from an async `main` drops the runtime, which waits
    /// for every `spawn_blocking` closure, however long it hangs).
    pub fn exit(self) -> ! {
        tracing::info!(code = self.exit_code(), "leakproof: exiting");
        std::process::exit(self.exit_code())
    }
}

struct Work {
    name: String,
    kind: Kind,
    started: Instant,
    abort: Option<AbortHandle>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    all: usize,
    stoppable: usize,
}

struct Inner {
    deadline: Duration,
    /// Forced work is forced this long before the deadline.
    release_reserve: Duration,
    #[cfg_attr(not(all(feature = "proc", target_os = "linux")), allow(dead_code))]
    child_grace: Duration,
    begun: CancellationToken,
    /// Asked to force (deadline, second signal, `force`): `wait` snapshots what is left,
    /// then cancels `forced`, which the work watches.
    force_asked: CancellationToken,
    forced: CancellationToken,
    /// Cancelled when `wait` has run the shutdown to its end.
    ended: CancellationToken,
    cause: Mutex<Option<Cause>>,
    forced_by: Mutex<Option<ForcedBy>>,
    work: Mutex<BTreeMap<u64, Work>>,
    next: AtomicU64,
    counts: watch::Sender<Counts>,
    finished: Mutex<Vec<String>>,
    signals: AtomicBool,
    #[cfg(all(feature = "proc", target_os = "linux"))]
    reapers: Mutex<Vec<proc_reaper::Reaper>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Graceful shutdown with a deadline.
///
/// Hands out a cancellation [token](Self::token), tracks in-flight work by name
/// ([`run`](Self::run), [`spawn`](Self::spawn), [`spawn_blocking`](Self::spawn_blocking)),
/// and, once SIGTERM or SIGINT arrives (after [`install_signals`](Self::install_signals))
/// or [`trigger`](Self::trigger) is called, [`wait`](Self::wait):
///
/// 1. refuses new work ([`Error::ShuttingDown`]) and cancels the token;
/// 2. waits for the work in flight, up to the deadline (default 25 s) less its release
///    reserve (a tenth, at most 2 s: [`ShutdownBuilder::release_reserve`]);
/// 3. then forces: drops the operations' futures (which releases their scopes), aborts
///    the tasks, and stops waiting for blocking closures, which cannot be stopped;
/// 4. in every case ends the child trees still alive in the registered
///    [reapers](Self::add_reaper), all reapers at once (SIGTERM with the grace the
///    deadline leaves, then SIGKILL), and removes every live `scoped-temp` entry on
///    the blocking pool meanwhile;
/// 5. returns a [`ShutdownReport`] naming what was forced; [`ShutdownReport::exit`]
///    exits without waiting for blocking threads.
///
/// The deadline is one instant, computed when the shutdown begins: every step takes it
/// as its end, and the forced release runs in the reserve before it, so the report
/// comes at most half of [`PAST_DEADLINE`] (50 ms) after it (a release that cannot
/// finish by then is reported in [`ShutdownReport::errors`], not waited for), and a
/// process that then calls [`ShutdownReport::exit`] ends at most `PAST_DEADLINE` (100
/// ms) after it. Measured from outside with 30 SIGTERM-ignoring trees, 1,000 live temp
/// dirs and a blocking closure that never returns: see `tests/signal.rs`.
///
/// A second signal forces at once. Clones share the shutdown.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), leakproof::Error> {
/// let shutdown = leakproof::Shutdown::new();
/// shutdown.install_signals()?;
/// let worker = shutdown.clone();
/// tokio::spawn(async move {
///     let token = worker.token();
///     while !token.is_cancelled() {
///         // Refused once the shutdown has begun.
///         let Ok((_result, _report)) = worker
///             .run("index", |scope| async move {
///                 let _dir = scope.temp_dir()?;
///                 Ok::<_, leakproof::Error>(())
///             })
///             .await
///         else {
///             break;
///         };
///     }
/// });
/// shutdown.wait().await.exit();
/// # }
/// ```
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("deadline", &self.inner.deadline)
            .field("begun", &self.is_shutting_down())
            .field("in_flight", &self.inner.counts.borrow().all)
            .finish()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

/// Options for a [`Shutdown`].
#[derive(Debug, Clone)]
pub struct ShutdownBuilder {
    deadline: Duration,
    child_grace: Duration,
    release_reserve: Option<Duration>,
}

impl ShutdownBuilder {
    /// When the process is done, counted from the signal (default 25 s): work in flight
    /// runs until the deadline less the [release reserve](Self::release_reserve), is
    /// forced then, and the forced release (unwinding, child trees, temp entries) ends
    /// by the deadline, at most half of [`PAST_DEADLINE`] after it. Longer than 100 years
    /// (`Duration::MAX`, say) is taken as 100 years: added to the clock's reading it
    /// would overflow (it once panicked when the shutdown began).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline.min(crate::LONGEST_LIMIT);
        self
    }

    /// How long child trees still alive at the end get between SIGTERM and SIGKILL
    /// (default 2 s, and never past the deadline once forcing).
    pub fn child_grace(mut self, grace: Duration) -> Self {
        self.child_grace = grace.min(crate::LONGEST_LIMIT);
        self
    }

    /// How much of the deadline is kept for the forced release: work still in flight is
    /// forced this long before the deadline, so that ending child trees and removing
    /// temp entries fits before it (default a tenth of the deadline, at most 2 s; at
    /// most the deadline).
    pub fn release_reserve(mut self, reserve: Duration) -> Self {
        self.release_reserve = Some(reserve);
        self
    }

    /// The shutdown.
    pub fn build(self) -> Shutdown {
        Shutdown {
            inner: Arc::new(Inner {
                deadline: self.deadline,
                child_grace: self.child_grace,
                release_reserve: self
                    .release_reserve
                    .unwrap_or((self.deadline / 10).min(Duration::from_secs(2)))
                    .min(self.deadline),
                begun: CancellationToken::new(),
                force_asked: CancellationToken::new(),
                forced: CancellationToken::new(),
                ended: CancellationToken::new(),
                cause: Mutex::new(None),
                forced_by: Mutex::new(None),
                work: Mutex::new(BTreeMap::new()),
                next: AtomicU64::new(0),
                counts: watch::Sender::new(Counts::default()),
                finished: Mutex::new(Vec::new()),
                signals: AtomicBool::new(false),
                #[cfg(all(feature = "proc", target_os = "linux"))]
                reapers: Mutex::new(Vec::new()),
            }),
        }
    }
}

/// Removes its work from the tracked set when dropped (finished, failed, forced).
struct Tracked {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let Some(work) = lock(&self.inner.work).remove(&self.id) else {
            return;
        };
        if self.inner.begun.is_cancelled() && !self.inner.forced.is_cancelled() {
            lock(&self.inner.finished).push(work.name);
        }
        self.inner.counts.send_modify(|c| {
            c.all -= 1;
            if work.kind != Kind::Blocking {
                c.stoppable -= 1;
            }
        });
    }
}

impl Shutdown {
    /// Default deadline (25 s) and child grace (2 s).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Options.
    pub fn builder() -> ShutdownBuilder {
        ShutdownBuilder {
            deadline: DEFAULT_DEADLINE,
            child_grace: DEFAULT_CHILD_GRACE,
            release_reserve: None,
        }
    }

    /// The deadline.
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }

    /// Listens for SIGTERM and SIGINT: the first begins the shutdown, the second forces
    /// it. Idempotent; needs a tokio runtime (`Error::NoRuntime` otherwise).
    #[cfg(unix)]
    pub fn install_signals(&self) -> Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        if self.inner.signals.load(Ordering::Acquire) {
            return Ok(());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
            what: "Shutdown::install_signals",
        })?;
        let _entered = runtime.enter();
        let mut term = signal(SignalKind::terminate()).map_err(|source| Error::Signal {
            signal: "SIGTERM",
            source,
        })?;
        let mut int = signal(SignalKind::interrupt()).map_err(|source| Error::Signal {
            signal: "SIGINT",
            source,
        })?;
        if self.inner.signals.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let this = self.clone();
        runtime.spawn(async move {
            loop {
                let cause = tokio::select! {
                    Some(()) = term.recv() => Cause::Sigterm,
                    Some(()) = int.recv() => Cause::Sigint,
                    else => return,
                };
                if this.is_shutting_down() {
                    tracing::warn!(?cause, "leakproof: second signal, forcing the shutdown");
                    this.force_with(ForcedBy::SecondSignal);
                } else {
                    tracing::info!(?cause, "leakproof: signal received, shutting down");
                    this.begin(cause);
                }
            }
        });
        Ok(())
    }

    /// Cancelled when the shutdown begins: pass it to work that should stop early.
    pub fn token(&self) -> CancellationToken {
        self.inner.begun.clone()
    }

    /// Cancelled when [`wait`](Self::wait) forces (after the deadline, a second signal or
    /// [`force`](Self::force)).
    pub fn forced_token(&self) -> CancellationToken {
        self.inner.forced.clone()
    }

    /// Cancelled when [`wait`](Self::wait) has run the shutdown to its end, just
    /// before it returns the report: what must outlive the drain (a health endpoint
    /// answering 503) stops here.
    pub fn ended_token(&self) -> CancellationToken {
        self.inner.ended.clone()
    }

    /// `true` once the shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.begun.is_cancelled()
    }

    /// Begins the shutdown as a signal would.
    pub fn trigger(&self) {
        self.begin(Cause::Requested);
    }

    /// Forces the shutdown now (beginning it if needed), as a second signal would.
    pub fn force(&self) {
        self.force_with(ForcedBy::Requested);
    }

    fn begin(&self, cause: Cause) {
        lock(&self.inner.cause).get_or_insert(cause);
        self.inner.begun.cancel();
    }

    fn force_with(&self, by: ForcedBy) {
        self.begin(Cause::Requested);
        lock(&self.inner.forced_by).get_or_insert(by);
        self.inner.force_asked.cancel();
    }

    /// Registers a reaper whose child trees still alive at the end are ended.
    #[cfg(all(feature = "proc", target_os = "linux"))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "proc", target_os = "linux"))))]
    pub fn add_reaper(&self, reaper: &proc_reaper::Reaper) {
        lock(&self.inner.reapers).push(reaper.clone());
    }

    /// The names and ages of the work in flight, oldest first.
    pub fn in_flight(&self) -> Vec<(String, Duration)> {
        lock(&self.inner.work)
            .values()
            .map(|w| (w.name.clone(), w.started.elapsed()))
            .collect()
    }

    /// How much work is in flight.
    pub fn in_flight_count(&self) -> usize {
        self.inner.counts.borrow().all
    }

    fn track(&self, name: &str, kind: Kind) -> Result<Tracked> {
        let mut work = lock(&self.inner.work);
        // Checked under the lock `wait` takes for its snapshot: nothing slips in after.
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown {
                name: name.to_string(),
            });
        }
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        work.insert(
            id,
            Work {
                name: name.to_string(),
                kind,
                started: Instant::now(),
                abort: None,
            },
        );
        self.inner.counts.send_modify(|c| {
            c.all += 1;
            if kind != Kind::Blocking {
                c.stoppable += 1;
            }
        });
        Ok(Tracked {
            inner: self.inner.clone(),
            id,
        })
    }

    fn set_abort(&self, tracked: u64, abort: AbortHandle) {
        match lock(&self.inner.work).get_mut(&tracked) {
            Some(work) => work.abort = Some(abort),
            // Forced before its handle was known: abort it now.
            None if self.inner.forced.is_cancelled() => abort.abort(),
            None => {}
        }
    }

    /// Runs `operation` in a [`scope`](crate::scope) tracked as in flight under `name`.
    ///
    /// Refused with [`Error::ShuttingDown`] once the shutdown has begun (nothing runs).
    /// If the shutdown forces before it ends, its future is dropped, which releases its
    /// scope, and this returns [`Error::Forced`].
    pub async fn run<F, Fut, T, E>(
        &self,
        name: &str,
        operation: F,
    ) -> Result<(Result<T, E>, ScopeReport)>
    where
        F: FnOnce(crate::Scope) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let tracked = self.track(name, Kind::Scope)?;
        let started = Instant::now();
        let forced = self.inner.forced.clone();
        let outcome = tokio::select! {
            biased;
            _ = forced.cancelled() => Err(Error::Forced {
                name: name.to_string(),
                ran: started.elapsed(),
            }),
            done = scope(name, operation) => Ok(done),
        };
        drop(tracked);
        outcome
    }

    /// Spawns `future` as a task tracked under `name`, aborted if the shutdown forces.
    /// Refused once the shutdown has begun.
    pub fn spawn<F>(&self, name: &str, future: F) -> Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
            what: "Shutdown::spawn",
        })?;
        let tracked = self.track(name, Kind::Task)?;
        let id = tracked.id;
        let handle = runtime.spawn(async move {
            let _tracked = tracked;
            future.await
        });
        self.set_abort(id, handle.abort_handle());
        Ok(handle)
    }

    /// Runs `f` on the blocking pool, tracked under `name`. It cannot be stopped: the
    /// shutdown waits for it up to the deadline, then reports it forced and stops
    /// waiting (use [`ShutdownReport::exit`] so the process does not wait either).
    /// Refused once the shutdown has begun.
    pub fn spawn_blocking<F, R>(&self, name: &str, f: F) -> Result<JoinHandle<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
            what: "Shutdown::spawn_blocking",
        })?;
        let tracked = self.track(name, Kind::Blocking)?;
        Ok(runtime.spawn_blocking(move || {
            let _tracked = tracked;
            f()
        }))
    }

    /// Waits for the shutdown to begin, then runs it (see the type's docs) and returns
    /// its report. Call it once, from `main`.
    pub async fn wait(&self) -> ShutdownReport {
        self.inner.begun.cancelled().await;
        let began = Instant::now();
        // The one instant everything below takes as its end, and the one at which work
        // still in flight is forced so that its release ends by then.
        let hard = began + self.inner.deadline;
        let force_at = hard - self.inner.release_reserve;
        let at_signal = self.in_flight_count();
        tracing::info!(
            in_flight = at_signal,
            deadline_ms = self.inner.deadline.as_millis() as u64,
            "leakproof: shutdown begun"
        );
        let mut counts = self.inner.counts.subscribe();
        let finished_in_time = tokio::select! {
            biased;
            _ = self.inner.force_asked.cancelled() => false,
            _ = counts.wait_for(|c| c.all == 0) => true,
            _ = tokio::time::sleep_until(force_at) => {
                self.force_with(ForcedBy::Deadline);
                false
            }
        };
        let mut forced = Vec::new();
        if !finished_in_time {
            // Snapshot under the lock `track` takes, then force.
            let aborts: Vec<AbortHandle> = {
                let work = lock(&self.inner.work);
                self.inner.forced.cancel();
                forced = work
                    .values()
                    .map(|w| ForcedWork {
                        name: w.name.clone(),
                        kind: w.kind,
                        ran: w.started.elapsed(),
                    })
                    .collect();
                work.values().filter_map(|w| w.abort.clone()).collect()
            };
            for abort in aborts {
                abort.abort();
            }
            tracing::warn!(forced = forced.len(), by = ?lock(&self.inner.forced_by), "leakproof: forcing the shutdown");
            // Let aborted tasks and dropped operations unwind (their scopes release on
            // drop); blocking closures are not waited for.
            // A quarter of what is left before the deadline (at most `UNWIND`).
            let now = Instant::now();
            let unwound_by = now + UNWIND.min(hard.saturating_duration_since(now) / 4);
            let _ =
                tokio::time::timeout_at(unwound_by, counts.wait_for(|c| c.stoppable == 0)).await;
        }
        let mut report = ShutdownReport {
            cause: lock(&self.inner.cause).unwrap_or(Cause::Requested),
            forced_by: if finished_in_time {
                None
            } else {
                *lock(&self.inner.forced_by)
            },
            finished: std::mem::take(&mut *lock(&self.inner.finished)),
            forced,
            children_ended: 0,
            children_killed: 0,
            temp_removed: 0,
            errors: Vec::new(),
            took: Duration::ZERO,
        };
        self.sweep(&mut report, hard).await;
        report.took = began.elapsed();
        if report.is_clean() {
            tracing::info!(
                took_ms = report.took.as_millis() as u64,
                finished = report.finished.len(),
                "leakproof: shutdown clean"
            );
        } else {
            tracing::warn!(
                took_ms = report.took.as_millis() as u64,
                forced = ?report.forced.iter().map(|w| &w.name).collect::<Vec<_>>(),
                children_ended = report.children_ended,
                temp_removed = report.temp_removed,
                errors = ?report.errors,
                "leakproof: shutdown forced"
            );
        }
        self.inner.ended.cancel();
        report
    }

    /// The final sweep, all of it by `hard` (the deadline) where it can wait, and by
    /// `hard + RELEASE_PAST` where it forces: child trees still alive (every reaper at
    /// once, SIGTERM with the grace the deadline leaves, then SIGKILL rounds that stop
    /// at `hard + RELEASE_PAST` too), temp entries still live (removed on the blocking
    /// pool, beside the trees).
    async fn sweep(&self, report: &mut ShutdownReport, hard: Instant) {
        #[cfg(feature = "temp")]
        let removal = tokio::task::spawn_blocking(scoped_temp::remove_all);
        let last = (hard + RELEASE_PAST).max(Instant::now() + RELEASE_PAST / 5);
        #[cfg(all(feature = "proc", target_os = "linux"))]
        {
            // A quarter of what is left before the deadline for SIGTERM, SIGKILL after:
            // the rest is slack for the kill and the removal, on a busy machine.
            let grace = self
                .inner
                .child_grace
                .min(hard.saturating_duration_since(Instant::now()) / 4);
            let reapers = lock(&self.inner.reapers).clone();
            let ended = futures_util::future::join_all(reapers.iter().map(|reaper| async move {
                let trees =
                    tokio::time::timeout_at(last, reaper.shutdown_by(grace, last.into_std())).await;
                // Trees being ended in the background by dropped handles (forced
                // scopes): wait for them too, or the process may exit first.
                let settled = tokio::time::timeout_at(last, reaper.settle()).await.is_ok();
                (trees, settled)
            }))
            .await;
            for (trees, settled) in ended {
                let Ok(trees) = trees else {
                    report.errors.push(format!(
                        "child trees still being ended {} ms past the deadline",
                        RELEASE_PAST.as_millis()
                    ));
                    continue;
                };
                report.children_ended += trees.len();
                report.children_killed += trees.iter().filter(|t| t.killed > 0).count();
                let left: usize = trees.iter().map(|t| t.left).sum();
                if left > 0 {
                    report.errors.push(format!(
                        "{left} child processes sent SIGKILL but not yet gone at the deadline"
                    ));
                }
                if !settled {
                    report.errors.push(format!(
                        "child trees still ending {} ms past the deadline",
                        RELEASE_PAST.as_millis()
                    ));
                }
            }
        }
        #[cfg(feature = "temp")]
        match tokio::time::timeout_at(last, removal).await {
            Err(_) => report.errors.push(format!(
                "temp entries still being removed {} ms past the deadline",
                RELEASE_PAST.as_millis()
            )),
            Ok(Err(error)) => report.errors.push(format!("temp removal failed: {error}")),
            Ok(Ok(removal)) => {
                report.temp_removed = removal.removed.len();
                report
                    .errors
                    .extend(removal.errors.iter().map(|e| e.to_string()));
            }
        }
        let _ = (report, last);
    }
}
