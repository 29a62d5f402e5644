//! Per-job figures: resident memory and descriptors at start, peak and end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{Probe, Result};

/// How often `VmHWM` has been reset in this process: a job trusts `VmHWM` as its peak
/// only if nobody reset it since the job's own reset.
pub(crate) static PEAK_RESETS: AtomicU64 = AtomicU64::new(0);

/// Start, peak and end of one quantity over a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Figures {
    /// At the start.
    pub start: u64,
    /// The highest seen during the job.
    pub peak: u64,
    /// At the end.
    pub end: u64,
}

impl Figures {
    /// `end - start`, signed.
    pub fn delta(&self) -> i64 {
        self.end as i64 - self.start as i64
    }
}

/// What a job used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobReport {
    /// The job's name.
    pub name: String,
    /// How long it ran.
    pub duration: Duration,
    /// Resident memory in bytes.
    pub rss: Figures,
    /// Open descriptors.
    pub fds: Figures,
}

/// Peaks seen by a watcher while the job runs.
#[derive(Debug, Default)]
pub(crate) struct Peaks {
    pub(crate) rss: u64,
    pub(crate) fds: u64,
}

/// A running job. [`finish`](Self::finish) (or drop) measures the end and logs the
/// report through `tracing` at info level.
///
/// The peak is the highest of: the start and end readings, every sample a
/// [`Watcher`](crate::Watcher) took during the job (for jobs made by
/// [`Watcher::job`](crate::Watcher::job)), and `VmHWM` when this job could reset it and
/// nobody reset it since (concurrent jobs share one `VmHWM`).
#[derive(Debug)]
pub struct JobGuard {
    name: String,
    started: Instant,
    start: crate::Sample,
    probe: Probe,
    peaks: Arc<Mutex<Peaks>>,
    hwm_generation: Option<u64>,
    finished: bool,
}

impl JobGuard {
    /// Starts a job with a probe of its own.
    pub fn start(name: impl Into<String>) -> Result<JobGuard> {
        Self::with_peaks(name.into(), Arc::default())
    }

    pub(crate) fn with_peaks(name: String, peaks: Arc<Mutex<Peaks>>) -> Result<JobGuard> {
        let mut probe = Probe::new()?;
        let hwm_generation = probe
            .reset_peak()
            .then(|| PEAK_RESETS.load(Ordering::Relaxed));
        let start = probe.sample();
        Ok(JobGuard {
            name,
            started: Instant::now(),
            start,
            probe,
            peaks,
            hwm_generation,
            finished: false,
        })
    }

    /// Ends the job and returns its figures.
    pub fn finish(mut self) -> JobReport {
        self.report()
    }

    fn report(&mut self) -> JobReport {
        self.finished = true;
        let snapshot = self.probe.snapshot();
        let end = snapshot.sample;
        let watched = self.peaks.lock().unwrap_or_else(PoisonError::into_inner);
        let hwm = match (self.hwm_generation, snapshot.peak_rss) {
            (Some(generation), Some(hwm)) if PEAK_RESETS.load(Ordering::Relaxed) == generation => {
                hwm
            }
            _ => 0,
        };
        let (start_fds, end_fds) = (self.start.fds.unwrap_or(0), end.fds.unwrap_or(0));
        let report = JobReport {
            name: self.name.clone(),
            duration: self.started.elapsed(),
            rss: Figures {
                start: self.start.rss,
                peak: self.start.rss.max(end.rss).max(watched.rss).max(hwm),
                end: end.rss,
            },
            fds: Figures {
                start: start_fds,
                peak: start_fds.max(end_fds).max(watched.fds),
                end: end_fds,
            },
        };
        #[cfg(feature = "metrics")]
        crate::metrics::job_peak(report.rss.peak);
        tracing::info!(
            job = %report.name,
            duration_ms = report.duration.as_millis() as u64,
            rss_start = report.rss.start,
            rss_peak = report.rss.peak,
            rss_end = report.rss.end,
            rss_delta = report.rss.delta(),
            fds_start = report.fds.start,
            fds_peak = report.fds.peak,
            fds_end = report.fds.end,
            "mem-watch: job finished"
        );
        report
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.report();
        }
    }
}
