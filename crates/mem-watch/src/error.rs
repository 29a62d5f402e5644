//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// What can go wrong. Reading a procfs or cgroup field that the kernel does not provide
/// is not an error: that field is `None`. Errors are for what the caller asked for and
/// could not get.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file this crate needs could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// A reservation larger than the whole budget can never be granted.
    #[error("reservation of {requested} bytes exceeds the budget's capacity of {capacity} bytes")]
    OverBudget {
        /// Bytes asked for.
        requested: u64,
        /// The budget's total.
        capacity: u64,
    },

    /// The budget was closed while waiting.
    #[error("the memory budget was closed")]
    BudgetClosed,

    /// A pressure trigger could not be installed (no PSI, not permitted, or parameters
    /// the kernel refuses).
    #[error("cannot install a memory pressure trigger ({spec}) on {path}: {source}")]
    Trigger {
        /// The PSI file.
        path: PathBuf,
        /// What was written.
        spec: String,
        /// What the kernel said.
        source: io::Error,
    },

    /// A leak check needs at least three rounds after warm-up to fit a trend.
    #[error("a leak check needs at least 3 measured rounds, got {rounds}")]
    TooFewRounds {
        /// Measured rounds asked for.
        rounds: usize,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
