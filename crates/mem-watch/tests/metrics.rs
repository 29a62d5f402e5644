//! The `metrics` feature, read from a recorder: this process's figures at `publish`,
//! and a watcher's samples, level and leak alarm per tick. One test: the gauges are
//! process-wide.

#![cfg(feature = "metrics")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use leakproof_test_support::metrics::{recorder, value};
use mem_watch::{LeakAlarm, Sample, Source, Threshold, WatchConfig, Watcher, metrics};
use tokio::time::Instant;

const MIB: u64 = 1 << 20;

/// Resident memory that grows by a set amount per tick once told to.
struct Growing {
    rss: u64,
    per_tick: Arc<AtomicU64>,
}

impl Source for Growing {
    fn sample(&mut self) -> Sample {
        self.rss += self.per_tick.load(Ordering::Relaxed);
        Sample::new(Instant::now().into_std(), self.rss, Some(12))
    }

    fn limit(&mut self) -> Option<u64> {
        None
    }
}

#[tokio::test(start_paused = true)]
async fn process_figures_and_a_watchers_ticks_are_recorded() {
    recorder();
    // This process, at publish.
    metrics::publish();
    let rss = value(metrics::RSS, &[]).unwrap();
    assert!(rss > MIB as f64, "{rss}");
    if cfg!(target_os = "linux") {
        assert!(value(metrics::FDS, &[]).is_some_and(|fds| fds >= 3.0));
        assert!(value(metrics::LIMIT, &[]).is_some_and(|l| l >= rss));
    }

    // A watcher's source: flat, then 1 MiB a tick past a 60 MiB warning.
    let per_tick = Arc::new(AtomicU64::new(0));
    let source = Growing {
        rss: 40 * MIB,
        per_tick: per_tick.clone(),
    };
    let config = WatchConfig::new(Duration::from_secs(1))
        .warning(Threshold::Bytes(60 * MIB))
        .leak_alarm(LeakAlarm::new(30));
    let watcher = Watcher::start_with(config, source);
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(value(metrics::RSS, &[]), Some((40 * MIB) as f64));
    assert_eq!(value(metrics::LEVEL, &[]), Some(0.0));
    assert_eq!(
        value(metrics::LEAK_SUSPECTED, &[("resource", "memory")]),
        Some(0.0)
    );
    per_tick.store(MIB, Ordering::Relaxed);
    let mut alarms = watcher.leak_alarms();
    alarms.recv().await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(value(metrics::LEVEL, &[]), Some(1.0));
    assert_eq!(
        value(metrics::LEAK_SUSPECTED, &[("resource", "memory")]),
        Some(1.0)
    );
    assert_eq!(
        value(metrics::LEAK_SUSPECTED, &[("resource", "fds")]),
        Some(0.0)
    );
    assert_eq!(
        value(metrics::LEAK_ALARMS, &[("resource", "memory")]),
        Some(1.0)
    );
    watcher.stop().await;
}
