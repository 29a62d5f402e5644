//! Reading the current process: the cheap [`Sample`] and the full [`Snapshot`].

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::parse::{self, CgroupVersion};
use crate::{Error, Result};

/// The cheap reading a watcher takes every tick: resident size and open descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// Resident set size in bytes (`statm`). `0` if unreadable.
    pub rss: u64,
    /// Open file descriptors, not counting the probe's own. `None` if unreadable.
    pub fds: Option<u64>,
}

impl Sample {
    /// A sample from given values (for tests and custom sources).
    pub fn new(at: Instant, rss: u64, fds: Option<u64>) -> Self {
        Sample { at, rss, fds }
    }
}

/// The process's memory cgroup as read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CgroupMemory {
    /// v1 or v2.
    pub version: CgroupVersion,
    /// The limit in bytes; `None` when unlimited.
    pub limit: Option<u64>,
    /// Current usage in bytes (page cache included, as the OOM killer counts it).
    pub usage: Option<u64>,
}

/// The full reading. Every field the kernel does not provide is `None`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The cheap part.
    pub sample: Sample,
    /// Virtual size in bytes.
    pub virtual_size: Option<u64>,
    /// Peak resident size (`VmHWM`) in bytes. The kernel batches resident-size
    /// counters per thread, so this and [`Sample::rss`] can disagree by some tens of
    /// pages (about 300 KiB seen on a 64 MiB touch).
    pub peak_rss: Option<u64>,
    /// Threads.
    pub threads: Option<u64>,
    /// Total RAM (`MemTotal`) in bytes.
    pub mem_total: Option<u64>,
    /// The memory cgroup, if one with a memory controller was found.
    pub cgroup: Option<CgroupMemory>,
    /// Memory pressure, `some` `avg10`, in percent.
    pub pressure_some: Option<f64>,
    /// Memory pressure, `full` `avg10`, in percent.
    pub pressure_full: Option<f64>,
}

impl Snapshot {
    /// The limit that will stop this process first: the smaller of the cgroup limit and
    /// total RAM.
    pub fn effective_limit(&self) -> Option<u64> {
        let cgroup = self.cgroup.and_then(|c| c.limit);
        match (cgroup, self.mem_total) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Reads the current process from procfs and cgroupfs, keeping its files open and its
/// buffer allocated between reads.
///
/// ```
/// let mut probe = mem_watch::Probe::new()?;
/// let sample = probe.sample();
/// assert!(sample.rss > 0);
/// let snapshot = probe.snapshot();
/// assert!(snapshot.mem_total.is_some());
/// # Ok::<(), mem_watch::Error>(())
/// ```
#[derive(Debug)]
pub struct Probe {
    root: PathBuf,
    statm: Option<File>,
    status: Option<File>,
    fd_dir: Option<File>,
    /// Descriptors the probe itself holds, left out of the count.
    own_fds: u64,
    fd_dir_is_procfs: bool,
    page_size: u64,
    mem_total: Option<u64>,
    cgroup: Option<CgroupFiles>,
    pressure: Option<File>,
    /// The slow fields and when they were read.
    slow: Option<(Instant, SlowFields)>,
    buf: Vec<u8>,
}

/// The memory cgroup's files, kept open and re-read with `pread` like the procfs ones.
/// How long a snapshot reuses the cgroup limit and the PSI averages it read.
pub const SLOW_FIELDS_EVERY: Duration = Duration::from_secs(1);

/// The snapshot fields that change slowly, as last read.
#[derive(Debug, Clone, Copy)]
struct SlowFields {
    limit: Option<u64>,
    pressure: (Option<f64>, Option<f64>),
}

#[derive(Debug)]
struct CgroupFiles {
    version: CgroupVersion,
    limit: Option<File>,
    usage: Option<File>,
}

impl Probe {
    /// A probe of this process.
    pub fn new() -> Result<Probe> {
        Self::at_root("/")
    }

    /// A probe reading `<root>/proc/...` and `<root>/sys/...`: a fixture directory in
    /// tests, `/` otherwise. Fails only if `statm` cannot be opened.
    pub fn at_root(root: impl Into<PathBuf>) -> Result<Probe> {
        let root = root.into();
        let proc_self = root.join("proc/self");
        let statm_path = proc_self.join("statm");
        let statm = File::open(&statm_path).map_err(|source| Error::Read {
            path: statm_path,
            source,
        })?;
        let status = File::open(proc_self.join("status")).ok();
        let fd_dir = File::open(proc_self.join("fd")).ok();
        let fd_dir_is_procfs = fd_dir.as_ref().is_some_and(is_procfs);
        let own_fds = 1 + status.is_some() as u64 + fd_dir.is_some() as u64;
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        let mem_total =
            read(&root.join("proc/meminfo")).and_then(|t| parse::kib_field(&t, "MemTotal"));
        let cgroup_dir = match (
            read(&proc_self.join("mountinfo")),
            read(&proc_self.join("cgroup")),
        ) {
            (Some(mountinfo), Some(cgroup)) => parse::memory_cgroup(&root, &mountinfo, &cgroup),
            _ => None,
        };
        let pressure_path = match &cgroup_dir {
            Some((dir, CgroupVersion::V2)) if dir.join("memory.pressure").exists() => {
                dir.join("memory.pressure")
            }
            _ => root.join("proc/pressure/memory"),
        };
        let cgroup = cgroup_dir.map(|(dir, version)| {
            let (limit, usage) = match version {
                CgroupVersion::V1 => ("memory.limit_in_bytes", "memory.usage_in_bytes"),
                CgroupVersion::V2 => ("memory.max", "memory.current"),
            };
            CgroupFiles {
                version,
                limit: File::open(dir.join(limit)).ok(),
                usage: File::open(dir.join(usage)).ok(),
            }
        });
        let pressure = File::open(pressure_path).ok();
        let own_fds = own_fds
            + pressure.is_some() as u64
            + cgroup
                .as_ref()
                .map_or(0, |c| c.limit.is_some() as u64 + c.usage.is_some() as u64);
        Ok(Probe {
            root,
            statm: Some(statm),
            status,
            fd_dir,
            own_fds,
            fd_dir_is_procfs,
            page_size: rustix::param::page_size() as u64,
            mem_total,
            cgroup,
            pressure,
            slow: None,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Re-reads an open procfs file from its start into the reused buffer.
    fn pread<'a>(buf: &'a mut Vec<u8>, file: &File) -> Option<&'a str> {
        buf.clear();
        buf.resize(buf.capacity().max(4096), 0);
        loop {
            let n = file.read_at(buf, 0).ok()?;
            if n < buf.len() {
                buf.truncate(n);
                return std::str::from_utf8(buf).ok();
            }
            buf.resize(buf.len() * 2, 0); // Did not fit: read again, larger.
        }
    }

    fn open_fds(&self) -> Option<u64> {
        let dir = self.fd_dir.as_ref()?;
        let count = if self.fd_dir_is_procfs {
            // Linux 6.2+: the directory's size is the number of open descriptors.
            match dir.metadata().ok()?.len() {
                0 => self.count_entries()?,
                n => n,
            }
        } else {
            self.count_entries()?
        };
        // On procfs the count includes the probe's own descriptors: leave them out.
        let own = if self.fd_dir_is_procfs {
            self.own_fds
        } else {
            0
        };
        Some(count.saturating_sub(own))
    }

    fn count_entries(&self) -> Option<u64> {
        let listing = std::fs::read_dir(self.root.join("proc/self/fd")).ok()?;
        // The listing holds a descriptor of its own while it runs.
        Some((listing.count() as u64).saturating_sub(self.fd_dir_is_procfs as u64))
    }

    /// `statm` as (virtual size, resident size).
    fn statm(&mut self) -> Option<(u64, u64)> {
        let file = self.statm.as_ref()?;
        Self::pread(&mut self.buf, file).and_then(|t| parse::statm(t, self.page_size))
    }

    /// The cheap reading: resident size (`statm`) and open descriptors.
    pub fn sample(&mut self) -> Sample {
        let rss = self.statm().map(|(_, rss)| rss);
        Sample {
            at: Instant::now(),
            rss: rss.unwrap_or(0),
            fds: self.open_fds(),
        }
    }

    /// The full reading, from one read of `/proc/self/status` (resident, virtual and
    /// peak size, threads; `statm` only where `status` lacks them), the descriptor
    /// count, and the cgroup's usage. The cgroup limit and the PSI averages are read again
    /// at most every [`SLOW_FIELDS_EVERY`]: a limit rarely changes, and the kernel moves
    /// PSI's averages every 2 s. About 8 µs on this project's test VM, flat with the
    /// mapped size (`cargo xtask bench`, `mem-watch/snapshot`).
    pub fn snapshot(&mut self) -> Snapshot {
        let at = Instant::now();
        let status = match self.status.as_ref() {
            Some(file) => Self::pread(&mut self.buf, file).map(parse::status),
            None => None,
        }
        .unwrap_or_default();
        let statm = match (status.vm_rss, status.vm_size) {
            (Some(rss), Some(size)) => Some((size, rss)),
            _ => self
                .statm()
                .map(|(size, rss)| (status.vm_size.unwrap_or(size), status.vm_rss.unwrap_or(rss))),
        };
        let sample = Sample {
            at,
            rss: statm.map_or(0, |(_, rss)| rss),
            fds: self.open_fds(),
        };
        let usage = self.cgroup.as_ref().and_then(|files| {
            let file = files.usage.as_ref()?;
            Self::pread(&mut self.buf, file).and_then(parse::number)
        });
        let slow = self.slow_fields(at);
        let cgroup = self.cgroup.as_ref().map(|files| CgroupMemory {
            version: files.version,
            limit: slow.limit,
            usage,
        });
        Snapshot {
            sample,
            virtual_size: statm.map(|(virtual_size, _)| virtual_size),
            peak_rss: status.vm_hwm,
            threads: status.threads,
            mem_total: self.mem_total,
            cgroup,
            pressure_some: slow.pressure.0,
            pressure_full: slow.pressure.1,
        }
    }

    /// The cgroup limit and PSI averages, read again when older than
    /// [`SLOW_FIELDS_EVERY`].
    fn slow_fields(&mut self, now: Instant) -> SlowFields {
        if let Some((read, fields)) = self.slow
            && now.saturating_duration_since(read) < SLOW_FIELDS_EVERY
        {
            return fields;
        }
        let buf = &mut self.buf;
        let limit = self
            .cgroup
            .as_ref()
            .and_then(|files| files.limit.as_ref())
            .and_then(|f| Self::pread(buf, f))
            .and_then(parse::limit);
        let pressure = self
            .pressure
            .as_ref()
            .and_then(|f| Self::pread(buf, f))
            .map(parse::psi)
            .unwrap_or((None, None));
        let fields = SlowFields { limit, pressure };
        self.slow = Some((now, fields));
        fields
    }

    /// Resets the peak resident size (`VmHWM`) to the current one, where the kernel
    /// allows it (`/proc/self/clear_refs`). `false` if not permitted.
    pub fn reset_peak(&self) -> bool {
        let ok = std::fs::write(self.root.join("proc/self/clear_refs"), "5").is_ok();
        if ok {
            crate::job::PEAK_RESETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        ok
    }
}

/// Whether `dir` is on procfs, where the fd directory's size is the descriptor count.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn is_procfs(dir: &File) -> bool {
    rustix::fs::fstatfs(dir).is_ok_and(|s| s.f_type == rustix::fs::PROC_SUPER_MAGIC)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn is_procfs(_: &File) -> bool {
    false
}
