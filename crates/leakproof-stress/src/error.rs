//! The crate's one error type: what stops a torture run itself. What the command under
//! test does wrong is not an error but a failed check in the [`Report`](crate::Report).

use std::io;
use std::path::PathBuf;

/// What can stop a torture run, or the writing of its report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command could not be started, or the reaper could not be set up.
    #[error(transparent)]
    Process(#[from] proc_reaper::Error),

    /// A private temp directory could not be created.
    #[error("could not create the temp directory {path}: {source}")]
    TempRoot {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },

    /// A report file could not be written.
    #[error("could not write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
