//! The cgroup v2 fast path: one cgroup per tree, where a writable v2 hierarchy with
//! `cgroup.kill` (Linux 5.14+) exists. The leader joins its cgroup before `exec`
//! ([`crate::spawn`]), so every process of the tree is born inside; membership cannot be
//! left by `setsid` or a cleared environment, and `cgroup.kill` kills every member at
//! once, forks in flight included. A member that died keeps its cgroup in
//! `/proc/<pid>/cgroup` (while `cgroup.procs` no longer lists it), which is how a zombie
//! re-parented here is known as ours.
//!
//! Layout: `<v2 mount><this process's v2 path>/proc-reaper-<pid>-<start>/tree-<n>`, the
//! owner named by PID and start time so a reused PID is not mistaken for it. Once its
//! tree is gone a cgroup is kept, empty, for the next tree (up to 64), or removed. The
//! next reaper on the machine ends whatever is still inside the directory of an owner
//! that is gone (SIGKILLed: nothing of it ran) and removes the directory.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use crate::procfs::{self, Identity};

/// Empty tree cgroups kept for reuse: creating a cgroup costs far more than moving a
/// process into one.
const KEEP_FREE: usize = 64;

/// Name prefix of a reaper's (or a supervisor's) directory of cgroups.
pub(crate) const DIR_PREFIX: &str = "proc-reaper-";

/// How long the sweep waits for a dead owner's killed cgroups to empty.
const SWEEP_WAIT: Duration = Duration::from_secs(2);

/// This process's directory of tree cgroups.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    root: Arc<PathBuf>,
    /// The root as `/proc/<pid>/cgroup` shows it (from the v2 mount), with a final `/`.
    rel: Arc<str>,
    free: Arc<Mutex<Vec<PathBuf>>>,
}

/// Where this process's cgroup v2 directory is: the mount and our path below it.
pub(crate) fn own() -> Option<(PathBuf, String)> {
    let mount = v2_mount()?;
    let own = procfs::cgroup(std::process::id())?;
    Some((mount, own))
}

impl Cgroups {
    /// The directory, created if a writable cgroup v2 hierarchy with `cgroup.kill` is
    /// mounted; `None` otherwise (the subreaper path then works alone).
    pub(crate) fn detect() -> Option<Self> {
        let (mount, own) = own()?;
        let parent = mount.join(own.trim_start_matches('/'));
        let name = format!("{DIR_PREFIX}{}", Identity::me());
        let root = parent.join(&name);
        match fs::create_dir(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                tracing::debug!(path = %root.display(), error = %e, "proc-reaper: no cgroup v2 fast path");
                return None;
            }
        }
        if !root.join("cgroup.kill").exists() {
            let _ = fs::remove_dir(&root);
            return None;
        }
        let rel = format!("{}/{name}/", own.trim_end_matches('/'));
        Some(Cgroups {
            root: Arc::new(root),
            rel: rel.into(),
            free: Arc::default(),
        })
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An empty cgroup for tree `id`: a reused one, or a new one.
    pub(crate) fn tree(&self, id: u64) -> Option<TreeCgroup> {
        if let Some(path) = self.free().pop() {
            return Some(TreeCgroup {
                path,
                owner: self.clone(),
            });
        }
        let path = self.root.join(format!("tree-{id}"));
        match fs::create_dir(&path) {
            Ok(()) => Some(TreeCgroup {
                path,
                owner: self.clone(),
            }),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "proc-reaper: tree cgroup not created");
                None
            }
        }
    }

    /// `true` when `pid` is (or died) in one of this process's tree cgroups.
    pub(crate) fn holds(&self, pid: u32) -> bool {
        procfs::cgroup(pid).is_some_and(|c| c.starts_with(&*self.rel))
    }
}

/// `cgroup.procs` of `dir`, open for the write that moves a process in.
pub(crate) fn open_procs(dir: &Path) -> io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        dir.join("cgroup.procs"),
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(fd)
}

/// Where cgroup v2 is mounted, from `/proc/self/mountinfo`.
fn v2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_ascii_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_ascii_whitespace().nth(4).map(PathBuf::from)
    })
}

/// What a sweep of dead owners' cgroups did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CgroupSweep {
    /// Directories of dead owners removed.
    pub(crate) dirs: usize,
    /// Processes they still held, killed.
    pub(crate) killed: usize,
}

/// Ends what the directories of dead owners (reapers and supervisors that were
/// SIGKILLed) under `parent` still hold, and removes the directories.
pub(crate) fn sweep(parent: &Path) -> CgroupSweep {
    let mut report = CgroupSweep::default();
    let Ok(entries) = fs::read_dir(parent) else {
        return report;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(Identity::parse)
        else {
            continue;
        };
        if owner.alive() {
            continue;
        }
        let dir = entry.path();
        let held = pids_below(&dir);
        if held > 0 {
            // `cgroup.kill` of a directory kills everything in its whole subtree.
            if let Err(e) = fs::write(dir.join("cgroup.kill"), "1") {
                tracing::warn!(path = %dir.display(), error = %e, "proc-reaper: could not end a dead owner's cgroup");
                continue;
            }
            let until = Instant::now() + SWEEP_WAIT;
            while pids_below(&dir) > 0 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
            report.killed += held;
            tracing::info!(path = %dir.display(), killed = held, owner = %owner, "proc-reaper: ended the trees of a dead owner");
        }
        if remove_tree(&dir) {
            report.dirs += 1;
        }
    }
    report
}

/// Processes in `dir`'s cgroup and every cgroup below it.
fn pids_below(dir: &Path) -> usize {
    let own = crate::procfs::read_list(dir.join("cgroup.procs"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let below: usize = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| pids_below(&e.path()))
                .sum()
        })
        .unwrap_or(0);
    own + below
}

/// Removes an (empty) cgroup directory and those below it, deepest first.
pub(crate) fn remove_tree(dir: &Path) -> bool {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    fs::remove_dir(dir).is_ok()
}

/// One tree's cgroup; on drop, kept for reuse if empty, else removed.
#[derive(Debug)]
pub(crate) struct TreeCgroup {
    path: PathBuf,
    owner: Cgroups,
}

impl TreeCgroup {
    /// `cgroup.procs`, open for writing (`O_CLOEXEC`): a child writes `0` to it to join.
    /// Opened per spawn and closed once the child has `exec`ed, so an idle cgroup costs
    /// no descriptor.
    pub(crate) fn procs(&self) -> io::Result<OwnedFd> {
        open_procs(&self.path)
    }

    /// Moves `pid` (and its threads) into the cgroup, from outside.
    pub(crate) fn adopt(&self, pid: u32) -> io::Result<()> {
        fs::write(self.path.join("cgroup.procs"), pid.to_string())
    }

    /// The processes in the cgroup now.
    pub(crate) fn pids(&self) -> Vec<u32> {
        crate::procfs::read_list(self.path.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// `true` when `pid` is (or died) in this cgroup.
    pub(crate) fn holds(&self, pid: u32) -> bool {
        let Some(name) = self.path.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        procfs::cgroup(pid).is_some_and(|c| {
            c.strip_prefix(&*self.owner.rel)
                .is_some_and(|rest| rest == name)
        })
    }

    /// SIGKILL to every process in the cgroup, at once.
    pub(crate) fn kill(&self) {
        if let Err(e) = fs::write(self.path.join("cgroup.kill"), "1") {
            tracing::debug!(path = %self.path.display(), error = %e, "proc-reaper: cgroup.kill failed");
        }
    }

    /// The directory of this process's tree cgroups.
    pub(crate) fn owner(&self) -> &Cgroups {
        &self.owner
    }
}

impl Drop for TreeCgroup {
    fn drop(&mut self) {
        if self.pids().is_empty() {
            let mut free = self.owner.free();
            if free.len() < KEEP_FREE {
                free.push(std::mem::take(&mut self.path));
                return;
            }
        }
        if let Err(e) = fs::remove_dir(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %e, "proc-reaper: tree cgroup not removed");
        }
    }
}
