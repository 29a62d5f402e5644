//! The cgroup v2 fast path: one cgroup per tree, where a writable v2 hierarchy with
//! `cgroup.kill` (Linux 5.14+) exists. Membership is inherited by every fork and cannot
//! be left by `setsid` or a cleared environment, and `cgroup.kill` kills every member at
//! once, forks in flight included.
//!
//! Layout: `<v2 mount><this process's v2 path>/proc-reaper-<pid>/tree-<n>`. Once its
//! tree is gone a cgroup is kept, empty, for the next tree (up to 64), or removed; a
//! run's directory is removed by the next reaper on the machine once its process is
//! gone.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Empty tree cgroups kept for reuse: creating a cgroup costs far more than moving a
/// process into one.
const KEEP_FREE: usize = 64;

/// This process's directory of tree cgroups.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    root: Arc<PathBuf>,
    free: Arc<Mutex<Vec<PathBuf>>>,
}

impl Cgroups {
    /// The directory, created if a writable cgroup v2 hierarchy with `cgroup.kill` is
    /// mounted; `None` otherwise (the subreaper path then works alone).
    pub(crate) fn detect() -> Option<Self> {
        let mount = v2_mount()?;
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
        let parent = mount.join(own.trim_start_matches('/'));
        sweep(&parent);
        let root = parent.join(format!("proc-reaper-{}", std::process::id()));
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
        Some(Cgroups {
            root: Arc::new(root),
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

/// Removes the (empty) directories of reapers whose processes are gone.
fn sweep(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("proc-reaper-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(trees) = fs::read_dir(entry.path()) {
            for tree in trees.flatten() {
                if tree.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::remove_dir(tree.path());
                }
            }
        }
        let _ = fs::remove_dir(entry.path());
    }
}

/// One tree's cgroup; on drop, kept for reuse if empty, else removed.
#[derive(Debug)]
pub(crate) struct TreeCgroup {
    path: PathBuf,
    owner: Cgroups,
}

impl TreeCgroup {
    /// Moves `pid` (and its threads) into the cgroup.
    pub(crate) fn adopt(&self, pid: u32) -> io::Result<()> {
        fs::write(self.path.join("cgroup.procs"), pid.to_string())
    }

    /// The processes in the cgroup now.
    pub(crate) fn pids(&self) -> Vec<u32> {
        crate::procfs::read_list(self.path.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILL to every process in the cgroup, at once.
    pub(crate) fn kill(&self) {
        if let Err(e) = fs::write(self.path.join("cgroup.kill"), "1") {
            tracing::debug!(path = %self.path.display(), error = %e, "proc-reaper: cgroup.kill failed");
        }
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
