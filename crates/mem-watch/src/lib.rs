//! Memory and handle accounting that costs microseconds.
//!
//! # The guarantee
//!
//! [`Probe::sample`] reads this process's resident size and open descriptor count in
//! about two microseconds, flat however much memory is mapped (it reads `statm` and the
//! size of `/proc/self/fd` through files kept open, into a reused buffer; no `smaps`).
//! [`Probe::snapshot`] adds virtual size, peak resident size, threads, total RAM, the
//! memory cgroup's limit and usage (v1 or v2, hybrid hosts included) and memory pressure,
//! in about 15 microseconds, also flat; six of them are the kernel formatting
//! `/proc/self/status`, the only source of `VmHWM`.
//! A field the kernel does not provide is `None`; nothing panics on a missing or
//! malformed file.
//!
//! On top of that: a [`Watcher`] that samples in the background with warning and
//! critical thresholds (in bytes or percent of the effective limit, the smaller of the
//! cgroup limit and RAM), hysteresis and release hooks; per-job start/peak/end figures
//! ([`JobGuard`]); a robust [`LeakCheck`] over repeated rounds; a [`LeakAlarm`] for
//! production, judging the trend over a rolling window of samples (per operation, or
//! per tick of a watcher) and raising "leak suspected" with its slope and the
//! Mann-Kendall confidence that it is real; a byte-weighted [`MemoryBudget`]; and a
//! [`PressureWatch`] woken by a PSI trigger.
//!
//! The peers: `memory-stats` reads `smaps` by default (tens of microseconds, growing
//! with mapped memory); `sysinfo` refreshes a heavy object and reads the root cgroup;
//! psutil ignores container limits; `procfs` reads PSI but has no triggers.
//!
//! # Example
//!
//! ```
//! use mem_watch::{JobGuard, LeakCheck, Probe};
//!
//! let mut probe = Probe::new()?;
//! let before = probe.sample();
//! let job = JobGuard::start("resize-thumbnails")?;
//! let buffer = vec![1u8; 8 << 20];
//! std::hint::black_box(&buffer);
//! drop(buffer);
//! let report = job.finish(); // also logged through tracing
//! assert!(report.rss.peak >= before.rss);
//!
//! let verdict = LeakCheck::new(30).run(|| drop(std::fs::File::open("/proc/self/statm")))?;
//! assert!(!verdict.leaks_fds, "{verdict:?}");
//! # Ok::<(), mem_watch::Error>(())
//! ```
//!
//! # Metrics
//!
//! With feature `metrics` (off by default), this process's resident memory, descriptors, limit and pressure, a watcher's level and leak alarms, and jobs' peaks go through the
//! [`metrics`](https://docs.rs/metrics) facade, to whichever recorder the program
//! installs: the `metrics` module lists each one and when it is recorded.
//!
//! # Platforms
//!
//! The figures come from Linux's procfs and cgroup files. The crate builds on other
//! Unixes (checked for macOS and FreeBSD), where what needs no procfs works: the
//! [`MemoryBudget`], the trend statistics ([`theil_sen`], [`mann_kendall_confidence`])
//! and the [`LeakAlarm`] fed with samples of your own, the threshold logic
//! ([`next_level`]) and the [`parse`] functions. There [`Probe::new`] returns an error
//! (no `/proc/self/statm`), and so does everything that reads through a probe
//! ([`Watcher::start`], [`JobGuard`], [`LeakCheck`]; [`Watcher::start_with`] takes
//! any [`Source`]); [`PressureWatch::trigger`] returns
//! [`Error::Trigger`] (PSI needs Linux 5.2+ and parameters the kernel accepts) and
//! [`PressureWatch::new`] polls.
//!
//! # What this does not protect against
//!
//! - **It measures, it does not limit.** Thresholds raise events and run hooks; what
//!   frees memory is your hook. The [`MemoryBudget`] bounds only what callers reserve.
//! - **Resident size is not heap.** RSS counts pages, including allocator caches that
//!   were freed but not returned to the kernel; a leak smaller than a page per round is
//!   below a leak check's default tolerance.
//! - **Peaks between samples.** A watcher sees only its ticks; a job's peak also uses
//!   `VmHWM`, which is process-wide, so concurrent jobs each fall back to their samples.
//! - **Cgroup usage includes page cache.** The limit is what the OOM killer enforces,
//!   but `usage` near it may be reclaimable cache.
//! - **A leak slower than the alarm's tolerance, or one window long.** The alarm
//!   judges a trend within its window: a one-time step (a cache filled once) is no
//!   trend, and a leak below the tolerance per step is not raised. A process whose
//!   memory legitimately grows for a whole window (a cache warming) raises it: widen
//!   the window or the tolerance.
//! - **Linux only for the figures.** See Platforms below.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod alarm;
mod budget;
mod error;
mod job;
mod leak;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod parse;
mod pressure;
mod probe;
mod watcher;

pub use alarm::{LeakAlarm, Resource, Suspicion, Trend, mann_kendall_confidence};
pub use budget::{MemoryBudget, Reservation};
pub use error::{Error, Result};
pub use job::{Figures, JobGuard, JobReport};
pub use leak::{LeakCheck, LeakReport, theil_sen};
pub use parse::CgroupVersion;
pub use pressure::PressureWatch;
pub use probe::{CgroupMemory, Probe, SLOW_FIELDS_EVERY, Sample, Snapshot};
pub use watcher::{Event, Level, Source, Threshold, WatchConfig, Watcher, next_level};
