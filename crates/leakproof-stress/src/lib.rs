//! Judges any program from outside: what it leaves behind when it finishes, when it is
//! told to stop, and when it is killed.
//!
//! # The guarantee
//!
//! [`Torture`] runs a command to completion, sends it SIGTERM at random points and
//! SIGKILL at random points, and after each round reports, with PIDs, command lines
//! and names, every process it left running (found by an environment marker, by
//! parentage, and by cgroup where the host gives the command a cgroup v2 of its own),
//! every zombie a survivor never reaped, every entry left in its private `TMPDIR`, a
//! completed run's non-zero exit, and a SIGTERM it did not answer within the deadline.
//! What it found, it ends and removes: a torture run leaves the machine as it found
//! it. The verdict is a [`Report`], written as JSON, JUnit XML and Markdown (appended
//! to `$GITHUB_STEP_SUMMARY` in GitHub Actions).
//!
//! [`Soak`] judges a long-running service: it starts the service once, runs a load
//! command against it round after round, judges the trend of the service's resident
//! memory and open descriptors (a robust slope over the rounds after a warm-up), then
//! stops it with SIGTERM and judges what it left, as above.
//!
//! [`Operations`] judges async code in-process: N operations of yours at a given
//! concurrency, a share of them faulted (told to fail or panic, or cancelled), then
//! temp entries, child processes and descriptors checked back to a baseline read
//! before them ([`Counts`]), gauges of yours (a pool's idle connections) back to their
//! values, a resident-memory trend if asked, all within a time limit (the watchdog).
//! For a long run, [`recorder::Recorder`] samples this process's figures from outside
//! every 50 ms, marks its phases, and stops a phase that runs past its limit (the
//! watchdog); with the feature `chart` it draws them as an SVG chart. `cargo xtask
//! stress` records its run with it, judges its scenarios with the same [`Counts`] and
//! reports through the same [`Case`]s.
//!
//! The `leakproof-stress` binary is the same engine on the command line:
//!
//! ```text
//! cargo install --path crates/leakproof-stress
//! leakproof-stress run --runs 3 --terms 5 --kills 5 --deadline 10 --out target/torture -- ./my-tool --once
//! leakproof-stress soak --load './load-test.sh' --rounds 20 -- ./my-service --port 8080
//! ```
//!
//! It exits 0 when every check held, 1 naming each leak otherwise, 2 when the torture
//! itself could not run.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), leakproof_stress::Error> {
//! use std::time::Duration;
//! use leakproof_stress::Torture;
//!
//! // A script that forgets its temp file.
//! let report = Torture::new("sh", ["-c", "mktemp >/dev/null"])
//!     .runs(1)
//!     .terms(0)
//!     .kills(0)
//!     .settle(Duration::from_millis(200))
//!     .run()
//!     .await?;
//! assert!(!report.passed());
//! assert!(report.failures()[0].contains("leaves no entry in its TMPDIR: 1 left"));
//! # Ok(()) }
//! ```
//!
//! # What this does not protect against
//!
//! - **Leaks outside what it looks at.** Files written outside `TMPDIR` (a path the
//!   program hard-codes), shared memory, System V IPC, sockets to other hosts, and
//!   resources held by other services on the program's behalf are not seen.
//! - **A survivor that hides on every count**: one that clears its environment
//!   (`env -i`), leaves the process group, is re-parented to another subreaper (a
//!   `systemd --user` session) rather than to this process, and runs where no cgroup v2
//!   of its own is given to the command (cgroup v1 hosts, non-delegated containers).
//!   Re-parenting here catches the usual double fork; the cgroup catches the rest.
//! - **Other children of the calling process.** Everything re-parented to this process
//!   counts as the command's: call [`Torture::run`] from a process that starts nothing
//!   else meanwhile (the CLI is such a process).
//! - **A trend is not a proof.** The soak's slope catches steady growth per round; a
//!   leak that shows once in a hundred rounds, or that stays under the tolerance, passes.
//!   On glibc a multi-threaded service's resident size creeps while its malloc arenas
//!   fill: run it with `MALLOC_ARENA_MAX=1` or `2` to judge memory.
//! - **Random points are not exhaustive.** A leak that only a signal in one
//!   millisecond-wide window shows may take many rounds to hit; the seed makes a found
//!   one reproducible.
//!
//! # Platforms
//!
//! Linux only: it reads `/proc`, signals through pidfds and relies on
//! [`proc_reaper`], which builds on Linux only.

mod baseline;
mod error;
mod kill;
mod launch;
mod ops;
pub mod recorder;
pub mod report;
pub mod scan;
mod soak;
mod torture;

pub use baseline::Counts;
pub use error::{Error, Result};
pub use ops::{Fault, Op, Operations};
pub use report::{Case, Check, Report};
pub use soak::{SERVICE_PID_VAR, Soak};
pub use torture::{Torture, spread};

/// The longest time a setting keeps as given (a deadline, a timeout, a settle time, an
/// interval): 100 years. A longer one (`Duration::MAX`, say) is taken as this: added to
/// the clock's reading it would overflow.
pub const LONGEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

/// The environment variable every process the command starts inherits: its value names
/// the torture run and the round, so a survivor is found wherever it was re-parented.
pub const MARKER_VAR: &str = "LEAKPROOF_STRESS_RUN";
