//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in this crate.
///
/// Every variant names the path it concerns, and the I/O error the operating system gave
/// where there was one, so that a log line alone says what to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name prefix or suffix that is not a plain part of a file name: it holds a `/`
    /// (the entry would be created outside its root, `../` even above it, where no sweep
    /// looks after a kill) or a NUL byte.
    #[error("a temp entry's {part} must be part of a file name, without `/` or NUL: {value:?}")]
    InvalidName {
        /// `"prefix"` or `"suffix"`.
        part: &'static str,
        /// What was given.
        value: std::ffi::OsString,
    },

    /// A temp entry (or the run directory that holds a root's entries) could not be
    /// created under `root`: the root does not exist, is not a directory, is read-only,
    /// or the disk is full.
    #[error("cannot create a temp entry under {root}: {source}")]
    Create {
        /// The root the entry was to be created under.
        root: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// A temp entry could not be removed.
    #[error("cannot remove {path}: {source}")]
    Remove {
        /// The entry that is still on disk.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// The entry was already gone when this crate came to remove it: something else
    /// removed it behind our back. Nothing is left on disk, but the caller may want to
    /// know that another party is touching its files.
    #[error("{path} was removed by someone else before cleanup")]
    Vanished {
        /// The entry that had disappeared.
        path: PathBuf,
    },

    /// The entry was reclaimed by [`remove_all`](crate::remove_all) (a shutdown) before
    /// it could be kept, persisted or committed.
    #[error("{path} was reclaimed by remove_all before it could be kept or committed")]
    Reclaimed {
        /// The entry that no longer exists.
        path: PathBuf,
    },

    /// Writing data failed, e.g. because the disk or a quota is full; `written` bytes had
    /// been written before the failure. The temp file is removed and the target untouched.
    #[error("cannot write {path} after {written} bytes: {source}")]
    Write {
        /// The file that was being written.
        path: PathBuf,
        /// Bytes written successfully before the failure.
        written: u64,
        /// What the operating system said.
        source: io::Error,
    },

    /// Flushing a file or a directory to stable storage failed.
    #[error("cannot sync {path} to disk: {source}")]
    Sync {
        /// The file or directory that could not be synced.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// Moving a finished temp file onto its target (or a kept entry out of its run
    /// directory) failed. The target is as it was before.
    #[error("cannot rename {from} to {to}: {source}")]
    Rename {
        /// The temp entry.
        from: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// The target exists and the write was asked not to replace it (`no_clobber`).
    #[error("{target} already exists and no_clobber was set")]
    TargetExists {
        /// The existing file, left untouched.
        target: PathBuf,
    },

    /// A path that must name a file has no file name or parent directory (`/`, `..`, an
    /// empty path).
    #[error("{path} does not name a file in a directory")]
    NotAFilePath {
        /// The path given.
        path: PathBuf,
    },

    /// A batch of atomic writes failed part-way. The targets committed before the
    /// failure were restored, except those listed in `rollback_failures`.
    #[error(
        "batch commit failed at file {index} of {total} ({target}): {source}; \
         {} rollback failure(s)", rollback_failures.len()
    )]
    Batch {
        /// Zero-based position of the file whose commit failed.
        index: usize,
        /// How many files the batch held.
        total: usize,
        /// The target whose commit failed.
        target: PathBuf,
        /// Why it failed.
        source: Box<Error>,
        /// Targets that could not be restored to their previous content. Empty when the
        /// rollback was complete, which is the normal case.
        rollback_failures: Vec<Error>,
    },

    /// Orphan sweeping could not read the root directory.
    #[error("cannot sweep {root}: {source}")]
    Sweep {
        /// The directory being swept.
        root: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// A [`FileLock`](crate::FileLock) (or a locked atomic write) was still held by
    /// another after waiting `waited`.
    #[error("{path} still locked by another after {waited:?}")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long it was waited for.
        waited: std::time::Duration,
    },

    /// A lock (a [`FileLock`](crate::FileLock), the owner lock of a run directory or
    /// atomic temp file) could not be taken or tested for a reason other than "it is
    /// held".
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
