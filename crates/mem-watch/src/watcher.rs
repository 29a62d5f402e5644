//! A background watcher: samples at an interval, keeps the last N, raises warning and
//! critical events with hysteresis, runs release hooks at critical.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::alarm::{LeakAlarm, Resource, Suspicion};
use crate::job::{JobGuard, Peaks};
use crate::{Probe, Result, Sample};

/// Where a watcher's readings come from: a [`Probe`] normally, a script in tests.
pub trait Source: Send + 'static {
    /// The cheap reading, taken every tick.
    fn sample(&mut self) -> Sample;
    /// The effective memory limit (smaller of cgroup limit and RAM), for percent
    /// thresholds; read every [`WatchConfig::limit_every`] ticks.
    fn limit(&mut self) -> Option<u64>;
}

impl Source for Probe {
    fn sample(&mut self) -> Sample {
        Probe::sample(self)
    }

    fn limit(&mut self) -> Option<u64> {
        self.snapshot().effective_limit()
    }
}

/// A memory threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Resident bytes.
    Bytes(u64),
    /// Percent of the effective limit (ignored while no limit is known).
    PercentOfLimit(f64),
}

impl Threshold {
    fn bytes(self, limit: Option<u64>) -> Option<u64> {
        match self {
            Threshold::Bytes(b) => Some(b),
            Threshold::PercentOfLimit(p) => limit.map(|l| (l as f64 * p / 100.0) as u64),
        }
    }
}

/// Memory level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Under the warning threshold.
    Normal,
    /// At or over the warning threshold.
    Warning,
    /// At or over the critical threshold.
    Critical,
}

/// A change of level.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// The new level.
    pub level: Level,
    /// The level before.
    pub previous: Level,
    /// The sample that caused it.
    pub sample: Sample,
    /// The threshold crossed, in bytes.
    pub threshold: u64,
}

/// How a watcher samples and judges.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    interval: Duration,
    history: usize,
    warning: Option<Threshold>,
    critical: Option<Threshold>,
    hysteresis: f64,
    limit_every: u32,
    alarm: Option<LeakAlarm>,
}

impl WatchConfig {
    /// Sample every `interval` (at least 1 ms: a zero interval once panicked the
    /// watcher's task); keep 600 samples; no thresholds; 5% hysteresis.
    pub fn new(interval: Duration) -> Self {
        WatchConfig {
            interval: interval.max(Duration::from_millis(1)),
            history: 600,
            warning: None,
            critical: None,
            hysteresis: 0.05,
            limit_every: 10,
            alarm: None,
        }
    }

    /// How many samples the ring buffer keeps.
    pub fn history(mut self, samples: usize) -> Self {
        self.history = samples.max(1);
        self
    }

    /// The warning threshold.
    pub fn warning(mut self, threshold: Threshold) -> Self {
        self.warning = Some(threshold);
        self
    }

    /// The critical threshold.
    pub fn critical(mut self, threshold: Threshold) -> Self {
        self.critical = Some(threshold);
        self
    }

    /// A level is left only once memory is this fraction under its threshold (0.05:
    /// 5% under), so it does not flap around the line.
    pub fn hysteresis(mut self, fraction: f64) -> Self {
        self.hysteresis = fraction.clamp(0.0, 0.99);
        self
    }

    /// Re-read the effective limit every this many ticks (it is a few file reads).
    pub fn limit_every(mut self, ticks: u32) -> Self {
        self.limit_every = ticks.max(1);
        self
    }

    /// Judges every sample's trend with `alarm` (its window in ticks, its tolerances
    /// per tick: for 64 KiB a second at a 5 s interval, `rss_tolerance(320.0 *
    /// 1024.0)`): a suspicion is logged through `tracing` as "leak suspected" with its
    /// slope and confidence and sent to [`Watcher::leak_alarms`].
    pub fn leak_alarm(mut self, alarm: LeakAlarm) -> Self {
        self.alarm = Some(alarm);
        self
    }
}

type Hook = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Shared {
    history: VecDeque<Sample>,
    suspected: Vec<Resource>,
    hooks: Vec<Hook>,
    jobs: Vec<Weak<Mutex<Peaks>>>,
}

/// Watches this process's memory in a background tokio task. Stopping or dropping the
/// watcher ends the task.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), mem_watch::Error> {
/// use std::time::Duration;
/// use mem_watch::{Level, Threshold, WatchConfig, Watcher};
///
/// let config = WatchConfig::new(Duration::from_millis(100))
///     .warning(Threshold::PercentOfLimit(80.0))
///     .critical(Threshold::PercentOfLimit(90.0));
/// let watcher = Watcher::start(config)?;
/// watcher.on_critical(|| { /* clear a cache */ });
/// assert_eq!(watcher.level(), Level::Normal);
/// watcher.stop().await;
/// # Ok(()) }
/// ```
pub struct Watcher {
    levels: watch::Receiver<Level>,
    events: broadcast::Sender<Event>,
    alarms: broadcast::Sender<Suspicion>,
    shared: Arc<Mutex<Shared>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("level", &self.level())
            .finish()
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Watcher {
    /// Watches this process with a [`Probe`]. Needs a tokio runtime with time enabled.
    pub fn start(config: WatchConfig) -> Result<Watcher> {
        Ok(Self::start_with(config, Probe::new()?))
    }

    /// Watches readings from `source`.
    pub fn start_with(config: WatchConfig, mut source: impl Source) -> Watcher {
        let (level_tx, levels) = watch::channel(Level::Normal);
        let (events, _) = broadcast::channel(64);
        let (alarms, _) = broadcast::channel(16);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (events_tx, alarms_tx, task_shared) = (events.clone(), alarms.clone(), shared.clone());
        let mut alarm = config.alarm.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(config.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let (mut level, mut limit, mut tick) = (Level::Normal, None, 0u32);
            loop {
                ticker.tick().await;
                if tick % config.limit_every == 0 {
                    limit = source.limit();
                }
                tick = tick.wrapping_add(1);
                let sample = source.sample();
                let warning = config.warning.and_then(|t| t.bytes(limit));
                let critical = config.critical.and_then(|t| t.bytes(limit));
                let next = next_level(level, sample.rss, warning, critical, config.hysteresis);
                #[cfg(feature = "metrics")]
                {
                    crate::metrics::sample(&sample);
                    crate::metrics::level(next);
                }
                if let Some(alarm) = alarm.as_mut() {
                    for suspicion in alarm.push(sample) {
                        tracing::warn!(
                            resource = ?suspicion.resource,
                            slope_per_tick = suspicion.trend.slope,
                            confidence = suspicion.trend.confidence,
                            from = suspicion.from,
                            to = suspicion.to,
                            window = suspicion.window,
                            "mem-watch: leak suspected"
                        );
                        #[cfg(feature = "metrics")]
                        crate::metrics::alarm(suspicion.resource);
                        let _ = alarms_tx.send(suspicion);
                    }
                    let suspected = alarm.suspected();
                    #[cfg(feature = "metrics")]
                    crate::metrics::suspected(&suspected);
                    lock(&task_shared).suspected = suspected;
                }
                let hooks_due = {
                    let mut s = lock(&task_shared);
                    if s.history.len() == config.history {
                        s.history.pop_front();
                    }
                    s.history.push_back(sample);
                    s.jobs.retain(|job| match job.upgrade() {
                        Some(peaks) => {
                            let mut p = peaks.lock().unwrap_or_else(PoisonError::into_inner);
                            p.rss = p.rss.max(sample.rss);
                            p.fds = p.fds.max(sample.fds.unwrap_or(0));
                            true
                        }
                        None => false,
                    });
                    next == Level::Critical && level != Level::Critical && !s.hooks.is_empty()
                };
                if next != level {
                    let threshold = match next.max(level) {
                        Level::Critical => critical,
                        _ => warning,
                    }
                    .unwrap_or(0);
                    tracing::warn!(
                        ?level,
                        ?next,
                        rss = sample.rss,
                        threshold,
                        "mem-watch: memory level changed"
                    );
                    let _ = events_tx.send(Event {
                        level: next,
                        previous: level,
                        sample,
                        threshold,
                    });
                    let _ = level_tx.send(next);
                    if hooks_due {
                        for hook in &lock(&task_shared).hooks {
                            hook();
                        }
                    }
                    level = next;
                }
            }
        });
        Watcher {
            levels,
            events,
            alarms,
            shared,
            task: Some(task),
        }
    }

    /// The current level.
    pub fn level(&self) -> Level {
        *self.levels.borrow()
    }

    /// A receiver of the level, to `changed().await` on.
    pub fn levels(&self) -> watch::Receiver<Level> {
        self.levels.clone()
    }

    /// Every level change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Every "leak suspected" from now on (with [`WatchConfig::leak_alarm`]).
    pub fn leak_alarms(&self) -> broadcast::Receiver<Suspicion> {
        self.alarms.subscribe()
    }

    /// What the leak alarm suspects now: each resource stays listed until its trend
    /// clears. Empty without [`WatchConfig::leak_alarm`].
    pub fn suspected(&self) -> Vec<Resource> {
        lock(&self.shared).suspected.clone()
    }

    /// The samples kept, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        lock(&self.shared).history.iter().copied().collect()
    }

    /// Runs `hook` each time the level becomes critical (e.g. clear a cache). Hooks run
    /// on the watcher's task: keep them short.
    pub fn on_critical(&self, hook: impl Fn() + Send + Sync + 'static) {
        lock(&self.shared).hooks.push(Box::new(hook));
    }

    /// Starts a job whose peak includes every sample this watcher takes while it runs.
    pub fn job(&self, name: impl Into<String>) -> Result<JobGuard> {
        let peaks = Arc::new(Mutex::new(Peaks::default()));
        lock(&self.shared).jobs.push(Arc::downgrade(&peaks));
        JobGuard::with_peaks(name.into(), peaks)
    }

    /// Stops the background task and waits for it to end.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The next level, with hysteresis: up at once, down only once clearly under.
pub fn next_level(
    current: Level,
    rss: u64,
    warning: Option<u64>,
    critical: Option<u64>,
    hysteresis: f64,
) -> Level {
    let at_or_over = |t: Option<u64>| t.is_some_and(|t| rss >= t);
    let clearly_under =
        |t: Option<u64>| t.is_none_or(|t| (rss as f64) < t as f64 * (1.0 - hysteresis));
    let raw = if at_or_over(critical) {
        Level::Critical
    } else if at_or_over(warning) {
        Level::Warning
    } else {
        Level::Normal
    };
    if raw >= current {
        return raw;
    }
    // Going down: leave each level only when clearly under its threshold.
    let mut level = current;
    if level == Level::Critical && clearly_under(critical) {
        level = Level::Warning;
    }
    if level == Level::Warning && clearly_under(warning) {
        level = Level::Normal;
    }
    level.max(raw)
}
