//! The reaper: spawns children in their own process groups, tracks them, and ends their
//! trees on drop, cancellation, timeout or shutdown.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rustix::process::{Pid, PidfdFlags, pidfd_open};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

/// The longest grace kept as given: 100 years, "wait for it to exit" in practice. A
/// longer one (`Duration::MAX`, say) is taken as this: added to the clock's reading it
/// would overflow (it once panicked when the tree was ended).
pub const LONGEST_GRACE: Duration = Duration::from_secs(100 * 365 * 86_400);
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cgroup::{Cgroups, TreeCgroup};
use crate::kill::{Leaders, Tree, TreeReport};
use crate::output::{Captured, LineSink, Stoppable, Stream, capture};
use crate::procfs::Identity;
use crate::{Error, Result};

/// The environment variable that marks every process of a tree (inherited through
/// `fork`, `setsid` and `exec`), so escapees re-parented to us are known as ours. Its
/// value is `<owner pid>-<owner start time>.<tree>`: the owner is named so that a later
/// process with its PID is not taken for it ([`sweep_dead_owners`](crate::sweep_dead_owners)).
pub const MARKER_VAR: &str = "PROC_REAPER_TREE";

/// How long a child gets between SIGTERM and SIGKILL unless told otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// A live child, as [`Reaper::live`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChildInfo {
    /// The name given at spawn (the program's, unless set).
    pub name: String,
    /// The leader's PID.
    pub pid: u32,
    /// When it was spawned.
    pub started: SystemTime,
}

struct Entry {
    info: ChildInfo,
    marker: Arc<[u8]>,
    cgroup: Option<Arc<TreeCgroup>>,
}

/// Tree ids, unique in the process (across reapers), so markers never collide.
static NEXT_TREE: AtomicU64 = AtomicU64::new(1);

struct Inner {
    children: Mutex<HashMap<u64, Entry>>,
    /// Trees being ended in the background (after a drop): `settle` waits for zero.
    ending: watch::Sender<usize>,
    /// The cgroup v2 fast path, where available.
    cgroups: Option<Cgroups>,
    /// The leaders' PIDs, from spawn until reaped.
    leaders: Leaders,
}

/// Spawns and tracks children; every child's whole tree ends with its handle.
///
/// Creating a reaper makes this process a *child subreaper* (Linux): orphans of its
/// descendants are re-parented here instead of to PID 1, so escapees can be found and
/// killed. Clones share the reaper.
#[derive(Clone)]
pub struct Reaper {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper")
            .field("live", &self.live_count())
            .field("cgroups", &self.inner.cgroups.is_some())
            .finish()
    }
}

impl Reaper {
    /// A reaper; makes this process a child subreaper (failing if the kernel refuses),
    /// and gives each tree a cgroup of its own where a writable cgroup v2 hierarchy
    /// with `cgroup.kill` is mounted.
    pub fn new() -> Result<Self> {
        Self::build(Cgroups::detect())
    }

    /// A reaper that finds trees by parentage and marker only, without cgroups.
    pub fn subreaper_only() -> Result<Self> {
        Self::build(None)
    }

    fn build(cgroups: Option<Cgroups>) -> Result<Self> {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| Error::Subreaper(e.into()))?;
        crate::orphans::sweep_once();
        tracing::debug!(cgroups = cgroups.is_some(), "proc-reaper: ready");
        Ok(Reaper {
            inner: Arc::new(Inner {
                children: Mutex::new(HashMap::new()),
                ending: watch::Sender::new(0),
                cgroups,
                leaders: crate::kill::leaders(),
            }),
        })
    }

    /// `true` when trees get a cgroup of their own (the cgroup v2 fast path).
    pub fn uses_cgroups(&self) -> bool {
        self.inner.cgroups.is_some()
    }

    fn children(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.inner.children()
    }

    /// Prepares `command` to be spawned: see [`Spawn`].
    pub fn command(&self, command: Command) -> Spawn<'_> {
        let name = command.get_program().to_string_lossy().into_owned();
        Spawn {
            reaper: self,
            command,
            name,
            tail: 64 << 10,
            max_line: 64 << 10,
            sink: None,
            grace: DEFAULT_GRACE,
            capture: true,
            join: Join::default(),
        }
    }

    /// Spawns `command` with the defaults: output captured (last 64 KiB of each
    /// stream), a 5 s grace between SIGTERM and SIGKILL.
    pub fn spawn(&self, command: Command) -> Result<Child> {
        self.command(command).spawn()
    }

    /// The children alive now (spawned through this reaper and not yet reaped).
    pub fn live(&self) -> Vec<ChildInfo> {
        let mut live: Vec<ChildInfo> = self.children().values().map(|e| e.info.clone()).collect();
        live.sort_by_key(|c| c.pid);
        live
    }

    /// How many children are alive now (for health: the users' rule is Degraded above
    /// 100).
    pub fn live_count(&self) -> usize {
        self.children().len()
    }

    /// Ends every live child's tree: SIGTERM, up to `grace` (at most [`LONGEST_GRACE`]),
    /// then SIGKILL; returns one report per tree. The handles still reap their leaders
    /// (awaiting them returns at once), or do so when dropped.
    pub async fn shutdown(&self, grace: Duration) -> Vec<TreeReport> {
        self.end_trees(grace, None).await
    }

    /// [`Reaper::shutdown`] that returns by `until` (plus the time one round of
    /// SIGKILL and a scan take): the grace ends there at the latest, and the SIGKILL
    /// rounds stop there. A tree that keeps forking faster than it is killed (a fork
    /// storm without a cgroup) is then reported with [`TreeReport::left`] members sent
    /// SIGKILL but not yet gone, instead of holding the caller past its deadline.
    pub async fn shutdown_by(&self, grace: Duration, until: std::time::Instant) -> Vec<TreeReport> {
        self.end_trees(grace, Some(until)).await
    }

    async fn end_trees(
        &self,
        grace: Duration,
        until: Option<std::time::Instant>,
    ) -> Vec<TreeReport> {
        let grace = grace.min(LONGEST_GRACE);
        let trees: Vec<Tree> = self
            .children()
            .values()
            .map(|e| {
                Tree::new(
                    e.info.pid,
                    e.marker.clone(),
                    e.cgroup.clone(),
                    self.inner.leaders.clone(),
                )
            })
            .collect();
        tracing::info!(trees = trees.len(), ?grace, "proc-reaper: shutting down");
        let mut tasks = tokio::task::JoinSet::new();
        for tree in trees {
            tasks.spawn_blocking(move || tree.end_by(grace, until));
        }
        let mut reports = Vec::new();
        while let Some(report) = tasks.join_next().await {
            if let Ok(report) = report {
                reports.push(report);
            }
        }
        reports
    }

    /// Waits until every tree ended in the background is gone and reaped: those of a
    /// dropped [`Child`], and those whose `wait`, `wait_timeout` or `kill` was dropped
    /// while the tree was being ended (that end runs on alone, and forgets the child).
    pub async fn settle(&self) {
        let mut ending = self.inner.ending.subscribe();
        let _ = ending.wait_for(|n| *n == 0).await;
    }
}

/// When a child on the cgroup path joins its tree's cgroup ([`Spawn::join`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Join {
    /// Between `fork` and `exec`, by the child itself: nothing the program runs or forks
    /// is ever outside its cgroup. std then spawns with `fork` instead of `posix_spawn`,
    /// and `fork` copies this process's page tables, so each spawn costs more the larger
    /// this process is (measured here: about 0.2 ms more at 1 MiB of heap, 3 ms at 64 MiB,
    /// 14 ms at 256 MiB). The default.
    #[default]
    BeforeExec,
    /// Right after `spawn` returns, by this process (`posix_spawn`, a cost that does not
    /// grow with this process). A process the program forks in its first instants (the
    /// move takes up to an RCU grace period, a few milliseconds) that then leaves its
    /// process group *and* clears its environment (`setsid env -i`) is not held, and
    /// outlives its tree. For large processes that spawn often and trust their programs
    /// not to daemonize at once.
    AfterSpawn,
}

/// Options for one spawn, from [`Reaper::command`].
pub struct Spawn<'r> {
    reaper: &'r Reaper,
    command: Command,
    name: String,
    tail: usize,
    max_line: usize,
    sink: Option<LineSink>,
    grace: Duration,
    capture: bool,
    join: Join,
}

impl std::fmt::Debug for Spawn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawn")
            .field("command", &self.command)
            .field("name", &self.name)
            .field("tail", &self.tail)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Spawn<'_> {
    /// The name [`Reaper::live`] shows (the program's unless set).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Keep the last `bytes` of stdout and of stderr (default 64 KiB each).
    pub fn tail(mut self, bytes: usize) -> Self {
        self.tail = bytes;
        self
    }

    /// Hand every output line (at most `max_line` bytes of it) to `sink` as it comes.
    pub fn on_line(
        mut self,
        max_line: usize,
        sink: impl FnMut(Stream, &[u8]) + Send + 'static,
    ) -> Self {
        self.max_line = max_line.max(1);
        self.sink = Some(Arc::new(Mutex::new(sink)));
        self
    }

    /// Leave stdout and stderr as the command set them (inherited by default), instead
    /// of capturing them.
    pub fn no_capture(mut self) -> Self {
        self.capture = false;
        self
    }

    /// When the child joins its tree's cgroup, on the cgroup path (default
    /// [`Join::BeforeExec`]); without a cgroup this changes nothing.
    pub fn join(mut self, join: Join) -> Self {
        self.join = join;
        self
    }

    /// Time between SIGTERM and SIGKILL on timeout and [`Child::kill`] (default 5 s).
    /// Longer than [`LONGEST_GRACE`] (`Duration::MAX`, say) is taken as it.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace.min(LONGEST_GRACE);
        self
    }

    /// Starts the child in a process group of its own, marked as a new tree; on the
    /// cgroup path, inside its tree's cgroup from before its first instruction.
    pub fn spawn(mut self) -> Result<Child> {
        // The pidfd and the output pipes register with the runtime's reactor.
        tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let inner = &self.reaper.inner;
        let id = NEXT_TREE.fetch_add(1, Ordering::Relaxed);
        let marker_value = format!("{}.{id}", Identity::me());
        let marker: Arc<[u8]> = format!("{MARKER_VAR}={marker_value}").into_bytes().into();
        self.command.process_group(0).env(MARKER_VAR, &marker_value);
        if self.capture {
            self.command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let program = self.name.clone();
        // The child joins its cgroup itself, between fork and exec: nothing it runs, and
        // nothing it forks, is ever outside.
        let mut cgroup = inner.cgroups.as_ref().and_then(|c| c.tree(id));
        let armed = Arc::new(AtomicBool::new(false));
        if self.join == Join::BeforeExec {
            // The child writes to an fd opened here; one that cannot be opened means no
            // cgroup for this tree (said in its report).
            let procs = cgroup.as_ref().map(|c| c.procs());
            if let Some(Err(e)) = &procs {
                tracing::warn!(error = %e, "proc-reaper: cannot join a tree cgroup; this tree has none");
                cgroup = None;
            }
            armed.store(cgroup.is_some(), Ordering::Relaxed);
            if let Some(Ok(procs)) = procs {
                crate::spawn::join_cgroup_before_exec(
                    &mut self.command,
                    Arc::new(procs),
                    armed.clone(),
                );
            }
        }
        let before_exec = armed.load(Ordering::Relaxed);
        let spawn_err = |command: &Command, source| Error::Spawn {
            program: command.get_program().to_string_lossy().into_owned(),
            source,
        };
        // Shared with other spawns; excludes only the stray check (see `kill::SPAWNING`).
        let spawning = crate::kill::SPAWNING
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut std_child = match self.command.spawn() {
            Ok(child) => child,
            // The program never ran. The cgroup may be what failed (moved, out of
            // permission): once more without it, on the subreaper path.
            Err(first) if before_exec => {
                armed.store(false, Ordering::Relaxed);
                let child = self
                    .command
                    .spawn()
                    .map_err(|e| spawn_err(&self.command, e))?;
                tracing::warn!(error = %first, "proc-reaper: could not start a child in its cgroup; this tree has none");
                cgroup = None;
                child
            }
            Err(e) => return Err(spawn_err(&self.command, e)),
        };
        let pid = std_child.id();
        let started = Instant::now();
        inner.leader(pid, true);
        #[cfg(feature = "metrics")]
        crate::metrics::spawned();
        drop(spawning);
        if self.join == Join::AfterSpawn {
            // Moved in from outside: it may have forked already, so its descendants too.
            cgroup = cgroup.filter(|c| c.adopt(pid).is_ok());
            if let Some(c) = &cgroup {
                for early in crate::procfs::tree(pid).into_iter().skip(1) {
                    let _ = c.adopt(early);
                }
            }
        }
        let cgroup = cgroup.map(Arc::new);
        // From here on, the child is ours to end: a failure below kills it.
        // `AsyncFd::new` is deprecated for lacking I/O safety, but its replacement is
        // `unsafe`; the fd is an `OwnedFd` moved in, which is the safety it asks for.
        #[allow(deprecated)]
        let pidfd = Pid::from_raw(pid as i32)
            .ok_or_else(|| std::io::Error::other("pid 0"))
            .and_then(|raw| pidfd_open(raw, PidfdFlags::NONBLOCK).map_err(Into::into))
            .and_then(AsyncFd::new);
        let pidfd = match pidfd {
            Ok(fd) => fd,
            Err(source) => {
                let _ = std_child.kill();
                let _ = std_child.wait();
                inner.leader(pid, false);
                return Err(Error::Pidfd { pid, source });
            }
        };
        let (tail, max_line) = (self.tail, self.max_line);
        let (stop, stopped) = watch::channel(false);
        let stdout = std_child
            .stdout
            .take()
            .and_then(|p| tokio::process::ChildStdout::from_std(p).ok())
            .map(|p| {
                let (p, sink) = (Stoppable::new(p, stopped.clone()), self.sink.clone());
                tokio::spawn(capture(p, Stream::Stdout, tail, max_line, sink))
            });
        let stderr = std_child
            .stderr
            .take()
            .and_then(|p| tokio::process::ChildStderr::from_std(p).ok())
            .map(|p| {
                let (p, sink) = (Stoppable::new(p, stopped), self.sink.clone());
                tokio::spawn(capture(p, Stream::Stderr, tail, max_line, sink))
            });
        inner.children().insert(
            id,
            Entry {
                info: ChildInfo {
                    name: program,
                    pid,
                    started: SystemTime::now(),
                },
                marker: marker.clone(),
                cgroup: cgroup.clone(),
            },
        );
        tracing::debug!(pid, name = %self.name, "proc-reaper: spawned");
        Ok(Child {
            reaper: self.reaper.clone(),
            id,
            pid,
            std: Some(std_child),
            pidfd: Some(pidfd),
            marker,
            cgroup,
            started,
            stdout,
            stderr,
            stop,
            grace: self.grace,
        })
    }
}

impl Inner {
    fn children(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `pid` as a leader (spawned), or forgets it (reaped, or about to be).
    fn leader(&self, pid: u32, spawned: bool) {
        let mut leaders = self.leaders.lock().unwrap_or_else(PoisonError::into_inner);
        if spawned {
            leaders.insert(pid);
        } else {
            leaders.remove(&pid);
        }
    }
}

/// How a child's run ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Outcome {
    /// The leader's exit status (an exit code, or the signal that ended it).
    pub status: ExitStatus,
    /// `true` when the reaper ended it because its time ran out.
    pub timed_out: bool,
    /// `true` when the reaper ended it (timeout or [`Child::kill`]).
    pub killed: bool,
    /// From spawn to exit.
    pub duration: Duration,
    /// CPU time (user + system) of the leader and the children it waited for.
    pub cpu_time: Duration,
    /// Peak resident size of the leader (or its largest waited-for child), in bytes.
    pub peak_rss: u64,
    /// What was kept of stdout (empty when not captured). [`Captured::cut`] says the
    /// pipe was still held open when the time to drain it ran out.
    pub stdout: Captured,
    /// What was kept of stderr (empty when not captured).
    pub stderr: Captured,
    /// How the rest of the tree was ended once the leader was done.
    pub tree: TreeReport,
}

impl Outcome {
    /// `true` for exit code 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// A running child. Dropping it ends its whole tree at once (SIGKILL) and reaps it in
/// the background ([`Reaper::settle`] waits for that); so does dropping a future that
/// awaits it.
pub struct Child {
    reaper: Reaper,
    id: u64,
    pid: u32,
    std: Option<std::process::Child>,
    pidfd: Option<AsyncFd<OwnedFd>>,
    marker: Arc<[u8]>,
    cgroup: Option<Arc<TreeCgroup>>,
    started: Instant,
    stdout: Option<JoinHandle<Captured>>,
    stderr: Option<JoinHandle<Captured>>,
    /// Tells the output readers to stop (`true`, or dropped): they read what is
    /// buffered, close our ends of the pipes, and mark the output cut.
    stop: watch::Sender<bool>,
    grace: Duration,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Child {
    /// The leader's PID (its process group's ID too).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Takes the child's stdin, if the command piped it.
    pub fn stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.std.as_mut().and_then(|c| c.stdin.take())
    }

    /// Waits for the leader to exit, ends whatever is left of its tree (SIGTERM, the
    /// grace, SIGKILL), reaps, and reports.
    ///
    /// Returns at most the grace after the leader exits (plus the moment SIGKILL takes),
    /// even when something outside the tree still holds the output pipes: their reading
    /// then stops, and the outcome's output says [`cut`](Captured::cut).
    pub async fn wait(mut self) -> Result<Outcome> {
        self.exited().await;
        self.finish(false, false).await
    }

    /// [`Child::wait`] for at most `limit`; past it, the tree is ended (SIGTERM, the
    /// grace, SIGKILL) and the outcome says `timed_out`. Returns within `limit` plus the
    /// grace (plus the moment SIGKILL takes), output draining included.
    pub async fn wait_timeout(mut self, limit: Duration) -> Result<Outcome> {
        let timed_out = tokio::time::timeout(limit, self.exited()).await.is_err();
        self.finish(timed_out, timed_out).await
    }

    /// Ends the tree now (SIGTERM, the grace, SIGKILL) and reports, within the grace
    /// (plus the moment SIGKILL takes), output draining included.
    pub async fn kill(mut self) -> Result<Outcome> {
        self.finish(false, true).await
    }

    /// Resolves when the leader has exited (its pidfd turns readable), leaving it
    /// unreaped and the rest of its tree as it is: for a caller that looks at what
    /// outlived the leader (a leak check) before [`Child::wait`] ends and reaps it.
    /// Cancellation-safe; resolves at once if the leader is already gone.
    pub async fn exited(&mut self) {
        if let Some(pidfd) = &self.pidfd {
            // A pidfd only ever reports readable, once, when the process exits; an error
            // here means the fd is unusable, and `finish` then ends the tree anyway.
            let _ = pidfd.readable().await;
        }
    }

    /// Ends the rest of the tree, reaps the leader, collects output.
    ///
    /// Everything here ends by `grace` after the call (plus the moment SIGKILL takes):
    /// the tree's end, and the draining of its output, which a process outside the tree
    /// may hold open (an escapee this host cannot attribute, or a process that opened
    /// the pipe through `/proc`). Past that instant the readers take what is buffered,
    /// close our ends, and the output is marked [`Captured::cut`].
    async fn finish(&mut self, timed_out: bool, killed: bool) -> Result<Outcome> {
        let (pid, marker) = (self.pid, self.marker.clone());
        let grace = self.grace;
        let drained_by = Instant::now() + grace;
        let mut std_child = self.std.take();
        let leaders = self.reaper.inner.leaders.clone();
        let mut tree = Tree::new(pid, marker, self.cgroup.clone(), leaders);
        // Once reaped, the child is forgotten, wherever the reaping ran: also when this
        // future is dropped while the blocking pool ends the tree (a cancelled `wait`),
        // which then finishes alone.
        let (inner, id) = (self.reaper.inner.clone(), self.id);
        let forget = move || {
            inner.children().remove(&id);
            inner.leader(pid, false);
        };
        // The common case, a leader that exited alone: one scan and a `wait4` that cannot
        // block, on this thread. Anything alive means waiting: on the blocking pool,
        // counted in `ending` so that `Reaper::settle` waits for it.
        let (tree, reaped) = match tree.settled() {
            Some(report) => {
                let reaped = std_child.as_mut().map(reap);
                forget();
                (report, reaped)
            }
            None => {
                let ending = self.reaper.inner.ending.clone();
                ending.send_modify(|n| *n += 1);
                tokio::task::spawn_blocking(move || {
                    let tree = tree.end(grace);
                    let reaped = std_child.as_mut().map(reap);
                    forget();
                    ending.send_modify(|n| *n -= 1);
                    (tree, reaped)
                })
                .await
                .map_err(|e| Error::Reap {
                    pid,
                    source: std::io::Error::other(e),
                })?
            }
        };
        let duration = self.started.elapsed();
        self.pidfd = None;
        let usage = reaped.unwrap_or_else(|| Err(std::io::Error::other("already reaped")));
        let usage = usage.map_err(|source| Error::Reap { pid, source })?;
        let (stdout, stderr) = (self.stdout.take(), self.stderr.take());
        let outputs = async { (collect(stdout).await, collect(stderr).await) };
        tokio::pin!(outputs);
        let (stdout, stderr) = tokio::select! {
            biased;
            both = &mut outputs => both,
            () = tokio::time::sleep_until(drained_by) => {
                let _ = self.stop.send(true);
                outputs.await
            }
        };
        #[cfg(feature = "metrics")]
        {
            let how = match (timed_out, killed) {
                (true, _) => "timed_out",
                (false, true) => "killed",
                (false, false) => "exited",
            };
            crate::metrics::ended(how, Some(&tree), Some(duration));
        }
        Ok(Outcome {
            status: usage.status,
            timed_out,
            killed,
            duration,
            cpu_time: usage.rusage.utime + usage.rusage.stime,
            peak_rss: usage.rusage.maxrss,
            stdout,
            stderr,
            tree,
        })
    }
}

/// Reaps the leader with `wait4`, for its status and resource usage. Called once its
/// tree was ended; should the end have left the leader alive (members it could not pin,
/// out of descriptors), SIGKILL first, so this never waits on a live process. The
/// leader's PID cannot have been reused: it is not reaped yet.
fn reap(child: &mut std::process::Child) -> std::io::Result<wait4::ResUse> {
    use wait4::Wait4;
    if crate::procfs::alive(child.id()) {
        tracing::warn!(
            pid = child.id(),
            "proc-reaper: leader alive after its tree's end; SIGKILL"
        );
        let _ = child.kill();
    }
    child.wait4()
}

async fn collect(task: Option<JoinHandle<Captured>>) -> Captured {
    match task {
        Some(task) => task.await.unwrap_or_default(),
        None => Captured::default(),
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let Some(mut std_child) = self.std.take() else {
            return; // Reaped already.
        };
        self.reaper.inner.children().remove(&self.id);
        let (pid, marker) = (self.pid, self.marker.clone());
        // Every member found now gets SIGKILL before this returns; those past the pin
        // limit or forked since get it in the end's rounds, and reaping waits for the
        // kernel, on the blocking pool.
        let leaders = self.reaper.inner.leaders.clone();
        let mut tree = Tree::new(pid, marker, self.cgroup.take(), leaders);
        tree.kill_now();
        #[cfg(feature = "metrics")]
        crate::metrics::ended("dropped", None, None);
        let inner = self.reaper.inner.clone();
        let job = move || {
            tree.end(Duration::ZERO);
            if let Err(e) = reap(&mut std_child) {
                tracing::warn!(pid, error = %e, "proc-reaper: could not reap a dropped child");
            }
            inner.leader(pid, false);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let ending = self.reaper.inner.ending.clone();
                ending.send_modify(|n| *n += 1);
                runtime.spawn_blocking(move || {
                    job();
                    ending.send_modify(|n| *n -= 1);
                });
            }
            Err(_) => job(),
        }
    }
}
