//! In-process scenarios: N operations of yours (async closures) at a given concurrency,
//! some of them faulted on purpose, judged from outside against a baseline.

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mem_watch::{LeakCheck, Sample};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::baseline::Counts;
use crate::launch::human;
use crate::report::Case;
use crate::{scan, spread};

/// A fault the scenario asks one operation to suffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The operation should fail with an error, at a point of its choosing.
    Error,
    /// The operation should panic, at a point of its choosing.
    Panic,
    /// The scenario drops the operation's future after a few polls (cancellation);
    /// the operation runs as usual.
    Cancel,
}

/// One operation's ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Op {
    /// Its index, `0..n` (a warm-up operation's too: see `warmup`).
    pub index: usize,
    /// `true` for a warm-up operation, run before the baseline and not judged.
    pub warmup: bool,
    /// The fault it is to suffer, if any.
    pub fault: Option<Fault>,
}

/// Reads a figure the scenario checks at its end (idle pooled connections, permits
/// available): a name, the value it must be back to, and how to read it.
struct Gauge {
    name: String,
    expected: u64,
    read: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gauge")
            .field("name", &self.name)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

/// A scenario of operations, judged from outside.
///
/// After the [warm-up](Operations::warmup) operations it reads a baseline ([`Counts`]:
/// open descriptors, the entries under the temp root, this process's descendants).
/// It runs the operations
/// as tokio tasks, at most [`concurrency`](Operations::concurrency) at once, a share
/// of them [faulted](Operations::faults): told to fail ([`Fault::Error`]) or panic
/// ([`Fault::Panic`]), or cancelled by the scenario after a few polls
/// ([`Fault::Cancel`]). Then it waits up to the [settle](Operations::settle) time for
/// the counts to come back, and checks, exactly: temp entries, child processes and
/// open descriptors back to the baseline (sockets apart if
/// [`pooled_sockets`](Operations::pooled_sockets)), no new zombie, every
/// [gauge](Operations::gauge) back to its value, every operation without a fault
/// succeeded, and all of it within the [time limit](Operations::time_limit) (the
/// watchdog: past it, the operations still running are cancelled and the scenario
/// fails naming how many were done). What a failed scenario leaked (children, temp
/// entries) is ended and removed.
///
/// Call it from a process (a test binary of its own, or a `main`) that starts nothing
/// else meanwhile: every descendant of the process counts, and every open descriptor.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use leakproof_stress::{Fault, Operations};
///
/// let root = tempfile::tempdir().unwrap();
/// let path = root.path().to_path_buf();
/// let case = Operations::new("render", 50)
///     .concurrency(4)
///     .faults(20) // errors, panics and cancellations
///     .temp_root(&path)
///     .run(|op| {
///         let path = path.clone();
///         async move {
///             let work = tempfile::tempdir_in(&path).map_err(|e| e.to_string())?;
///             std::fs::write(work.path().join("frame"), [0u8; 1024]).map_err(|e| e.to_string())?;
///             tokio::task::yield_now().await;
///             match op.fault {
///                 Some(Fault::Error) => Err("injected".to_string()),
///                 Some(Fault::Panic) => panic!("injected"),
///                 _ => Ok(()),
///             }
///         }
///     })
///     .await;
/// assert!(case.passed(), "{:?}", case.checks);
/// # }
/// ```
#[derive(Debug)]
pub struct Operations {
    name: String,
    ops: usize,
    concurrency: usize,
    temp_root: PathBuf,
    settle: Duration,
    limit: Duration,
    warmup: usize,
    fault_percent: u64,
    seed: u64,
    pooled_sockets: bool,
    rss_tolerance: Option<f64>,
    gauges: Vec<Gauge>,
}

impl Operations {
    /// `ops` operations named `name`, one at a time after one warm-up operation, no
    /// faults, the temp root [`std::env::temp_dir`], 10 s to settle, a 300 s time
    /// limit.
    pub fn new(name: impl Into<String>, ops: usize) -> Self {
        Operations {
            name: name.into(),
            ops,
            concurrency: 1,
            temp_root: std::env::temp_dir(),
            settle: Duration::from_secs(10),
            limit: Duration::from_secs(300),
            warmup: 1,
            fault_percent: 0,
            seed: 0,
            pooled_sockets: false,
            rss_tolerance: None,
            gauges: Vec::new(),
        }
    }

    /// Operations run one at a time, without faults, before the baseline is read, and
    /// not judged (default 1): what a first operation sets up for good (a runtime's
    /// signal pipe for child processes, a pool's connections, lazy statics) is then in
    /// the baseline. Their failures are not counted either.
    pub fn warmup(mut self, n: usize) -> Self {
        self.warmup = n;
        self
    }

    /// Operations in flight at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Where the operations' temp entries go: the directory whose entries must come
    /// back to the baseline.
    pub fn temp_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_root = dir.into();
        self
    }

    /// How long the counts have to come back after the last operation (default 10 s;
    /// the wait ends as soon as they are back).
    pub fn settle(mut self, d: Duration) -> Self {
        self.settle = d.min(crate::LONGEST_LIMIT);
        self
    }

    /// The watchdog: how long all the operations may take (default 300 s).
    pub fn time_limit(mut self, d: Duration) -> Self {
        self.limit = d.min(crate::LONGEST_LIMIT);
        self
    }

    /// The share of operations faulted, in percent (each fault kind a third of them),
    /// picked from the [seed](Operations::seed).
    pub fn faults(mut self, percent: u8) -> Self {
        self.fault_percent = u64::from(percent.min(100));
        self
    }

    /// The seed that picks the faulted operations and the cancellation points.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sockets may stay open after the operations (a connection pool): the descriptor
    /// check leaves them out.
    pub fn pooled_sockets(mut self, on: bool) -> Self {
        self.pooled_sockets = on;
        self
    }

    /// Also judge resident memory: its trend over the operations (a Theil-Sen slope of
    /// a sample after each) must stay under `bytes_per_op`. On glibc, a multi-threaded
    /// process's resident size creeps while its malloc arenas fill, with no leak: run
    /// with `MALLOC_ARENA_MAX=1` (or 2), and warm up first.
    pub fn rss_trend(mut self, bytes_per_op: f64) -> Self {
        self.rss_tolerance = Some(bytes_per_op);
        self
    }

    /// A figure that must be back to `expected` at the end, read by `read` (idle
    /// connections of a pool, free permits of a semaphore).
    pub fn gauge(
        mut self,
        name: impl Into<String>,
        expected: u64,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        self.gauges.push(Gauge {
            name: name.into(),
            expected,
            read: Arc::new(read),
        });
        self
    }

    /// The fault operation `i` is to suffer.
    fn fault_for(&self, i: usize) -> Option<Fault> {
        if spread(self.seed, i as u64) % 100 >= self.fault_percent {
            return None;
        }
        Some(match spread(self.seed ^ 0xFA17, i as u64) % 3 {
            0 => Fault::Error,
            1 => Fault::Panic,
            _ => Fault::Cancel,
        })
    }

    /// Runs the scenario with `op` as the operation and returns its judged case. Needs
    /// a tokio runtime with time enabled.
    pub async fn run<F, Fut, T, E>(&self, op: F) -> Case
    where
        F: Fn(Op) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Display + Send + 'static,
    {
        let mut case = Case::new(&self.name);
        for index in 0..self.warmup {
            let _ = tokio::spawn(Faulted {
                future: Some(Box::pin(op(Op {
                    index,
                    warmup: true,
                    fault: None,
                }))),
                cancel_after: None,
                fault: None,
            })
            .await;
        }
        let started = Instant::now();
        let base = Counts::read(&self.temp_root);
        let me = std::process::id();
        let mut tally = Tally::default();
        let mut samples = Vec::new();
        let mut tasks = JoinSet::new();
        let work = async {
            let mut next = 0usize;
            loop {
                while next < self.ops && tasks.len() < self.concurrency {
                    let fault = self.fault_for(next);
                    let future = op(Op {
                        index: next,
                        warmup: false,
                        fault,
                    });
                    let polls = 1 + spread(self.seed ^ 0xCA9C, next as u64) % 8;
                    tasks.spawn(Faulted {
                        future: Some(Box::pin(future)),
                        cancel_after: (fault == Some(Fault::Cancel)).then_some(polls),
                        fault,
                    });
                    next += 1;
                }
                let Some(done) = tasks.join_next().await else {
                    break;
                };
                tally.count(done);
                if self.rss_tolerance.is_some() {
                    let rss = scan::rss_bytes(me).unwrap_or(0);
                    samples.push(Sample::new(std::time::Instant::now(), rss, None));
                }
            }
        };
        let in_time = tokio::time::timeout(self.limit, work).await.is_ok();
        // The watchdog: whatever still runs is cancelled (aborted), and waited for.
        tasks.shutdown().await;
        case.check(
            "finishes within the time limit",
            in_time,
            if in_time {
                format!("{} operations in {}", tally.done, human(started.elapsed()))
            } else {
                format!(
                    "hung: {} of {} operations done after {}; the rest cancelled",
                    tally.done,
                    self.ops,
                    human(started.elapsed())
                )
            },
        );
        case.check(
            "operations without a fault succeed",
            tally.unexpected.is_empty(),
            if tally.unexpected.is_empty() {
                format!("{} of {}", tally.ok, tally.ok)
            } else {
                format!(
                    "{} failed: {}",
                    tally.unexpected.len(),
                    tally
                        .unexpected
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            },
        );
        // Back to the baseline, within the settle time.
        let until = Instant::now() + self.settle;
        let after = loop {
            let now = Counts::read(&self.temp_root);
            let back = if self.pooled_sockets {
                now.same_but_sockets(&base)
            } else {
                now.same_but_sockets(&base) && now.fds == base.fds
            };
            if back || Instant::now() >= until {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        after.check_exact(&mut case, &base, !self.pooled_sockets);
        let new_zombies = after
            .zombies
            .iter()
            .filter(|z| !base.zombies.contains(z))
            .count();
        case.check(
            "no zombie left unreaped",
            new_zombies == 0,
            format!("{new_zombies} new"),
        );
        for gauge in &self.gauges {
            let value = (gauge.read)();
            case.check(
                &format!("{} back to {}", gauge.name, gauge.expected),
                value == gauge.expected,
                value.to_string(),
            );
        }
        if let Some(tolerance) = self.rss_tolerance {
            if samples.len() >= 3 {
                let verdict = LeakCheck::new(samples.len())
                    .rss_tolerance(tolerance)
                    .verdict(&samples);
                case.check(
                    "resident memory does not trend upward",
                    !verdict.leaks_memory,
                    format!(
                        "{:+.1} KiB per operation (tolerance {:.1}), {} -> {} KiB",
                        verdict.rss_slope / 1024.0,
                        tolerance / 1024.0,
                        verdict.rss.0 / 1024,
                        verdict.rss.1 / 1024
                    ),
                );
            } else {
                case.check(
                    "at least 3 operations for a trend",
                    false,
                    samples.len().to_string(),
                );
            }
        }
        if !case.passed() {
            after.clean_leftovers(&base, &self.temp_root);
            let drift = after.drift(&base, !self.pooled_sockets);
            if !drift.is_empty() {
                case.note(format!("left: {}", drift.join(", ")));
            }
        }
        case.figure("operations", format!("{}/{}", tally.done, self.ops));
        case.figure("ok", tally.ok.to_string());
        case.figure("faulted", tally.faulted.to_string());
        case.took = started.elapsed();
        case
    }
}

/// How the operations ended.
#[derive(Debug, Default)]
struct Tally {
    done: usize,
    ok: usize,
    faulted: usize,
    /// Failures of operations without a fault: what they said.
    unexpected: Vec<String>,
}

/// What one operation's task returns: its fault, and how it ended.
type Ended = (Option<Fault>, Result<(), String>);

impl Tally {
    fn count(&mut self, joined: Result<Ended, tokio::task::JoinError>) {
        self.done += 1;
        let (fault, outcome) = joined.unwrap_or_else(|e| (None, Err(format!("task ended: {e}"))));
        match (fault, outcome) {
            (Some(_), _) => self.faulted += 1,
            (None, Ok(())) => self.ok += 1,
            (None, Err(message)) => self.unexpected.push(message),
        }
    }
}

/// An operation's future, dropped after `cancel_after` polls if set; a panic in it is
/// caught and reported as its end.
struct Faulted<Fut> {
    future: Option<Pin<Box<Fut>>>,
    cancel_after: Option<u64>,
    fault: Option<Fault>,
}

impl<Fut, T, E> Future for Faulted<Fut>
where
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    type Output = Ended;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        let fault = self.fault;
        if let Some(left) = self.cancel_after {
            if left == 0 {
                // Cancelled: dropped at the await point it is stopped at.
                self.future = None;
                return Poll::Ready((fault, Ok(())));
            }
            self.cancel_after = Some(left - 1);
        }
        let Some(future) = self.future.as_mut() else {
            return Poll::Ready((fault, Ok(())));
        };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)));
        let ended = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(_))) => Ok(()),
            Ok(Poll::Ready(Err(e))) => Err(e.to_string()),
            Err(payload) => Err(format!("panicked: {}", panic_message(payload.as_ref()))),
        };
        self.future = None;
        Poll::Ready((fault, ended))
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text payload".to_owned())
}
