//! Escapees forked in the instant their tree ends, while their `exec` is slowed by disk
//! reads: every one is found, ended and reaped.
//!
//! Each tree's leader starts a `setsid` grandchild and exits at once, so the reaper
//! looks for the grandchild while it is being re-parented and while it `exec`s. Its
//! program is a private copy of `sleep`, dropped from the page cache before each spawn
//! (`POSIX_FADV_DONTNEED`, no privilege needed): the kernel then reads it from disk in
//! the middle of `exec`, between mapping the new image and setting up its environment,
//! when `/proc/<pid>/environ` reads empty. Reapers before the fix lost 3 to 8 of 3,000
//! such grandchildren on the development machine.
//!
//! The reaper also reads the grandchild's environment while it `exec`s twice (`sh`,
//! then `setsid`, then `sleep`): a reaper that read `/proc/<pid>/environ` in pieces
//! lost one in 3,000 now and then, its read stopping short at the `exec`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use proc_reaper::Reaper;

/// Processes whose program is `exe` (our private copy: nothing else runs it).
fn running(exe: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).next() == Some(exe.as_os_str().as_encoded_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Zombie children of this process.
fn zombies() -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in kids.split_ascii_whitespace() {
            // As bytes: the command name may not be UTF-8.
            let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit(|b| *b == b')')
                .next()
                .is_some_and(|s| s.trim_ascii_start().starts_with(b"Z"))
            {
                out.push(pid.parse().unwrap());
            }
        }
    }
    out
}

fn evict(exe: &Path) {
    let file = std::fs::File::open(exe).unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escapees_forked_as_their_tree_ends_are_all_found() {
    const TREES: usize = 3000;
    // Parentage and the marker alone: the cgroup would hide a miss.
    let reaper = Reaper::subreaper_only().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exe: PathBuf = dir.path().join("sleep");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    std::fs::File::open(&exe).unwrap().sync_all().unwrap();
    let script = format!(
        "setsid {} 3600 </dev/null >/dev/null 2>&1 & exec true",
        exe.display()
    );
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TREES {
        evict(&exe);
        let mut command = Command::new("sh");
        command.args(["-c", &script]);
        let child = reaper
            .command(command)
            .grace(Duration::from_millis(50))
            .spawn()
            .unwrap();
        tasks.spawn(async move {
            // Every way a tree ends: dropped, waited for, timed out.
            match i % 3 {
                0 => {
                    drop(child);
                    None
                }
                1 => Some(child.wait().await.unwrap().tree),
                _ => Some(
                    child
                        .wait_timeout(Duration::from_millis(1))
                        .await
                        .unwrap()
                        .tree,
                ),
            }
        });
        if tasks.len() >= 8 {
            let report = tasks.join_next().await.unwrap().unwrap();
            assert!(report.is_none_or(|r| r.unattributed == 0), "{report:?}");
        }
    }
    while let Some(report) = tasks.join_next().await {
        let report = report.unwrap();
        assert!(report.is_none_or(|r| r.unattributed == 0), "{report:?}");
    }
    reaper.settle().await;
    let left = running(&exe);
    for pid in &left {
        // Ended and reaped by hand, so the zombie check below is about the reaper.
        let pid = rustix::process::Pid::from_raw(*pid as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
    }
    assert!(
        left.is_empty(),
        "{} of {TREES} escapees outlived their trees: {left:?}",
        left.len()
    );
    assert!(zombies().is_empty(), "zombies: {:?}", zombies());
}
