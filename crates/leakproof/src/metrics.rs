//! Every crate's figures through the [`metrics`](https://docs.rs/metrics) facade
//! (feature `metrics`), and a Prometheus recorder for them.
//!
//! With this feature each focused crate records through the facade (its own feature
//! `metrics`): events as they happen, and the figures it keeps exactly anyway (a
//! gate's grants, a cache's hits) when [`publish`] runs, so the hot paths cost nothing
//! more. [`Endpoint`](crate::Endpoint) runs [`publish`] on every scrape of
//! `/metrics`; with an exporter of your own, call it before each scrape or on an
//! interval.
//!
//! # The metrics
//!
//! | name | type | labels | from |
//! |---|---|---|---|
//! | `scoped_temp_entries_live` | gauge | | scoped-temp, at publish |
//! | `scoped_temp_entries_created_total` | counter | | scoped-temp |
//! | `scoped_temp_entries_removed_total` | counter | | scoped-temp |
//! | `scoped_temp_removal_failures_total` | counter | | scoped-temp |
//! | `scoped_temp_orphans_reclaimed_total` | counter | | scoped-temp, sweeps |
//! | `scoped_temp_orphan_bytes_freed_total` | counter | | scoped-temp, sweeps |
//! | `bounded_stream_bytes_total` | counter | `stage` | bounded-stream, per MiB and at each stream's end |
//! | `bounded_stream_limit_errors_total` | counter | `limit` | bounded-stream |
//! | `rate_gate_granted_total` | counter | `gate` | rate-gate, at publish |
//! | `rate_gate_rejected_total` | counter | `gate` | rate-gate, at publish |
//! | `rate_gate_waited_total` | counter | `gate` | rate-gate, at publish |
//! | `rate_gate_in_flight` | gauge | `gate` | rate-gate, at publish |
//! | `rate_gate_concurrency_limit` | gauge | `gate` | rate-gate, at publish |
//! | `rate_gate_paused_seconds` | gauge | `gate` | rate-gate, at publish |
//! | `rate_gate_wait_seconds` | histogram | `gate` | rate-gate, each wait |
//! | `proc_reaper_children_live` | gauge | | proc-reaper, at publish |
//! | `proc_reaper_spawned_total` | counter | | proc-reaper |
//! | `proc_reaper_ended_total` | counter | `how` | proc-reaper |
//! | `proc_reaper_escapees_total` | counter | | proc-reaper |
//! | `proc_reaper_sigkilled_total` | counter | | proc-reaper |
//! | `proc_reaper_child_seconds` | histogram | | proc-reaper |
//! | `mem_watch_rss_bytes` | gauge | | mem-watch, at publish and each watcher tick |
//! | `mem_watch_fds` | gauge | | mem-watch, at publish and each watcher tick |
//! | `mem_watch_memory_limit_bytes` | gauge | | mem-watch, at publish |
//! | `mem_watch_pressure_some_ratio` | gauge | | mem-watch, at publish (PSI hosts) |
//! | `mem_watch_level` | gauge | | mem-watch, each watcher tick |
//! | `mem_watch_leak_suspected` | gauge | `resource` | mem-watch, each watcher tick with a leak alarm |
//! | `mem_watch_leak_alarms_total` | counter | `resource` | mem-watch |
//! | `mem_watch_job_peak_rss_bytes` | histogram | | mem-watch, each job |
//! | `ttl_cache_hits_total` | counter | `cache` | ttl-cache, at publish (named caches) |
//! | `ttl_cache_misses_total` | counter | `cache` | ttl-cache, at publish |
//! | `ttl_cache_loads_total` | counter | `cache` | ttl-cache, at publish |
//! | `ttl_cache_load_failures_total` | counter | `cache` | ttl-cache, at publish |
//! | `ttl_cache_evictions_total` | counter | `cache`, `cause` | ttl-cache, at publish |
//! | `ttl_cache_revalidated_total` | counter | `cache` | ttl-cache, at publish |
//! | `ttl_cache_stale_served_total` | counter | `cache` | ttl-cache, at publish |
//! | `ttl_cache_entries` | gauge | `cache` | ttl-cache, at publish |
//! | `ttl_cache_weight` | gauge | `cache` | ttl-cache, at publish |
//! | `leakproof_health_status` | gauge | | each health check of the endpoint or a [`HealthMonitor`](crate::HealthMonitor): 0 healthy, 1 degraded, 2 unhealthy |
//! | `leakproof_shutting_down` | gauge | | the same checks: 1 once the registered shutdown has begun |
//! | `leakproof_in_flight` | gauge | | the same checks: work in the registered shutdown |
//!
//! Each focused crate's `metrics` module says exactly when each is recorded.

use std::sync::OnceLock;

pub use metrics_exporter_prometheus::PrometheusHandle;

use crate::{Error, Result};

/// The health grade.
pub const HEALTH_STATUS: &str = "leakproof_health_status";
/// 1 once a shutdown has begun.
pub const SHUTTING_DOWN: &str = "leakproof_shutting_down";
/// Work in flight in the registered shutdown.
pub const IN_FLIGHT: &str = "leakproof_in_flight";

/// Buckets for every `*_seconds` histogram: 1 ms to 60 s.
const SECONDS_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// Describes every crate's metrics to the installed recorder (units and help text).
pub fn describe() {
    #[cfg(feature = "temp")]
    scoped_temp::metrics::describe();
    #[cfg(feature = "stream")]
    bounded_stream::metrics::describe();
    #[cfg(feature = "gate")]
    rate_gate::metrics::describe();
    #[cfg(all(feature = "proc", target_os = "linux"))]
    proc_reaper::metrics::describe();
    #[cfg(feature = "mem")]
    mem_watch::metrics::describe();
    #[cfg(feature = "cache")]
    ttl_cache::metrics::describe();
    metrics::describe_gauge!(
        HEALTH_STATUS,
        "Health grade: 0 healthy, 1 degraded, 2 unhealthy."
    );
    metrics::describe_gauge!(SHUTTING_DOWN, "1 once a shutdown has begun.");
    metrics::describe_gauge!(IN_FLIGHT, "Work in flight in the registered shutdown.");
}

/// Hands every crate's read-at-publish figures to the facade: live temp entries and
/// children, every gate and named cache, and one procfs reading of this process.
/// Tens of microseconds with a few gates and caches.
pub fn publish() {
    #[cfg(feature = "temp")]
    scoped_temp::metrics::publish();
    #[cfg(feature = "gate")]
    rate_gate::metrics::publish();
    #[cfg(all(feature = "proc", target_os = "linux"))]
    proc_reaper::metrics::publish();
    #[cfg(feature = "mem")]
    mem_watch::metrics::publish();
    #[cfg(feature = "cache")]
    ttl_cache::metrics::publish();
}

pub(crate) fn health(report: &crate::HealthReport) {
    let status = match report.status {
        crate::Status::Healthy => 0.0,
        crate::Status::Degraded => 1.0,
        crate::Status::Unhealthy => 2.0,
    };
    metrics::gauge!(HEALTH_STATUS).set(status);
    metrics::gauge!(SHUTTING_DOWN).set(if report.shutting_down { 1.0 } else { 0.0 });
    if let Some(in_flight) = report.in_flight {
        metrics::gauge!(IN_FLIGHT).set(in_flight as f64);
    }
}

/// Installs a Prometheus recorder as the process's global `metrics` recorder (every
/// `*_seconds` histogram with buckets from 1 ms to 60 s, the others as summaries) and
/// describes every metric; later calls return the same handle. Fails with
/// [`Error::Recorder`] when another recorder was installed first: then build the
/// [`Endpoint`](crate::Endpoint) with that recorder's handle
/// ([`EndpointBuilder::prometheus`](crate::EndpointBuilder::prometheus)) if it is a
/// Prometheus one.
pub fn install_prometheus() -> Result<PrometheusHandle> {
    static HANDLE: OnceLock<std::result::Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .map_err(|e| e.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        })
        .clone()
        .map_err(|reason| Error::Recorder { reason })
}
