//! A leak alarm for production: the trend of resident memory and open descriptors over
//! a rolling window of samples, raised as "leak suspected" with its slope and the
//! confidence that the trend is real.

use std::collections::VecDeque;

use crate::{Sample, theil_sen};

/// What a [`Suspicion`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// Resident memory, in bytes.
    Memory,
    /// Open file descriptors.
    Fds,
}

/// A trend over the window: its slope and how sure the test is that it rises.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Trend {
    /// Theil-Sen slope per step (bytes or descriptors per sample), robust to
    /// outliers.
    pub slope: f64,
    /// The Mann-Kendall test's confidence that the series rises, from 0 to 1 (0.5: no
    /// sign either way): one minus the one-sided p-value, with ties accounted for.
    pub confidence: f64,
}

/// "Leak suspected": a resource whose trend over a full window is over its tolerance,
/// with at least the configured confidence, and sustained: each third of the window
/// sits higher than the third before (by at least the tolerance over a third's steps,
/// medians compared), so a one-time step (a cache filled at once, a pool opened) is
/// not a leak wherever it falls in the window.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Suspicion {
    /// Memory or descriptors.
    pub resource: Resource,
    /// The trend that raised it.
    pub trend: Trend,
    /// Samples in the window.
    pub window: usize,
    /// The resource's value at the window's first and last sample.
    pub from: u64,
    /// See `from`.
    pub to: u64,
}

/// A rolling-window leak alarm. Feed it a [`Sample`] per step (per operation, from
/// your code, or per interval, from a [`Watcher`](crate::Watcher) configured with
/// [`WatchConfig::leak_alarm`](crate::WatchConfig::leak_alarm)); once the window is
/// full, each [`push`](Self::push) judges the window's trend of resident memory and of
/// descriptors, and returns what it newly suspects. A suspicion stays raised (and is
/// not returned again) until its trend falls back under the tolerance or the
/// confidence.
///
/// Choose the window longer than one operation's own rise: an operation's working set
/// grows while it runs, and a window shorter than that rise sees a steady climb. In the
/// stress harness, a 2 s window over an indexing run of a few seconds raised the alarm
/// on a bounded 0.3 MiB rise that a 5 s window did not.
///
/// A step's cost is O(window²) (pairwise slopes and signs, for memory and for
/// descriptors; the slopes subsampled past 20,000 pairs): measured on a 2-core VM, 9 µs
/// a push for a window of 30, 87 µs for 120, 350 µs for 300. Per tick of a
/// watcher that is nothing; per operation of a hot loop, feed it every k-th operation.
///
/// ```
/// use std::time::Instant;
/// use mem_watch::{LeakAlarm, Resource, Sample};
///
/// let mut alarm = LeakAlarm::new(50);
/// let mut raised = Vec::new();
/// for step in 0..100u64 {
///     // 64 KiB more resident memory per operation: a leak.
///     let sample = Sample::new(Instant::now(), (100 << 20) + step * (64 << 10), Some(12));
///     raised.extend(alarm.push(sample));
/// }
/// assert_eq!(raised.len(), 1);
/// assert_eq!(raised[0].resource, Resource::Memory);
/// assert!(raised[0].trend.confidence > 0.99);
/// ```
#[derive(Debug, Clone)]
pub struct LeakAlarm {
    window: usize,
    rss_tolerance: f64,
    fd_tolerance: f64,
    confidence: f64,
    samples: VecDeque<Sample>,
    raised_memory: bool,
    raised_fds: bool,
}

impl LeakAlarm {
    /// A window of `window` samples (at least 8); a leak is a trend above 4 KiB (a
    /// page) of resident memory or 0.5 descriptors per step, with at least 99%
    /// confidence.
    pub fn new(window: usize) -> Self {
        let window = window.max(8);
        LeakAlarm {
            window,
            rss_tolerance: 4096.0,
            fd_tolerance: 0.5,
            confidence: 0.99,
            // Grown as samples come: a window of `usize::MAX` is taken, not allocated.
            samples: VecDeque::with_capacity(window.min(4096)),
            raised_memory: false,
            raised_fds: false,
        }
    }

    /// The memory trend, in bytes per step, above which a leak is suspected.
    pub fn rss_tolerance(mut self, bytes_per_step: f64) -> Self {
        self.rss_tolerance = bytes_per_step;
        self
    }

    /// The descriptor trend, per step, above which a leak is suspected.
    pub fn fd_tolerance(mut self, per_step: f64) -> Self {
        self.fd_tolerance = per_step;
        self
    }

    /// The confidence a rising trend needs to raise the alarm (clamped to 0.5..=1).
    pub fn confidence(mut self, at_least: f64) -> Self {
        self.confidence = at_least.clamp(0.5, 1.0);
        self
    }

    /// Samples in a full window.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Adds a sample (the oldest leaves a full window) and returns the suspicions
    /// newly raised by it: none until the window is full.
    pub fn push(&mut self, sample: Sample) -> Vec<Suspicion> {
        if self.samples.len() == self.window {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        let mut raised = Vec::new();
        if self.samples.len() < self.window {
            return raised;
        }
        let memory = self.judge(Resource::Memory);
        if self.raise(memory, Resource::Memory) {
            raised.extend(memory);
        }
        // Descriptors only where the probe could count them.
        if self.samples.iter().all(|s| s.fds.is_some()) {
            let fds = self.judge(Resource::Fds);
            if self.raise(fds, Resource::Fds) {
                raised.extend(fds);
            }
        }
        raised
    }

    /// The suspicions raised now (each until its trend clears).
    pub fn suspected(&self) -> Vec<Resource> {
        let mut out = Vec::new();
        if self.raised_memory {
            out.push(Resource::Memory);
        }
        if self.raised_fds {
            out.push(Resource::Fds);
        }
        out
    }

    /// The trend of `resource` over the samples held now (any number, at least 2).
    pub fn trend(&self, resource: Resource) -> Option<Trend> {
        (self.samples.len() >= 2).then(|| trend(&self.values(resource)))
    }

    fn values(&self, resource: Resource) -> Vec<f64> {
        self.samples
            .iter()
            .map(|s| match resource {
                Resource::Memory => s.rss as f64,
                Resource::Fds => s.fds.unwrap_or(0) as f64,
            })
            .collect()
    }

    /// The window's suspicion of `resource`, raised or not.
    fn judge(&self, resource: Resource) -> Option<Suspicion> {
        let values = self.values(resource);
        let trend = trend(&values);
        let tolerance = match resource {
            Resource::Memory => self.rss_tolerance,
            Resource::Fds => self.fd_tolerance,
        };
        let suspected = trend.slope > tolerance
            && trend.confidence >= self.confidence
            && sustained(&values, tolerance);
        suspected.then(|| Suspicion {
            resource,
            trend,
            window: values.len(),
            from: values.first().copied().unwrap_or(0.0) as u64,
            to: values.last().copied().unwrap_or(0.0) as u64,
        })
    }

    /// Updates the raised flag; `true` if `suspicion` is newly raised.
    fn raise(&mut self, suspicion: Option<Suspicion>, resource: Resource) -> bool {
        let flag = match resource {
            Resource::Memory => &mut self.raised_memory,
            Resource::Fds => &mut self.raised_fds,
        };
        let newly = suspicion.is_some() && !*flag;
        *flag = suspicion.is_some();
        newly
    }
}

/// Each third of `values` has a median above the previous third's by more than
/// `per_step` times a third's length: the rise is spread over the window, not one step.
fn sustained(values: &[f64], per_step: f64) -> bool {
    let third = values.len() / 3;
    if third == 0 {
        return false;
    }
    let median = |part: &[f64]| {
        let mut sorted = part.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let medians = [
        median(&values[..third]),
        median(&values[third..2 * third]),
        median(&values[2 * third..]),
    ];
    let rise = per_step * third as f64;
    medians[1] - medians[0] > rise && medians[2] - medians[1] > rise
}

fn trend(values: &[f64]) -> Trend {
    Trend {
        slope: theil_sen(values),
        confidence: mann_kendall_confidence(values),
    }
}

/// The Mann-Kendall test's confidence that `ys` rises: Φ(z) for its S statistic with
/// the variance corrected for ties and a continuity correction; 0.5 when it cannot
/// tell (fewer than 3 values, or all equal).
pub fn mann_kendall_confidence(ys: &[f64]) -> f64 {
    let n = ys.len();
    if n < 3 {
        return 0.5;
    }
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            s += match ys[j].total_cmp(&ys[i]) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    // Ties: each group of t equal values takes t(t-1)(2t+5) from the variance.
    let mut sorted = ys.to_vec();
    sorted.sort_by(f64::total_cmp);
    let tie_term: f64 = sorted
        .chunk_by(|a, b| a == b)
        .map(|group| {
            let t = group.len() as f64;
            t * (t - 1.0) * (2.0 * t + 5.0)
        })
        .sum();
    let n = n as f64;
    let variance = (n * (n - 1.0) * (2.0 * n + 5.0) - tie_term) / 18.0;
    if variance <= 0.0 {
        return 0.5;
    }
    let z = match s {
        0 => 0.0,
        s if s > 0 => (s - 1) as f64 / variance.sqrt(),
        s => (s + 1) as f64 / variance.sqrt(),
    };
    normal_cdf(z)
}

/// The standard normal distribution function, through erf (Abramowitz and Stegun
/// 7.1.26, absolute error under 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_distribution_function_matches_its_table() {
        for (z, p) in [
            (0.0, 0.5),
            (1.0, 0.841_344_7),
            (-1.96, 0.024_997_9),
            (2.326, 0.989_991),
        ] {
            assert!((normal_cdf(z) - p).abs() < 1e-6, "{z}: {}", normal_cdf(z));
        }
    }

    #[test]
    fn mann_kendall_tells_a_rise_from_noise_and_from_flat() {
        let rising: Vec<f64> = (0..30).map(|i| i as f64).collect();
        assert!(mann_kendall_confidence(&rising) > 0.999_9);
        let falling: Vec<f64> = rising.iter().rev().copied().collect();
        assert!(mann_kendall_confidence(&falling) < 0.000_1);
        assert_eq!(mann_kendall_confidence(&[7.0; 30]), 0.5);
        // A sawtooth with no trend: not confident either way.
        let saw: Vec<f64> = (0..60).map(|i| (i % 6) as f64).collect();
        let c = mann_kendall_confidence(&saw);
        assert!((0.1..0.9).contains(&c), "{c}");
    }
}
