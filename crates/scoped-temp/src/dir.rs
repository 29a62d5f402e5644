//! Temp directories: [`Builder`], [`TempDir`] and the closure form [`with_temp_dir`].

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::registry::{self, EntryKind, Guard};
use crate::{Error, NamedTempFile, Result};

/// Options for creating temp dirs and files: name prefix and suffix, and the root they
/// are created under.
///
/// ```
/// # fn main() -> Result<(), scoped_temp::Error> {
/// let root = std::env::temp_dir();
/// let dir = scoped_temp::Builder::new().prefix("job-42-").root(&root).tempdir()?;
/// assert!(dir.path().file_name().unwrap().to_str().unwrap().starts_with("job-42-"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    prefix: OsString,
    suffix: OsString,
    root: Option<PathBuf>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            prefix: ".tmp".into(),
            suffix: OsString::new(),
            root: None,
        }
    }
}

impl Builder {
    /// Defaults: prefix `.tmp`, no suffix, root [`std::env::temp_dir()`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The start of each entry's name; a random part follows. A name part only: one
    /// holding `/` or NUL makes creating fail with [`Error::InvalidName`].
    pub fn prefix(&mut self, prefix: impl Into<OsString>) -> &mut Self {
        self.prefix = prefix.into();
        self
    }

    /// The end of each entry's name, after the random part. A name part only, as for
    /// [`prefix`](Self::prefix).
    pub fn suffix(&mut self, suffix: impl Into<OsString>) -> &mut Self {
        self.suffix = suffix.into();
        self
    }

    /// The directory to create entries under (inside this process's run directory
    /// there). It must exist and be writable.
    pub fn root(&mut self, root: impl Into<PathBuf>) -> &mut Self {
        self.root = Some(root.into());
        self
    }

    fn root_path(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// The prefix and suffix are parts of a file name: no `/` (an entry outside its run
    /// directory is one no sweep finds) and no NUL.
    fn check_name(&self) -> Result<()> {
        for (part, value) in [("prefix", &self.prefix), ("suffix", &self.suffix)] {
            if value.as_bytes().iter().any(|&b| b == b'/' || b == 0) {
                return Err(Error::InvalidName {
                    part,
                    value: value.clone(),
                });
            }
        }
        Ok(())
    }

    fn tempfile_builder(&self) -> tempfile::Builder<'_, '_> {
        let mut b = tempfile::Builder::new();
        b.prefix(&self.prefix)
            .suffix(&self.suffix)
            .disable_cleanup(true);
        b
    }

    /// Creates a directory, mode `0700`.
    pub fn tempdir(&self) -> Result<TempDir> {
        self.check_name()?;
        let root = self.root_path();
        let ((), guard) = registry::create_in_root(&root, EntryKind::Dir, |run| {
            let mut builder = self.tempfile_builder();
            builder.permissions(std::fs::Permissions::from_mode(0o700));
            let path = builder.tempdir_in(run)?.keep();
            Ok(((), path))
        })?;
        Ok(TempDir { guard })
    }

    /// Creates a file, mode `0600`, open for reading and writing.
    pub fn tempfile(&self) -> Result<NamedTempFile> {
        self.check_name()?;
        let root = self.root_path();
        let (file, guard) = registry::create_in_root(&root, EntryKind::File, |run| {
            self.tempfile_builder()
                .tempfile_in(run)?
                .keep()
                .map_err(|e| e.error)
        })?;
        Ok(NamedTempFile::new_registered(file, guard))
    }

    /// Runs `f` with a fresh temp directory and removes the directory afterwards,
    /// whether `f` returns `Ok` or `Err`, panics, or is cancelled (its future dropped).
    ///
    /// On `Ok`, the removal runs on tokio's blocking pool and its failure becomes the
    /// result. On `Err`, `f`'s error is returned and a removal failure is only logged,
    /// since the first error is the one worth seeing. On panic or cancellation the
    /// directory is removed synchronously while the future unwinds or drops.
    pub async fn with_temp_dir<F, Fut, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Error>,
    {
        let dir = self.tempdir()?;
        let result = f(dir.path().to_path_buf()).await;
        let closed = dir.close().await;
        match (result, closed) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(error)) => Err(error.into()),
            (Err(error), closed) => {
                if let Err(cleanup) = closed {
                    tracing::warn!(error = %cleanup, "scoped-temp: cleanup after a failed operation failed");
                }
                Err(error)
            }
        }
    }
}

/// A directory that is removed, with everything in it, when this handle is dropped or
/// closed, or when [`remove_all`](crate::remove_all) runs.
///
/// Dropping removes synchronously (like `tempfile::TempDir`); in async code with a large
/// tree, prefer [`close`](TempDir::close), which removes on the blocking pool and
/// reports failure.
pub struct TempDir {
    guard: Guard,
}

impl TempDir {
    /// A new directory under [`std::env::temp_dir()`].
    pub fn new() -> Result<TempDir> {
        Builder::new().tempdir()
    }

    /// A new directory under `root`.
    pub fn new_in(root: impl AsRef<Path>) -> Result<TempDir> {
        Builder::new().root(root.as_ref()).tempdir()
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.guard.path()
    }

    /// Removes the directory on tokio's blocking pool (inline outside a runtime) and
    /// says whether that worked. Cancelling the returned future does not cancel the
    /// removal. `Ok` also when [`remove_all`](crate::remove_all) removed it first.
    pub async fn close(self) -> Result<()> {
        self.guard.close().await
    }

    /// Removes the directory now, on this thread.
    pub fn close_blocking(self) -> Result<()> {
        self.guard.close_blocking()
    }

    /// Keeps the directory: moves it out of the run directory into the root, where no
    /// cleanup or sweep touches it, and returns its new path.
    pub fn keep(self) -> Result<PathBuf> {
        self.guard.keep()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl fmt::Debug for TempDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempDir")
            .field("path", &self.path())
            .finish()
    }
}

/// [`Builder::with_temp_dir`] with the default builder: a temp dir under
/// [`std::env::temp_dir()`] that is gone when `f` is done, however it ends.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), scoped_temp::Error> {
/// let mut seen = None;
/// let lines = scoped_temp::with_temp_dir(|dir| {
///     seen = Some(dir.clone());
///     async move {
///         let path = dir.join("notes.txt");
///         std::fs::write(&path, "a\nb\n")
///             .map_err(|source| scoped_temp::Error::Write { path, written: 0, source })?;
///         Ok::<_, scoped_temp::Error>(2)
///     }
/// })
/// .await?;
/// assert_eq!(lines, 2);
/// assert!(!seen.unwrap().exists());
/// # Ok(()) }
/// ```
pub async fn with_temp_dir<F, Fut, T, E>(f: F) -> Result<T, E>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<Error>,
{
    Builder::new().with_temp_dir(f).await
}
