//! Pure parsers for the procfs and cgroup files this crate reads: no I/O, so every case
//! (v1, v2, missing, malformed) is testable from fixture text. Malformed input gives
//! `None`, never a panic.

use std::path::{Path, PathBuf};

/// `statm`: (virtual size, resident size) in bytes.
pub fn statm(text: &str, page_size: u64) -> Option<(u64, u64)> {
    let mut fields = text.split_ascii_whitespace();
    let size: u64 = fields.next()?.parse().ok()?;
    let resident: u64 = fields.next()?.parse().ok()?;
    Some((
        size.checked_mul(page_size)?,
        resident.checked_mul(page_size)?,
    ))
}

/// A `Key:   1234 kB` field of `/proc/self/status` or `/proc/meminfo`, in bytes (a
/// plain number when there is no `kB`).
pub fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    let mut parts = line[key.len() + 1..].split_ascii_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        _ => Some(value),
    }
}

/// The fields a snapshot takes from `/proc/self/status`, in bytes (threads counted),
/// read in one pass over its lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusFields {
    /// `VmSize`.
    pub vm_size: Option<u64>,
    /// `VmRSS`.
    pub vm_rss: Option<u64>,
    /// `VmHWM`.
    pub vm_hwm: Option<u64>,
    /// `Threads`.
    pub threads: Option<u64>,
}

/// Reads [`StatusFields`] from the text of `/proc/self/status`.
pub fn status(text: &str) -> StatusFields {
    let mut fields = StatusFields::default();
    let mut wanted = 4;
    for line in text.lines() {
        // Only lines starting `V` or `T` can be wanted: most are passed over on one byte.
        if !matches!(line.as_bytes().first(), Some(b'V' | b'T')) {
            continue;
        }
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "VmSize" => &mut fields.vm_size,
            "VmRSS" => &mut fields.vm_rss,
            "VmHWM" => &mut fields.vm_hwm,
            "Threads" => &mut fields.threads,
            _ => continue,
        };
        let mut parts = rest.split_ascii_whitespace();
        let value = parts.next().and_then(|v| v.parse::<u64>().ok());
        *slot = match parts.next() {
            Some("kB") => value.and_then(|v| v.checked_mul(1024)),
            _ => value,
        };
        wanted -= 1;
        if wanted == 0 {
            break;
        }
    }
    fields
}

/// A memory limit file: cgroup v2 `memory.max` (`max` means none) or v1
/// `memory.limit_in_bytes` (a value near `i64::MAX`, page-rounded, means none).
pub fn limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    let value: u64 = text.parse().ok()?;
    (value < 1 << 62).then_some(value)
}

/// A plain number file (`memory.current`, `memory.usage_in_bytes`).
pub fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Memory pressure from a PSI file: `avg10` of the `some` and `full` lines, in percent.
pub fn psi(text: &str) -> (Option<f64>, Option<f64>) {
    let avg10 = |kind: &str| {
        let line = text.lines().find(|l| l.starts_with(kind))?;
        let value = line
            .split_ascii_whitespace()
            .find_map(|f| f.strip_prefix("avg10="))?;
        value.parse().ok()
    };
    (avg10("some "), avg10("full "))
}

/// Which cgroup version holds the memory controller for this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupVersion {
    /// cgroup v1 (`memory.limit_in_bytes`, `memory.usage_in_bytes`).
    V1,
    /// cgroup v2 (`memory.max`, `memory.current`).
    V2,
}

/// Finds the process's memory cgroup directory from `/proc/self/mountinfo` and
/// `/proc/self/cgroup`, with every path under `root` (`/` on a real system). Returns the
/// directory and the version, preferring v1's memory controller where it is mounted (a
/// hybrid host), else the v2 group if it has `memory.max`.
pub fn memory_cgroup(
    root: &Path,
    mountinfo: &str,
    cgroup: &str,
) -> Option<(PathBuf, CgroupVersion)> {
    let mut v1_mount = None;
    let mut v2_mount = None;
    for line in mountinfo.lines() {
        // "<id> <parent> <maj:min> <root> <mount point> <opts> ... - <fstype> <source> <super opts>"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split_ascii_whitespace().nth(4);
        let mut right = right.split_ascii_whitespace();
        let (fstype, super_opts) = (right.next(), right.nth(1));
        match (fstype, mount_point) {
            (Some("cgroup"), Some(mp))
                if super_opts.is_some_and(|o| o.split(',').any(|x| x == "memory")) =>
            {
                v1_mount = Some(mp.to_string());
            }
            (Some("cgroup2"), Some(mp)) => v2_mount = Some(mp.to_string()),
            _ => {}
        }
    }
    let mut v1_path = None;
    let mut v2_path = None;
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2_path = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1_path = Some(path.to_string());
        }
    }
    let under = |mount: &str, path: &str| {
        let mount = root.join(mount.trim_start_matches('/'));
        let full = mount.join(path.trim_start_matches('/'));
        // In a container the listed path may be relative to a namespace root that is
        // mounted as the controller's root: fall back to the mount itself.
        if full.is_dir() {
            Some(full)
        } else {
            mount.is_dir().then_some(mount)
        }
    };
    if let (Some(mount), Some(path)) = (&v1_mount, &v1_path)
        && let Some(dir) = under(mount, path).filter(|d| d.join("memory.limit_in_bytes").exists())
    {
        return Some((dir, CgroupVersion::V1));
    }
    if let (Some(mount), Some(path)) = (&v2_mount, &v2_path)
        && let Some(dir) = under(mount, path).filter(|d| d.join("memory.max").exists())
    {
        return Some((dir, CgroupVersion::V2));
    }
    None
}
