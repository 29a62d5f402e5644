//! Child processes that never outlive their owner.
//!
//! # The guarantee
//!
//! A child spawned through a [`Reaper`] is ended together with its whole process tree
//! (grandchildren that double-fork or call `setsid` included) when its [`Child`] handle
//! is dropped, when the future awaiting it is cancelled, when its time runs out
//! ([`Child::wait_timeout`]), and on [`Reaper::shutdown`]: SIGTERM first, SIGKILL after
//! a grace period (dropping skips straight to SIGKILL); [`Reaper::shutdown_by`] also
//! returns by a deadline, counting members still dying of SIGKILL then. Every signal
//! goes through a pidfd opened while the process was alive, so a reused PID is never
//! hit, and whether a member still runs is read from that pidfd too, so a reused PID
//! never keeps one alive either. The leader and every orphan of the tree re-parented
//! to this process are reaped: no zombies.
//! Captured output is a bounded tail (plus, optionally, each line to a callback), so a
//! child that writes forever costs bounded memory.
//!
//! How: each child starts in its own process group, with an environment marker
//! ([`MARKER_VAR`]) its descendants inherit. The reaper makes this process a child
//! subreaper, so a grandchild whose parent dies is re-parented here, where its
//! process group (before it calls `setsid`) or the marker identifies its tree; one
//! caught in the middle of `exec`, its environment not readable yet, is looked at again
//! until it is. Where a writable cgroup v2 hierarchy with `cgroup.kill` (Linux 5.14+)
//! exists, each tree also gets a cgroup of its own, joined by the leader before its
//! first instruction, which no `setsid` or cleared environment leaves, whose
//! `cgroup.kill` ends every member at once, and in which a member that died stays
//! known, so every zombie adopted from the tree is reaped. Ending a tree
//! walks `/proc/<pid>/task/*/children` (each list in one read, so none is skipped while
//! it changes) from the leader and from those escapees, signals every member through
//! its pidfd, and rescans until nothing is left.
//!
//! The peers: tokio's `kill_on_drop` kills the child's PID only, with no TERM stage;
//! `process-wrap` kills the group leader; `duct` calls killing grandchildren unsolved; a
//! `setsid` grandchild escapes every process-group kill.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), proc_reaper::Error> {
//! use std::process::Command;
//! use std::time::Duration;
//! use proc_reaper::Reaper;
//!
//! let reaper = Reaper::new()?;
//! let mut cmd = Command::new("sh");
//! cmd.args(["-c", "echo working; sleep 60"]);
//! let child = reaper.command(cmd).name("slow-job").grace(Duration::from_millis(100)).spawn()?;
//! assert_eq!(reaper.live_count(), 1);
//! // Out of time: SIGTERM, 100 ms of grace, then SIGKILL, for the whole tree.
//! let outcome = child.wait_timeout(Duration::from_millis(200)).await?;
//! assert!(outcome.timed_out);
//! assert_eq!(outcome.stdout.text(), "working\n");
//! assert_eq!(reaper.live_count(), 0);
//! # Ok(()) }
//! ```
//!
//! # Surviving the owner's own death
//!
//! A SIGKILLed process cleans up nothing. [`supervise()`], called first thing in `main`,
//! re-executes the program as the child of a small supervisor (a child subreaper) that
//! forwards SIGTERM/SIGINT/SIGHUP, and once the program is gone, however it went, ends
//! every descendant left, removes the paths the program registered with
//! [`Supervisor::remove_on_exit`], and exits with the program's status. And should an
//! owner itself be SIGKILLed (a reaper's process, or a supervisor), the first reaper or
//! supervisor that starts afterwards on the machine ends the trees it left and reclaims
//! its directory ([`sweep_dead_owners`]):
//!
//! ```no_run
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let supervisor = proc_reaper::supervise()?; // returns in the program only
//!     supervisor.remove_on_exit(std::env::temp_dir().join("my-run"))?;
//!     // ... start the tokio runtime, do the work ...
//!     Ok(())
//! }
//! ```
//!
//! # Metrics
//!
//! With feature `metrics` (off by default), children spawned, live and ended (by how), escapees, SIGKILLs and run times go through the
//! [`metrics`](https://docs.rs/metrics) facade, to whichever recorder the program
//! installs: the `metrics` module lists each one and when it is recorded.
//!
//! # Platforms
//!
//! Linux only (pidfds: 5.3+; subreapers: 3.4+; the cgroup path: 5.14+ with a writable
//! cgroup v2 hierarchy, else the reaper works without it). On any other platform the
//! crate does not build: a `compile_error!` says so (depend on it under
//! `[target.'cfg(target_os = "linux")'.dependencies]`, as `leakproof` does).
//! On the cgroup path a child is spawned with `fork` and `exec` rather than
//! `posix_spawn` (it joins its cgroup in between), which costs more per spawn the larger
//! this process is; [`Join::AfterSpawn`] trades that for a short window (see [`Join`]
//! and BENCHMARKS.md).
//!
//! # What this does not protect against
//!
//! - **Escapees that clear their environment, without the cgroup path.** A process that
//!   double-forks *and* starts with a fresh environment (`env -i`) loses the marker;
//!   once re-parented it is known as part of its tree only through the tree's cgroup
//!   ([`Reaper::uses_cgroups`]). Without one it is not found, and lives on (an unprivileged
//!   user can get a delegated cgroup with `systemd-run --user --scope -p Delegate=yes`).
//!   If the cgroup cannot be joined at spawn (moved, no permission), that tree runs
//!   without one and says so ([`TreeReport::cgroup`] is `false`, and a warning is logged).
//!   With [`Join::AfterSpawn`], what the program forks in its first instants is held by
//!   the cgroup only if it is still a descendant when the move completes.
//! - **This process dying, unless supervised.** When the owner is SIGKILLed, only
//!   [`supervise()`] ends its trees at once: called first thing in `main`, it runs the
//!   program as the child of a small supervisor that ends every descendant and removes
//!   the registered directories once the program is gone, however it went. Without it,
//!   or if the supervisor itself is SIGKILLed (the program then dies by
//!   `PR_SET_PDEATHSIG`), the trees live on until the next [`sweep_dead_owners`] on the
//!   machine, which the first reaper or supervisor of every process runs. It finds them
//!   by the dead owner's cgroup (only beside its own: the same service, restarted) and
//!   by their markers (in the environments it may read: the same user's, or all as
//!   root), and a dead supervisor's directory only in its own temp dir (`TMPDIR`).
//! - **An escapee that dies on its own, outside the tree's group, without the cgroup
//!   path.** A zombie's environment is unreadable, so without a cgroup a re-parented
//!   zombie is attributed to its tree by its process group; one that called `setsid` and
//!   then exited before its tree was ended can no longer be attributed, and stays a
//!   zombie of this process (no running process, one PID table entry) until this process
//!   exits. On the cgroup path the cgroup it died in names its tree.
//! - **Output written after the time is up.** [`Child::wait`] and friends return
//!   within their limits even if a process outside the tree (an escapee this host cannot
//!   attribute, or one that opened the pipe through `/proc`) still holds the output
//!   pipes: at the deadline the readers take what is buffered, close our ends, and mark
//!   the output [`Captured::cut`]. What that holder writes later is lost (it gets
//!   `EPIPE`).
//! - **Orphans of children spawned elsewhere.** As a subreaper, this process adopts the
//!   orphans of *all* its children; those of children not spawned through the reaper are
//!   not reaped by it and stay zombies until this process exits.
//! - **An `exec` that outlasts the wait.** A re-parented process is known as a tree's
//!   by its environment, which reads empty while it is in the middle of `exec`. Such a
//!   process holds up the end of every tree for up to 1 s while it is looked at again;
//!   one still unreadable after that (an `exec` stalled for a second) is left alone,
//!   counted in [`TreeReport::unattributed`] and logged. So is a member for which no
//!   pidfd can be opened (this process is out of fds) within that second. A process
//!   whose environment reads empty with its arguments set is taken, after 20 ms, for
//!   one without an environment: without the cgroup path, not found (see the first
//!   point).
//! - **A miss in `/proc`'s children lists, in theory.** Without the cgroup path,
//!   escapees are found in this process's `/proc/<pid>/task/*/children`, and the kernel
//!   documents that a walk of such a list can skip a child when the one listed before
//!   it is reaped at that instant (here, by another tree's end on another thread). A
//!   tree is declared gone only after two looks in a row find nothing, so a loss needs
//!   both to skip the same escapee. None has been seen (0 lost in 357,000 trees forked
//!   as their tree ends, many ending at once, under I/O pressure and a parallel build), but
//!   it is not excluded; the cgroup path does not depend on these lists.
//! - **A child forgotten with `mem::forget`.** Its handle never drops; `shutdown` still
//!   ends its tree, but nobody reaps the leader.
//! - **Peak RSS precision.** `peak_rss` is `wait4`'s `ru_maxrss`: the largest of the
//!   leader and the children it waited for, not the tree's sum.

#![cfg_attr(docsrs, feature(doc_cfg))]

// Off Linux there is nothing to build on (no pidfd, no subreaper, no cgroup v2, no
// /proc): fail with one clear message rather than a pile of unresolved names.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "proc-reaper builds on Linux only (it needs pidfds, PR_SET_CHILD_SUBREAPER, /proc and \
     cgroup v2); depend on it under [target.'cfg(target_os = \"linux\")'.dependencies]"
);

#[cfg(target_os = "linux")]
mod cgroup;
#[cfg(target_os = "linux")]
mod error;
#[cfg(target_os = "linux")]
mod kill;
#[cfg(all(target_os = "linux", feature = "metrics"))]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(target_os = "linux")]
mod orphans;
#[cfg(target_os = "linux")]
mod output;
#[cfg(target_os = "linux")]
mod procfs;
#[cfg(target_os = "linux")]
mod reaper;
#[cfg(target_os = "linux")]
mod spawn;
#[cfg(target_os = "linux")]
mod supervise;

#[cfg(target_os = "linux")]
pub use error::{Error, Result};
#[cfg(target_os = "linux")]
pub use kill::TreeReport;
#[cfg(target_os = "linux")]
pub use orphans::{OrphanReport, sweep_dead_owners};
#[cfg(target_os = "linux")]
pub use output::{Captured, LineSink, Stream};
#[cfg(target_os = "linux")]
pub use reaper::{
    Child, ChildInfo, DEFAULT_GRACE, Join, LONGEST_GRACE, MARKER_VAR, Outcome, Reaper, Spawn,
};
#[cfg(target_os = "linux")]
pub use supervise::{SUPERVISOR_VAR, SuperviseOptions, Supervisor, supervise, supervise_with};
