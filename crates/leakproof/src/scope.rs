//! `Scope`: what one operation acquired, released in reverse order however it ends.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
#[cfg(feature = "temp")]
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::FutureExt;

/// The error type of deferred cleanups.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Cleanup = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// One thing a scope holds.
enum Held {
    #[cfg(feature = "temp")]
    TempDir(scoped_temp::TempDir),
    Task(Task),
    #[cfg(all(feature = "proc", target_os = "linux"))]
    Child(Arc<Mutex<Option<proc_reaper::Child>>>),
    Defer(Box<dyn FnOnce() -> Cleanup + Send>),
    Value(Box<dyn std::any::Any + Send>),
}

/// A task a scope spawned: its abort handle, and a receiver that ends when the task's
/// future is gone (finished, or dropped after an abort), whoever holds the `JoinHandle`.
struct Task {
    abort: tokio::task::AbortHandle,
    gone: tokio::sync::oneshot::Receiver<()>,
}

/// How long a scope waits for an aborted task to stop before it releases what was
/// acquired before the task: a task in the middle of a poll on another worker runs on
/// until its next `.await`. One that never yields (a blocking loop) is reported as a
/// failed release after this long, and the release goes on.
pub const TASK_STOP_WAIT: Duration = Duration::from_secs(1);

struct Entry {
    what: String,
    held: Held,
}

/// How a scope's operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It returned `Ok`.
    Ok,
    /// It returned `Err`.
    Err,
    /// It panicked (the panic resumes after the release).
    Panicked,
    /// Its future was dropped before it finished.
    Dropped,
}

/// What one release did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Released {
    /// What was released (`temp dir /tmp/...`, `task fetch`, `child ffmpeg (pid 42)`).
    pub what: String,
    /// `None` when it was released; the reason when it failed.
    pub error: Option<String>,
    /// How long the release took.
    pub took: Duration,
}

/// What a scope released when it ended, in the order it released (the reverse of
/// acquisition). Also logged.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScopeReport {
    /// The scope's name.
    pub name: String,
    /// How the operation ended.
    pub ended: Ended,
    /// Each release, in order.
    pub released: Vec<Released>,
    /// Reports of the scopes nested in this one, in the order they ended.
    pub nested: Vec<ScopeReport>,
    /// From the start of the operation to the end of its release.
    pub took: Duration,
}

impl ScopeReport {
    /// The releases that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Released> {
        self.released.iter().filter(|r| r.error.is_some())
    }
}

struct Inner {
    name: String,
    held: Mutex<Vec<Entry>>,
    nested: Mutex<Vec<ScopeReport>>,
}

/// A handle to register what the running operation acquires; clones share the scope.
/// Everything registered is released in reverse order when the operation ends.
#[derive(Clone)]
pub struct Scope {
    inner: Arc<Inner>,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("name", &self.inner.name)
            .field("held", &self.held().len())
            .finish()
    }
}

impl Scope {
    fn held(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, what: String, held: Held) {
        self.held().push(Entry { what, held });
    }

    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A temp dir removed when the scope ends (or earlier, by its own drop, if the
    /// process is going down).
    #[cfg(feature = "temp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "temp")))]
    pub fn temp_dir(&self) -> Result<PathBuf, scoped_temp::Error> {
        let dir = scoped_temp::TempDir::new()?;
        let path = dir.path().to_path_buf();
        self.push(format!("temp dir {}", path.display()), Held::TempDir(dir));
        Ok(path)
    }

    /// Spawns `future` as a task aborted when the scope ends, if still running, and
    /// waited for (up to [`TASK_STOP_WAIT`]) before anything acquired earlier is
    /// released: a task aborted in the middle of a poll on another worker thread cannot
    /// write into a temp dir the scope is removing. (A scope whose future is dropped
    /// cannot wait: it aborts its tasks and releases the rest at once.)
    pub fn spawn<F>(&self, name: &str, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (alive, gone) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            // Dropped with the future: when it finishes, or is dropped after an abort.
            let _alive = alive;
            future.await
        });
        self.push(
            format!("task {name}"),
            Held::Task(Task {
                abort: handle.abort_handle(),
                gone,
            }),
        );
        handle
    }

    /// Spawns a child through `reaper`; its whole tree is ended (SIGTERM, its grace,
    /// SIGKILL) when the scope ends, unless it was waited for first.
    #[cfg(all(feature = "proc", target_os = "linux"))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "proc", target_os = "linux"))))]
    pub fn spawn_child(
        &self,
        reaper: &proc_reaper::Reaper,
        command: std::process::Command,
    ) -> proc_reaper::Result<ScopedChild> {
        let name = command.get_program().to_string_lossy().into_owned();
        let child = reaper.spawn(command)?;
        let pid = child.pid();
        let slot = Arc::new(Mutex::new(Some(child)));
        self.push(
            format!("child {name} (pid {pid})"),
            Held::Child(slot.clone()),
        );
        Ok(ScopedChild { pid, slot })
    }

    /// Keeps `value` alive until the scope ends, then drops it in its turn: for guards
    /// that must last as long as the operation (open files, locks, sockets, semaphore
    /// or gate permits).
    pub fn hold<T: Send + 'static>(&self, what: &str, value: T) {
        self.push(what.to_string(), Held::Value(Box::new(value)));
    }

    /// Runs `cleanup` when the scope ends (after what was registered later, before
    /// what was registered earlier). A failing cleanup is reported; the others still run.
    pub fn defer<F, Fut>(&self, name: &str, cleanup: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.push(
            name.to_string(),
            Held::Defer(Box::new(move || Box::pin(cleanup()) as Cleanup)),
        );
    }

    /// Runs a nested operation in a scope of its own, released when it ends; its
    /// report becomes part of this scope's.
    pub async fn nested<F, Fut, T, E>(&self, name: &str, operation: F) -> Result<T, E>
    where
        F: FnOnce(Scope) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let (outcome, report) = scope(name, operation).await;
        self.inner
            .nested
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(report);
        outcome
    }

    /// Releases everything held, last acquired first; every release runs even if
    /// earlier ones failed.
    async fn release(&self) -> Vec<Released> {
        let mut released = Vec::new();
        loop {
            // One at a time, so a cleanup may register more (released next).
            let Some(entry) = self.held().pop() else {
                break;
            };
            let started = Instant::now();
            let error = release_one(entry.held).await.err();
            if let Some(error) = &error {
                tracing::warn!(scope = %self.inner.name, what = %entry.what, %error, "leakproof: release failed");
            }
            released.push(Released {
                what: entry.what,
                error,
                took: started.elapsed(),
            });
        }
        released
    }
}

async fn release_one(held: Held) -> Result<(), String> {
    match held {
        #[cfg(feature = "temp")]
        Held::TempDir(dir) => dir.close().await.map_err(|e| e.to_string()),
        Held::Task(Task { abort, gone }) => {
            abort.abort();
            match tokio::time::timeout(TASK_STOP_WAIT, gone).await {
                Ok(_) => Ok(()),
                Err(_) => Err(format!(
                    "the task was aborted but did not stop within {TASK_STOP_WAIT:?} (it does not yield)"
                )),
            }
        }
        #[cfg(all(feature = "proc", target_os = "linux"))]
        Held::Child(slot) => {
            let child = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            match child {
                Some(child) => child.kill().await.map(|_| ()).map_err(|e| e.to_string()),
                None => Ok(()),
            }
        }
        Held::Value(value) => {
            drop(value);
            Ok(())
        }
        Held::Defer(cleanup) => match AssertUnwindSafe(cleanup()).catch_unwind().await {
            Ok(outcome) => outcome.map_err(|e| e.to_string()),
            Err(_) => Err("the cleanup panicked".to_string()),
        },
    }
}

/// A child held by a scope: wait for it here, or the scope ends it.
#[cfg(all(feature = "proc", target_os = "linux"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "proc", target_os = "linux"))))]
#[derive(Debug)]
pub struct ScopedChild {
    pid: u32,
    slot: Arc<Mutex<Option<proc_reaper::Child>>>,
}

#[cfg(all(feature = "proc", target_os = "linux"))]
impl ScopedChild {
    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the child (its tree is ended once it exits, as `Child::wait` does).
    /// `None` if the scope already ended it.
    pub async fn wait(self) -> Option<proc_reaper::Result<proc_reaper::Outcome>> {
        let child = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(child.wait().await)
    }
}

/// If the operation's future is dropped, releases what it can without awaiting: temp
/// dirs removed, tasks aborted, child trees killed (their own drops); deferred cleanups
/// are spawned on the runtime if there is one.
struct OnDrop {
    scope: Option<Scope>,
    started: Instant,
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        let Some(scope) = self.scope.take() else {
            return;
        };
        let held: Vec<Entry> = std::mem::take(&mut *scope.held());
        let count = held.len();
        for entry in held.into_iter().rev() {
            match entry.held {
                Held::Task(task) => task.abort.abort(),
                Held::Defer(cleanup) => match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        let (scope_name, what) = (scope.inner.name.clone(), entry.what);
                        runtime.spawn(async move {
                            if let Err(error) = cleanup().await {
                                tracing::warn!(scope = %scope_name, %what, %error, "leakproof: release failed");
                            }
                        });
                    }
                    Err(_) => {
                        tracing::warn!(what = %entry.what, "leakproof: no runtime to run a cleanup of a dropped scope")
                    }
                },
                // Their own drops release them: temp dirs removed, trees killed.
                other => drop(other),
            }
        }
        tracing::info!(
            scope = %scope.inner.name,
            released = count,
            took_ms = self.started.elapsed().as_millis() as u64,
            "leakproof: scope dropped; released what it held"
        );
    }
}

/// Runs `operation` in a new scope and releases everything it registered, in reverse
/// order, when it returns `Ok` or `Err`, when it panics (the panic then resumes), or
/// when this future is dropped (releasing what can be released without awaiting).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (outcome, report) = leakproof::scope("index-repo", |scope| async move {
///     let work = scope.temp_dir().map_err(std::io::Error::other)?;
///     std::fs::write(work.join("chunk"), b"...")?;
///     Ok::<_, std::io::Error>(work)
/// })
/// .await;
/// let work = outcome.unwrap();
/// assert!(!work.exists(), "released on return");
/// assert_eq!(report.released.len(), 1);
/// # }
/// ```
pub async fn scope<F, Fut, T, E>(name: &str, operation: F) -> (Result<T, E>, ScopeReport)
where
    F: FnOnce(Scope) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let scope = Scope {
        inner: Arc::new(Inner {
            name: name.to_string(),
            held: Mutex::new(Vec::new()),
            nested: Mutex::new(Vec::new()),
        }),
    };
    let mut guard = OnDrop {
        scope: Some(scope.clone()),
        started,
    };
    let outcome = AssertUnwindSafe(operation(scope.clone()))
        .catch_unwind()
        .await;
    let ended = match &outcome {
        Ok(Ok(_)) => Ended::Ok,
        Ok(Err(_)) => Ended::Err,
        Err(_) => Ended::Panicked,
    };
    // From here the release is awaited, so the drop guard stands down... unless this
    // future is dropped during the release: then it takes over what is left.
    let released = scope.release().await;
    guard.scope = None;
    let report = ScopeReport {
        name: name.to_string(),
        ended,
        released,
        nested: std::mem::take(
            &mut *scope
                .inner
                .nested
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ),
        took: started.elapsed(),
    };
    let failed = report.failures().count();
    tracing::info!(
        scope = %report.name,
        ended = ?report.ended,
        released = report.released.len(),
        failed,
        took_ms = report.took.as_millis() as u64,
        "leakproof: scope ended"
    );
    match outcome {
        Ok(result) => (result, report),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
