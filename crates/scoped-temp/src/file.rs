//! Named temp files.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::registry::Guard;
use crate::{Builder, Result};

/// A named file that is removed when this handle is dropped or closed, or when
/// [`remove_all`](crate::remove_all) runs. It reads and writes like a [`File`].
///
/// To put a file at a final path durably, write an [`AtomicFile`](crate::AtomicFile)
/// instead: a temp file lives in the run directory, which may be on another filesystem
/// than the target.
pub struct NamedTempFile {
    file: File,
    guard: Guard,
}

impl NamedTempFile {
    pub(crate) fn new_registered(file: File, guard: Guard) -> Self {
        NamedTempFile { file, guard }
    }

    /// A new file under [`std::env::temp_dir()`].
    pub fn new() -> Result<NamedTempFile> {
        Builder::new().tempfile()
    }

    /// A new file under `root`.
    pub fn new_in(root: impl AsRef<Path>) -> Result<NamedTempFile> {
        Builder::new().root(root.as_ref()).tempfile()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.guard.path()
    }

    /// The open file.
    pub fn as_file(&self) -> &File {
        &self.file
    }

    /// The open file, mutably.
    pub fn as_file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Closes and removes the file on tokio's blocking pool (inline outside a runtime).
    pub async fn close(self) -> Result<()> {
        drop(self.file);
        self.guard.close().await
    }

    /// Closes and removes the file now, on this thread.
    pub fn close_blocking(self) -> Result<()> {
        drop(self.file);
        self.guard.close_blocking()
    }

    /// Keeps the file: moves it out of the run directory into the root, where no cleanup
    /// or sweep touches it, and returns the open file and its new path.
    pub fn keep(self) -> Result<(File, PathBuf)> {
        let path = self.guard.keep()?;
        Ok((self.file, path))
    }
}

impl fmt::Debug for NamedTempFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedTempFile")
            .field("path", &self.path())
            .finish()
    }
}

impl Read for NamedTempFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Write for NamedTempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for NamedTempFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}
