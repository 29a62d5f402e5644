//! The leak alarm: silent on flat, noisy and one-step series, raised once on a steady
//! leak (memory or descriptors) with its slope and confidence, cleared when the leak
//! stops; and in a watcher, per tick under paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mem_watch::{LeakAlarm, LeakCheck, Resource, Sample, Source, WatchConfig, Watcher};

const MIB: u64 = 1 << 20;

/// A deterministic jitter of about ±`amplitude` for step `i`.
fn jitter(i: u64, amplitude: u64) -> u64 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    x % (2 * amplitude + 1)
}

fn feed(
    alarm: &mut LeakAlarm,
    rss: impl Fn(u64) -> u64,
    fds: impl Fn(u64) -> u64,
    steps: u64,
) -> Vec<mem_watch::Suspicion> {
    let mut raised = Vec::new();
    for i in 0..steps {
        raised.extend(alarm.push(Sample::new(Instant::now(), rss(i), Some(fds(i)))));
    }
    raised
}

#[test]
fn flat_noisy_and_one_step_series_raise_nothing() {
    // Flat with ±256 KiB of noise (allocator caches coming and going).
    let mut alarm = LeakAlarm::new(100);
    let raised = feed(
        &mut alarm,
        |i| 50 * MIB + jitter(i, 256 << 10),
        |_| 20,
        1000,
    );
    assert!(raised.is_empty(), "{raised:?}");
    // One step of 8 MiB and 3 descriptors (a cache filled once, a pool opened), halfway.
    let mut alarm = LeakAlarm::new(100);
    let step = |i: u64, before: u64, after: u64| if i < 500 { before } else { after };
    let raised = feed(
        &mut alarm,
        |i| step(i, 50 * MIB, 58 * MIB) + jitter(i, 4096),
        |i| step(i, 20, 23),
        1000,
    );
    assert!(raised.is_empty(), "{raised:?}");
    assert!(alarm.suspected().is_empty());
}

#[test]
fn a_steady_leak_is_raised_once_with_its_slope_and_cleared_when_it_stops() {
    let mut alarm = LeakAlarm::new(100);
    // 64 KiB per step under ±256 KiB of noise for 300 steps, then flat.
    let leaking = |i: u64| 50 * MIB + i.min(300) * (64 << 10) + jitter(i, 256 << 10);
    let raised = feed(&mut alarm, leaking, |_| 20, 300);
    assert_eq!(raised.len(), 1, "{raised:?}");
    let suspicion = raised[0];
    assert_eq!(suspicion.resource, Resource::Memory);
    assert!(
        (60_000.0..70_000.0).contains(&suspicion.trend.slope),
        "{suspicion:?}"
    );
    assert!(suspicion.trend.confidence > 0.999, "{suspicion:?}");
    assert_eq!(suspicion.window, 100);
    assert!(suspicion.to > suspicion.from);
    // Raised on the step the window filled: not repeated while it lasts.
    assert_eq!(alarm.suspected(), [Resource::Memory]);
    // The leak stops: cleared once the window has seen mostly flat.
    for i in 300..500 {
        assert!(
            alarm
                .push(Sample::new(Instant::now(), leaking(i), Some(20)))
                .is_empty()
        );
    }
    assert!(alarm.suspected().is_empty());
}

#[test]
fn a_descriptor_leak_is_raised_for_descriptors() {
    let mut alarm = LeakAlarm::new(50);
    let raised = feed(&mut alarm, |_| 50 * MIB, |i| 20 + i, 60);
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].resource, Resource::Fds);
    assert!((raised[0].trend.slope - 1.0).abs() < 1e-9);
    // Under the tolerance (one every 4 steps, 0.25 per step): silent.
    let mut alarm = LeakAlarm::new(50);
    assert!(feed(&mut alarm, |_| 50 * MIB, |i| 20 + i / 4, 200).is_empty());
}

/// Resident memory that grows by a set amount per tick once told to.
struct Growing {
    rss: u64,
    per_tick: Arc<AtomicU64>,
}

impl Source for Growing {
    fn sample(&mut self) -> Sample {
        self.rss += self.per_tick.load(Ordering::Relaxed);
        Sample::new(Instant::now(), self.rss, Some(12))
    }

    fn limit(&mut self) -> Option<u64> {
        None
    }
}

#[tokio::test(start_paused = true)]
async fn a_watcher_raises_a_leak_per_tick_and_says_what_it_suspects() {
    let per_tick = Arc::new(AtomicU64::new(0));
    let source = Growing {
        rss: 40 * MIB,
        per_tick: per_tick.clone(),
    };
    let config = WatchConfig::new(Duration::from_secs(1)).leak_alarm(LeakAlarm::new(30));
    let watcher = Watcher::start_with(config, source);
    let mut alarms = watcher.leak_alarms();
    // A minute of flat memory: nothing.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(alarms.try_recv().is_err());
    assert!(watcher.suspected().is_empty());
    // Then 1 MiB a second: raised once the window is mostly the leak.
    per_tick.store(MIB, Ordering::Relaxed);
    let started = tokio::time::Instant::now();
    let suspicion = alarms.recv().await.unwrap();
    assert!(
        started.elapsed() <= Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(suspicion.resource, Resource::Memory);
    assert!(
        (MIB as f64 / 2.0..=MIB as f64).contains(&suspicion.trend.slope),
        "{suspicion:?}"
    );
    assert_eq!(watcher.suspected(), [Resource::Memory]);
    watcher.stop().await;
}

/// A window of `usize::MAX` is taken as a bound, not allocated (it once panicked): the
/// window never fills, so nothing is raised, and the trend of what it holds is there.
#[test]
fn a_window_of_usize_max_is_a_bound_not_an_allocation() {
    let mut alarm = LeakAlarm::new(usize::MAX);
    let raised = feed(&mut alarm, |i| 50 * MIB + i * MIB, |_| 20, 200);
    assert!(raised.is_empty(), "{raised:?}");
    let trend = alarm.trend(Resource::Memory).unwrap();
    assert_eq!(trend.slope, MIB as f64);
}

/// Any number of rounds is taken without allocating for all of them first (a `rounds`
/// of `usize::MAX` once panicked on its sample list before running anything): the
/// first round runs.
#[test]
fn any_number_of_rounds_is_taken() {
    let ran = std::panic::catch_unwind(|| {
        let _ = LeakCheck::new(usize::MAX)
            .warmup(usize::MAX)
            .run(|| std::panic::panic_any("the first round ran"));
    });
    let payload = ran.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"the first round ran"));
}
