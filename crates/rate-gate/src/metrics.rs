//! Figures through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`),
//! labelled by the gate's [name](crate::GateBuilder::name) (`gate="default"` unless
//! set; the gates of a [`KeyedGate`](crate::KeyedGate) share their builder's name and
//! are summed).
//!
//! | name | type | recorded |
//! |---|---|---|
//! | `rate_gate_granted_total` | counter | at [`publish`] |
//! | `rate_gate_rejected_total` | counter | at [`publish`]: `try_acquire` refusals, impossible requests |
//! | `rate_gate_waited_total` | counter | at [`publish`]: acquisitions that waited |
//! | `rate_gate_in_flight` | gauge | at [`publish`]: concurrency permits held |
//! | `rate_gate_concurrency_limit` | gauge | at [`publish`]: the limit now (adaptive gates lower it) |
//! | `rate_gate_paused_seconds` | gauge | at [`publish`]: time left of a pause the server imposed |
//! | `rate_gate_wait_seconds` | histogram | each acquisition that waited, when it is granted |
//!
//! The counters are the gate's own [`Stats`](crate::Stats), read when [`publish`] runs
//! (leakproof's metrics endpoint runs it on every scrape; with an exporter of your own,
//! call it before each scrape or on an interval). So the hot path, a `try_acquire` or
//! an `acquire` that need not wait, costs nothing more with this feature; only a wait
//! records, once. Counters stay monotonic when gates are dropped: a dropped gate's
//! totals are kept under its name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Permits granted.
pub const GRANTED: &str = "rate_gate_granted_total";
/// `try_acquire` refusals and impossible requests.
pub const REJECTED: &str = "rate_gate_rejected_total";
/// Acquisitions that had to wait.
pub const WAITED: &str = "rate_gate_waited_total";
/// Concurrency permits held now.
pub const IN_FLIGHT: &str = "rate_gate_in_flight";
/// The concurrency limit now.
pub const CONCURRENCY_LIMIT: &str = "rate_gate_concurrency_limit";
/// Time left of a server-imposed pause.
pub const PAUSED_SECONDS: &str = "rate_gate_paused_seconds";
/// How long each acquisition that waited waited.
pub const WAIT_SECONDS: &str = "rate_gate_wait_seconds";

/// The counters one name has reached.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) granted: u64,
    pub(crate) rejected: u64,
    pub(crate) waited: u64,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.granted += other.granted;
        self.rejected += other.rejected;
        self.waited += other.waited;
    }

    fn max(&mut self, other: Totals) {
        self.granted = self.granted.max(other.granted);
        self.rejected = self.rejected.max(other.rejected);
        self.waited = self.waited.max(other.waited);
    }
}

/// What a live gate shows at a scrape.
pub(crate) trait Source: Send + Sync {
    fn name(&self) -> &Arc<str>;
    fn totals(&self) -> Totals;
    /// In flight, concurrency limit, seconds of pause left.
    fn levels(&self) -> (u64, Option<u32>, f64);
}

#[derive(Default)]
struct Registry {
    live: Vec<Weak<dyn Source>>,
    /// Totals of dropped gates, by name.
    retired: HashMap<Arc<str>, Totals>,
    /// The last totals published, by name: what was published never goes back.
    published: HashMap<Arc<str>, Totals>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut guard = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    f(guard.get_or_insert_with(Registry::default))
}

pub(crate) fn register(source: Weak<dyn Source>) {
    with(|r| {
        if r.live.len() >= 64 && r.live.len().is_power_of_two() {
            r.live.retain(|w| w.strong_count() > 0);
        }
        r.live.push(source);
    });
}

pub(crate) fn retire(name: &Arc<str>, totals: Totals) {
    with(|r| r.retired.entry(name.clone()).or_default().add(totals));
}

pub(crate) fn waited(name: &Arc<str>, seconds: f64) {
    metrics::histogram!(WAIT_SECONDS, "gate" => name.to_string()).record(seconds);
}

/// Describes this crate's metrics to the installed recorder (units and help text).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(GRANTED, "Permits granted by rate-gate gates.");
    describe_counter!(REJECTED, "try_acquire refusals and impossible requests.");
    describe_counter!(WAITED, "Acquisitions that had to wait.");
    describe_gauge!(IN_FLIGHT, "Concurrency permits held now.");
    describe_gauge!(CONCURRENCY_LIMIT, "The concurrency limit now.");
    describe_gauge!(
        PAUSED_SECONDS,
        Unit::Seconds,
        "Time left of a server-imposed pause."
    );
    describe_histogram!(
        WAIT_SECONDS,
        Unit::Seconds,
        "How long acquisitions that waited waited."
    );
}

/// Hands every live gate's figures to the facade, summed by name. Cheap (a lock, and
/// a few atomic loads per gate); run it before each scrape.
pub fn publish() {
    #[derive(Default)]
    struct Sum {
        totals: Totals,
        in_flight: u64,
        limit: Option<u64>,
        paused: f64,
    }
    // The live gates, held while they are read, outside the registry's lock: one
    // dropped meanwhile retires into the registry from its `Drop`, which takes it.
    let live: Vec<Arc<dyn Source>> = with(|r| {
        r.live.retain(|weak| weak.strong_count() > 0);
        r.live.iter().filter_map(Weak::upgrade).collect()
    });
    let mut sums: HashMap<Arc<str>, Sum> = HashMap::new();
    for gate in &live {
        let (in_flight, limit, paused) = gate.levels();
        let sum = sums.entry(gate.name().clone()).or_default();
        sum.totals.add(gate.totals());
        sum.in_flight += in_flight;
        if let Some(limit) = limit {
            *sum.limit.get_or_insert(0) += u64::from(limit);
        }
        sum.paused = sum.paused.max(paused);
    }
    with(|r| {
        for (name, retired) in &r.retired {
            sums.entry(name.clone()).or_default().totals.add(*retired);
        }
        for (name, sum) in &mut sums {
            let last = r.published.entry(name.clone()).or_default();
            last.max(sum.totals);
            sum.totals = *last;
        }
    });
    drop(live);
    for (name, sum) in sums {
        let gate = name.to_string();
        metrics::counter!(GRANTED, "gate" => gate.clone()).absolute(sum.totals.granted);
        metrics::counter!(REJECTED, "gate" => gate.clone()).absolute(sum.totals.rejected);
        metrics::counter!(WAITED, "gate" => gate.clone()).absolute(sum.totals.waited);
        metrics::gauge!(IN_FLIGHT, "gate" => gate.clone()).set(sum.in_flight as f64);
        if let Some(limit) = sum.limit {
            metrics::gauge!(CONCURRENCY_LIMIT, "gate" => gate.clone()).set(limit as f64);
        }
        metrics::gauge!(PAUSED_SECONDS, "gate" => gate).set(sum.paused);
    }
}
