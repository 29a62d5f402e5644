//! Ending a whole process tree: find every member, SIGTERM, wait out the grace, SIGKILL
//! what is left, reap what became ours.
//!
//! Members are found three ways: the leader's descendants (`/proc/<pid>/task/*/children`),
//! the tree's cgroup, and escapees: processes that double-forked or called `setsid`,
//! were re-parented to this process (a child subreaper) and are still in the leader's
//! process group or carry the tree's environment marker. Each member gets a pidfd the
//! moment it is found, and every signal goes through it, so a reused PID is never hit.
//! Whether a member still runs is read from its pidfd too (readable once it has exited),
//! not from `/proc/<pid>`: a member reaped by its own parent frees its PID, and a
//! process given that PID would otherwise count as the member, alive until the end's
//! time bound.
//! Only pinned members are signalled, never the leader's process group: a SIGKILL sent
//! to the group reaches a member forked since the last scan, but one caught inside
//! `setsid` completes it and dies outside the group, never pinned, a zombie that no
//! later scan can attribute (without a cgroup: a dead process has no environment). A
//! fork storm on the subreaper path left one such zombie in about 45 runs. A member
//! forked since the last scan is pinned by the next one instead, which the rounds
//! repeat until nothing is left.
//!
//! A re-parented process whose environment cannot be read yet (it is in the middle of
//! `exec`) is *undetermined*: it counts as alive, and is looked at again, until it can
//! be told or [`UNDETERMINED_WAIT`] has passed. So is a member whose pidfd could not be
//! opened (fds exhausted), and, for [`ENVLESS_WAIT`], one whose environment reads empty
//! (it may be setting it up). Ending a tree never concludes "nothing left" while one
//! of its escapees is only momentarily unreadable.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{
    Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, pidfd_open, pidfd_send_signal, waitid,
};

use crate::cgroup::TreeCgroup;
use crate::procfs::{self, Env};

/// How long a re-parented process that cannot be told yet (mid-`exec`, or no fd for its
/// pidfd) holds up the end of a tree before it is given up on as not attributable.
pub(crate) const UNDETERMINED_WAIT: Duration = Duration::from_secs(1);

/// The most live members a tree holds pidfds for at once. A larger tree (a fork storm) is
/// ended in rounds: those pinned are killed and reaped, their pidfds closed, then the
/// next are pinned; so ending it never takes every descriptor this process may open
/// (without which `/proc` cannot be read).
pub(crate) const PIN_LIMIT: usize = 256;

/// How long the members a time-bounded end left dying are waited for, to reap them.
pub(crate) const REAP_LATER_FOR: Duration = Duration::from_secs(30);

/// Members a time-bounded end left dying, pinned, until reaped ([`Tree::reap_later`]).
static LEFT: Mutex<Vec<(u32, OwnedFd)>> = Mutex::new(Vec::new());

/// Whether the thread reaping [`LEFT`] runs.
static LEFT_THREAD: AtomicBool = AtomicBool::new(false);

/// Those of `fds` whose processes still run. A pidfd turns readable once its process
/// has exited (a zombie counts as exited), and it names that process for as long as
/// it is open: unlike `/proc/<pid>`, never another process given the PID since. One
/// `poll`, with no wait, for all of them; if it fails, all count as running (the
/// caller waits or signals once more, which a dead process ignores).
pub(crate) fn running<'a>(fds: impl IntoIterator<Item = &'a OwnedFd>) -> Vec<&'a OwnedFd> {
    let fds: Vec<&OwnedFd> = fds.into_iter().collect();
    let exited = wait_for_exits(&fds, Duration::ZERO);
    fds.into_iter()
        .zip(exited)
        .filter(|(_, exited)| !exited)
        .map(|(fd, _)| fd)
        .collect()
}

/// Waits up to `timeout` for one of the pidfds `fds` to turn readable (its process
/// exited); returns which are. On a `poll` error other than an interruption, none is.
pub(crate) fn wait_for_exits(fds: &[&OwnedFd], timeout: Duration) -> Vec<bool> {
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::IN))
        .collect();
    let timeout = Timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX as _),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    loop {
        match poll(&mut polls, Some(&timeout)) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "proc-reaper: poll on pidfds failed");
                return vec![false; fds.len()];
            }
        }
    }
    polls.iter().map(|p| !p.revents().is_empty()).collect()
}

fn left() -> std::sync::MutexGuard<'static, Vec<(u32, OwnedFd)>> {
    LEFT.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reaps the members of [`LEFT`] that are zombies of this process, waiting up to
/// `wait` for the others to die (they were sent SIGKILL); forgets those gone (reaped
/// by their own parent). Returns how many it reaped.
fn reap_left(wait: Duration) -> usize {
    let until = Instant::now() + wait;
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
    let mut reaped = 0;
    loop {
        let mut pending = left();
        pending.retain(|(pid, fd)| {
            let done = matches!(waitid(WaitId::PidFd(fd.as_fd()), options), Ok(Some(_)));
            reaped += usize::from(done);
            !done && procfs::stat(*pid).is_some()
        });
        if pending.is_empty() || Instant::now() >= until {
            return reaped;
        }
        drop(pending);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How long a re-parented process whose environment reads empty (with its arguments
/// set) is looked at again before it is taken for one without an environment, hence
/// not this tree's: `exec` sets the environment up microseconds after the arguments.
pub(crate) const ENVLESS_WAIT: Duration = Duration::from_millis(20);

/// The leaders every reaper of this process spawned and has not reaped yet: this
/// process's own children, never re-parented, so never a tree's escapee nor a stray to
/// reap (their owners reap them, for their status). A leader caught mid-`exec` (its
/// environment unreadable) is known by this and not waited for. Process-wide, because
/// the children lists and the zombies this process sees are process-wide.
pub(crate) type Leaders = Arc<Mutex<HashSet<u32>>>;

/// Held shared by every spawn from before `fork` until its leader is in [`leaders`], and
/// taken exclusively (never waited for) to decide that a zombie is a stray: while it is
/// held so, every leader that exists is in the set, so a zombie outside it was adopted.
pub(crate) static SPAWNING: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The process's one set of [`Leaders`].
pub(crate) fn leaders() -> Leaders {
    static LEADERS: std::sync::OnceLock<Leaders> = std::sync::OnceLock::new();
    LEADERS.get_or_init(Leaders::default).clone()
}

/// What ending a tree took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreeReport {
    /// Processes found in the tree (the leader included).
    pub members: usize,
    /// Of those, escapees: found outside the leader's descendants (re-parented to us
    /// and known by the leader's process group or the marker, or held by the cgroup).
    pub escapees: usize,
    /// Processes still alive after the grace period, ended by SIGKILL.
    pub killed: usize,
    /// Re-parented orphans this process reaped.
    pub reaped: usize,
    /// From the first signal to the last member gone.
    pub took: Duration,
    /// `true` when the tree had a cgroup of its own (the v2 fast path): with the default
    /// [`Join::BeforeExec`](crate::Join::BeforeExec), the leader ran inside it from its
    /// first instruction; with [`Join::AfterSpawn`](crate::Join::AfterSpawn), from the
    /// instant after `spawn` returned.
    pub cgroup: bool,
    /// Re-parented processes that could not be told to be this tree's or not within
    /// 1 s, and were left alone: their environment stayed unreadable (an `exec` that
    /// long), or no pidfd could be opened for them (fds exhausted). Normally 0; logged
    /// as a warning otherwise.
    pub unattributed: usize,
    /// Processes of the tree still alive when a time bound given to the end ran out
    /// ([`Reaper::shutdown_by`](crate::Reaper::shutdown_by)): those pinned were sent
    /// SIGKILL, which they cannot outlive; in a fork storm this also counts members
    /// found but not yet pinned (over the descriptor budget), so it can exceed
    /// `members`. They die after the report; those pinned that become this process's
    /// children are reaped by the next end of any tree (an end without a bound waits
    /// up to 0.5 s for them) or by a background thread within 30 s. Always 0 without a
    /// bound.
    pub left: usize,
}

/// One tree being ended: its members by PID, each with a pidfd opened while alive.
pub(crate) struct Tree {
    leader: u32,
    marker: Arc<[u8]>,
    cgroup: Option<Arc<TreeCgroup>>,
    leaders: Leaders,
    me: u32,
    members: HashMap<u32, OwnedFd>,
    /// Members found in all (those reaped along the way are no longer in `members`).
    found: usize,
    /// Members found in the last look but not pinned yet (over [`PIN_LIMIT`]), plus one
    /// if this process's own children could not be listed: alive until pinned.
    deferred: usize,
    /// Members reaped along the way, their pidfds closed.
    reaped: usize,
    /// Zombies adopted from another of this process's tree cgroups whose tree's end
    /// missed them (they exited in the instant it looked): reaped here.
    strays: HashMap<u32, OwnedFd>,
    escapees: usize,
    /// Processes that may be members but cannot be told (or opened) yet: until when
    /// they are waited for, and whether they count as unattributed after that.
    undetermined: HashMap<u32, (Instant, bool)>,
}

impl Tree {
    pub(crate) fn new(
        leader: u32,
        marker: Arc<[u8]>,
        cgroup: Option<Arc<TreeCgroup>>,
        leaders: Leaders,
    ) -> Self {
        Tree {
            leader,
            marker,
            cgroup,
            leaders,
            me: std::process::id(),
            members: HashMap::new(),
            found: 0,
            deferred: 0,
            reaped: 0,
            strays: HashMap::new(),
            escapees: 0,
            undetermined: HashMap::new(),
        }
    }

    /// Finds members not seen before; returns how many are alive now. When none is,
    /// looks once more: a member that died since the first look had its children
    /// re-parented here by the time it was seen dead.
    /// Undetermined processes count as alive (for at most [`UNDETERMINED_WAIT`]).
    fn scan(&mut self) -> usize {
        self.discover();
        let alive = self.alive();
        if alive > 0 {
            return alive;
        }
        self.discover();
        self.alive()
    }

    /// `true` for a leader this reaper spawned (of this tree or another).
    fn is_leader(&self, pid: u32) -> bool {
        self.leaders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&pid)
    }

    /// Members alive now, plus the undetermined not yet given up on.
    fn alive(&self) -> usize {
        running(self.members.values()).len() + self.waiting().count() + self.deferred
    }

    /// The undetermined processes still waited for.
    fn waiting(&self) -> impl Iterator<Item = u32> + '_ {
        self.undetermined
            .iter()
            .filter(|(_, (until, _))| Instant::now() < *until)
            .map(|(pid, _)| *pid)
    }

    /// The undetermined processes given up on, that could not be told.
    fn unattributed(&self) -> usize {
        let now = Instant::now();
        self.undetermined
            .values()
            .filter(|(until, counts)| *counts && now >= *until)
            .count()
    }

    /// Adds members not seen before: the leader's descendants and escapees.
    fn discover(&mut self) {
        let mut roots = vec![self.leader];
        // The cgroup holds every member that was forked after the leader joined it.
        if let Some(cgroup) = &self.cgroup {
            roots.extend(cgroup.pids().into_iter().filter(|p| *p != self.leader));
        }
        // Looked at again each time: neither cached as foreign nor as undetermined.
        let mut undetermined = Vec::new();
        let mut strays = Vec::new();
        self.deferred = 0;
        let adopted = procfs::children_checked(self.me).unwrap_or_else(|e| {
            // Not knowing is not "none": look again.
            tracing::debug!(error = %e, "proc-reaper: this process's children unreadable");
            self.deferred += 1;
            Vec::new()
        });
        for kid in adopted {
            if kid == self.leader
                || self.members.contains_key(&kid)
                || self.strays.contains_key(&kid)
            {
                continue;
            }
            // Another tree's leader (this process's own child) is never a member: not
            // read at all, so ending n trees at once reads no one's /proc n times over.
            if self.is_leader(kid) {
                continue;
            }
            // Re-parented here. Still in the leader's process group (no `setsid` yet, or
            // a zombie that never called it): ours, and the group cannot be reused while
            // the leader is unreaped. Otherwise the environment tells.
            let Some(stat) = procfs::stat(kid) else {
                continue;
            };
            if stat.pgrp == self.leader {
                roots.push(kid);
                continue;
            }
            // With a cgroup, where it runs (or died) tells, environment or not: a zombie
            // killed by `cgroup.kill` before any scan saw it is known this way too.
            if let Some(cgroup) = &self.cgroup
                && !self.is_leader(kid)
            {
                if cgroup.holds(kid) {
                    roots.push(kid);
                    continue;
                }
                if stat.state == 'Z' && cgroup.owner().holds(kid) {
                    // Checked again against the leaders once no spawn is in flight.
                    strays.push(kid);
                    continue;
                }
            }
            match procfs::marker(kid, &self.marker) {
                Env::Marked => roots.push(kid),
                Env::Unmarked => {}
                // Mid-`exec`: not ours to signal yet, and not to be forgotten either.
                Env::Unreadable if procfs::alive(kid) && !self.is_leader(kid) => {
                    undetermined.push((kid, UNDETERMINED_WAIT, true));
                }
                Env::Unreadable => {}
                Env::Empty => undetermined.push((kid, ENVLESS_WAIT, false)),
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
                if self.members.len() >= PIN_LIMIT {
                    self.deferred += 1;
                    continue;
                }
                match pidfd_open(raw, PidfdFlags::empty()) {
                    Ok(fd) => {
                        self.members.insert(pid, fd);
                        self.found += 1;
                        if i > 0 {
                            self.escapees += 1;
                        }
                    }
                    // Gone already.
                    Err(rustix::io::Errno::SRCH) => {}
                    // EMFILE and the like: a member that cannot be signalled safely yet.
                    Err(e) => {
                        tracing::debug!(pid, error = %e, "proc-reaper: no pidfd for a member yet");
                        undetermined.push((pid, UNDETERMINED_WAIT, true));
                    }
                }
            }
        }
        // A leader that exited before its spawn recorded it looks like a stray: decide
        // only when no spawn is in flight, else leave it to a later tree's end.
        if !strays.is_empty()
            && let Ok(_no_spawn) = SPAWNING.try_write()
        {
            strays.retain(|pid| !self.is_leader(*pid));
            for pid in strays {
                if let Some(fd) =
                    Pid::from_raw(pid as i32).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok())
                {
                    self.strays.insert(pid, fd);
                }
            }
        }
        let now = Instant::now();
        self.undetermined
            .retain(|pid, _| undetermined.iter().any(|u| u.0 == *pid));
        for (pid, wait, counts) in undetermined {
            self.undetermined.entry(pid).or_insert_with(|| {
                tracing::debug!(
                    pid,
                    leader = self.leader,
                    "proc-reaper: undetermined, looking again"
                );
                (now + wait, counts)
            });
        }
    }

    /// Blocks until a live member exits (its pidfd turns readable) or `timeout` passes.
    fn wait_exit(&self, timeout: Duration) {
        let live = running(self.members.values());
        if live.is_empty() {
            // Only undetermined processes are waited for: nothing to poll.
            std::thread::sleep(timeout);
            return;
        }
        wait_for_exits(&live, timeout);
    }

    /// Sends `signal` to every member still alive (not to the leader's group: see the
    /// module's top); returns how many members were alive to get it (counted first:
    /// `cgroup.kill` may end them before their own signal goes out).
    fn signal(&self, signal: Signal) -> usize {
        let alive = running(self.members.values());
        if let (Some(cgroup), Signal::KILL) = (&self.cgroup, signal) {
            cgroup.kill();
        }
        for fd in &alive {
            let _ = pidfd_send_signal(fd.as_fd(), signal);
        }
        alive.len()
    }

    /// When no member is alive (the leader exited, alone or with its tree): reaps what
    /// became ours and reports, without blocking. `None` when something is alive.
    pub(crate) fn settled(&mut self) -> Option<TreeReport> {
        if self.scan() > 0 {
            return None;
        }
        let reaped = self.reap_members() + reap_left(Duration::ZERO);
        Some(TreeReport {
            members: self.found,
            escapees: self.escapees,
            killed: 0,
            reaped,
            took: Duration::ZERO,
            cgroup: self.cgroup.is_some(),
            unattributed: self.unattributed(),
            left: 0,
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
    pub(crate) fn end(self, grace: Duration) -> TreeReport {
        self.end_by(grace, None)
    }

    /// [`Tree::end`], giving up at `until` if given: the SIGKILL rounds stop there, and
    /// the members still alive are counted in [`TreeReport::left`].
    pub(crate) fn end_by(mut self, grace: Duration, until: Option<Instant>) -> TreeReport {
        let started = Instant::now();
        let past = |now: Instant| until.is_some_and(|until| now >= until);
        let mut alive = self.scan();
        if !grace.is_zero() && alive > 0 {
            self.signal(Signal::TERM);
            let deadline = until.map_or(started + grace, |until| until.min(started + grace));
            while Instant::now() < deadline {
                // New members (forked while terminating) get the signal too.
                let before = self.found;
                alive = self.scan();
                if self.found > before {
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
                self.reap_dead();
            }
        }
        let mut killed = 0;
        if alive > 0 {
            killed = self.signal(Signal::KILL);
            // SIGKILL cannot be caught, but a member may have forked just before it:
            // rescan until nothing is left.
            for round in 0..10_000u32 {
                alive = self.scan();
                if alive == 0 || past(Instant::now()) {
                    break;
                }
                self.signal(Signal::KILL);
                self.wait_exit(Duration::from_millis(if round < 100 { 1 } else { 10 }));
                // A tree larger than the descriptor limit is ended in rounds: the dead
                // are reaped and their pidfds closed, so the next scan pins more.
                self.reap_dead();
            }
        }
        let took = started.elapsed();
        // What an earlier bounded end left dying: reaped now, waited for briefly when
        // this end has no bound of its own.
        let left_wait = if until.is_none() {
            Duration::from_millis(500)
        } else {
            Duration::ZERO
        };
        let reaped = self.reap_members() + reap_left(left_wait);
        let report = TreeReport {
            members: self.found,
            escapees: self.escapees,
            killed,
            reaped,
            took,
            cgroup: self.cgroup.is_some(),
            unattributed: self.unattributed(),
            left: if killed > 0 { alive } else { 0 },
        };
        if report.left > 0 {
            tracing::warn!(
                leader = self.leader,
                left = report.left,
                "proc-reaper: time bound reached with members still dying of SIGKILL"
            );
            self.reap_later();
        }
        if report.unattributed > 0 {
            tracing::warn!(
                leader = self.leader,
                ?report,
                "proc-reaper: re-parented processes left unattributed"
            );
        }
        tracing::debug!(leader = self.leader, ?report, "proc-reaper: tree ended");
        report
    }

    /// After a time bound cut the end short: the pinned members (not the leader) are
    /// dying of SIGKILL, and those re-parented here become zombies of this process once
    /// dead, which no later scan can attribute (a dead process has no environment, and
    /// a `setsid` one is out of the leader's group). They are kept, pinned, in [`LEFT`]:
    /// the next end of any tree reaps those dead by then (an end without a bound waits
    /// briefly for the rest), and a background thread reaps them as they die, for up
    /// to [`REAP_LATER_FOR`]; one that is not this process's child by then is its live
    /// parent's to reap.
    fn reap_later(&mut self) {
        let leader = self.leader;
        let pending: Vec<(u32, OwnedFd)> = self
            .members
            .drain()
            .chain(self.strays.drain())
            .filter(|(pid, _)| *pid != leader)
            .collect();
        if pending.is_empty() {
            return;
        }
        left().extend(pending);
        if LEFT_THREAD.swap(true, Ordering::SeqCst) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("proc-reaper-left".into())
            .spawn(|| {
                let until = Instant::now() + REAP_LATER_FOR;
                loop {
                    reap_left(Duration::ZERO);
                    let mut pending = left();
                    if pending.is_empty() || Instant::now() >= until {
                        pending.clear();
                        LEFT_THREAD.store(false, Ordering::SeqCst);
                        return;
                    }
                    drop(pending);
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        if let Err(e) = spawned {
            LEFT_THREAD.store(false, Ordering::SeqCst);
            tracing::warn!(error = %e, "proc-reaper: no thread to reap the members left dying");
        }
    }

    /// Reaps the members (not the leader) that are now zombies of this process, and
    /// closes their pidfds; also releases those already reaped elsewhere (gone from
    /// `/proc`): by their own parent, or by the background reaping of an earlier bounded
    /// end that pinned them too. Kept, those pins filled [`PIN_LIMIT`] with the dead, and
    /// a larger tree could pin nothing more: a fork storm's end then waited for its
    /// unpinned members to exit on their own (60 s, in one test run in about 70).
    fn reap_dead(&mut self) {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        let leader = self.leader;
        let mut reaped = 0;
        self.members.retain(|pid, fd| {
            if *pid == leader {
                return true;
            }
            match waitid(WaitId::PidFd(fd.as_fd()), options) {
                Ok(Some(_)) => {
                    reaped += 1;
                    false
                }
                // Our child, still running.
                Ok(None) => true,
                // Not our child: kept while it runs, or is a zombie its parent (another
                // member) has yet to reap; released once reaped elsewhere (its PID gone
                // from /proc, or given to a process that is not this one: a running
                // process there while the pidfd says exited).
                Err(_) => {
                    !running([&*fd]).is_empty()
                        || procfs::stat(*pid).is_some_and(|s| s.state == 'Z')
                }
            }
        });
        self.reaped += reaped;
    }

    /// Reaps the members (not the leader) and strays that are now zombies of this
    /// process.
    fn reap_members(&self) -> usize {
        let mut reaped = self.reaped;
        for (pid, fd) in self.members.iter().chain(&self.strays) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A member reaped by someone else (here, `std`'s `wait` on a child of this test)
    /// no longer holds one of the tree's [`PIN_LIMIT`] pins once it is gone.
    #[test]
    fn a_member_reaped_elsewhere_releases_its_pin() {
        let mut leader = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let mut member = std::process::Command::new("true").spawn().unwrap();
        let pid = member.id();
        let fd = pidfd_open(Pid::from_raw(pid as i32).unwrap(), PidfdFlags::empty()).unwrap();
        let mut tree = Tree::new(leader.id(), Arc::from(&b"X=1"[..]), None, leaders());
        tree.members.insert(pid, fd);
        member.wait().unwrap();
        tree.reap_dead();
        let kept = tree.members.contains_key(&pid);
        leader.kill().unwrap();
        leader.wait().unwrap();
        assert!(!kept, "pid {pid}, reaped by its owner, still pinned");
        assert_eq!(tree.reaped, 0, "not reaped by the tree");
    }

    /// A member reaped by its owner frees its PID, and another process may be given it.
    /// Here the member's pidfd is filed under the PID of a live process (`stranger`),
    /// as after that reuse: the member counts as exited, gets no signal, and gives its
    /// pin back, while the stranger runs on. Judged by `/proc/<pid>` (before), the
    /// stranger kept the member alive, signalled and pinned.
    #[test]
    fn a_member_whose_pid_was_given_to_another_process_counts_as_exited() {
        let spawn_sleep = || {
            std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap()
        };
        let (mut leader, mut stranger) = (spawn_sleep(), spawn_sleep());
        let mut member = std::process::Command::new("true").spawn().unwrap();
        let pidfd = |pid: u32| pidfd_open(Pid::from_raw(pid as i32).unwrap(), PidfdFlags::empty());
        let fd = pidfd(member.id()).unwrap();
        let stranger_fd = pidfd(stranger.id()).unwrap();
        member.wait().unwrap();
        let mut tree = Tree::new(leader.id(), Arc::from(&b"X=1"[..]), None, leaders());
        tree.members.insert(stranger.id(), fd);
        let running_now = (
            running([&stranger_fd]).len(),
            running(tree.members.values()).len(),
        );
        let alive = tree.alive();
        let signalled = tree.signal(Signal::TERM);
        tree.reap_dead();
        let kept = tree.members.contains_key(&stranger.id());
        let stranger_ran_on = stranger.try_wait().unwrap().is_none();
        for child in [&mut leader, &mut stranger] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        assert_eq!(
            running_now,
            (1, 0),
            "(the stranger, the member) read as running"
        );
        assert_eq!(alive, 0, "the stranger's PID kept the member alive");
        assert_eq!(signalled, 0, "the member was counted as signalled");
        assert!(!kept, "the member's pin was kept");
        assert!(stranger_ran_on, "the stranger was signalled");
    }
}
