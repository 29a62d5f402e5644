//! `FileLock`: an exclusive or shared advisory lock on a file, across threads and
//! processes, released when dropped (or when its process dies, killed or not).
//!
//! The lock is `flock(2)` through rustix: it belongs to the open file description, not
//! to the process, so two `FileLock`s on one file exclude each other in one process as
//! in two, and closing some other descriptor of the file releases nothing (unlike
//! POSIX `fcntl` record locks). The kernel drops it when the last descriptor closes, so
//! a holder that is SIGKILLed releases it at once.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{FlockOperation, flock};

use crate::{Error, Result};

/// Which lock: one holder, or any number of readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// One holder at a time, and no shared holder meanwhile.
    Exclusive,
    /// Any number of shared holders, and no exclusive one meanwhile.
    Shared,
}

/// The first and the longest pause between two tries of [`FileLock::lock`].
const RETRY: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(50));

/// An advisory lock on a file, held until dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), scoped_temp::Error> {
/// use std::time::Duration;
/// use scoped_temp::{FileLock, LockKind};
///
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("index.lock");
/// let held = FileLock::lock(&path, LockKind::Exclusive, Duration::from_secs(5)).await?;
/// // Another holder, in this process or another, waits or fails meanwhile.
/// assert!(FileLock::try_lock(&path, LockKind::Shared)?.is_none());
/// drop(held);
/// assert!(FileLock::try_lock(&path, LockKind::Shared)?.is_some());
/// # Ok(()) }
/// ```
///
/// Advisory: it excludes only those who also lock. The file is created if missing
/// (mode `0600`) and left in place: [`AtomicFile::open_locked`](crate::AtomicFile::open_locked)
/// is the form that removes its lock file. On NFS, Linux emulates `flock` with
/// byte-range locks.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
    kind: LockKind,
    /// Unlinked when released (a lock file of our own making).
    remove: bool,
}

impl FileLock {
    /// The lock now, or `None` if another holder's lock conflicts.
    pub fn try_lock(path: impl AsRef<Path>, kind: LockKind) -> Result<Option<FileLock>> {
        let path = path.as_ref();
        let file = open(path)?;
        Ok(take(&file, kind, false)
            .map_err(|source| lock_error(path, source))?
            .then(|| FileLock {
                file,
                path: path.to_path_buf(),
                kind,
                remove: false,
            }))
    }

    /// Waits for the lock, blocking this thread (for code off the async runtime).
    pub fn lock_blocking(path: impl AsRef<Path>, kind: LockKind) -> Result<FileLock> {
        let path = path.as_ref();
        let file = open(path)?;
        take(&file, kind, true).map_err(|source| lock_error(path, source))?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
            kind,
            remove: false,
        })
    }

    /// Waits for the lock up to `timeout`, then fails with [`Error::LockTimeout`]. It
    /// tries again after pauses growing from 1 ms to 50 ms, so it may take the lock up
    /// to 50 ms after the holder let it go, and a caller that drops this future holds
    /// nothing.
    pub async fn lock(
        path: impl AsRef<Path>,
        kind: LockKind,
        timeout: Duration,
    ) -> Result<FileLock> {
        let path = path.as_ref();
        let started = tokio::time::Instant::now();
        let mut pause = RETRY.0;
        loop {
            if let Some(lock) = Self::try_lock(path, kind)? {
                return Ok(lock);
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(Error::LockTimeout {
                    path: path.to_path_buf(),
                    waited,
                });
            }
            tokio::time::sleep(pause.min(timeout - waited)).await;
            pause = (pause * 2).min(RETRY.1);
        }
    }

    /// An exclusive lock on a lock file of its own at `path`, unlinked when released:
    /// created if missing, and taken only once `path` still names the file locked (a
    /// holder that released it meanwhile unlinked it; a new one is made). A lock file
    /// left by a killed holder is taken over and removed in turn.
    pub(crate) async fn own_file(path: &Path, timeout: Duration) -> Result<FileLock> {
        let started = tokio::time::Instant::now();
        loop {
            let remaining = timeout.saturating_sub(started.elapsed());
            let mut lock = Self::lock(path, LockKind::Exclusive, remaining).await?;
            let still_named = std::fs::metadata(path).is_ok_and(|named| {
                lock.file
                    .metadata()
                    .is_ok_and(|held| (held.dev(), held.ino()) == (named.dev(), named.ino()))
            });
            if still_named {
                lock.remove = true;
                return Ok(lock);
            }
            // Unlinked by the holder we waited for: lock the new file instead.
        }
    }

    /// The locked file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which lock is held.
    pub fn kind(&self) -> LockKind {
        self.kind
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Unlinked while still locked: a waiter then finds the name gone or new, never
        // a file it could lock after us and believe current. Closing the file releases
        // the lock.
        if self.remove
            && let Err(error) = std::fs::remove_file(&self.path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "scoped-temp: lock file not removed");
        }
    }
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        // A file we may only read can still be locked.
        .or_else(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => File::open(path),
            _ => Err(e),
        })
        .map_err(|source| lock_error(path, source))
}

/// Takes the lock; `Ok(false)` when another holder's conflicts (without `wait`).
fn take(file: &File, kind: LockKind, wait: bool) -> io::Result<bool> {
    let operation = match (kind, wait) {
        (LockKind::Exclusive, true) => FlockOperation::LockExclusive,
        (LockKind::Exclusive, false) => FlockOperation::NonBlockingLockExclusive,
        (LockKind::Shared, true) => FlockOperation::LockShared,
        (LockKind::Shared, false) => FlockOperation::NonBlockingLockShared,
    };
    loop {
        return match flock(file, operation) {
            Ok(()) => Ok(true),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
            // A signal while blocked: wait on.
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) => Err(e.into()),
        };
    }
}

fn lock_error(path: &Path, source: io::Error) -> Error {
    Error::Lock {
        path: path.to_path_buf(),
        source,
    }
}
