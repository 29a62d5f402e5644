//! `HealthMonitor`: a [`Health`] checked on an interval, each change of grade logged
//! and published.

use std::time::Duration;

use tokio::sync::watch;

use crate::{Error, Health, HealthReport, Result, Status};

/// The shortest interval a monitor checks at: shorter ones are raised to it.
pub const MIN_MONITOR_INTERVAL: Duration = Duration::from_millis(1);

/// A [`Health`] checked on an interval by a tokio task, from [`Health::monitor`].
///
/// Each change of grade (Healthy, Degraded, Unhealthy) is logged through `tracing`
/// with its reasons (`info` back to Healthy, `warn` on Degraded, `error` on Unhealthy)
/// and published on a watch channel: a [subscriber](Self::subscribe)'s `changed()`
/// wakes on each change of grade, not on each check, and its `borrow()` is always the
/// latest check's report. The first check runs at once; a first grade other than
/// Healthy is logged as a change.
///
/// Dropping the monitor stops its task; a check already running finishes first
/// (checks are synchronous reads of `/proc` and counters, microseconds long).
#[derive(Debug)]
pub struct HealthMonitor {
    latest: watch::Receiver<HealthReport>,
    task: tokio::task::JoinHandle<()>,
}

impl Health {
    /// Starts checking every `every` (at least [`MIN_MONITOR_INTERVAL`]) on a task of
    /// the current tokio runtime; see [`HealthMonitor`]. A check that falls behind
    /// (a busy runtime) is not made up: the next runs one interval after it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> leakproof::Result<()> {
    /// use std::time::Duration;
    /// use leakproof::{Health, Shutdown, Status};
    ///
    /// let shutdown = Shutdown::new();
    /// let health = Health::builder().shutdown(&shutdown).build()?;
    /// let monitor = health.monitor(Duration::from_secs(5))?;
    /// let mut changes = monitor.subscribe();
    /// assert_eq!(changes.borrow_and_update().status, Status::Healthy);
    /// shutdown.trigger();
    /// changes.changed().await.unwrap(); // at the next check, logged as an error
    /// assert_eq!(changes.borrow().status, Status::Unhealthy);
    /// # Ok(()) }
    /// ```
    pub fn monitor(&self, every: Duration) -> Result<HealthMonitor> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
            what: "Health::monitor",
        })?;
        let first = self.check();
        #[cfg(feature = "metrics")]
        crate::metrics::health(&first);
        log_change(Status::Healthy, &first);
        let (sender, latest) = watch::channel(first);
        let health = self.clone();
        let every = every.max(MIN_MONITOR_INTERVAL);
        let task = runtime.spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let report = health.check();
                #[cfg(feature = "metrics")]
                crate::metrics::health(&report);
                sender.send_if_modified(|current| {
                    let changed = current.status != report.status;
                    if changed {
                        log_change(current.status, &report);
                    }
                    *current = report;
                    changed
                });
            }
        });
        Ok(HealthMonitor { latest, task })
    }
}

impl HealthMonitor {
    /// A receiver of the changes of grade; `borrow()` on it is the latest check.
    pub fn subscribe(&self) -> watch::Receiver<HealthReport> {
        self.latest.clone()
    }

    /// The latest check's report.
    pub fn latest(&self) -> HealthReport {
        self.latest.borrow().clone()
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Logs `report` as a change from grade `from`; nothing if both are Healthy.
fn log_change(from: Status, report: &HealthReport) {
    let reasons = report.reasons.join("; ");
    match report.status {
        Status::Healthy if from != Status::Healthy => {
            tracing::info!(from = ?from, "health: healthy again");
        }
        Status::Healthy => {}
        Status::Degraded => {
            tracing::warn!(from = ?from, reasons = %reasons, "health: degraded: {reasons}");
        }
        Status::Unhealthy => {
            tracing::error!(from = ?from, reasons = %reasons, "health: unhealthy: {reasons}");
        }
    }
}
