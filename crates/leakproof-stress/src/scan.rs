//! What a run left behind, read from `/proc` and the file system: processes by
//! environment marker, by parentage and by cgroup; zombies; entries in a directory.
//!
//! Every function here reads the system as it is at the call, holds nothing open
//! afterwards and never fails: a process that exits mid-read is simply not listed.

use std::path::Path;

/// The names of the entries directly in `dir` (none if it does not exist), sorted.
/// A scoped-temp run directory's lock file (`.owner.lock`) belongs to the run
/// directory, not to an entry, and is left out.
pub fn entry_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name != ".owner.lock")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `/proc/<pid>/stat` after the command name (`state ppid pgrp ...`); `None` once the
/// process is gone. The name may hold any byte, spaces, parentheses and non-UTF-8 ones
/// included, so the text is read as bytes and cut at the last `)`.
pub fn stat_fields(pid: u32) -> Option<String> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|b| *b == b')')?;
    Some(String::from_utf8_lossy(&stat[close + 1..]).into_owned())
}

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    /// Its PID.
    pub pid: u32,
    /// Its parent's PID.
    pub ppid: u32,
    /// Its state letter: `R`, `S`, `D`, `T`, `Z` (a zombie: exited, not reaped) ...
    pub state: char,
}

impl Process {
    /// `pid` now, or `None` once it is gone (reaped).
    pub fn read(pid: u32) -> Option<Process> {
        let fields = stat_fields(pid)?;
        let mut fields = fields.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        Some(Process { pid, ppid, state })
    }

    /// `true` for a zombie (or a process being torn down, `X`).
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// Every process on the system, as far as this user can see `/proc`.
pub fn processes() -> Vec<Process> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(Process::read)
        .collect()
}

/// The descendants of `pid` (zombies included: they are not reaped yet), from each
/// process's parent in `/proc/<pid>/stat`.
pub fn descendants(pid: u32) -> Vec<u32> {
    descendants_in(&processes(), pid)
        .into_iter()
        .map(|p| p.pid)
        .collect()
}

/// The descendants of `pid` among `all`.
pub fn descendants_in(all: &[Process], pid: u32) -> Vec<Process> {
    let mut found: Vec<Process> = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for p in all {
            if p.ppid == parent && !found.iter().any(|f| f.pid == p.pid) {
                found.push(*p);
                frontier.push(p.pid);
            }
        }
    }
    found
}

/// The processes whose environment holds `marker` (`NAME=value`): a tree's members
/// wherever they were re-parented. Zombies have no environment and are not listed; nor
/// is a process that cleared its environment (`env -i`), or another user's.
pub fn with_marker(marker: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let needle = marker.as_bytes();
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle))
        })
        .collect()
}

/// The cgroup v2 path of `pid` (`/a/b`, from the `0::` line of `/proc/<pid>/cgroup`);
/// `None` without cgroup v2. A zombie still shows the cgroup it died in.
pub fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end().to_owned())
}

/// The live processes in the cgroup v2 at `path` (as [`cgroup_of`] gives it), from its
/// `cgroup.procs`; empty when it cannot be read (no such cgroup, not mounted at
/// `/sys/fs/cgroup`).
pub fn cgroup_procs(path: &str) -> Vec<u32> {
    let file = Path::new("/sys/fs/cgroup")
        .join(path.trim_start_matches('/'))
        .join("cgroup.procs");
    std::fs::read_to_string(file)
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Resident memory of `pid` in bytes (`/proc/<pid>/statm`'s second field, in pages);
/// `None` once it is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// Open file descriptors of `pid` (the entries of `/proc/<pid>/fd`); `None` when they
/// cannot be listed (gone, or another user's).
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The command line of `pid`, its arguments joined by spaces (`[name]` for a process
/// with none, as `ps` shows kernel threads and zombies), at most 200 characters.
pub fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut text = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        text = format!("[{}]", name.trim_end());
    }
    if text.chars().count() > 200 {
        text = text.chars().take(197).collect::<String>() + "...";
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read_as_running_with_its_parent() {
        let me = Process::read(std::process::id()).expect("own stat");
        assert_eq!(
            me.ppid,
            rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
        );
        assert!(!me.is_zombie());
    }

    #[test]
    fn descendants_follow_parentage_through_generations() {
        let all = [
            Process {
                pid: 10,
                ppid: 1,
                state: 'S',
            },
            Process {
                pid: 11,
                ppid: 10,
                state: 'S',
            },
            Process {
                pid: 12,
                ppid: 11,
                state: 'Z',
            },
            Process {
                pid: 13,
                ppid: 1,
                state: 'S',
            },
        ];
        let found: Vec<u32> = descendants_in(&all, 10).iter().map(|p| p.pid).collect();
        assert_eq!(found, vec![11, 12]);
    }

    #[test]
    fn a_missing_directory_has_no_entries_and_the_owner_lock_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(entry_names(&dir.path().join("absent")).is_empty());
        std::fs::write(dir.path().join(".owner.lock"), b"").unwrap();
        std::fs::write(dir.path().join("b"), b"").unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        assert_eq!(entry_names(dir.path()), vec!["a", "b"]);
    }
}
