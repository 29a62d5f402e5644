//! Figures through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! | name | type | labels | recorded |
//! |---|---|---|---|
//! | `proc_reaper_children_live` | gauge | | at [`publish`]: children spawned by any reaper of this process and not yet reaped |
//! | `proc_reaper_spawned_total` | counter | | each child spawned |
//! | `proc_reaper_ended_total` | counter | `how`: `exited`, `timed_out`, `killed`, `dropped` | each child reaped |
//! | `proc_reaper_escapees_total` | counter | | tree members found outside the leader's descendants, at each end |
//! | `proc_reaper_sigkilled_total` | counter | | tree members still alive after the grace, at each end |
//! | `proc_reaper_child_seconds` | histogram | | each waited child's run, spawn to end |
//!
//! Recorded as things happen, each beside a `fork`, a `wait4` or a procfs scan that
//! costs far more; the gauge is read when [`publish`] runs (leakproof's metrics
//! endpoint runs it on every scrape; with an exporter of your own, call it before each
//! scrape or on an interval).

use std::sync::PoisonError;

/// Children alive now.
pub const CHILDREN_LIVE: &str = "proc_reaper_children_live";
/// Children spawned.
pub const SPAWNED: &str = "proc_reaper_spawned_total";
/// Children reaped, by how they ended.
pub const ENDED: &str = "proc_reaper_ended_total";
/// Escapees found.
pub const ESCAPEES: &str = "proc_reaper_escapees_total";
/// Members SIGKILLed after the grace.
pub const SIGKILLED: &str = "proc_reaper_sigkilled_total";
/// A waited child's run.
pub const CHILD_SECONDS: &str = "proc_reaper_child_seconds";

/// Describes this crate's metrics to the installed recorder (units and help text).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        CHILDREN_LIVE,
        "proc-reaper children spawned and not yet reaped."
    );
    describe_counter!(SPAWNED, "proc-reaper children spawned.");
    describe_counter!(ENDED, "proc-reaper children reaped, by how they ended.");
    describe_counter!(
        ESCAPEES,
        "Tree members found outside the leader's descendants."
    );
    describe_counter!(
        SIGKILLED,
        "Tree members still alive after the grace, SIGKILLed."
    );
    describe_histogram!(
        CHILD_SECONDS,
        Unit::Seconds,
        "A waited child's run, spawn to end."
    );
}

/// Sets the gauge from the process's set of leaders (one lock).
pub fn publish() {
    let live = crate::kill::leaders()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len();
    metrics::gauge!(CHILDREN_LIVE).set(live as f64);
}

pub(crate) fn spawned() {
    metrics::counter!(SPAWNED).increment(1);
}

pub(crate) fn ended(
    how: &'static str,
    tree: Option<&crate::TreeReport>,
    run: Option<std::time::Duration>,
) {
    metrics::counter!(ENDED, "how" => how).increment(1);
    if let Some(tree) = tree {
        metrics::counter!(ESCAPEES).increment(tree.escapees as u64);
        metrics::counter!(SIGKILLED).increment(tree.killed as u64);
    }
    if let Some(run) = run {
        metrics::histogram!(CHILD_SECONDS).record(run.as_secs_f64());
    }
}
