//! Helpers shared by the test files: what `/proc` says about processes, and children
//! that report their PIDs.
#![allow(dead_code)] // Each test file uses some of them.

use std::process::Command;
use std::time::Duration;

use proc_reaper::{Reaper, Stream};
use tokio::sync::mpsc;

/// `true` once `/proc/<pid>` no longer exists (a zombie still has one).
pub fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// This process's parent PID for `pid`, from `/proc/<pid>/stat`.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Zombie children of this process.
pub fn zombies() -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in kids
            .split_ascii_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            // As bytes: the command name may not be UTF-8.
            let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit(|b| *b == b')')
                .next()
                .is_some_and(|s| s.trim_ascii_start().starts_with(b"Z"))
            {
                out.push(pid);
            }
        }
    }
    out
}

/// Tests share this process (and its zombie list): one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

/// A child whose processes print their PIDs, one per line, to the receiver.
pub fn reporting(
    reaper: &Reaper,
    script: &str,
) -> (proc_reaper::Child, mpsc::UnboundedReceiver<u32>) {
    reporting_cmd(reaper, sh(script))
}

pub fn reporting_cmd(
    reaper: &Reaper,
    cmd: Command,
) -> (proc_reaper::Child, mpsc::UnboundedReceiver<u32>) {
    reporting_graced(reaper, cmd, Duration::from_millis(300))
}

/// [`reporting_cmd`] with `grace` between SIGTERM and SIGKILL.
pub fn reporting_graced(
    reaper: &Reaper,
    cmd: Command,
    grace: Duration,
) -> (proc_reaper::Child, mpsc::UnboundedReceiver<u32>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let child = reaper
        .command(cmd)
        .grace(grace)
        .on_line(128, move |stream, line| {
            if stream == Stream::Stdout
                && let Some(pid) = std::str::from_utf8(line)
                    .ok()
                    .and_then(|l| l.trim().parse().ok())
            {
                let _ = tx.send(pid);
            }
        })
        .spawn()
        .unwrap();
    (child, rx)
}

pub async fn next_pids(rx: &mut mpsc::UnboundedReceiver<u32>, n: usize) -> Vec<u32> {
    let mut pids = Vec::new();
    while pids.len() < n {
        pids.push(rx.recv().await.expect("the child printed its pids"));
    }
    pids
}

/// This process's directory of tree cgroups (`proc-reaper-<pid>-<start>`), found from
/// `/proc/self/mountinfo` and `/proc/self/cgroup`: no host layout assumed.
pub fn tree_cgroups_dir() -> Option<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_ascii_whitespace().next()? == "cgroup2")
            .then(|| left.split_ascii_whitespace().nth(4))
            .flatten()
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let parent = std::path::Path::new(mount).join(own.trim_start_matches('/'));
    let prefix = format!("proc-reaper-{}-", std::process::id());
    std::fs::read_dir(parent)
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
}

/// Processes in this process's tree cgroups now.
pub fn in_tree_cgroups() -> usize {
    let Some(dir) = tree_cgroups_dir() else {
        return 0;
    };
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| {
                    std::fs::read_to_string(e.path().join("cgroup.procs"))
                        .unwrap_or_default()
                        .lines()
                        .count()
                })
                .sum()
        })
        .unwrap_or_default()
}

/// SIGKILLs `pid` (a survivor this host's path documents) and reaps it if it was
/// re-parented here, so it leaves no zombie for the next test to find.
pub fn kill_and_reap(pid: u32) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::process::{
        Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, pidfd_open, pidfd_send_signal, waitid,
    };
    use std::os::fd::AsFd;
    let Some(fd) = Pid::from_raw(pid as i32).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok())
    else {
        return;
    };
    let _ = pidfd_send_signal(&fd, Signal::KILL);
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let minute = Timespec {
        tv_sec: 60,
        tv_nsec: 0,
    };
    let _ = poll(&mut fds, Some(&minute));
    // ECHILD when it is not ours to reap.
    let _ = waitid(WaitId::PidFd(fd.as_fd()), WaitIdOptions::EXITED);
}
