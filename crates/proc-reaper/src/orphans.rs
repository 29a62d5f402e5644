//! What a dead owner left: the trees of a reaper or supervisor that was SIGKILLed, and a
//! supervisor's directory.
//!
//! A SIGKILLed process ends nothing itself. Its trees are still known three ways, each
//! tied to the owner by its PID *and start time* (a reused PID has a later start, so a
//! new process is never taken for a dead owner): the owner's cgroup directory
//! (`proc-reaper-<pid>-<start>`), which no member can leave; the environment marker
//! every member inherits ([`MARKER_VAR`](crate::MARKER_VAR)`=<pid>-<start>.<tree>`); and,
//! for a supervisor, a directory in the temp dir whose owner lock the kernel released
//! when it died. [`sweep_dead_owners`] ends the first two and reclaims the third.

use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{FlockOperation, flock};
use rustix::process::{
    Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, pidfd_open, pidfd_send_signal,
};

use crate::cgroup;
use crate::kill::{ENVLESS_WAIT, UNDETERMINED_WAIT};
use crate::procfs::{self, Identity};
use crate::reaper::MARKER_VAR;

/// Name prefix of a supervisor's directory in the temp dir.
pub(crate) const SUPERVISOR_DIR_PREFIX: &str = "proc-reaper-supervisor-";
/// The supervisor's owner lock in its directory, `flock`ed for the supervisor's life.
pub(crate) const SUPERVISOR_LOCK: &str = "owner.lock";
/// The supervisor's list of paths to remove, in its directory.
pub(crate) const SUPERVISOR_REGISTRY: &str = "remove-on-exit";

/// How long the sweep waits for the processes it killed to be gone.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// What [`sweep_dead_owners`] ended and reclaimed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrphanReport {
    /// Processes of dead owners' trees that were still running, ended by SIGKILL: those
    /// held by their owners' cgroups plus those found by their markers.
    pub killed: usize,
    /// Dead owners' cgroup directories removed.
    pub cgroup_dirs: usize,
    /// Dead supervisors' directories reclaimed, with the paths their programs
    /// registered for removal.
    pub supervisor_dirs: usize,
}

/// Ends the trees of every reaper and supervisor on this machine that died without
/// ending them (SIGKILL, the OOM killer), and reclaims dead supervisors' directories.
///
/// The first [`Reaper`](crate::Reaper) and the first [`supervise`](crate::supervise())
/// call of each process run it once; call it yourself at a service's start for a report.
/// It looks in three places: the cgroup directories beside this process's own cgroup
/// (the owners that ran in the same cgroup: the same service, restarted), the
/// environment of every process this user may read (`/proc/*/environ`), and the temp
/// dir ([`std::env::temp_dir`]). An owner counts as dead only when no process has its
/// PID with its start time: a live owner's trees are never touched. Processes in other
/// PID namespaces (a container's, seen from the host) are left alone: their markers
/// name owners by PIDs of their own namespace.
///
/// Blocking: it reads every process's environment (about 10 µs each) and waits, at
/// most 2 s, for what it killed to be gone.
pub fn sweep_dead_owners() -> OrphanReport {
    let mut report = OrphanReport::default();
    if let Some((mount, own)) = cgroup::own() {
        let swept = cgroup::sweep(&mount.join(own.trim_start_matches('/')));
        report.killed += swept.killed;
        report.cgroup_dirs += swept.dirs;
    }
    report.killed += end_marked_orphans();
    report.supervisor_dirs += reclaim_supervisor_dirs(&std::env::temp_dir());
    if report != OrphanReport::default() {
        tracing::info!(?report, "proc-reaper: ended what dead owners left");
    }
    report
}

/// [`sweep_dead_owners`], once per process.
pub(crate) fn sweep_once() {
    static SWEPT: Once = Once::new();
    SWEPT.call_once(|| {
        sweep_dead_owners();
    });
}

/// The owner named by a marker's value, `<pid>-<start>.<tree>`.
pub(crate) fn marker_owner(value: &[u8]) -> Option<Identity> {
    let value = std::str::from_utf8(value).ok()?;
    let (owner, _tree) = value.rsplit_once('.')?;
    Identity::parse(owner)
}

/// What a process's environment says about the owner of its tree.
enum Marked {
    /// Its marker names this owner.
    By(Identity),
    /// It has no marker, or cannot be read by us (another user's), or is gone.
    No,
    /// Not readable yet (in the middle of `exec`): look again until the deadline.
    NotYet(Instant),
}

fn marked(pid: u32, prefix: &[u8], first_seen: Instant) -> Marked {
    let Some(stat) = procfs::stat(pid) else {
        return Marked::No;
    };
    if stat.kernel_thread || stat.state == 'Z' || stat.state == 'X' {
        return Marked::No;
    }
    match procfs::read_once(format!("/proc/{pid}/environ"), 16 << 10) {
        Ok(environ) if !environ.is_empty() => environ
            .split(|b| *b == 0)
            .find_map(|e| e.strip_prefix(prefix))
            .and_then(marker_owner)
            .map_or(Marked::No, Marked::By),
        // Empty: mid-`exec` (its arguments not set up yet either: up to a second), or
        // with its arguments set, a process without an environment (`env -i`) or one in
        // the last microseconds of `exec` (a short second look tells).
        Ok(_) => {
            let cmdline = procfs::read_once(format!("/proc/{pid}/cmdline"), 4 << 10);
            let wait = match cmdline {
                Ok(c) if !c.is_empty() => ENVLESS_WAIT,
                _ => UNDETERMINED_WAIT,
            };
            Marked::NotYet(first_seen + wait)
        }
        // Another user's, or gone.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
            ) =>
        {
            Marked::No
        }
        Err(_) => Marked::NotYet(first_seen + UNDETERMINED_WAIT),
    }
}

/// SIGKILLs every process whose marker names a dead owner; waits for them to be gone
/// and reaps those re-parented to this process. Returns how many were killed.
///
/// A process caught in the middle of `exec` (a tree's member as its owner died) shows
/// no environment for an instant: it is looked at again, as ending a tree does.
fn end_marked_orphans() -> usize {
    let me = std::process::id();
    let prefix = format!("{MARKER_VAR}=");
    // A marker names its owner by PID in the namespace where it was set: one seen from
    // another PID namespace (a container's process, seen from the host) could name a
    // live owner by a PID that means another process here. Only our own are judged.
    let Ok(own_ns) = fs::read_link("/proc/self/ns/pid") else {
        return 0;
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    let started = Instant::now();
    let mut look: Vec<(u32, Instant)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| *pid != me)
        .map(|pid| (pid, started))
        .collect();
    let mut killed: Vec<OwnedFd> = Vec::new();
    while !look.is_empty() {
        let mut again = Vec::new();
        for (pid, first_seen) in look {
            let owner = match marked(pid, prefix.as_bytes(), first_seen) {
                Marked::By(owner) => owner,
                Marked::No => continue,
                Marked::NotYet(until) if Instant::now() < until => {
                    again.push((pid, first_seen));
                    continue;
                }
                Marked::NotYet(_) => continue,
            };
            // Markers without a start time (an older version) are left alone: only a
            // PID names their owner, and it may have been reused.
            if owner.start == 0
                || owner.pid == me
                || owner.alive()
                || fs::read_link(format!("/proc/{pid}/ns/pid")).ok() != Some(own_ns.clone())
            {
                continue;
            }
            let Some(fd) =
                Pid::from_raw(pid as i32).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok())
            else {
                continue;
            };
            if pidfd_send_signal(&fd, Signal::KILL).is_ok() {
                tracing::debug!(pid, owner = %owner, "proc-reaper: killed a dead owner's process");
                killed.push(fd);
            }
        }
        if !again.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        look = again;
    }
    let count = killed.len();
    wait_gone(&killed, KILL_WAIT);
    for fd in &killed {
        // Ours to reap only if it was re-parented here; ECHILD otherwise.
        let _ = waitid(fd);
    }
    count
}

fn waitid(fd: &OwnedFd) -> rustix::io::Result<()> {
    rustix::process::waitid(
        WaitId::PidFd(std::os::fd::AsFd::as_fd(fd)),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
    )
    .map(|_| ())
}

/// Waits until every pidfd turned readable (its process exited), or `limit` passed.
fn wait_gone(fds: &[OwnedFd], limit: Duration) {
    let until = std::time::Instant::now() + limit;
    loop {
        let mut polls: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        let left = until.saturating_duration_since(std::time::Instant::now());
        if polls.is_empty() || left.is_zero() {
            return;
        }
        let timeout = Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        let _ = poll(&mut polls, Some(&timeout));
        if polls.iter().all(|p| !p.revents().is_empty()) {
            return;
        }
    }
}

/// Reclaims the directories of dead supervisors under `temp`: removes the paths their
/// programs registered, then the directory. Returns how many were reclaimed.
pub(crate) fn reclaim_supervisor_dirs(temp: &Path) -> usize {
    let Ok(entries) = fs::read_dir(temp) else {
        return 0;
    };
    let mut reclaimed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SUPERVISOR_DIR_PREFIX))
        else {
            continue;
        };
        let dir = entry.path();
        // The owner lock tells; a directory from before there was one, its PID.
        let _held = match File::open(dir.join(SUPERVISOR_LOCK)) {
            Ok(lock) => match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => lock,
                Err(_) => continue, // The supervisor lives.
            },
            Err(_) => {
                let pid = rest.split('-').next().and_then(|p| p.parse().ok());
                if pid.is_none_or(|pid| Identity { pid, start: 0 }.alive()) {
                    continue;
                }
                match File::open(&dir) {
                    Ok(f) => f,
                    Err(_) => continue,
                }
            }
        };
        crate::supervise::remove_registered(&dir.join(SUPERVISOR_REGISTRY));
        match fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(path = %dir.display(), "proc-reaper: reclaimed a dead supervisor's directory");
                reclaimed += 1;
            }
            Err(e) => {
                tracing::warn!(path = %dir.display(), error = %e, "proc-reaper: could not reclaim a dead supervisor's directory");
            }
        }
    }
    reclaimed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_their_owner() {
        let owner = marker_owner(b"4242-777.12").unwrap();
        assert_eq!((owner.pid, owner.start), (4242, 777));
        assert_eq!(marker_owner(b"4242.12").map(|o| o.start), Some(0));
        assert_eq!(marker_owner(b"nonsense"), None);
    }
}
