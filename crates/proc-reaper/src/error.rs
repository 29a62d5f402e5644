//! The crate's one error type.

use std::io;

/// What spawning, watching or ending a child can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The program could not be started.
    #[error("could not spawn {program:?}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: io::Error,
    },

    /// A pidfd could not be opened or watched for a running child.
    #[error("could not watch pid {pid} through a pidfd: {source}")]
    Pidfd {
        /// The child's PID.
        pid: u32,
        /// The OS error.
        source: io::Error,
    },

    /// Reaping the child (`wait4`) failed.
    #[error("could not reap pid {pid}: {source}")]
    Reap {
        /// The child's PID.
        pid: u32,
        /// The OS error.
        source: io::Error,
    },

    /// This process could not be made a child subreaper.
    #[error("could not become a child subreaper: {0}")]
    Subreaper(io::Error),

    /// A step of supervision failed (starting the program, its registry, signals).
    #[error("supervisor: could not {step}: {source}")]
    Supervisor {
        /// What was being done.
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },

    /// The reaper needs a tokio runtime (with IO enabled) to watch its children.
    #[error("proc-reaper needs a tokio runtime with IO enabled")]
    NoRuntime,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
