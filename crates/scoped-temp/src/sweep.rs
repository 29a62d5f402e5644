//! Orphan reclamation: removing what killed runs left behind.
//!
//! Each run directory holds an owner lock, `flock`ed by its process for as long as the
//! process lives; an atomic temp file is `flock`ed by its writer. The kernel drops those
//! locks when the process dies, however it dies (SIGKILL, the OOM killer), and not
//! before. So "can I take the lock?" is "is the owner dead?", with no PID involved and
//! so no risk from PID reuse. After a power loss no lock is held, and everything the
//! dead runs left is reclaimed.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::atomic::{ATOMIC_SUFFIX, PENDING_SUFFIXES};
use crate::fsops::{self, Shape};
use crate::registry::{LOCK_NAME, PENDING_RUN_PREFIX, RUN_PREFIX};

/// Name prefix of a run directory a sweep has claimed (renamed) to remove it.
const RECLAIM_PREFIX: &str = ".scoped-temp-reclaim-";
use crate::{Error, Result};

/// Options for [`sweep_orphans_with`].
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pending_grace: Duration,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            pending_grace: Duration::ZERO,
        }
    }
}

impl SweepOptions {
    /// Defaults: ownership decided by lock alone (no pending grace).
    pub fn new() -> Self {
        Self::default()
    }

    /// Spare entries not yet owned by a lock (a run directory being set up, a temp file
    /// before its lock on a filesystem without unnamed files, a run directory being torn
    /// down) until they are this old. The default, zero, reclaims them at once: their
    /// owners take them back by renaming (a sweep claims by renaming first), and start
    /// again if a sweep got there first. Set it where `flock` does not reach every owner,
    /// e.g. a root shared over NFS by several hosts.
    pub fn pending_grace(mut self, grace: Duration) -> Self {
        self.pending_grace = grace;
        self
    }
}

/// What a sweep found and removed.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct SweepReport {
    /// Run directories and atomic temp files removed.
    pub removed: Vec<PathBuf>,
    /// Entries (temp dirs and files) that were inside the removed run directories, plus
    /// the atomic temp files removed.
    pub entries: usize,
    /// Apparent size of everything removed, in bytes.
    pub bytes_freed: u64,
    /// Run directories and temp files left alone because their owner still runs (or
    /// removed them while the sweep looked).
    pub live_skipped: usize,
    /// What could not be examined or removed; the sweep went on past each.
    pub errors: Vec<Error>,
}

/// Removes from `root` what dead processes left behind: their run directories (with
/// every temp dir and file inside) and their uncommitted atomic temp files. Never
/// removes anything whose owner is alive, this process included.
///
/// `root` is the directory given to [`Builder::root`](crate::Builder::root) (or
/// [`std::env::temp_dir()`]), or the directory of atomic-write targets. It is not
/// searched recursively. Blocking: run it from `spawn_blocking` in async code.
///
/// ```
/// # fn main() -> Result<(), scoped_temp::Error> {
/// let report = scoped_temp::sweep_orphans(std::env::temp_dir())?;
/// println!("reclaimed {} entries, {} bytes", report.entries, report.bytes_freed);
/// # Ok(()) }
/// ```
pub fn sweep_orphans(root: impl AsRef<Path>) -> Result<SweepReport> {
    sweep_orphans_with(root, &SweepOptions::default())
}

/// [`sweep_orphans`] with options.
pub fn sweep_orphans_with(root: impl AsRef<Path>, options: &SweepOptions) -> Result<SweepReport> {
    let root = root.as_ref();
    let sweep_err = |source| Error::Sweep {
        root: root.to_path_buf(),
        source,
    };
    let mut report = SweepReport::default();
    for item in fs::read_dir(root).map_err(sweep_err)? {
        let item = match item {
            Ok(item) => item,
            Err(source) => {
                report.errors.push(sweep_err(source));
                continue;
            }
        };
        let path = item.path();
        let Some(name) = item.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let is_dir = item.file_type().is_ok_and(|t| t.is_dir());
        let outcome = if is_dir && name.starts_with(RECLAIM_PREFIX) {
            // Claimed by a sweep that died before it finished: no one owns it.
            let (bytes, entries) = fsops::tree_size(&path);
            remove(&path, Shape::Dir).map(|()| Some((bytes, entries.saturating_sub(1))))
        } else if is_dir && name.starts_with(RUN_PREFIX) {
            sweep_run_dir(&path, false, options.pending_grace)
        } else if is_dir && name.starts_with(PENDING_RUN_PREFIX) {
            sweep_run_dir(&path, true, options.pending_grace)
        } else if !is_dir && name.ends_with(ATOMIC_SUFFIX) {
            sweep_locked_file(&path)
        } else if !is_dir && PENDING_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            sweep_pending_file(&path, options.pending_grace)
        } else {
            continue;
        };
        match outcome {
            Ok(Some((bytes, entries))) => {
                tracing::info!(path = %path.display(), bytes, entries, "scoped-temp: reclaimed orphan");
                report.removed.push(path);
                report.bytes_freed += bytes;
                report.entries += entries;
                #[cfg(feature = "metrics")]
                {
                    crate::metrics::count(crate::metrics::ORPHANS_RECLAIMED, 1);
                    crate::metrics::count(crate::metrics::ORPHAN_BYTES, bytes);
                }
            }
            Ok(None) => report.live_skipped += 1,
            Err(error) => {
                tracing::warn!(%error, "scoped-temp: could not reclaim orphan");
                report.errors.push(error);
            }
        }
    }
    Ok(report)
}

/// `Ok(None)`: owner alive, left alone. `Ok(Some((bytes, entries)))`: removed.
type Outcome = Result<Option<(u64, usize)>>;

fn older_than(path: &Path, grace: Duration) -> bool {
    if grace.is_zero() {
        return true;
    }
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age >= grace)
}

/// Takes the lock at `lock_path`: `Some(file)` (the lock, held while removing) when the
/// owner is dead, `None` when it lives.
fn owner_dead(lock_path: &Path) -> Result<Option<File>> {
    let lock_err = |source| Error::Lock {
        path: lock_path.to_path_buf(),
        source,
    };
    let file = File::open(lock_path).map_err(lock_err)?;
    Ok(fsops::try_lock(&file).map_err(lock_err)?.then_some(file))
}

fn sweep_run_dir(path: &Path, pending: bool, grace: Duration) -> Outcome {
    let lock = match owner_dead(&path.join(LOCK_NAME)) {
        Ok(Some(lock)) => Some(lock),
        Ok(None) => return Ok(None),
        // No lock file: a run directory torn down right now by its owner, or one whose
        // setup died before the lock existed. Only the latter grows old.
        Err(Error::Lock { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if (pending || lock.is_none()) && !older_than(path, grace) {
        return Ok(None);
    }
    // Claimed by a rename first: an owner still setting it up (or tearing it down) then
    // finds it gone and starts again, and two sweeps never remove the same one.
    let path = &match claim(path) {
        Ok(claimed) => claimed,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Remove {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let entries = fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name() != LOCK_NAME)
                .count()
        })
        .unwrap_or(0);
    let (bytes, _) = fsops::tree_size(path);
    remove(path, Shape::Dir)?;
    Ok(Some((bytes, entries)))
}

fn sweep_locked_file(path: &Path) -> Outcome {
    let lock = match owner_dead(path) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Ok(None),
        Err(Error::Lock { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(None); // Committed or removed while we looked.
        }
        Err(e) => return Err(e),
    };
    // The lock is on the file the name had when it was opened. Its owner may have
    // removed that name since (and closed it, which is why the lock was free): remove
    // the name only if it still is the file locked.
    let (Ok(locked), Ok(now)) = (lock.metadata(), fs::metadata(path)) else {
        return Ok(None);
    };
    if (locked.dev(), locked.ino()) != (now.dev(), now.ino()) {
        return Ok(None);
    }
    remove(path, Shape::File)?;
    Ok(Some((locked.len(), 1)))
}

/// A file set aside during setup or a commit: a backup's staging (a link to a previous
/// version, locked by its committer), a previous version kept under `.old`, or a temp
/// file before its lock (where there are no unnamed files). Reclaimed when no one holds
/// a lock on it.
fn sweep_pending_file(path: &Path, grace: Duration) -> Outcome {
    if !older_than(path, grace) {
        return Ok(None);
    }
    sweep_locked_file(path)
}

/// Renames a directory to a name only a sweep uses, so it is this sweep's alone.
fn claim(path: &Path) -> io::Result<PathBuf> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let claimed = tempfile::Builder::new()
        .prefix(RECLAIM_PREFIX)
        .disable_cleanup(true)
        .make_in(parent, |candidate| fsops::rename_noreplace(path, candidate))?;
    Ok(claimed.path().to_path_buf())
}

fn remove(path: &Path, shape: Shape) -> Result<()> {
    match fsops::remove(path, shape) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}
