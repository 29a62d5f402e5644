//! Atomic writes: [`AtomicFile`] for one file, [`AtomicBatch`] for several that must
//! change together.
//!
//! A write goes to a sibling temp file (same directory, so the final rename never
//! crosses filesystems). Commit fsyncs the file, renames it over the target and fsyncs
//! the directory. Until then the target is untouched; dropped uncommitted, the temp file
//! is removed. The temp file is `flock`ed for its whole life, so a sweep can tell an
//! abandoned one (its writer was killed) from one being written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fsops;
use crate::lock::FileLock;
use crate::registry::{self, EntryKind, Guard};
use crate::{Error, Result};

/// Name suffix of an atomic temp file whose writer holds its lock.
pub(crate) const ATOMIC_SUFFIX: &str = ".scoped-temp-atomic";
/// Name suffix of an atomic temp file not yet locked, or of a previous version set
/// aside during a commit: swept only once older than the grace period.
pub(crate) const PENDING_SUFFIXES: [&str; 2] = [".scoped-temp-new", ".scoped-temp-atomic.old"];

/// Where there are no unnamed files: creates the temp file under a pending name, locks
/// it, and renames it to its owned name, so a sweeper never sees an owned name whose lock
/// is free while its writer lives. A sweep may reclaim the pending file in the instant
/// before it is locked (ownership is decided by lock, not by age): then this starts
/// again under a new name.
fn create_pending(dir: &Path, prefix: &std::ffi::OsStr, mode: u32) -> io::Result<(File, PathBuf)> {
    let mut tries = 0;
    loop {
        let (file, pending) = tempfile::Builder::new()
            .prefix(prefix)
            .suffix(PENDING_SUFFIXES[0])
            .disable_cleanup(true)
            .make_in(dir, |path| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(path)
            })
            .and_then(|f| f.keep().map_err(|e| e.error))?;
        let temp = fsops::with_suffix(&pending.with_extension(""), ATOMIC_SUFFIX);
        let setup = || -> io::Result<()> {
            if !fsops::try_lock(&file)? {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "pending temp file locked by a sweep",
                ));
            }
            fsops::rename_noreplace(&pending, &temp)
        };
        match setup() {
            Ok(()) => return Ok((file, temp)),
            Err(e) => {
                let _ = fs::remove_file(&pending);
                let lost = matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::WouldBlock
                );
                tries += 1;
                if !lost || tries >= 8 {
                    return Err(e);
                }
            }
        }
    }
}

/// How an [`AtomicFile`] commits.
///
/// ```
/// # fn main() -> Result<(), scoped_temp::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let target = dir.path().join("config.toml");
/// use std::io::Write;
/// use scoped_temp::AtomicOptions;
///
/// let mut file = AtomicOptions::new().no_clobber(true).open(&target)?;
/// file.write_bytes(b"port = 8080\n")?;
/// file.commit()?;
/// // A second no_clobber write leaves the first one in place.
/// let second = AtomicOptions::new().no_clobber(true).open(&target)?;
/// assert!(matches!(second.commit(), Err(scoped_temp::Error::TargetExists { .. })));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct AtomicOptions {
    backup: Option<PathBuf>,
    no_clobber: bool,
    mode: Option<u32>,
}

impl AtomicOptions {
    /// Replace the target, no backup, permissions as the target had them (or
    /// `0666 & !umask` for a new file).
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep the previous version of the target at `path` when committing. The backup is
    /// made before the target changes; it must be on the target's filesystem to be a
    /// hard link, and is copied otherwise.
    pub fn backup(mut self, path: impl Into<PathBuf>) -> Self {
        self.backup = Some(path.into());
        self
    }

    /// Fail with [`Error::TargetExists`] rather than replace an existing target
    /// (`renameat2(RENAME_NOREPLACE)`: the check and the rename are one step).
    pub fn no_clobber(mut self, no_clobber: bool) -> Self {
        self.no_clobber = no_clobber;
        self
    }

    /// Permission bits for the new file, instead of the target's.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Starts an atomic write of `target`.
    pub fn open(&self, target: impl AsRef<Path>) -> Result<AtomicFile> {
        AtomicFile::open_with(target.as_ref(), self.clone())
    }

    /// Starts an atomic write of `target` once no other locked write of it is under way
    /// (see [`AtomicFile::open_locked`]).
    pub async fn open_locked(
        &self,
        target: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<AtomicFile> {
        let target = target.as_ref();
        let lock = FileLock::own_file(&lock_path(target)?, timeout).await?;
        let mut file = self.open(target)?;
        file.lock = Some(lock);
        Ok(file)
    }
}

/// A file written beside its target and renamed over it on [`commit`](Self::commit):
/// readers see the old content or the new, never a mix, even if the process is killed.
pub struct AtomicFile {
    // Dropped in this order: the temp path is removed while the file, and its lock, are
    // still open, so no sweep sees the entry unowned first.
    guard: Guard,
    file: File,
    target: PathBuf,
    options: AtomicOptions,
    written: u64,
    /// The target's write lock, for a locked write: released after the commit (or the
    /// drop), so the next writer reads what this one wrote.
    lock: Option<FileLock>,
}

impl std::fmt::Debug for AtomicFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicFile")
            .field("target", &self.target)
            .field("temp", &self.guard.path())
            .field("written", &self.written)
            .finish()
    }
}

impl AtomicFile {
    /// Starts an atomic write of `target` with default [`AtomicOptions`].
    pub fn new(target: impl AsRef<Path>) -> Result<AtomicFile> {
        AtomicOptions::new().open(target)
    }

    fn open_with(target: &Path, options: AtomicOptions) -> Result<AtomicFile> {
        let not_a_file = || Error::NotAFilePath {
            path: target.to_path_buf(),
        };
        let dir = fsops::parent_of(target).ok_or_else(not_a_file)?;
        let name = target.file_name().ok_or_else(not_a_file)?;
        let create_err = |source| Error::Create {
            root: dir.to_path_buf(),
            source,
        };

        registry::note_dir(dir);
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let mode = options.mode.unwrap_or(0o666);
        let (file, temp) = match fsops::create_locked(dir, mode).map_err(create_err)? {
            // Locked before it has a name: no sweep ever sees it unowned.
            Some(file) => {
                let ((), temp) = tempfile::Builder::new()
                    .prefix(&prefix)
                    .suffix(ATOMIC_SUFFIX)
                    .disable_cleanup(true)
                    .make_in(dir, |path| fsops::link_into(&file, path))
                    .and_then(|f| f.keep().map_err(|e| e.error))
                    .map_err(create_err)?;
                (file, temp)
            }
            None => create_pending(dir, &prefix, mode).map_err(create_err)?,
        };
        if options.mode.is_none()
            && let Ok(meta) = fs::metadata(target)
            && let Err(source) = file.set_permissions(meta.permissions())
        {
            let _ = fs::remove_file(&temp);
            return Err(create_err(source));
        }
        let guard = registry::register(temp, EntryKind::AtomicTemp);
        Ok(AtomicFile {
            file,
            guard,
            target: target.to_path_buf(),
            options,
            written: 0,
            lock: None,
        })
    }

    /// Starts an atomic write of `target` holding its write lock: an exclusive
    /// [`FileLock`] on `.<name>.lock` beside it, taken within `timeout`
    /// ([`Error::LockTimeout`] otherwise) and released after [`commit`](Self::commit)
    /// or on drop, when the lock file is removed. Two locked writers of one target
    /// serialise instead of the last rename winning: a read-modify-write done under the
    /// lock sees the previous writer's content. A writer killed while holding it
    /// releases it at once; its lock file is taken over and removed by the next.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scoped_temp::Error> {
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let target = dir.path().join("counter");
    /// let mut write = scoped_temp::AtomicFile::open_locked(&target, Duration::from_secs(5)).await?;
    /// let n: u32 = std::fs::read_to_string(&target).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    /// write.write_bytes((n + 1).to_string().as_bytes())?;
    /// write.commit()?;
    /// assert_eq!(std::fs::read_to_string(&target).unwrap(), "1");
    /// assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no lock file left");
    /// # Ok(()) }
    /// ```
    pub async fn open_locked(target: impl AsRef<Path>, timeout: Duration) -> Result<AtomicFile> {
        AtomicOptions::new().open_locked(target, timeout).await
    }

    /// The file this write will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Where the new content is being written.
    pub fn temp_path(&self) -> &Path {
        self.guard.path()
    }

    /// Bytes written so far through [`Write`] or [`write_bytes`](Self::write_bytes).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The temp file, for APIs that want a [`File`]. Bytes written through it directly
    /// are not counted in [`written`](Self::written).
    pub fn as_file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Writes all of `data`, with a typed error (target path and bytes written so far)
    /// when the disk or a quota is full.
    pub fn write_bytes(&mut self, data: &[u8]) -> Result<()> {
        self.write_all(data).map_err(|source| Error::Write {
            path: self.target.clone(),
            written: self.written,
            source,
        })
    }

    /// Makes the new content the target's, durably: fsync the file, rename it over the
    /// target (or fail with [`Error::TargetExists`] under `no_clobber`), fsync the
    /// directory. On any error the target is as it was and the temp file is removed.
    ///
    /// An [`Error::Sync`] of the directory after the rename means the new content is in
    /// place but may not survive a power loss.
    pub fn commit(self) -> Result<()> {
        commit_all(vec![self], can_exchange()).map_err(|error| match error {
            Error::Batch {
                source,
                rollback_failures,
                ..
            } if rollback_failures.is_empty() => *source,
            other => other,
        })
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Several atomic writes that commit all or none.
///
/// Each target is replaced in order; if one fails, those already replaced are restored
/// (`renameat2(RENAME_EXCHANGE)` swaps them back), and the error says which file failed
/// and whether any restore did not work. Readers can see some targets new and others old
/// while the commit runs, and a crash in the middle of one can leave them so: the batch
/// is all-or-nothing against errors, not a transaction against power loss.
///
/// ```
/// # fn main() -> Result<(), scoped_temp::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let mut batch = scoped_temp::AtomicBatch::new();
/// batch.add(dir.path().join("index.json"))?.write_bytes(b"{}")?;
/// batch.add(dir.path().join("data.bin"))?.write_bytes(&[1, 2, 3])?;
/// batch.commit()?;
/// assert_eq!(std::fs::read(dir.path().join("data.bin")).unwrap(), [1, 2, 3]);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct AtomicBatch {
    files: Vec<AtomicFile>,
}

impl AtomicBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts an atomic write of `target` in this batch and returns it for writing.
    pub fn add(&mut self, target: impl AsRef<Path>) -> Result<&mut AtomicFile> {
        self.add_with(target, &AtomicOptions::new())
    }

    /// [`add`](Self::add) with options.
    pub fn add_with(
        &mut self,
        target: impl AsRef<Path>,
        options: &AtomicOptions,
    ) -> Result<&mut AtomicFile> {
        let file = options.open(target)?;
        self.files.push(file);
        let last = self.files.len() - 1;
        Ok(&mut self.files[last])
    }

    /// Adds a write started elsewhere.
    pub fn push(&mut self, file: AtomicFile) {
        self.files.push(file);
    }

    /// How many files the batch holds.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// `true` when the batch holds no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Commits every file, or none: see the type's docs. The error is
    /// [`Error::Batch`], naming the file that failed.
    pub fn commit(self) -> Result<()> {
        commit_all(self.files, can_exchange())
    }
}

/// Writes `contents` to `path` atomically (temp file, fsync, rename, fsync dir) on
/// tokio's blocking pool.
pub async fn write_atomic(path: impl Into<PathBuf>, contents: impl AsRef<[u8]>) -> Result<()> {
    let path = path.into();
    let contents = std::sync::Arc::<[u8]>::from(contents.as_ref());
    registry::run_blocking(move || write_atomic_blocking(&path, &contents)).await
}

/// [`write_atomic`] on this thread.
pub fn write_atomic_blocking(path: impl AsRef<Path>, contents: &[u8]) -> Result<()> {
    let mut file = AtomicFile::new(path)?;
    file.write_bytes(contents)?;
    file.commit()
}

fn can_exchange() -> bool {
    cfg!(any(target_os = "linux", target_os = "android"))
}

/// How a target was replaced, so it can be undone.
enum Step {
    /// The target did not exist; the temp file was renamed to it.
    Created,
    /// Swapped with the target: the temp path now holds the previous version.
    Exchanged,
    /// The previous version was hard-linked to `old` and the temp renamed over the target
    /// (where the filesystem cannot exchange).
    Replaced { old: PathBuf },
}

fn commit_all(mut files: Vec<AtomicFile>, can_exchange: bool) -> Result<()> {
    // Each previous version is locked (shared: writers of the same target do not block
    // each other) from before it is linked as a backup's staging or exchanged to the
    // temp path, until it is removed or restored: a sweep, which reclaims only what no
    // one holds a lock on, never takes what a rollback still needs.
    let previous: Vec<Option<File>> = files
        .iter()
        .map(|f| {
            (!f.options.no_clobber)
                .then(|| fsops::lock_existing(&f.target))
                .flatten()
        })
        .collect();
    let result = commit_locked(&mut files, can_exchange);
    // The temp paths (uncommitted content, or previous versions after an exchange) are
    // removed as the files drop: before the locks go.
    drop(files);
    drop(previous);
    result
}

fn commit_locked(files: &mut [AtomicFile], can_exchange: bool) -> Result<()> {
    let total = files.len();
    let fail = |index: usize, target: &Path, source: Error, rollback_failures| Error::Batch {
        index,
        total,
        target: target.to_path_buf(),
        source: Box::new(source),
        rollback_failures,
    };

    // 1. Nothing changes until every byte is on disk and every backup exists.
    for (index, f) in files.iter().enumerate() {
        if !f.guard.is_registered() {
            let error = Error::Reclaimed {
                path: f.temp_path().to_path_buf(),
            };
            return Err(fail(index, &f.target, error, Vec::new()));
        }
        if let Err(source) = f.file.sync_all() {
            let error = Error::Sync {
                path: f.temp_path().to_path_buf(),
                source,
            };
            return Err(fail(index, &f.target, error, Vec::new()));
        }
        if let Some(backup) = &f.options.backup
            && let Err(error) = make_backup(&f.target, backup)
        {
            return Err(fail(index, &f.target, error, Vec::new()));
        }
    }

    // 2. Replace the targets in order; on failure undo the ones done, newest first.
    let mut done: Vec<Step> = Vec::with_capacity(total);
    for index in 0..total {
        match replace(&files[index], can_exchange) {
            Ok(step) => done.push(step),
            Err(error) => {
                let mut rollback_failures = Vec::new();
                for (f, step) in files.iter_mut().zip(done).rev() {
                    if let Err(e) = undo(f, step) {
                        tracing::error!(error = %e, "scoped-temp: batch rollback failed");
                        rollback_failures.push(e);
                    }
                }
                // Every temp file still registered is removed as `files` drops.
                return Err(fail(index, &files[index].target, error, rollback_failures));
            }
        }
    }

    // 3. Tidy up: previous versions go (an exchanged one sits at the temp path, which
    //    the guard removes on drop), then the directories are synced.
    let mut dirs: Vec<&Path> = Vec::new();
    for (f, step) in files.iter_mut().zip(done) {
        match step {
            Step::Exchanged => {}
            Step::Created => {
                let _ = f.guard.forget();
            }
            Step::Replaced { old } => {
                let _ = f.guard.forget();
                if let Err(e) = fs::remove_file(&old) {
                    tracing::warn!(path = %old.display(), error = %e, "scoped-temp: previous version left");
                }
            }
        }
    }
    for f in files.iter() {
        let dirs_of = [Some(f.target.as_path()), f.options.backup.as_deref()];
        for dir in dirs_of.into_iter().flatten().filter_map(fsops::parent_of) {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    for dir in dirs {
        fsops::sync_dir(dir).map_err(|source| Error::Sync {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

fn replace(f: &AtomicFile, can_exchange: bool) -> Result<Step> {
    let temp = f.temp_path();
    let target = &f.target;
    let rename_err = |source| Error::Rename {
        from: temp.to_path_buf(),
        to: target.clone(),
        source,
    };
    let exists = fs::symlink_metadata(target).is_ok();
    if f.options.no_clobber || !exists {
        return match fsops::rename_noreplace(temp, target) {
            Ok(()) => Ok(Step::Created),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::TargetExists {
                target: target.clone(),
            }),
            Err(e) => Err(rename_err(e)),
        };
    }
    if can_exchange && fsops::exchange(temp, target).map_err(rename_err)? {
        return Ok(Step::Exchanged);
    }
    let old = fsops::with_suffix(temp, ".old");
    fsops::replace_keeping_old(temp, target, &old).map_err(rename_err)?;
    Ok(Step::Replaced { old })
}

fn undo(f: &mut AtomicFile, step: Step) -> Result<()> {
    let temp = f.guard.path().to_path_buf();
    let target = f.target.clone();
    let result = match step {
        // Back to the temp path, where the guard removes it.
        Step::Created => fs::rename(&target, &temp),
        // Swap back: old content at the target, new at the temp path.
        Step::Exchanged => fsops::exchange(&temp, &target).map(|_| ()),
        Step::Replaced { old } => {
            let _ = f.guard.forget();
            return fs::rename(&old, &target).map_err(|source| Error::Rename {
                from: old,
                to: target,
                source,
            });
        }
    };
    result.map_err(|source| Error::Rename {
        from: target,
        to: temp,
        source,
    })
}

fn make_backup(target: &Path, backup: &Path) -> Result<()> {
    if fs::symlink_metadata(target).is_err() {
        return Ok(()); // Nothing to back up.
    }
    let staging = fsops::with_suffix(backup, PENDING_SUFFIXES[0]);
    if let Some(dir) = fsops::parent_of(backup) {
        registry::note_dir(dir);
    }
    let err = |source| Error::Rename {
        from: target.to_path_buf(),
        to: backup.to_path_buf(),
        source,
    };
    let _ = fs::remove_file(&staging);
    // A hard link is the target's inode, which the commit holds locked; a copy is locked
    // before it has a name (where unnamed files exist).
    match fs::hard_link(target, &staging) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            let dir = fsops::parent_of(backup).unwrap_or(Path::new("."));
            match fsops::create_locked(dir, 0o600).map_err(err)? {
                Some(mut copy) => {
                    io::copy(&mut File::open(target).map_err(err)?, &mut copy).map_err(err)?;
                    copy.set_permissions(fs::metadata(target).map_err(err)?.permissions())
                        .map_err(err)?;
                    fsops::link_into(&copy, &staging).map_err(err)?;
                }
                None => {
                    fs::copy(target, &staging).map_err(err)?;
                }
            }
        }
        Err(e) => return Err(err(e)),
    }
    fs::rename(&staging, backup).map_err(|e| {
        let _ = fs::remove_file(&staging);
        err(e)
    })?;
    // When the backup already was a link to the target's inode (the same backup made
    // twice), `rename` succeeds without doing anything (POSIX) and the staging name
    // stays: remove it.
    match fs::remove_file(&staging) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(err(e)),
        _ => Ok(()),
    }
}

/// `.<name>.lock` beside `target`.
fn lock_path(target: &Path) -> Result<PathBuf> {
    let not_a_file = || Error::NotAFilePath {
        path: target.to_path_buf(),
    };
    let dir = fsops::parent_of(target).ok_or_else(not_a_file)?;
    let mut name = std::ffi::OsString::from(".");
    name.push(target.file_name().ok_or_else(not_a_file)?);
    name.push(".lock");
    Ok(dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(target: &Path, data: &str) -> AtomicFile {
        let mut f = AtomicFile::new(target).unwrap();
        f.write_bytes(data.as_bytes()).unwrap();
        f
    }

    /// The portable path (hard link + rename), used where renameat2 cannot exchange,
    /// restores every target when a later file fails.
    #[test]
    fn batch_without_exchange_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, "old a").unwrap();
        let gone = dir.path().join("gone");
        fs::create_dir(&gone).unwrap();
        let files = vec![
            write(&a, "new a"),
            write(&b, "new b"),
            write(&gone.join("c"), "new c"),
        ];
        fs::remove_dir_all(&gone).unwrap();

        let err = commit_all(files, false).unwrap_err();
        assert!(
            matches!(err, Error::Batch { index: 2, total: 3, ref rollback_failures, .. } if rollback_failures.is_empty()),
            "{err:?}"
        );
        assert_eq!(fs::read_to_string(&a).unwrap(), "old a");
        assert!(!b.exists());
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("a")]);
    }

    #[test]
    fn batch_without_exchange_commits() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::write(&a, "old").unwrap();
        commit_all(vec![write(&a, "new")], false).unwrap();
        assert_eq!(fs::read_to_string(&a).unwrap(), "new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
