//! Figures through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! | name | type | recorded |
//! |---|---|---|
//! | `scoped_temp_entries_live` | gauge | at [`publish`]: [`live_count`](crate::live_count) |
//! | `scoped_temp_entries_created_total` | counter | each temp dir, temp file or atomic temp file created |
//! | `scoped_temp_entries_removed_total` | counter | each one removed, whichever path removed it |
//! | `scoped_temp_removal_failures_total` | counter | each removal that failed (the entry stays live) |
//! | `scoped_temp_orphans_reclaimed_total` | counter | each dead run's leftover a sweep removed |
//! | `scoped_temp_orphan_bytes_freed_total` | counter | the bytes those leftovers held |
//!
//! Counters are recorded as things happen (each beside a filesystem call, which costs
//! far more); the gauge is read when [`publish`] runs (leakproof's metrics endpoint
//! runs it on every scrape; with an exporter of your own, call it before each scrape
//! or on an interval).

/// Entries created and not yet removed.
pub const ENTRIES_LIVE: &str = "scoped_temp_entries_live";
/// Entries created.
pub const CREATED: &str = "scoped_temp_entries_created_total";
/// Entries removed.
pub const REMOVED: &str = "scoped_temp_entries_removed_total";
/// Removals that failed.
pub const REMOVAL_FAILURES: &str = "scoped_temp_removal_failures_total";
/// Leftovers of dead runs a sweep removed.
pub const ORPHANS_RECLAIMED: &str = "scoped_temp_orphans_reclaimed_total";
/// Bytes those leftovers held.
pub const ORPHAN_BYTES: &str = "scoped_temp_orphan_bytes_freed_total";

/// Describes this crate's metrics to the installed recorder (units and help text).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_gauge!(
        ENTRIES_LIVE,
        "scoped-temp entries created and not yet removed."
    );
    describe_counter!(CREATED, "scoped-temp entries created.");
    describe_counter!(REMOVED, "scoped-temp entries removed.");
    describe_counter!(REMOVAL_FAILURES, "scoped-temp removals that failed.");
    describe_counter!(
        ORPHANS_RECLAIMED,
        "Leftovers of dead runs a scoped-temp sweep removed."
    );
    describe_counter!(
        ORPHAN_BYTES,
        Unit::Bytes,
        "Bytes the reclaimed leftovers held."
    );
}

/// Sets the gauge from the registry (one lock).
pub fn publish() {
    metrics::gauge!(ENTRIES_LIVE).set(crate::live_count() as f64);
}

pub(crate) fn count(name: &'static str, n: u64) {
    metrics::counter!(name).increment(n);
}
