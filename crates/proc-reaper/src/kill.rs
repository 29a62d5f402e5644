//! Ending a whole process tree: find every member, SIGTERM, wait out the grace, SIGKILL
//! what is left, reap what became ours.
//!
//! Members are found two ways: the leader's descendants (`/proc/<pid>/task/*/children`),
//! and escapees: processes that double-forked or called `setsid`, were re-parented to
//! this process (a child subreaper) and still carry the tree's environment marker (or,
//! once dead, whose environment is gone, the leader's process group). Each
//! member gets a pidfd the moment it is found, and every signal goes through it, so a
//! reused PID is never hit. The leader's process group is signalled too: the leader is
//! never reaped before its tree is gone, so its PGID cannot be reused meanwhile.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{
    Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, kill_process_group, pidfd_open,
    pidfd_send_signal, waitid,
};

use crate::cgroup::TreeCgroup;
use crate::procfs;

/// What ending a tree took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreeReport {
    /// Processes found in the tree (the leader included).
    pub members: usize,
    /// Of those, escapees found through the marker (re-parented to us).
    pub escapees: usize,
    /// Processes still alive after the grace period, ended by SIGKILL.
    pub killed: usize,
    /// Re-parented orphans this process reaped.
    pub reaped: usize,
    /// From the first signal to the last member gone.
    pub took: Duration,
    /// `true` when the tree had a cgroup of its own (the v2 fast path).
    pub cgroup: bool,
}

/// One tree being ended: its members by PID, each with a pidfd opened while alive.
pub(crate) struct Tree {
    leader: u32,
    marker: Arc<[u8]>,
    cgroup: Option<Arc<TreeCgroup>>,
    me: u32,
    members: HashMap<u32, OwnedFd>,
    escapees: usize,
}

impl Tree {
    pub(crate) fn new(leader: u32, marker: Arc<[u8]>, cgroup: Option<Arc<TreeCgroup>>) -> Self {
        Tree {
            leader,
            marker,
            cgroup,
            me: std::process::id(),
            members: HashMap::new(),
            escapees: 0,
        }
    }

    /// Finds members not seen before; returns how many are alive now. When none is,
    /// looks once more: a member that died since the first look had its children
    /// re-parented here by the time it was seen dead.
    fn scan(&mut self) -> usize {
        self.discover();
        let alive = self.alive();
        if alive > 0 {
            return alive;
        }
        let before = self.members.len();
        self.discover();
        if self.members.len() == before {
            0
        } else {
            self.alive()
        }
    }

    fn alive(&self) -> usize {
        self.members
            .keys()
            .filter(|pid| procfs::alive(**pid))
            .count()
    }

    /// Adds members not seen before: the leader's descendants and escapees.
    fn discover(&mut self) {
        let mut roots = vec![self.leader];
        // The cgroup holds every member that was forked after the leader joined it.
        if let Some(cgroup) = &self.cgroup {
            roots.extend(cgroup.pids().into_iter().filter(|p| *p != self.leader));
        }
        for kid in procfs::children(self.me) {
            if kid == self.leader || self.members.contains_key(&kid) {
                continue;
            }
            // Re-parented here: alive, it carries the marker; dead (a zombie, whose
            // environment is gone), it still carries the leader's process group.
            // Not cached as foreign when unmarked: read mid-`exec`, an environment can
            // look unmarked for an instant.
            match procfs::marker(kid, &self.marker) {
                Some(true) => roots.push(kid),
                Some(false) => {}
                None => {
                    if procfs::zombie(kid)
                        && procfs::stat(kid).is_some_and(|s| s.pgrp == self.leader)
                    {
                        roots.push(kid);
                    }
                }
            }
        }
        for (i, root) in roots.into_iter().enumerate() {
            for pid in procfs::tree(root) {
                if self.members.contains_key(&pid) {
                    continue;
                }
                let Some(raw) = Pid::from_raw(pid as i32) else {
                    continue;
                };
                if let Ok(fd) = pidfd_open(raw, PidfdFlags::empty()) {
                    self.members.insert(pid, fd);
                    if i > 0 {
                        self.escapees += 1;
                    }
                }
            }
        }
    }

    /// Blocks until a live member exits (its pidfd turns readable) or `timeout` passes.
    fn wait_exit(&self, timeout: Duration) {
        let live: Vec<&OwnedFd> = self
            .members
            .iter()
            .filter(|(pid, _)| procfs::alive(**pid))
            .map(|(_, fd)| fd)
            .collect();
        if live.is_empty() {
            return;
        }
        let mut fds: Vec<PollFd<'_>> = live
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::IN))
            .collect();
        let timeout = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let _ = poll(&mut fds, Some(&timeout));
    }

    /// Sends `signal` to every member still alive and to the leader's group.
    fn signal(&self, signal: Signal) -> usize {
        if let Some(group) = Pid::from_raw(self.leader as i32) {
            let _ = kill_process_group(group, signal);
        }
        if let (Some(cgroup), Signal::KILL) = (&self.cgroup, signal) {
            cgroup.kill();
        }
        let mut sent = 0;
        for (pid, fd) in &self.members {
            if procfs::alive(*pid) && pidfd_send_signal(fd.as_fd(), signal).is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// When no member is alive (the leader exited, alone or with its tree): reaps what
    /// became ours and reports, without blocking. `None` when something is alive.
    pub(crate) fn settled(&mut self) -> Option<TreeReport> {
        if self.scan() > 0 {
            return None;
        }
        let reaped = self.reap_members();
        Some(TreeReport {
            members: self.members.len(),
            escapees: self.escapees,
            killed: 0,
            reaped,
            took: Duration::ZERO,
            cgroup: self.cgroup.is_some(),
        })
    }

    /// SIGKILL to every member found now, without waiting for anything; the members
    /// stay known to [`Tree::end`] (dead ones can no longer be found by scanning).
    pub(crate) fn kill_now(&mut self) {
        if self.scan() > 0 {
            self.signal(Signal::KILL);
        }
    }

    /// Ends the tree: SIGTERM and up to `grace` for it to exit (skipped when `grace` is
    /// zero), then SIGKILL until no member is left; then reaps every member that became
    /// this process's child, except the leader (its owner reaps it, for its status).
    /// Blocking: waits at most `grace` plus the time the kernel takes to kill.
    pub(crate) fn end(mut self, grace: Duration) -> TreeReport {
        let started = Instant::now();
        let mut alive = self.scan();
        if !grace.is_zero() && alive > 0 {
            self.signal(Signal::TERM);
            let deadline = started + grace;
            while Instant::now() < deadline {
                // New members (forked while terminating) get the signal too.
                let before = self.members.len();
                alive = self.scan();
                if self.members.len() > before {
                    self.signal(Signal::TERM);
                }
                if alive == 0 {
                    break;
                }
                // Woken by the first exit; the timeout only bounds a rescan for new members.
                self.wait_exit(
                    Duration::from_millis(5)
                        .min(deadline.saturating_duration_since(Instant::now())),
                );
            }
        }
        let mut killed = 0;
        if alive > 0 {
            killed = self.signal(Signal::KILL);
            // SIGKILL cannot be caught, but a member may have forked just before it:
            // rescan until nothing is left.
            for round in 0..10_000u32 {
                alive = self.scan();
                if alive == 0 {
                    break;
                }
                self.signal(Signal::KILL);
                self.wait_exit(Duration::from_millis(if round < 100 { 1 } else { 10 }));
            }
        }
        let took = started.elapsed();
        let reaped = self.reap_members();
        let report = TreeReport {
            members: self.members.len(),
            escapees: self.escapees,
            killed,
            reaped,
            took,
            cgroup: self.cgroup.is_some(),
        };
        tracing::debug!(leader = self.leader, ?report, "proc-reaper: tree ended");
        report
    }

    /// Reaps the members (not the leader) that are now zombies of this process.
    fn reap_members(&self) -> usize {
        let mut reaped = 0;
        for (pid, fd) in &self.members {
            if *pid == self.leader {
                continue;
            }
            let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
            if let Ok(Some(_)) = waitid(WaitId::PidFd(fd.as_fd()), options) {
                reaped += 1;
            }
        }
        reaped
    }
}
