//! The umbrella crate: everything an operation borrows, released on every path.
//!
//! # The guarantee
//!
//! [`scope`] runs an operation with a [`Scope`] that registers what it acquires (temp
//! dirs, child process trees, spawned tasks, arbitrary async cleanups with
//! [`Scope::defer`]) and releases it in reverse order when the operation returns `Ok`,
//! returns `Err`, panics, or has its future dropped. A release that fails is reported
//! and the others still run; the [`ScopeReport`] says what was released, what failed
//! and why, and how long it took, and is logged. Scopes nest. It works on the
//! current-thread runtime.
//!
//! Each focused crate is re-exported as a module behind a default feature:
//! [`temp`] (scoped-temp), [`stream`] (bounded-stream), [`gate`] (rate-gate),
//! [`proc`] (proc-reaper, Linux), [`mem`] (mem-watch), [`cache`] (ttl-cache).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (outcome, report) = leakproof::scope("render", |scope| async move {
//!     let work = scope.temp_dir().map_err(std::io::Error::other)?;
//!     scope.defer("flush metrics", || async { Ok(()) });
//!     Err::<(), _>(std::io::Error::other("ffmpeg failed"))
//! })
//! .await;
//! assert!(outcome.is_err());
//! // Released anyway, last acquired first: the metrics flush, then the temp dir.
//! assert_eq!(report.released.len(), 2);
//! assert_eq!(report.released[0].what, "flush metrics");
//! # }
//! ```
//!
//! # Status
//!
//! Present: the re-exports and `Scope`. Still to come (its issue): `Shutdown` (signals,
//! a deadline, forced release), `Health`, and the rate-aware `ApiClient`.
//!
//! # What this does not protect against
//!
//! - **A dropped scope's async cleanups.** When the operation's future is dropped,
//!   what releases itself on drop is released at once (temp dirs removed, child trees
//!   killed, tasks aborted); deferred cleanups are spawned on the runtime and nobody
//!   awaits them, so a process that exits right after may cut them short.
//! - **Resources registered nowhere.** Only what goes through the scope is released.
//! - **The process being killed.** A SIGKILL runs no release; `proc::supervise()` and
//!   `temp::sweep_orphans` cover that case.

mod scope;

#[cfg(all(feature = "proc", target_os = "linux"))]
pub use scope::ScopedChild;
pub use scope::{BoxError, Ended, Released, Scope, ScopeReport, scope};

#[cfg(feature = "stream")]
pub use bounded_stream as stream;
#[cfg(feature = "mem")]
pub use mem_watch as mem;
#[cfg(feature = "proc")]
pub use proc_reaper as proc;
#[cfg(feature = "gate")]
pub use rate_gate as gate;
#[cfg(feature = "temp")]
pub use scoped_temp as temp;
#[cfg(feature = "cache")]
pub use ttl_cache as cache;
