//! Memory against a real limit. `Health`'s grades: a child process (this test binary,
//! re-run) joins a memory cgroup of its own, limited to 128 MiB, and touches memory
//! until `Health` says Degraded (over 50% of the limit), then Unhealthy (over 70%),
//! each with the percentage and the limit it read from the cgroup. mem-watch's PSI
//! trigger: children run out of a 32 MiB group's memory until the kernel reports the
//! stall, and the trigger must fire. cgroup v1 or v2, wherever this host lets a test
//! make a limited group (root, a writable hierarchy with the memory controller) and
//! install a PSI trigger; otherwise each test says why and skips.

#![cfg(all(target_os = "linux", feature = "mem"))]

use std::path::{Path, PathBuf};
use std::process::Command;

use leakproof::{Health, Status};
use mem_watch::CgroupVersion;

const LIMIT: u64 = 128 << 20;
/// In the child: the `cgroup.procs` file to join.
const CHILD: &str = "LEAKPROOF_MEMORY_LIMIT_CHILD";
/// In the stalling child: likewise.
const STALL_CHILD: &str = "LEAKPROOF_MEMORY_STALL_CHILD";

/// A memory cgroup made for the test, removed on drop.
struct LimitedGroup {
    dir: PathBuf,
}

impl LimitedGroup {
    /// A child of this process's memory cgroup with `limit`, or why there is none.
    fn create(name: &str, limit: u64) -> Result<LimitedGroup, String> {
        let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
        let (own, version) = mem_watch::parse::memory_cgroup(
            Path::new("/"),
            &read("/proc/self/mountinfo")?,
            &read("/proc/self/cgroup")?,
        )
        .ok_or("no memory cgroup (v1 or v2) for this process")?;
        let (parent, limit_file) = match version {
            CgroupVersion::V1 => (own, "memory.limit_in_bytes"),
            // v2: the controller must be enabled for children; that fails where this
            // group holds processes (no internal processes), so use its parent's level
            // only if it already delegates memory.
            CgroupVersion::V2 => {
                let control = own.join("cgroup.subtree_control");
                let enabled = std::fs::read_to_string(&control).unwrap_or_default();
                if !enabled.split_whitespace().any(|c| c == "memory") {
                    std::fs::write(&control, "+memory").map_err(|e| {
                        format!(
                            "cannot enable the memory controller in {}: {e}",
                            control.display()
                        )
                    })?;
                }
                (own, "memory.max")
            }
        };
        let dir = parent.join(format!("leakproof-{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let group = LimitedGroup { dir };
        std::fs::write(group.dir.join(limit_file), limit.to_string())
            .map_err(|e| format!("cannot set {limit_file}: {e}"))?;
        Ok(group)
    }
}

impl Drop for LimitedGroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The child: joins the group, then touches memory 4 MiB at a time, printing each new
/// grade as `grade <status> <percent> <limit> <reasons>`.
fn child(procs: &str) {
    std::fs::write(procs, std::process::id().to_string()).expect("join the cgroup");
    let health = Health::builder()
        .without_temp()
        .memory_percent(50.0, 70.0, 100.0)
        .build()
        .unwrap();
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut last = None;
    loop {
        let report = health.check();
        let memory = report.memory.clone().expect("memory figures");
        if last != Some(report.status) {
            println!(
                "grade {:?} {:.1} {} {:?}",
                report.status,
                memory.percent_of_limit.unwrap_or(0.0),
                memory.limit.unwrap_or(0),
                report.reasons
            );
            last = Some(report.status);
        }
        if report.status == Status::Unhealthy || memory.percent_of_limit.unwrap_or(0.0) > 90.0 {
            break;
        }
        // Touched, so resident: one byte per page.
        let mut chunk = vec![0u8; 4 << 20];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        held.push(std::hint::black_box(chunk));
    }
}

#[test]
fn memory_near_a_real_limit_degrades_then_is_unhealthy() {
    if let Ok(procs) = std::env::var(CHILD) {
        return child(&procs);
    }
    if std::env::var(STALL_CHILD).is_ok() {
        return;
    }
    let group = match LimitedGroup::create("memory-grades", LIMIT) {
        Ok(group) => group,
        Err(why) => {
            eprintln!("skip: no memory-limited cgroup on this host: {why}");
            return;
        }
    };
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "memory_near_a_real_limit_degrades_then_is_unhealthy",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, group.dir.join("cgroup.procs"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grades: Vec<Vec<&str>> = stdout
        .lines()
        .filter_map(|l| l.split_once("grade ").map(|(_, g)| g))
        .map(|l| l.splitn(4, ' ').collect())
        .collect();
    let statuses: Vec<&str> = grades.iter().map(|g| g[0]).collect();
    assert_eq!(statuses, ["Healthy", "Degraded", "Unhealthy"], "{stdout}");
    for grade in &grades {
        assert_eq!(
            grade[2],
            LIMIT.to_string(),
            "the limit read from the cgroup: {stdout}"
        );
    }
    let percent = |i: usize| grades[i][1].parse::<f64>().unwrap();
    assert!((50.0..70.0).contains(&percent(1)), "{stdout}");
    assert!(percent(2) >= 70.0, "{stdout}");
    assert!(
        grades[1][3].contains("memory at") && grades[1][3].contains("% of its limit"),
        "{stdout}"
    );
    assert!(grades[2][3].contains("memory at"), "{stdout}");
}

/// The stalling child: joins the group, then touches memory until the kernel, out of
/// reclaimable memory in the group, kills it.
fn stall_child(procs: &str) {
    std::fs::write(procs, std::process::id().to_string()).expect("join the cgroup");
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        held.push(std::hint::black_box(chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psi_trigger_fires_under_a_real_stall() {
    if let Ok(procs) = std::env::var(STALL_CHILD) {
        return stall_child(&procs);
    }
    let group = match LimitedGroup::create("memory-stall", 32 << 20) {
        Ok(group) => group,
        Err(why) => {
            eprintln!("skip: no memory-limited cgroup on this host: {why}");
            return;
        }
    };
    // 1 ms of stall in a 2 s window: what a group running out of memory makes. (2 s:
    // without CAP_SYS_RESOURCE the kernel takes only windows that are multiples of 2 s.)
    let stall = std::time::Duration::from_millis(1);
    let window = std::time::Duration::from_secs(2);
    let mut watch = match leakproof::mem::PressureWatch::trigger(stall, window) {
        Ok(watch) => watch,
        Err(why) => {
            eprintln!("skip: no PSI trigger on this host: {why}");
            return;
        }
    };
    let fired = tokio::spawn(async move { watch.wait().await });
    let procs = group.dir.join("cgroup.procs");
    let mut rounds = 0;
    while !fired.is_finished() && rounds < 20 {
        rounds += 1;
        let procs = procs.clone();
        let status = tokio::task::spawn_blocking(move || {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "a_psi_trigger_fires_under_a_real_stall",
                    "--test-threads=1",
                ])
                .env(STALL_CHILD, procs)
                .output()
                .unwrap()
                .status
        })
        .await
        .unwrap();
        // The kernel ended it (SIGKILL), out of memory in its group.
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }
    // The event may come a moment after the last stall: a guard, not a measure.
    let fired = tokio::time::timeout(std::time::Duration::from_secs(10), fired).await;
    assert!(
        matches!(fired, Ok(Ok(Ok(())))),
        "no PSI event after {rounds} children ran out of memory: {fired:?}"
    );
    eprintln!("PSI trigger fired after {rounds} children ran out of memory");
}
