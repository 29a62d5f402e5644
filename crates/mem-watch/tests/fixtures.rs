//! Every field from fixture files: cgroup v1, v2, hybrid, missing and malformed.

use std::fs;
use std::path::Path;

use mem_watch::{CgroupVersion, Probe, parse};

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

const STATUS: &str = "Name:\tworker\nVmPeak:\t  900000 kB\nVmHWM:\t   204800 kB\nVmRSS:\t  102400 kB\nThreads:\t17\n";

/// A process tree with statm, status, meminfo and three open descriptors.
fn base(root: &Path, cgroup: &str, mountinfo: &str) {
    let page = rustix::param::page_size() as u64;
    write(
        root,
        "proc/self/statm",
        &format!(
            "{} {} 100 5 0 200 0\n",
            (1 << 30) / page,
            (100 << 20) / page
        ),
    );
    write(root, "proc/self/status", STATUS);
    write(
        root,
        "proc/meminfo",
        "MemTotal:       16384000 kB\nMemFree:  1 kB\n",
    );
    write(root, "proc/self/cgroup", cgroup);
    write(root, "proc/self/mountinfo", mountinfo);
    write(
        root,
        "proc/pressure/memory",
        "some avg10=1.50 avg60=0.30 avg300=0.10 total=123\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=4\n",
    );
    for fd in ["0", "1", "2"] {
        write(root, &format!("proc/self/fd/{fd}"), "");
    }
}

const V2_MOUNTS: &str = "24 1 0:21 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
const HYBRID_MOUNTS: &str = "\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

#[test]
fn cgroup_v2_limit_usage_and_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    base(root, "0::/kubepods/pod1/app\n", V2_MOUNTS);
    write(
        root,
        "sys/fs/cgroup/kubepods/pod1/app/memory.max",
        "536870912\n",
    );
    write(
        root,
        "sys/fs/cgroup/kubepods/pod1/app/memory.current",
        "268435456\n",
    );
    write(
        root,
        "sys/fs/cgroup/kubepods/pod1/app/memory.pressure",
        "some avg10=7.00 avg60=1 avg300=0 total=9\nfull avg10=2.00 avg60=0 avg300=0 total=1\n",
    );
    let snap = Probe::at_root(root).unwrap().snapshot();
    assert_eq!(snap.sample.rss, 100 << 20);
    assert_eq!(snap.sample.fds, Some(3));
    assert_eq!(snap.virtual_size, Some(1 << 30));
    assert_eq!(snap.peak_rss, Some(204800 * 1024));
    assert_eq!(snap.threads, Some(17));
    assert_eq!(snap.mem_total, Some(16384000 * 1024));
    let cg = snap.cgroup.unwrap();
    assert_eq!(
        (cg.version, cg.limit, cg.usage),
        (CgroupVersion::V2, Some(512 << 20), Some(256 << 20))
    );
    // The cgroup's own pressure file wins over the system's.
    assert_eq!(
        (snap.pressure_some, snap.pressure_full),
        (Some(7.0), Some(2.0))
    );
    assert_eq!(snap.effective_limit(), Some(512 << 20));
}

#[test]
fn hybrid_host_uses_the_v1_memory_controller() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    base(root, "4:memory:/process_api/abc\n0::/\n", HYBRID_MOUNTS);
    write(
        root,
        "sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes",
        "1073741824\n",
    );
    write(
        root,
        "sys/fs/cgroup/memory/process_api/abc/memory.usage_in_bytes",
        "4096\n",
    );
    write(root, "sys/fs/cgroup/unified/cgroup.controllers", "");
    let snap = Probe::at_root(root).unwrap().snapshot();
    let cg = snap.cgroup.unwrap();
    assert_eq!(
        (cg.version, cg.limit, cg.usage),
        (CgroupVersion::V1, Some(1 << 30), Some(4096))
    );
    assert_eq!(
        (snap.pressure_some, snap.pressure_full),
        (Some(1.5), Some(0.25))
    );
}

#[test]
fn unlimited_cgroups_leave_ram_as_the_effective_limit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    base(root, "4:memory:/\n", HYBRID_MOUNTS);
    write(
        root,
        "sys/fs/cgroup/memory/memory.limit_in_bytes",
        "9223372036854771712\n",
    );
    write(
        root,
        "sys/fs/cgroup/memory/memory.usage_in_bytes",
        "2340651008\n",
    );
    let snap = Probe::at_root(root).unwrap().snapshot();
    assert_eq!(snap.cgroup.unwrap().limit, None);
    assert_eq!(snap.effective_limit(), Some(16384000 * 1024));
}

#[test]
fn a_namespaced_path_falls_back_to_the_mount_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Inside a container /proc/self/cgroup names a host path that is not mounted here.
    base(root, "0::/host/only/path\n", V2_MOUNTS);
    write(root, "sys/fs/cgroup/memory.max", "max\n");
    write(root, "sys/fs/cgroup/memory.current", "1000\n");
    let cg = Probe::at_root(root).unwrap().snapshot().cgroup.unwrap();
    assert_eq!((cg.limit, cg.usage), (None, Some(1000)));
}

#[test]
fn missing_files_are_none_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let page = rustix::param::page_size();
    write(root, "proc/self/statm", &format!("10 {} 0 0 0 0 0", 1));
    let snap = Probe::at_root(root).unwrap().snapshot();
    assert_eq!(snap.sample.rss, page as u64);
    assert_eq!(snap.sample.fds, None);
    assert_eq!(
        (snap.peak_rss, snap.threads, snap.mem_total),
        (None, None, None)
    );
    assert_eq!(snap.cgroup, None);
    assert_eq!((snap.pressure_some, snap.pressure_full), (None, None));
    assert_eq!(snap.effective_limit(), None);
}

#[test]
fn malformed_files_are_none_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    base(
        root,
        "garbage without colons\n::::\n",
        "nonsense - \n - - -\n",
    );
    write(root, "proc/self/statm", "not numbers at all");
    write(root, "proc/self/status", "VmHWM: lots kB\nThreads:\n");
    write(
        root,
        "proc/meminfo",
        "MemTotal: 99999999999999999999999 kB\n",
    );
    write(root, "proc/pressure/memory", "some avg10=abc\n");
    let snap = Probe::at_root(root).unwrap().snapshot();
    assert_eq!(snap.sample.rss, 0);
    assert_eq!(
        (
            snap.virtual_size,
            snap.peak_rss,
            snap.threads,
            snap.mem_total
        ),
        (None, None, None, None)
    );
    assert_eq!(snap.cgroup, None);
    assert_eq!(snap.pressure_some, None);
}

#[test]
fn a_root_without_statm_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    match Probe::at_root(dir.path()) {
        Err(mem_watch::Error::Read { path, .. }) => assert!(path.ends_with("proc/self/statm")),
        other => panic!("expected a Read error, got {other:?}"),
    }
}

#[test]
fn parsers_handle_edge_values() {
    assert_eq!(parse::limit("max\n"), None);
    assert_eq!(parse::limit("9223372036854771712"), None);
    assert_eq!(parse::limit("-1"), None);
    assert_eq!(parse::limit(" 4096 \n"), Some(4096));
    assert_eq!(parse::kib_field("VmHWM:\t10 kB\n", "VmHWM"), Some(10240));
    assert_eq!(parse::kib_field("VmHWMX:\t10 kB\n", "VmHWM"), None);
    assert_eq!(parse::kib_field("Threads:\t3\n", "Threads"), Some(3));
    assert_eq!(parse::statm("1 2", 4096), Some((4096, 8192)));
    assert_eq!(
        parse::statm("18446744073709551615 1", 4096),
        None,
        "overflow is None"
    );
    assert_eq!(parse::psi(""), (None, None));
}
