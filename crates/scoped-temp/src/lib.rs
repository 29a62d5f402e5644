//! Temp directories, temp files and atomic writes that are always reclaimed.
//!
//! # The guarantee
//!
//! Every temp entry this crate creates is removed when its handle is dropped or closed,
//! whether the code that owned it returned, failed, panicked or was cancelled (its
//! future dropped), and when a shutdown path calls [`remove_all`]. What a *killed*
//! process left behind (SIGKILL, the OOM killer, a power loss) is found and removed by
//! [`sweep_orphans`], which never touches an entry whose owner still runs.
//! [`AtomicFile`] and [`AtomicBatch`] replace files so that a crash leaves the old
//! content or the new, never a truncated mix.
//!
//! Built on [`tempfile`], which gives unique names and safe creation and removes on
//! drop, but (in its own words) cannot clean up after a process that dies from a signal
//! and has no way to find what such a run left behind.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), scoped_temp::Error> {
//! use scoped_temp::{TempDir, with_temp_dir};
//!
//! // A handle: removed on drop, or by an awaited close() that reports failure.
//! let dir = TempDir::new()?;
//! std::fs::write(dir.path().join("chunk.bin"), [0u8; 4096]).unwrap();
//! let path = dir.path().to_path_buf();
//! dir.close().await?;
//! assert!(!path.exists());
//!
//! // A scope: removed however the closure ends, errors and panics included.
//! let mut used = None;
//! let failed: Result<(), scoped_temp::Error> = with_temp_dir(|dir| {
//!     used = Some(dir.clone());
//!     async move {
//!         std::fs::write(dir.join("partial"), b"...").unwrap();
//!         Err(scoped_temp::Error::Vanished { path: dir }) // any error of yours
//!     }
//! })
//! .await;
//! assert!(failed.is_err());
//! assert!(!used.unwrap().exists());
//!
//! // After a crash: reclaim what dead runs left under the root.
//! let report = scoped_temp::sweep_orphans(std::env::temp_dir())?;
//! println!("reclaimed {} bytes", report.bytes_freed);
//! # Ok(()) }
//! ```
//!
//! # Where entries live
//!
//! Temp dirs and files are created under a *root* ([`std::env::temp_dir()`] unless
//! [`Builder::root`] says otherwise), inside this process's *run directory* there:
//! `<root>/.scoped-temp-run-<pid>-<random>/<prefix><random>`. The run directory holds
//! `.owner.lock`, `flock`ed by this process from the run directory's creation until
//! [`remove_all`] or the process's death; that lock is the owner mark [`sweep_orphans`]
//! tests. The run directory is not made per entry (that would double the cost of a temp
//! dir), nor removed when it empties: it goes when the last thread that created entries
//! exits with nothing live (returning from `main` or `std::process::exit` ends the main
//! thread, whose thread-local destructors glibc and macOS run then), or at
//! [`remove_all`]. So a process that cleaned up after itself leaves its root as it found
//! it. [`TempDir::keep`] moves an entry out of it into the root.
//!
//! Atomic temp files are created next to their target (a rename across filesystems is
//! not atomic) as `.<name>.<random>.scoped-temp-atomic`, each `flock`ed by its writer.
//!
//! # Locks
//!
//! [`FileLock`] is an exclusive or shared advisory lock on a file (`flock`, owned by the
//! open file description: it excludes within one process as across processes, and the
//! kernel releases it when its holder dies), taken at once, blocking, or within a
//! timeout. [`AtomicFile::open_locked`] holds the target's write lock (a lock file
//! beside it, removed with the lock) until the commit, so two writers of one target
//! serialise instead of the last rename winning.
//!
//! # Registry
//!
//! Every entry not yet removed is in a process-wide registry: [`live`] lists them (for
//! leak checks and health reports), [`live_count`] counts them, and [`remove_all`]
//! removes them for a shutdown path. A drop racing `remove_all` never removes twice and
//! never skips an entry: whichever takes the entry out of the registry removes it.
//!
//! # Security
//!
//! Directories are created mode `0700` and files `0600` (atomic temp files take the
//! target's mode). Removal never follows a symlink out of a temp dir: a link inside to a
//! file outside is removed, and the file it points to is left alone. Names are random
//! and created with `O_EXCL`, as in [`tempfile`].
//!
//! # Metrics
//!
//! With feature `metrics` (off by default), entries created, removed and live, failed removals and reclaimed orphans go through the
//! [`metrics`](https://docs.rs/metrics) facade, to whichever recorder the program
//! installs: the `metrics` module lists each one and when it is recorded.
//!
//! # What this does not protect against
//!
//! - **A killed process cleans nothing up itself.** After SIGKILL or a power loss its
//!   entries stay on disk until something calls [`sweep_orphans`] on the root; call it
//!   at startup. Drop does not run on `std::process::exit` or `abort` either.
//! - **A thread that never ends keeps the run directory.** Its empty run directory and
//!   `.owner.lock` go with the last thread that created entries; one that outlives
//!   `main` (a detached worker still running at exit) or a platform that runs no
//!   thread-local destructors at exit (musl's main thread) leaves them behind, one per
//!   process, not per entry, until the next run's [`sweep_orphans`] or a [`remove_all`]
//!   called last in `main` (the `leakproof` umbrella's shutdown does).
//! - **SIGTERM is not handled here.** This crate gives the hook ([`remove_all`]); the
//!   `leakproof` umbrella (or your own signal handler) must call it.
//! - **Drop blocks.** Removal on drop is synchronous, like `tempfile`'s; a large tree
//!   dropped on an async worker stalls it. Use [`TempDir::close`] in async code.
//! - **A sweep needs working `flock`.** Ownership is decided by lock alone: a sweep
//!   never removes what a live owner holds a lock on (its run directory, an atomic temp
//!   file, the previous version a commit set aside, a backup's staging), and one sweep
//!   after an owner's death reclaims all it left, whatever its age. Locks on NFS and
//!   some FUSE filesystems are emulated or absent; there a sweep may take a live run for
//!   dead or the reverse: keep roots on local filesystems, or sweep such a shared root
//!   with a [`SweepOptions::pending_grace`]. A forked child that did not `exec` inherits
//!   the lock and keeps its parent's run alive until it exits.
//! - **A previous version that cannot be opened.** A commit locks a target's previous
//!   version by opening it; a target this process may neither read nor write (or one
//!   another process holds an exclusive `flock` on for more than 20 ms: a sweep holds
//!   one for an instant) is replaced without that lock, and a sweep of its directory
//!   during the commit could take the set-aside version a rollback needs.
//! - **Other processes with your user ID** can still remove, rename or read your
//!   entries, and a temp cleaner (`systemd-tmpfiles`) may remove a long-lived run
//!   directory; entries created afterwards set up a new one, and cleanup reports the
//!   vanished ones as [`Error::Vanished`].
//! - **Locks are advisory.** A [`FileLock`] excludes only those who lock too; a writer
//!   that renames over a target without [`AtomicFile::open_locked`] is not held back.
//! - **An [`AtomicBatch`] is all-or-nothing against errors, not against crashes.** A
//!   power loss in the middle of a batch commit can leave some targets new and some old.
//!   A single [`AtomicFile`] has no such window.
//!
//! # Platforms
//!
//! Linux is the guaranteed platform. Other Unixes build and work, with three
//! differences: without `renameat2`, `no_clobber` uses `link` + `unlink` (atomic for
//! files) and a batch rollback restores from a hard link of the previous version rather
//! than an exchange; and without unnamed files (`O_TMPFILE`, also missing on some Linux
//! filesystems) an atomic temp file is created under a pending name and locked an
//! instant later, so a sweep in that instant can take it, and the writer starts again
//! under a new name. Windows is not supported.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod atomic;
mod dir;
mod error;
mod file;
mod fsops;
mod lock;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod registry;
mod sweep;

pub use atomic::{AtomicBatch, AtomicFile, AtomicOptions, write_atomic, write_atomic_blocking};
pub use dir::{Builder, TempDir, with_temp_dir};
pub use error::{Error, Result};
pub use file::NamedTempFile;
pub use lock::{FileLock, LockKind};
pub use registry::{
    EntryKind, LiveEntry, RemovalReport, live, live_count, on_first_use, remove_all, run_dir,
};
pub use sweep::{SweepOptions, SweepReport, sweep_orphans, sweep_orphans_with};
