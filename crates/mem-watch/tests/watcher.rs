//! The watcher's thresholds, hysteresis, hooks, history and lifetime, with scripted
//! samples under paused tokio time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mem_watch::{Level, Sample, Source, Threshold, WatchConfig, Watcher, next_level};

/// Plays a fixed sequence of resident sizes (repeating the last), with a fixed limit.
struct Script {
    rss: Vec<u64>,
    at: usize,
    limit: Option<u64>,
    _alive: Arc<()>,
}

impl Source for Script {
    fn sample(&mut self) -> Sample {
        let rss = self.rss[self.at.min(self.rss.len() - 1)];
        self.at += 1;
        Sample::new(std::time::Instant::now(), rss, Some(10))
    }

    fn limit(&mut self) -> Option<u64> {
        self.limit
    }
}

fn script(rss: &[u64], limit: Option<u64>) -> (Script, Arc<()>) {
    let alive = Arc::new(());
    (
        Script {
            rss: rss.to_vec(),
            at: 0,
            limit,
            _alive: alive.clone(),
        },
        alive,
    )
}

const TICK: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn levels_rise_at_once_and_fall_with_hysteresis() {
    // Limit 1000; warning at 80%, critical at 95%; 5% hysteresis.
    let rss = [100, 500, 810, 960, 940, 910, 900, 780, 750, 100];
    let expected = [
        Level::Normal,   // 100
        Level::Normal,   // 500
        Level::Warning,  // 810 >= 800
        Level::Critical, // 960 >= 950
        Level::Critical, // 940: under 950 but not under 902.5
        Level::Critical, // 910: still not clearly under
        Level::Warning,  // 900 < 902.5, but not under 760
        Level::Warning,  // 780
        Level::Normal,   // 750 < 760
        Level::Normal,
    ];
    let (source, _) = script(&rss, Some(1000));
    let config = WatchConfig::new(TICK)
        .warning(Threshold::PercentOfLimit(80.0))
        .critical(Threshold::PercentOfLimit(95.0))
        .hysteresis(0.05);
    let watcher = Watcher::start_with(config, source);
    let hooks = Arc::new(AtomicUsize::new(0));
    let h = hooks.clone();
    watcher.on_critical(move || {
        h.fetch_add(1, Ordering::SeqCst);
    });
    let mut events = watcher.subscribe();
    let mut seen = Vec::new();
    for _ in 0..rss.len() {
        tokio::time::sleep(TICK).await;
        seen.push(watcher.level());
    }
    // A sleep of one tick wakes before the tick due at the same instant, so after the
    // i-th sleep exactly i samples have been judged.
    assert_eq!(seen, expected);
    assert_eq!(
        hooks.load(Ordering::SeqCst),
        1,
        "the hook runs once per entry into critical"
    );
    let changes: Vec<(Level, Level)> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| (e.previous, e.level))
        .collect();
    assert_eq!(
        changes,
        vec![
            (Level::Normal, Level::Warning),
            (Level::Warning, Level::Critical),
            (Level::Critical, Level::Warning),
            (Level::Warning, Level::Normal),
        ]
    );
    watcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn byte_thresholds_work_without_a_limit_and_percent_ones_wait_for_one() {
    let (source, _) = script(&[2000], None);
    let config = WatchConfig::new(TICK)
        .warning(Threshold::PercentOfLimit(10.0))
        .critical(Threshold::Bytes(1500));
    let watcher = Watcher::start_with(config, source);
    tokio::time::sleep(TICK * 2).await;
    assert_eq!(watcher.level(), Level::Critical);
}

#[tokio::test(start_paused = true)]
async fn history_keeps_the_last_n_samples() {
    let (source, _) = script(&[1, 2, 3, 4, 5, 6, 7, 8], None);
    let watcher = Watcher::start_with(WatchConfig::new(TICK).history(3), source);
    tokio::time::sleep(TICK * 5 + TICK / 2).await;
    let rss: Vec<u64> = watcher.history().iter().map(|s| s.rss).collect();
    assert_eq!(rss, vec![4, 5, 6]);
}

#[tokio::test(start_paused = true)]
async fn stopping_or_dropping_ends_the_task() {
    let (source, alive) = script(&[1], None);
    let watcher = Watcher::start_with(WatchConfig::new(TICK), source);
    tokio::time::sleep(TICK).await;
    assert_eq!(Arc::strong_count(&alive), 2);
    watcher.stop().await;
    assert_eq!(
        Arc::strong_count(&alive),
        1,
        "the task (and its source) is gone"
    );

    let (source, alive) = script(&[1], None);
    let watcher = Watcher::start_with(WatchConfig::new(TICK), source);
    tokio::time::sleep(TICK).await;
    drop(watcher);
    // Abort takes effect when the runtime next runs the task.
    tokio::task::yield_now().await;
    assert_eq!(Arc::strong_count(&alive), 1);
}

#[test]
fn next_level_never_flaps_around_a_threshold() {
    let mut level = Level::Normal;
    let mut changes = 0;
    for rss in [799, 801, 799, 801, 799, 801, 790, 805] {
        let next = next_level(level, rss, Some(800), None, 0.05);
        changes += (next != level) as usize;
        level = next;
    }
    assert_eq!(
        changes, 1,
        "once up, small dips under the line do not bring it down"
    );
}

/// A zero interval is taken as 1 ms (tokio's interval refuses zero, and the watcher's
/// task once panicked on it, silently): the watcher samples.
#[tokio::test(start_paused = true)]
async fn a_zero_interval_samples_every_millisecond() {
    let (source, _) = script(&[1, 2, 3, 4, 5, 6, 7, 8], None);
    let watcher = Watcher::start_with(WatchConfig::new(Duration::ZERO).history(3), source);
    tokio::time::sleep(Duration::from_micros(5500)).await;
    let rss: Vec<u64> = watcher.history().iter().map(|s| s.rss).collect();
    assert_eq!(rss, vec![4, 5, 6]);
}
