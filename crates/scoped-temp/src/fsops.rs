//! Filesystem primitives with the guarantees the rest of the crate builds on.
//!
//! Everything here is a thin, blocking wrapper over one or two system calls. Linux gets
//! `renameat2`; other Unixes get a portable equivalent built from `link`/`rename`, as
//! the crate docs describe.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

/// Which kind of entry a path is, so it is removed the right way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Dir,
    File,
}

/// Removes `path`, never following a symlink out of it.
///
/// `std::fs::remove_dir_all` opens every level with `O_NOFOLLOW` and unlinks symlinks
/// rather than descending into them (the fix for CVE-2022-21658), and when `path`
/// itself has been replaced by a symlink it removes the link only.
pub(crate) fn remove(path: &Path, shape: Shape) -> io::Result<()> {
    match shape {
        Shape::Dir => fs::remove_dir_all(path),
        Shape::File => fs::remove_file(path),
    }
}

/// Apparent size in bytes of everything under `path` (not following symlinks) and the
/// number of entries counted. Unreadable parts are skipped: this is for reports only.
pub(crate) fn tree_size(path: &Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut entries = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        entries += 1;
        if meta.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        } else {
            bytes += meta.len();
        }
    }
    (bytes, entries)
}

/// Flushes a directory's entries (a rename into it, an unlink) to stable storage.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory a path lives in; `.` for a bare file name.
pub(crate) fn parent_of(path: &Path) -> Option<&Path> {
    path.file_name()?;
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of replacing `to`.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            // Filesystems without renameat2 support: fall through to link + unlink.
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
    }
    // `link` fails if `to` exists, so the check and the move are one atomic step. Only
    // for files; a directory cannot be hard-linked, so it falls back to a checked rename.
    if fs::symlink_metadata(from)?.is_dir() {
        if fs::symlink_metadata(to).is_ok() {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        return fs::rename(from, to);
    }
    fs::hard_link(from, to)?;
    fs::remove_file(from)
}

/// Swaps `a` and `b` atomically. `Ok(false)` when the filesystem or platform cannot
/// exchange; the caller then uses [`replace_keeping_old`].
pub(crate) fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
            Ok(()) => Ok(true),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (a, b);
        Ok(false)
    }
}

/// The portable stand-in for [`exchange`]: hard-links the current `target` to `old`
/// (so the previous content survives under that name), then renames `new` over
/// `target`. Undo with `rename(old, target)`.
pub(crate) fn replace_keeping_old(new: &Path, target: &Path, old: &Path) -> io::Result<()> {
    fs::hard_link(target, old)?;
    if let Err(e) = fs::rename(new, target) {
        let _ = fs::remove_file(old);
        return Err(e);
    }
    Ok(())
}

/// Takes an exclusive `flock` without blocking. `Ok(false)` means another open file
/// description (in this process or another) holds it: the owner is alive.
pub(crate) fn try_lock(file: &File) -> io::Result<bool> {
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Takes a shared `flock` without blocking: `Ok(false)` when an exclusive lock is held.
fn try_lock_shared(file: &File) -> io::Result<bool> {
    match flock(file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Opens the file at `path` (following a symlink, as a sweep does) and takes a shared
/// lock on it, so that while the lock is held no sweep reclaims it under any name it is
/// moved or linked to (a previous version set aside during a commit). `None` when
/// there is no file, or it cannot be opened or locked (another holds it exclusively):
/// the caller goes on without.
pub(crate) fn lock_existing(path: &Path) -> Option<File> {
    let file = File::open(path)
        .or_else(|_| fs::OpenOptions::new().write(true).open(path))
        .ok()?;
    // A sweep that just tested this file (through a name it listed earlier) holds it
    // exclusively for a moment: wait that out, a little.
    let mut outcome = try_lock_shared(&file);
    for _ in 0..40 {
        if !matches!(outcome, Ok(false)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
        outcome = try_lock_shared(&file);
    }
    match outcome {
        Ok(true) => Some(file),
        outcome => {
            tracing::debug!(path = %path.display(), ?outcome, "scoped-temp: previous version not locked");
            None
        }
    }
}

/// An unnamed file in `dir` (Linux `O_TMPFILE`), exclusively locked: linked into the
/// directory with [`link_into`], it appears under its name already locked, so no sweep
/// ever sees it unowned. `Ok(None)` where the filesystem or platform has no unnamed
/// files (or `/proc` is not mounted); the caller then creates it under a pending name.
pub(crate) fn create_locked(dir: &Path, mode: u32) -> io::Result<Option<File>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{Mode, OFlags, open};
        use rustix::io::Errno;
        if !Path::new("/proc/self/fd").exists() {
            return Ok(None);
        }
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        match open(dir, flags, Mode::from_raw_mode(mode as _)) {
            Ok(fd) => {
                let file = File::from(fd);
                if !try_lock(&file)? {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "fresh unnamed file locked",
                    ));
                }
                Ok(Some(file))
            }
            // No O_TMPFILE on this filesystem (EOPNOTSUPP), or a kernel before 3.11
            // (EISDIR: the flag read as O_DIRECTORY).
            Err(e) if e == Errno::OPNOTSUPP || e == Errno::ISDIR || e == Errno::INVAL => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (dir, mode);
        Ok(None)
    }
}

/// Gives a file from [`create_locked`] the name `path` (`AlreadyExists` if taken).
pub(crate) fn link_into(file: &File, path: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{AtFlags, CWD, linkat};
        use std::os::fd::AsRawFd;
        let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        linkat(CWD, fd_path.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW)?;
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (file, path);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
