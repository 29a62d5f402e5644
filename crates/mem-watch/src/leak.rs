//! Leak checks: run an operation in rounds and decide whether memory or descriptors
//! trend upward, with a slope that shrugs off outliers.

use std::future::Future;

use crate::{Error, Probe, Result, Sample};

/// How a leak check runs and what counts as a leak.
///
/// ```
/// let check = mem_watch::LeakCheck::new(50);
/// let report = check.run(|| { let v = vec![0u8; 1 << 20]; std::hint::black_box(&v); })?;
/// assert!(!report.leaks(), "{report:?}");
/// # Ok::<(), mem_watch::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LeakCheck {
    rounds: usize,
    warmup: usize,
    rss_per_round: f64,
    fds_per_round: f64,
}

/// A leak check's verdict and the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LeakReport {
    /// Rounds measured (after warm-up).
    pub rounds: usize,
    /// Trend of resident memory, bytes per round (Theil-Sen slope).
    pub rss_slope: f64,
    /// Trend of open descriptors, per round.
    pub fd_slope: f64,
    /// Resident memory after warm-up and at the end.
    pub rss: (u64, u64),
    /// Descriptors after warm-up and at the end.
    pub fds: (u64, u64),
    /// `true` when `rss_slope` is over the tolerance.
    pub leaks_memory: bool,
    /// `true` when `fd_slope` is over the tolerance.
    pub leaks_fds: bool,
}

impl LeakReport {
    /// Memory or descriptors leak.
    pub fn leaks(&self) -> bool {
        self.leaks_memory || self.leaks_fds
    }
}

/// Samples set aside up front; more rounds grow the list as they run (a `rounds` of
/// `usize::MAX` asked for all of it at once and panicked).
const PREALLOCATED_ROUNDS: usize = 4096;

impl LeakCheck {
    /// `rounds` measured rounds after 5 warm-up rounds; a leak is a trend above 4 KiB
    /// (one page) of resident memory or 0.5 descriptors per round.
    pub fn new(rounds: usize) -> Self {
        LeakCheck {
            rounds,
            warmup: 5,
            rss_per_round: 4096.0,
            fds_per_round: 0.5,
        }
    }

    /// Rounds run first and not measured (allocator pools, lazy statics, caches).
    pub fn warmup(mut self, rounds: usize) -> Self {
        self.warmup = rounds;
        self
    }

    /// The memory trend, in bytes per round, above which it is a leak.
    pub fn rss_tolerance(mut self, bytes_per_round: f64) -> Self {
        self.rss_per_round = bytes_per_round;
        self
    }

    /// The descriptor trend, per round, above which it is a leak.
    pub fn fd_tolerance(mut self, per_round: f64) -> Self {
        self.fds_per_round = per_round;
        self
    }

    /// Runs `op` for the warm-up and measured rounds, sampling after each.
    pub fn run(&self, mut op: impl FnMut()) -> Result<LeakReport> {
        self.check_rounds()?;
        let mut probe = Probe::new()?;
        let mut samples = Vec::with_capacity(self.rounds.min(PREALLOCATED_ROUNDS));
        for round in 0..self.warmup.saturating_add(self.rounds) {
            op();
            if round >= self.warmup {
                samples.push(probe.sample());
            }
        }
        Ok(self.verdict(&samples))
    }

    /// [`run`](Self::run) for an async operation.
    pub async fn run_async<F, Fut>(&self, mut op: F) -> Result<LeakReport>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        self.check_rounds()?;
        let mut probe = Probe::new()?;
        let mut samples = Vec::with_capacity(self.rounds.min(PREALLOCATED_ROUNDS));
        for round in 0..self.warmup.saturating_add(self.rounds) {
            op().await;
            if round >= self.warmup {
                samples.push(probe.sample());
            }
        }
        Ok(self.verdict(&samples))
    }

    fn check_rounds(&self) -> Result<()> {
        if self.rounds < 3 {
            return Err(Error::TooFewRounds {
                rounds: self.rounds,
            });
        }
        Ok(())
    }

    /// The verdict over samples taken after each round.
    pub fn verdict(&self, samples: &[Sample]) -> LeakReport {
        let rss: Vec<f64> = samples.iter().map(|s| s.rss as f64).collect();
        let fds: Vec<f64> = samples.iter().map(|s| s.fds.unwrap_or(0) as f64).collect();
        let (rss_slope, fd_slope) = (theil_sen(&rss), theil_sen(&fds));
        let first = samples.first().copied();
        let last = samples.last().copied();
        let pair = |f: fn(&Sample) -> u64| {
            (
                first.as_ref().map(f).unwrap_or(0),
                last.as_ref().map(f).unwrap_or(0),
            )
        };
        let report = LeakReport {
            rounds: samples.len(),
            rss_slope,
            fd_slope,
            rss: pair(|s| s.rss),
            fds: pair(|s| s.fds.unwrap_or(0)),
            leaks_memory: rss_slope > self.rss_per_round,
            leaks_fds: fd_slope > self.fds_per_round,
        };
        tracing::debug!(?report, "mem-watch: leak check");
        report
    }
}

/// The Theil-Sen slope of `ys` against their index: the median of the slopes between
/// pairs of points (subsampled to at most ~20,000 pairs), robust to up to 29% outliers.
pub fn theil_sen(ys: &[f64]) -> f64 {
    let n = ys.len();
    if n < 2 {
        return 0.0;
    }
    let pairs = n * (n - 1) / 2;
    let stride = (pairs / 20_000).max(1);
    let mut slopes = Vec::with_capacity(pairs / stride + 1);
    let mut k = 0usize;
    for i in 0..n {
        for j in i + 1..n {
            if k.is_multiple_of(stride) {
                slopes.push((ys[j] - ys[i]) / (j - i) as f64);
            }
            k += 1;
        }
    }
    let mid = slopes.len() / 2;
    let (_, median, _) = slopes.select_nth_unstable_by(mid, f64::total_cmp);
    *median
}
