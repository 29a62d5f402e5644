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
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{
    Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, getpid, getppid, pidfd_open, pidfd_send_signal,
    set_child_subreaper, set_parent_process_death_signal, waitid,
};

use crate::{Error, Result, procfs};

/// Set in the supervised program's environment: `<supervisor pid>:<registry file>`.
pub const SUPERVISOR_VAR: &str = "PROC_REAPER_SUPERVISOR";

/// How long descendants left behind by the program get between SIGTERM and SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_millis(250);

/// The program's link to its supervisor, from [`supervise`].
#[derive(Debug)]
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
        let path = std::path::absolute(path.as_ref()).map_err(|source| Error::Supervisor {
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
        file.write_all(format!("{text}\n").as_bytes())
            .map_err(|source| Error::Supervisor {
                step: "write the supervisor's registry",
                source,
            })
    }
}

/// Runs the rest of the program under a supervisor. Call it first thing in `main`,
/// before starting a tokio runtime or any thread.
///
/// In the original process this does not return on success: the process becomes the
/// supervisor and exits with the program's status (`128 + signal` if a signal ended
/// it). In the re-executed program it returns the link to the supervisor.
pub fn supervise() -> Result<Supervisor> {
    if let Some(link) = supervised()? {
        return Ok(link);
    }
    run_supervisor()
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

fn run_supervisor() -> Result<Supervisor> {
    let me = getpid();
    set_child_subreaper(Some(me)).map_err(|e| Error::Subreaper(e.into()))?;
    let me = me.as_raw_nonzero().get() as u32;
    let dir = std::env::temp_dir().join(format!(
        "proc-reaper-supervisor-{me}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(fail("create the supervisor's directory"))?;
    let registry = dir.join("remove-on-exit");
    OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&registry)
        .map_err(fail("create the supervisor's registry"))?;

    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("program"));
    let mut program = Command::new("/proc/self/exe");
    program
        .arg0(arg0)
        .args(args)
        .env(SUPERVISOR_VAR, format!("{me}:{}", registry.display()));
    let mut child = program.spawn().map_err(fail("start the program"))?;
    let pid = child.id();
    tracing::info!(program = pid, "proc-reaper: supervising");
    let pidfd = Pid::from_raw(pid as i32)
        .ok_or_else(|| std::io::Error::other("pid 0"))
        .and_then(|p| pidfd_open(p, PidfdFlags::empty()).map_err(Into::into))
        .map_err(fail("open the program's pidfd"))?;
    forward_signals_until_exit(&pidfd)?;
    let status = child.wait().map_err(fail("reap the program"))?;
    end_descendants(me);
    remove_registered(&registry);
    let _ = fs::remove_dir_all(&dir);
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
        let alive: Vec<&OwnedFd> = members
            .iter()
            .filter(|(pid, _)| procfs::alive(*pid))
            .map(|(_, fd)| fd)
            .collect();
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
        let mut fds: Vec<PollFd<'_>> = alive
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::IN))
            .collect();
        let wait = Timespec {
            tv_sec: 0,
            tv_nsec: 5_000_000,
        };
        let _ = poll(&mut fds, Some(&wait));
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

/// Removes what the program registered; a path that is already gone is fine.
fn remove_registered(registry: &Path) {
    let Ok(text) = fs::read_to_string(registry) else {
        return;
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        let path = Path::new(line);
        let outcome = match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
            Err(_) => Ok(()),
        };
        if let Err(e) = outcome {
            tracing::warn!(path = line, error = %e, "proc-reaper: could not remove a registered path");
        }
    }
}
