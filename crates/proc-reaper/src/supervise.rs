//! `supervise()`: the program runs as the child of a small supervisor that outlives it,
//! so even a SIGKILLed program leaves no descendant and no registered directory behind.
//!
//! The first call re-executes the program (`/proc/self/exe`, same arguments) with
//! [`SUPERVISOR_VAR`] set, and turns the calling process into the supervisor: a child
//! subreaper that forwards SIGTERM, SIGINT and SIGHUP, waits for the program, then ends
//! every remaining descendant, removes the directories the program registered, and exits
//! with the program's status. In the re-executed program the call returns at once, after
//! asking the kernel for SIGKILL should the supervisor die (`PR_SET_PDEATHSIG`).

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};
use rustix::process::{
    Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, getpid, getppid, pidfd_open, pidfd_send_signal,
    set_child_subreaper, set_parent_process_death_signal, waitid,
};

use crate::cgroup::DIR_PREFIX;
use crate::orphans::{SUPERVISOR_DIR_PREFIX, SUPERVISOR_LOCK, SUPERVISOR_REGISTRY};
use crate::procfs::Identity;
use crate::reaper::MARKER_VAR;
use crate::{Error, Result, procfs};

/// Set in the supervised program's environment: `<supervisor pid>:<registry file>`.
pub const SUPERVISOR_VAR: &str = "PROC_REAPER_SUPERVISOR";

/// How long descendants left behind by the program get between SIGTERM and SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_millis(250);

/// The program's link to its supervisor, from [`supervise`].
#[derive(Debug, Clone)]
pub struct Supervisor {
    pid: u32,
    registry: PathBuf,
}

impl Supervisor {
    /// The supervisor's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Has the supervisor remove `path` (a directory, recursively, or a file) once the
    /// program has exited, however it exited. Relative paths are resolved now.
    pub fn remove_on_exit(&self, path: impl AsRef<Path>) -> Result<()> {
        self.register("", path.as_ref())
    }

    /// Has the supervisor call its [`SuperviseOptions::on_exit_sweep`] function with
    /// `dir` once the program has exited, however it exited (without one, nothing is
    /// done with it). For a directory where the program leaves entries that a sweep
    /// reclaims once their owner is dead, such as scoped-temp's roots.
    pub fn sweep_on_exit(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.register(SWEEP_TAG, dir.as_ref())
    }

    fn register(&self, tag: &str, path: &Path) -> Result<()> {
        let path = std::path::absolute(path).map_err(|source| Error::Supervisor {
            step: "resolve a path to remove on exit",
            source,
        })?;
        let text =
            path.to_str()
                .filter(|t| !t.contains('\n'))
                .ok_or_else(|| Error::Supervisor {
                    step: "register a path (not UTF-8, or holds a newline)",
                    source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
                })?;
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.registry)
            .map_err(|source| Error::Supervisor {
                step: "open the supervisor's registry",
                source,
            })?;
        // One write per line: appends of a small buffer are atomic.
        file.write_all(format!("{tag}{text}\n").as_bytes())
            .map_err(|source| Error::Supervisor {
                step: "write the supervisor's registry",
                source,
            })
    }
}

/// Marks a registry line as a directory to sweep rather than a path to remove (paths
/// are absolute, so never start with it).
const SWEEP_TAG: &str = "sweep ";

/// What the supervisor does besides ending descendants and removing registered paths.
#[derive(Debug, Clone, Copy, Default)]
pub struct SuperviseOptions {
    sweep: Option<fn(&Path)>,
}

impl SuperviseOptions {
    /// No extra work.
    pub fn new() -> Self {
        Self::default()
    }

    /// Once the program is gone, call `sweep` with each directory it registered with
    /// [`Supervisor::sweep_on_exit`], in the supervisor (the program's locks are all
    /// released by then). The function runs in the original process, which re-executed
    /// the program, so a plain `fn` names the same code there.
    pub fn on_exit_sweep(mut self, sweep: fn(&Path)) -> Self {
        self.sweep = Some(sweep);
        self
    }
}

/// Runs the rest of the program under a supervisor. Call it first thing in `main`,
/// before starting a tokio runtime or any thread.
///
/// In the original process this does not return on success: the process becomes the
/// supervisor and exits with the program's status (`128 + signal` if a signal ended
/// it). In the re-executed program it returns the link to the supervisor.
pub fn supervise() -> Result<Supervisor> {
    supervise_with(SuperviseOptions::default())
}

/// [`supervise`] with options.
pub fn supervise_with(options: SuperviseOptions) -> Result<Supervisor> {
    if let Some(link) = supervised()? {
        return Ok(link);
    }
    run_supervisor(options)
}

/// `Some` when this process is the program its parent supervises.
fn supervised() -> Result<Option<Supervisor>> {
    let Some(value) = std::env::var_os(SUPERVISOR_VAR) else {
        return Ok(None);
    };
    let value = value.to_string_lossy().into_owned();
    let Some((pid, registry)) = value
        .split_once(':')
        .and_then(|(pid, path)| Some((pid.parse::<u32>().ok()?, PathBuf::from(path))))
    else {
        return Ok(None);
    };
    // Inherited by a grandchild that calls `supervise()` too: not ours, start afresh.
    if getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(pid) {
        return Ok(None);
    }
    set_parent_process_death_signal(Some(Signal::KILL)).map_err(|e| Error::Supervisor {
        step: "set PR_SET_PDEATHSIG",
        source: e.into(),
    })?;
    // The supervisor may have died before the line above: then nobody will kill us.
    if getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(pid) {
        std::process::exit(128 + 9);
    }
    Ok(Some(Supervisor { pid, registry }))
}

fn fail(step: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Supervisor { step, source }
}

fn run_supervisor(options: SuperviseOptions) -> Result<Supervisor> {
    let me = getpid();
    set_child_subreaper(Some(me)).map_err(|e| Error::Subreaper(e.into()))?;
    crate::orphans::sweep_once();
    let me = me.as_raw_nonzero().get() as u32;
    let dir = std::env::temp_dir().join(format!(
        "{SUPERVISOR_DIR_PREFIX}{me}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(fail("create the supervisor's directory"))?;
    // Held for the supervisor's life: a later sweep that can take it knows the
    // supervisor is dead and reclaims the directory and what the program registered.
    let lock = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(dir.join(SUPERVISOR_LOCK))
        .map_err(fail("create the supervisor's owner lock"))?;
    flock(&lock, FlockOperation::NonBlockingLockExclusive).map_err(|e| Error::Supervisor {
        step: "lock the supervisor's directory",
        source: e.into(),
    })?;
    let registry = dir.join(SUPERVISOR_REGISTRY);
    OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&registry)
        .map_err(fail("create the supervisor's registry"))?;

    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("program"));
    let mut program = Command::new("/proc/self/exe");
    // The marker names this supervisor: should it be SIGKILLed too, the next reaper or
    // supervisor on the machine ends whatever the program left, by it.
    program
        .arg0(arg0)
        .args(args)
        .env(SUPERVISOR_VAR, format!("{me}:{}", registry.display()))
        .env(MARKER_VAR, format!("{}.0", Identity::me()));
    // And on the cgroup path, a cgroup that holds the program and everything it starts.
    let cgroup = program_cgroup();
    let armed = Arc::new(AtomicBool::new(cgroup.is_some()));
    if let Some((_, procs)) = &cgroup {
        crate::spawn::join_cgroup_before_exec(&mut program, procs.clone(), armed.clone());
    }
    let mut child = match program.spawn() {
        Ok(child) => child,
        Err(_) if cgroup.is_some() => {
            armed.store(false, Ordering::Relaxed);
            program.spawn().map_err(fail("start the program"))?
        }
        Err(e) => return Err(fail("start the program")(e)),
    };
    let pid = child.id();
    tracing::info!(program = pid, "proc-reaper: supervising");
    let pidfd = Pid::from_raw(pid as i32)
        .ok_or_else(|| std::io::Error::other("pid 0"))
        .and_then(|p| pidfd_open(p, PidfdFlags::empty()).map_err(Into::into))
        .map_err(fail("open the program's pidfd"))?;
    forward_signals_until_exit(&pidfd)?;
    let status = child.wait().map_err(fail("reap the program"))?;
    end_descendants(me);
    if let Some((path, _)) = &cgroup {
        crate::cgroup::remove_tree(path.parent().unwrap_or(path));
    }
    if let Some(sweep) = options.sweep {
        for dir in registered(&registry, SWEEP_TAG) {
            sweep(&dir);
        }
    }
    remove_registered(&registry);
    let _ = fs::remove_dir_all(&dir);
    drop(lock);
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    tracing::info!(
        program = pid,
        code,
        "proc-reaper: program ended, supervisor exits"
    );
    std::process::exit(code)
}

/// `<own cgroup>/proc-reaper-<pid>-<start>/program`, created, with its `cgroup.procs`
/// open; `None` without a writable cgroup v2 hierarchy.
fn program_cgroup() -> Option<(PathBuf, Arc<OwnedFd>)> {
    let (mount, own) = crate::cgroup::own()?;
    let path = mount
        .join(own.trim_start_matches('/'))
        .join(format!("{DIR_PREFIX}{}", Identity::me()))
        .join("program");
    fs::create_dir_all(&path).ok()?;
    let procs = crate::cgroup::open_procs(&path).ok()?;
    Some((path, Arc::new(procs)))
}

/// Forwards SIGTERM, SIGINT and SIGHUP to the program until it exits.
fn forward_signals_until_exit(pidfd: &OwnedFd) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(fail("start the supervisor's runtime"))?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(fail("handle SIGTERM"))?;
        let mut int = signal(SignalKind::interrupt()).map_err(fail("handle SIGINT"))?;
        let mut hup = signal(SignalKind::hangup()).map_err(fail("handle SIGHUP"))?;
        let fd = pidfd
            .try_clone()
            .map_err(fail("clone the program's pidfd"))?;
        #[allow(deprecated)] // See `reaper.rs`: the replacement is `unsafe`.
        let exited = tokio::io::unix::AsyncFd::new(fd).map_err(fail("watch the program"))?;
        loop {
            let forward = tokio::select! {
                _ = exited.readable() => return Ok(()),
                _ = term.recv() => Signal::TERM,
                _ = int.recv() => Signal::INT,
                _ = hup.recv() => Signal::HUP,
            };
            tracing::info!(?forward, "proc-reaper: forwarding a signal to the program");
            let _ = pidfd_send_signal(pidfd, forward);
        }
    })
}

/// Ends every process still below the supervisor: SIGTERM, a short grace, SIGKILL,
/// until none is left; then reaps all of them (the supervisor has no other children).
fn end_descendants(me: u32) {
    let started = Instant::now();
    let mut members: Vec<(u32, OwnedFd)> = Vec::new();
    let mut signal = Signal::TERM;
    loop {
        let mut found = false;
        for pid in procfs::tree(me).into_iter().skip(1) {
            if members.iter().any(|(p, _)| *p == pid) {
                continue;
            }
            if let Some(fd) =
                Pid::from_raw(pid as i32).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok())
            {
                let _ = pidfd_send_signal(&fd, signal);
                members.push((pid, fd));
                found = true;
            }
        }
        let alive = crate::kill::running(members.iter().map(|(_, fd)| fd));
        // Done when all are dead and this scan found nobody new: a member that died
        // since the previous scan had its children re-parented here before it did.
        if alive.is_empty() && !found {
            break;
        }
        if signal == Signal::TERM && started.elapsed() >= LEFTOVER_GRACE {
            signal = Signal::KILL;
        }
        if signal == Signal::KILL {
            for fd in &alive {
                let _ = pidfd_send_signal(*fd, Signal::KILL);
            }
        }
        crate::kill::wait_for_exits(&alive, Duration::from_millis(5));
    }
    // Every descendant is dead; orphans were re-parented here: reap them all.
    while let Ok(Some(_)) = waitid(WaitId::All, WaitIdOptions::EXITED | WaitIdOptions::NOHANG) {}
    if !members.is_empty() {
        tracing::info!(
            ended = members.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "proc-reaper: ended what the program left behind"
        );
    }
}

/// The paths registered with `tag` (`""`: to remove), each once, in order.
fn registered(registry: &Path, tag: &str) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string(registry) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        let Some(path) = line.strip_prefix(tag).filter(|p| p.starts_with('/')) else {
            continue;
        };
        if !paths.iter().any(|p| p.as_os_str() == path) {
            paths.push(PathBuf::from(path));
        }
    }
    paths
}

/// Removes what the program registered; a path that is already gone is fine.
pub(crate) fn remove_registered(registry: &Path) {
    for path in registered(registry, "") {
        let (path, line) = (path.as_path(), path.display());
        let outcome = match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
            Err(_) => Ok(()),
        };
        if let Err(e) = outcome {
            tracing::warn!(path = %line, error = %e, "proc-reaper: could not remove a registered path");
        }
    }
}
