//! Signals through pidfds: a PID reused since it was found is never hit.

use rustix::process::{
    Pid, PidfdFlags, Signal, WaitOptions, pidfd_open, pidfd_send_signal, waitpid,
};

use crate::scan::Process;

/// Sends `signal` to `pid` through a pidfd; nothing if it is gone.
pub(crate) fn send(pid: u32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid as i32)
        && let Ok(fd) = pidfd_open(pid, PidfdFlags::empty())
    {
        let _ = pidfd_send_signal(&fd, signal);
    }
}

/// SIGKILL to each of `pids` still alive, then reaps those that are this process's
/// children (waiting for each: SIGKILL cannot be caught).
pub(crate) fn kill_and_reap(pids: &[u32]) {
    let me = std::process::id();
    for pid in pids {
        send(*pid, Signal::KILL);
    }
    for pid in pids {
        if Process::read(*pid).is_some_and(|p| p.ppid == me)
            && let Some(pid) = Pid::from_raw(*pid as i32)
        {
            let _ = waitpid(Some(pid), WaitOptions::empty());
        }
    }
}
