//! The process-wide registry of everything this crate created and has not removed.
//!
//! # Invariants
//!
//! - Removals, keeps and creations take `runs` for reading and [`remove_all`] takes it
//!   for writing, so `remove_all` never overlaps any of them: a drop racing it never
//!   removes twice and never skips an entry, and a run directory is torn down only once
//!   no removal or creation inside it is in progress.
//! - Each entry has exactly one [`Guard`]; only its guard or `remove_all` removes it.
//! - A run directory appears under its final name only once its owner lock is held (it
//!   is set up under a pending name and renamed), so a sweeper never sees an owned run
//!   directory whose lock is free while its owner lives.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::fsops::{self, Shape};
use crate::{Error, Result};

/// Name prefix of a run directory whose owner lock is held for the owner's lifetime.
pub(crate) const RUN_PREFIX: &str = ".scoped-temp-run-";
/// Name prefix of a run directory being set up (its lock may not be held yet).
pub(crate) const PENDING_RUN_PREFIX: &str = ".scoped-temp-pending-";
/// The owner lock inside a run directory.
pub(crate) const LOCK_NAME: &str = ".owner.lock";

/// What kind of thing a live entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntryKind {
    /// A [`TempDir`](crate::TempDir).
    Dir,
    /// A [`NamedTempFile`](crate::NamedTempFile).
    File,
    /// The sibling temp file of an [`AtomicFile`](crate::AtomicFile) not yet committed.
    AtomicTemp,
}

impl EntryKind {
    fn shape(self) -> Shape {
        match self {
            EntryKind::Dir => Shape::Dir,
            EntryKind::File | EntryKind::AtomicTemp => Shape::File,
        }
    }
}

/// One entry this crate created and has not removed yet, as returned by [`live`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LiveEntry {
    /// Where it is.
    pub path: PathBuf,
    /// What it is.
    pub kind: EntryKind,
    /// How long ago it was created.
    pub age: Duration,
}

/// What [`remove_all`] removed and what it could not.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct RemovalReport {
    /// Entries removed, newest first.
    pub removed: Vec<PathBuf>,
    /// Run directories removed (one per root this process used).
    pub run_dirs: usize,
    /// Entries or run directories that could not be removed, with why. Removal of the
    /// others went on regardless.
    pub errors: Vec<Error>,
}

impl RemovalReport {
    /// `true` when everything was removed.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

struct Entry {
    path: PathBuf,
    kind: EntryKind,
    created: Instant,
}

/// A root's run directory and its owner lock, held open (and `flock`ed) until the run
/// directory is torn down. The lock is released by the kernel when the process dies,
/// however it dies, which is what [`sweep_orphans`](crate::sweep_orphans) tests.
struct RunDir {
    root: PathBuf,
    path: PathBuf,
    _lock: File,
}

/// Run directories are few (one per root a process uses), so a list scanned with
/// `Path ==` (a byte compare when equal) beats hashing the root on every creation. Entry
/// ids only grow, so a `BTreeMap` inserts at its end, hashes nothing, and lists entries
/// in creation order.
struct Registry {
    runs: RwLock<Vec<RunDir>>,
    entries: Mutex<BTreeMap<u64, Entry>>,
    next_id: AtomicU64,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    runs: RwLock::new(Vec::new()),
    entries: Mutex::new(BTreeMap::new()),
    next_id: AtomicU64::new(1),
});

fn find<'a>(runs: &'a [RunDir], root: &Path) -> Option<&'a RunDir> {
    runs.iter().find(|run| run.root == root)
}

// Nothing here panics while holding a lock, but a panic in a caller's code can never
// leave the maps half-updated either, so a poisoned lock is safe to keep using.
fn entries() -> MutexGuard<'static, BTreeMap<u64, Entry>> {
    REGISTRY
        .entries
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn runs_read() -> RwLockReadGuard<'static, Vec<RunDir>> {
    REGISTRY.runs.read().unwrap_or_else(PoisonError::into_inner)
}

/// Threads alive that have created an entry in a run directory (or asked for one).
static WATCHING_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Counted in [`WATCHING_THREADS`] from a thread's first entry until it exits.
    static WATCH: ExitWatch = {
        WATCHING_THREADS.fetch_add(1, Ordering::AcqRel);
        ExitWatch
    };
}

/// Dropped when its thread exits: the main thread's by returning from `main` or by
/// `std::process::exit` (glibc and macOS run the exiting thread's thread-local
/// destructors then), any other thread's when it ends.
struct ExitWatch;

impl Drop for ExitWatch {
    fn drop(&mut self) {
        if WATCHING_THREADS.fetch_sub(1, Ordering::AcqRel) == 1 {
            tear_down_if_idle();
        }
    }
}

/// Counts this thread among those that create entries in run directories, once.
fn watch_this_thread() {
    // During this thread's own teardown it can no longer be counted: a later thread
    // exit (or a sweep after the process) takes care of the run directory then.
    let _ = WATCH.try_with(|_| ());
}

/// The last thread out turns off the lights: when no thread that created entries is
/// left and nothing is live, each run directory holding only its lock is removed and
/// its lock released, so a process that cleaned up after itself and returns from
/// `main` leaves the root as it found it. The next entry sets up a new run directory.
fn tear_down_if_idle() {
    let mut runs = REGISTRY
        .runs
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    if !entries().is_empty() || WATCHING_THREADS.load(Ordering::Acquire) != 0 {
        return;
    }
    runs.retain(|run| {
        // Something else put there (a caller of `run_dir`): the directory stays.
        let only_lock = std::fs::read_dir(&run.path).is_ok_and(|mut items| {
            items.all(|item| item.is_ok_and(|item| item.file_name() == LOCK_NAME))
        });
        if !only_lock {
            return true;
        }
        match std::fs::remove_dir_all(&run.path) {
            Ok(()) => tracing::debug!(run_dir = %run.path.display(), "scoped-temp: run directory removed: nothing live, no thread left"),
            Err(error) => tracing::debug!(run_dir = %run.path.display(), %error, "scoped-temp: run directory not removed at the last thread's exit"),
        }
        false
    });
}

fn insert(path: PathBuf, kind: EntryKind) -> u64 {
    let id = REGISTRY.next_id.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(path = %path.display(), ?kind, "scoped-temp: created");
    #[cfg(feature = "metrics")]
    crate::metrics::count(crate::metrics::CREATED, 1);
    let entry = Entry {
        path,
        kind,
        created: Instant::now(),
    };
    entries().insert(id, entry);
    id
}

impl RunDir {
    /// Sets up a run directory under a pending name, locks it, then gives it its final
    /// name. A sweep may claim the pending directory in the instant before its lock is
    /// taken (ownership is decided by lock, not by age): then this starts again.
    fn create(root: &Path) -> Result<RunDir> {
        let mut tries = 0;
        loop {
            match Self::try_create(root) {
                Err(Error::Create { source, .. })
                    if tries < 8
                        && matches!(
                            source.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::WouldBlock
                        )
                        && root.is_dir() =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    fn try_create(root: &Path) -> Result<RunDir> {
        note_dir(root);
        let create_err = |source: io::Error| Error::Create {
            root: root.to_path_buf(),
            source,
        };
        let pending = tempfile::Builder::new()
            .prefix(PENDING_RUN_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .disable_cleanup(true)
            .tempdir_in(root)
            .map_err(create_err)?
            .keep();
        let set_up = || -> io::Result<(PathBuf, File)> {
            let lock = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(pending.join(LOCK_NAME))?;
            if !fsops::try_lock(&lock)? {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "fresh lock already held",
                ));
            }
            let suffix = pending
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(PENDING_RUN_PREFIX))
                .unwrap_or_default();
            let path = root.join(format!("{RUN_PREFIX}{}-{suffix}", std::process::id()));
            fsops::rename_noreplace(&pending, &path)?;
            Ok((path, lock))
        };
        match set_up() {
            Ok((path, lock)) => {
                tracing::debug!(run_dir = %path.display(), "scoped-temp: run directory created");
                Ok(RunDir {
                    root: root.to_path_buf(),
                    path,
                    _lock: lock,
                })
            }
            Err(source) => {
                let _ = std::fs::remove_dir_all(&pending);
                Err(create_err(source))
            }
        }
    }
}

/// Every directory this process has created an entry in (roots, and the directories of
/// atomic targets and backups), and the hook told of each.
static USED_DIRS: LazyLock<Mutex<std::collections::HashSet<PathBuf>>> =
    LazyLock::new(Mutex::default);
static DIR_HOOK: std::sync::OnceLock<fn(&Path)> = std::sync::OnceLock::new();

/// Records that an entry is being created in `dir`; tells the hook the first time.
pub(crate) fn note_dir(dir: &Path) {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let first = USED_DIRS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(dir.clone());
    if let (true, Some(hook)) = (first, DIR_HOOK.get()) {
        hook(&dir);
    }
}

/// Calls `hook` with each directory this process creates entries in, the first time
/// it does: the root of each run directory, and the directory of each atomic write's
/// target and backup; and at once with those used before this call. Returns `false`
/// (and changes nothing) if a hook was set already.
///
/// For whatever cleans up after the process once it is gone: a supervisor that runs
/// [`sweep_orphans`](crate::sweep_orphans) on each such directory after the process was
/// SIGKILLed reclaims everything it left, wherever it left it (`leakproof::supervise`
/// does this).
pub fn on_first_use(hook: fn(&Path)) -> bool {
    if DIR_HOOK.set(hook).is_err() {
        return false;
    }
    let used: Vec<PathBuf> = USED_DIRS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();
    for dir in used {
        hook(&dir);
    }
    true
}

/// This process's run directory under `root` (e.g. `std::env::temp_dir()`), set up now
/// if it does not exist yet: every entry created under `root` lives inside it.
///
/// Hand it to whatever cleans up after a killed process, such as a supervisor's
/// remove-on-exit list. The run directory is torn down after [`remove_all`], and also
/// when the last thread that created entries exits with none of them live (holding
/// only its `.owner.lock`); either way the next entry sets up a new run directory with
/// a new name, so a path from here may be gone by the time it is used.
pub fn run_dir(root: impl AsRef<Path>) -> Result<PathBuf> {
    let root = root.as_ref();
    watch_this_thread();
    if let Some(run) = find(&runs_read(), root).filter(|run| run.path.exists()) {
        return Ok(run.path.clone());
    }
    let mut runs = REGISTRY
        .runs
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(run) = find(&runs, root).filter(|run| run.path.exists()) {
        return Ok(run.path.clone());
    }
    let run = RunDir::create(root)?;
    let path = run.path.clone();
    runs.retain(|r| r.root != root);
    runs.push(run);
    Ok(path)
}

/// Creates an entry inside `root`'s run directory with `make` and registers it.
///
/// `make` gets the run directory and returns its value and the path it created.
pub(crate) fn create_in_root<T>(
    root: &Path,
    kind: EntryKind,
    mut make: impl FnMut(&Path) -> io::Result<(T, PathBuf)>,
) -> Result<(T, Guard)> {
    let mut retried = false;
    watch_this_thread();
    loop {
        {
            let runs = runs_read();
            if let Some(run) = find(&runs, root) {
                match make(&run.path) {
                    Ok((value, path)) => {
                        let id = insert(path.clone(), kind);
                        return Ok((
                            value,
                            Guard {
                                id: Some(id),
                                path,
                                kind,
                            },
                        ));
                    }
                    // The run directory was removed behind our back (a tmp cleaner, a
                    // user's `rm -rf`): set up a new one, once.
                    Err(e)
                        if e.kind() == io::ErrorKind::NotFound
                            && !retried
                            && !run.path.exists() =>
                    {
                        retried = true;
                    }
                    Err(source) => {
                        return Err(Error::Create {
                            root: root.to_path_buf(),
                            source,
                        });
                    }
                }
            }
        }
        let mut runs = REGISTRY
            .runs
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match find(&runs, root) {
            Some(run) if run.path.exists() => {}
            _ => {
                let run = RunDir::create(root)?;
                runs.retain(|r| r.root != root);
                runs.push(run);
            }
        }
    }
}

/// Registers an entry that lives outside any run directory (an atomic temp file).
pub(crate) fn register(path: PathBuf, kind: EntryKind) -> Guard {
    let id = insert(path.clone(), kind);
    Guard {
        id: Some(id),
        path,
        kind,
    }
}

fn remove_entry(path: &Path, kind: EntryKind) -> Result<()> {
    let result = match fsops::remove(path, kind.shape()) {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "scoped-temp: removed");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::Vanished {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(Error::Remove {
            path: path.to_path_buf(),
            source,
        }),
    };
    #[cfg(feature = "metrics")]
    match &result {
        Err(Error::Remove { .. }) => crate::metrics::count(crate::metrics::REMOVAL_FAILURES, 1),
        _ => crate::metrics::count(crate::metrics::REMOVED, 1),
    }
    result
}

/// Removes entry `id` (at `path`, of `kind`) from disk, then from the registry, so
/// [`live`] lists an entry until it is really gone. An entry that cannot be removed stays
/// registered, so `live` still shows the leak and [`remove_all`] retries it.
fn release(id: u64, path: &Path, kind: EntryKind) -> Result<()> {
    // Shared: no `remove_all` (exclusive) runs while this removal does, so the entry
    // cannot be reclaimed between the check and the removal.
    let _runs = runs_read();
    if !entries().contains_key(&id) {
        return Ok(()); // remove_all got there first.
    }
    let result = remove_entry(path, kind);
    if !matches!(result, Err(Error::Remove { .. })) {
        entries().remove(&id);
    }
    result
}

/// Runs blocking filesystem work on tokio's blocking pool when there is a runtime,
/// inline when there is none.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + Clone + 'static,
) -> T {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return f();
    };
    match handle.spawn_blocking(f.clone()).await {
        Ok(value) => value,
        // The runtime is shutting down and never ran the task: do it here.
        Err(e) if e.is_cancelled() => f(),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Ownership of one registered entry: removes it on drop unless it was closed, kept or
/// forgotten first.
#[derive(Debug)]
pub(crate) struct Guard {
    id: Option<u64>,
    path: PathBuf,
    kind: EntryKind,
}

impl Guard {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn close_blocking(mut self) -> Result<()> {
        match self.id.take() {
            Some(id) => release(id, &self.path, self.kind),
            None => Ok(()),
        }
    }

    pub(crate) async fn close(mut self) -> Result<()> {
        let Some(id) = self.id.take() else {
            return Ok(());
        };
        let (path, kind) = (std::mem::take(&mut self.path), self.kind);
        // Cancelling this future does not cancel the removal: the blocking task runs to
        // the end on its own.
        run_blocking(move || release(id, &path, kind)).await
    }

    /// `false` once [`remove_all`] has reclaimed the entry.
    pub(crate) fn is_registered(&self) -> bool {
        self.id.is_some_and(|id| entries().contains_key(&id))
    }

    /// Unregisters the entry without touching the disk: its path now belongs to the
    /// caller. `Err(Reclaimed)` if [`remove_all`] got there first.
    pub(crate) fn forget(&mut self) -> Result<()> {
        let taken = self.id.take().and_then(|id| entries().remove(&id));
        match taken {
            Some(_) => Ok(()),
            None => Err(Error::Reclaimed {
                path: self.path.clone(),
            }),
        }
    }

    /// Moves the entry out of its run directory into the root, so no cleanup or sweep
    /// touches it again, and returns its new path.
    pub(crate) fn keep(mut self) -> Result<PathBuf> {
        let from = self.path.clone();
        let Some((root, name)) = from.parent().and_then(Path::parent).zip(from.file_name()) else {
            return Err(Error::NotAFilePath { path: from });
        };
        let to = root.join(name);
        let _runs = runs_read();
        let taken = self
            .id
            .take()
            .and_then(|id| Some(id).zip(entries().remove(&id)));
        let Some((id, entry)) = taken else {
            return Err(Error::Reclaimed { path: from });
        };
        match fsops::rename_noreplace(&from, &to) {
            Ok(()) => Ok(to),
            Err(source) => {
                // Still ours: back into the registry, so it is cleaned up as before.
                entries().insert(id, entry);
                self.id = Some(id);
                Err(Error::Rename { from, to, source })
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take()
            && let Err(error) = release(id, &self.path, self.kind)
        {
            tracing::warn!(%error, "scoped-temp: cleanup on drop failed");
        }
    }
}

/// Everything this crate created in this process and has not removed yet, oldest first.
///
/// Use it for leak checks ("`live()` is empty after the job") and health reports. An
/// entry whose removal failed stays listed until it is removed.
pub fn live() -> Vec<LiveEntry> {
    entries()
        .values()
        .map(|e| LiveEntry {
            path: e.path.clone(),
            kind: e.kind,
            age: e.created.elapsed(),
        })
        .collect()
}

/// How many entries [`live`] would list, without copying their paths.
pub fn live_count() -> usize {
    entries().len()
}

/// Removes every live entry, newest first, then every run directory, and releases the
/// owner locks: the hook for a shutdown path (SIGTERM, a supervisor's stop).
///
/// One failure does not stop the rest; each is in the report and logged. Handles still
/// alive afterwards (a [`TempDir`](crate::TempDir) owned by a task that has not ended)
/// find their entry gone: dropping them does nothing, and keeping or committing them
/// fails with [`Error::Reclaimed`]. Creating new entries afterwards works and sets up a
/// new run directory.
///
/// Blocking: call it from a blocking context or `spawn_blocking`.
pub fn remove_all() -> RemovalReport {
    let mut runs = REGISTRY
        .runs
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    let drained = std::mem::take(&mut *entries());
    let mut report = RemovalReport::default();
    for entry in drained.into_values().rev() {
        match remove_entry(&entry.path, entry.kind) {
            Ok(()) => report.removed.push(entry.path),
            Err(error) => report.errors.push(error),
        }
    }
    for run in runs.drain(..) {
        match std::fs::remove_dir_all(&run.path) {
            Ok(()) => report.run_dirs += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => report.errors.push(Error::Remove {
                path: run.path.clone(),
                source,
            }),
        }
    }
    for error in &report.errors {
        tracing::warn!(%error, "scoped-temp: remove_all could not remove an entry");
    }
    tracing::info!(
        removed = report.removed.len(),
        run_dirs = report.run_dirs,
        failed = report.errors.len(),
        "scoped-temp: remove_all finished"
    );
    report
}
