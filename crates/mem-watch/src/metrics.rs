//! Figures through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! | name | type | labels | recorded |
//! |---|---|---|---|
//! | `mem_watch_rss_bytes` | gauge | | at [`publish`] (a fresh reading) and each [`Watcher`](crate::Watcher) tick |
//! | `mem_watch_fds` | gauge | | at [`publish`] and each watcher tick (Linux) |
//! | `mem_watch_memory_limit_bytes` | gauge | | at [`publish`]: the effective limit (cgroup, else RAM), when known |
//! | `mem_watch_pressure_some_ratio` | gauge | | at [`publish`]: PSI `some avg10` of this cgroup, 0 to 1, when the host has PSI |
//! | `mem_watch_level` | gauge | | each watcher tick: 0 normal, 1 warning, 2 critical |
//! | `mem_watch_leak_suspected` | gauge | `resource`: `memory`, `fds` | each tick of a watcher with a [leak alarm](crate::WatchConfig::leak_alarm): 1 while raised |
//! | `mem_watch_leak_alarms_total` | counter | `resource` | each suspicion raised |
//! | `mem_watch_job_peak_rss_bytes` | histogram | | each [`JobGuard`](crate::JobGuard) finished |
//!
//! [`publish`] opens a probe, reads procfs once and closes it; leakproof's metrics
//! endpoint runs it on every scrape. With an exporter of your own, call it before each
//! scrape or on an interval.

use crate::{Level, Probe, Resource};

/// Resident memory.
pub const RSS: &str = "mem_watch_rss_bytes";
/// Open descriptors.
pub const FDS: &str = "mem_watch_fds";
/// The effective memory limit.
pub const LIMIT: &str = "mem_watch_memory_limit_bytes";
/// PSI `some avg10`, as a ratio.
pub const PRESSURE: &str = "mem_watch_pressure_some_ratio";
/// The watcher's level.
pub const LEVEL: &str = "mem_watch_level";
/// 1 while a leak is suspected.
pub const LEAK_SUSPECTED: &str = "mem_watch_leak_suspected";
/// Suspicions raised.
pub const LEAK_ALARMS: &str = "mem_watch_leak_alarms_total";
/// Jobs' peak resident memory.
pub const JOB_PEAK_RSS: &str = "mem_watch_job_peak_rss_bytes";

/// Describes this crate's metrics to the installed recorder (units and help text).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(RSS, Unit::Bytes, "Resident memory of this process.");
    describe_gauge!(FDS, "Open file descriptors of this process.");
    describe_gauge!(
        LIMIT,
        Unit::Bytes,
        "The effective memory limit (cgroup, else RAM)."
    );
    describe_gauge!(PRESSURE, "PSI memory some avg10 of this cgroup, 0 to 1.");
    describe_gauge!(LEVEL, "mem-watch level: 0 normal, 1 warning, 2 critical.");
    describe_gauge!(LEAK_SUSPECTED, "1 while mem-watch suspects a leak.");
    describe_counter!(LEAK_ALARMS, "Leak suspicions mem-watch raised.");
    describe_histogram!(
        JOB_PEAK_RSS,
        Unit::Bytes,
        "Peak resident memory of each job."
    );
}

/// Reads this process's figures (one procfs snapshot, through a [`Probe`] opened for
/// the call and closed after it, so publishing holds no descriptor between calls) and
/// sets the gauges.
pub fn publish() {
    let Ok(mut probe) = Probe::new() else {
        return;
    };
    let snapshot = probe.snapshot();
    sample(&snapshot.sample);
    if let Some(limit) = snapshot.effective_limit() {
        metrics::gauge!(LIMIT).set(limit as f64);
    }
    if let Some(pressure) = snapshot.pressure_some {
        metrics::gauge!(PRESSURE).set(pressure / 100.0);
    }
}

pub(crate) fn sample(sample: &crate::Sample) {
    metrics::gauge!(RSS).set(sample.rss as f64);
    if let Some(fds) = sample.fds {
        metrics::gauge!(FDS).set(fds as f64);
    }
}

pub(crate) fn level(level: Level) {
    let value = match level {
        Level::Normal => 0.0,
        Level::Warning => 1.0,
        Level::Critical => 2.0,
    };
    metrics::gauge!(LEVEL).set(value);
}

fn resource(resource: Resource) -> &'static str {
    match resource {
        Resource::Memory => "memory",
        Resource::Fds => "fds",
    }
}

pub(crate) fn alarm(raised: Resource) {
    metrics::counter!(LEAK_ALARMS, "resource" => resource(raised)).increment(1);
}

pub(crate) fn suspected(suspected: &[Resource]) {
    for r in [Resource::Memory, Resource::Fds] {
        let value = if suspected.contains(&r) { 1.0 } else { 0.0 };
        metrics::gauge!(LEAK_SUSPECTED, "resource" => resource(r)).set(value);
    }
}

pub(crate) fn job_peak(rss: u64) {
    metrics::histogram!(JOB_PEAK_RSS).record(rss as f64);
}
