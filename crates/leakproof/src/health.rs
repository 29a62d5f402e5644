//! `Health`: one report from every crate, graded, serialisable for a health endpoint.

use std::sync::{Arc, Mutex, PoisonError};

use crate::Result;

/// The grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Status {
    /// Nothing to report.
    Healthy,
    /// Working, but something is over a soft limit (see the reasons).
    Degraded,
    /// Should not get traffic: shutting down, or about to run out of memory or
    /// descriptors.
    Unhealthy,
}

/// Memory figures.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct MemoryHealth {
    /// Resident bytes.
    pub rss: u64,
    /// The limit that stops this process first (cgroup or RAM), if known.
    pub limit: Option<u64>,
    /// `rss` as a percentage of `limit`.
    pub percent_of_limit: Option<f64>,
    /// The level of the registered `mem-watch` watcher (`normal`, `warning`, `critical`).
    pub level: Option<String>,
    /// Memory pressure (PSI `some avg10`), in percent.
    pub pressure_some: Option<f64>,
}

/// Descriptor figures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct FdHealth {
    /// Open now.
    pub open: u64,
    /// Open when the health check was built.
    pub baseline: u64,
    /// The soft `RLIMIT_NOFILE`, if finite.
    pub limit: Option<u64>,
}

/// One cache's figures.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CacheHealth {
    /// The name it was registered under.
    pub name: String,
    /// Entries held.
    pub entries: usize,
    /// Lookups that hit.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// `hits / (hits + misses)`, 0 when there were none.
    pub hit_rate: f64,
}

/// One gate's figures.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct GateHealth {
    /// The name it was registered under.
    pub name: String,
    /// Permits granted.
    pub granted: u64,
    /// Grants that had to wait.
    pub waited: u64,
    /// Mean wait of those that waited, in milliseconds.
    pub mean_wait_ms: f64,
    /// Permits out now.
    pub in_flight: u64,
    /// Milliseconds left of a pause the server asked for.
    pub paused_for_ms: Option<u64>,
}

/// What a connection pool says about itself: implement it for any pool to have
/// [`Health`] report it ([`HealthBuilder::pool`]). Feature `deadpool` implements it for
/// every `deadpool::managed::Pool`.
pub trait PoolStatus: Send + Sync {
    /// The pool's figures now.
    fn pool_state(&self) -> PoolState;
}

/// A pool's figures, from [`PoolStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PoolState {
    /// Connections open now, idle or in use.
    pub size: usize,
    /// The most it opens.
    pub max_size: usize,
    /// Connections open and not in use.
    pub idle: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

#[cfg(feature = "deadpool")]
#[cfg_attr(docsrs, doc(cfg(feature = "deadpool")))]
impl<M: deadpool::managed::Manager> PoolStatus for deadpool::managed::Pool<M>
where
    M::Type: Send,
    M::Error: Send,
{
    fn pool_state(&self) -> PoolState {
        let status = self.status();
        PoolState {
            size: status.size,
            max_size: status.max_size,
            idle: status.available,
            waiting: status.waiting,
        }
    }
}

/// One pool's figures.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct PoolHealth {
    /// The name it was registered under.
    pub name: String,
    /// What it said.
    pub state: PoolState,
    /// How long callers have been waiting without a break, as far as the checks saw:
    /// from the first check that found someone waiting, through every later check that
    /// did too. `None` when the last check found nobody waiting.
    pub waiting_for_ms: Option<u64>,
}

/// The report, graded with its reasons. Serialises to JSON (or anything serde speaks)
/// for a health endpoint; [`http_status`](Self::http_status) gives its status code.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct HealthReport {
    /// The worst grade any rule gave.
    pub status: Status,
    /// Why it is not healthy, one line per rule broken.
    pub reasons: Vec<String>,
    /// Live `scoped-temp` entries.
    pub temp_entries: Option<usize>,
    /// Live child processes across the registered reapers.
    pub children: Option<usize>,
    /// Memory.
    pub memory: Option<MemoryHealth>,
    /// Descriptors.
    pub fds: Option<FdHealth>,
    /// Registered caches.
    pub caches: Vec<CacheHealth>,
    /// Registered gates.
    pub gates: Vec<GateHealth>,
    /// Registered connection pools.
    pub pools: Vec<PoolHealth>,
    /// Work in flight in the registered shutdown.
    pub in_flight: Option<usize>,
    /// `true` once the registered shutdown has begun.
    pub shutting_down: bool,
}

impl HealthReport {
    /// 200 for Healthy and Degraded, 503 for Unhealthy.
    pub fn http_status(&self) -> u16 {
        if self.status == Status::Unhealthy {
            503
        } else {
            200
        }
    }

    fn grade(&mut self, status: Status, reason: String) {
        self.status = self.status.max(status);
        self.reasons.push(reason);
    }
}

/// The thresholds. Defaults are the users' rules: Degraded above 100 live children or
/// under memory pressure.
#[derive(Debug, Clone)]
struct Rules {
    max_children: usize,
    max_temp_entries: usize,
    fd_slack: u64,
    memory_degraded: f64,
    memory_unhealthy: f64,
    pressure_degraded: f64,
}

type CacheProbe = Box<dyn Fn() -> CacheHealth + Send + Sync>;

struct Inner {
    rules: Rules,
    #[cfg(feature = "temp")]
    temp: bool,
    #[cfg(feature = "mem")]
    probe: Option<Mutex<mem_watch::Probe>>,
    #[cfg(feature = "mem")]
    level: Option<tokio::sync::watch::Receiver<mem_watch::Level>>,
    #[cfg(feature = "mem")]
    fd_baseline: Option<u64>,
    #[cfg(all(feature = "proc", target_os = "linux"))]
    reapers: Vec<proc_reaper::Reaper>,
    caches: Vec<CacheProbe>,
    #[cfg(feature = "gate")]
    gates: Vec<(String, rate_gate::Gate)>,
    pools: Vec<PoolProbe>,
    shutdown: Option<crate::Shutdown>,
}

impl PoolProbe {
    fn check(&self, status: &mut Status, reasons: &mut Vec<String>) -> PoolHealth {
        let state = self.pool.pool_state();
        // tokio's clock: it is std's outside a paused runtime.
        let now = tokio::time::Instant::now();
        let waited = {
            let mut since = self
                .waiting_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if state.waiting == 0 {
                *since = None;
                None
            } else {
                Some(now - *since.get_or_insert(now))
            }
        };
        if let Some(waited) = waited.filter(|w| *w > self.wait_threshold) {
            *status = (*status).max(Status::Degraded);
            reasons.push(format!(
                "pool `{}`: {} caller(s) waiting for a connection for {} ms (over {} ms); {} of {} in use",
                self.name,
                state.waiting,
                waited.as_millis(),
                self.wait_threshold.as_millis(),
                state.size - state.idle.min(state.size),
                state.max_size
            ));
        }
        PoolHealth {
            name: self.name.clone(),
            state,
            waiting_for_ms: waited.map(|w| w.as_millis() as u64),
        }
    }
}

/// One health check over everything registered with its builder; clones share it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), leakproof::Error> {
/// use leakproof::{Health, Status};
///
/// let cache: leakproof::cache::Cache<String, String> =
///     leakproof::cache::Cache::builder().max_entries(100).build();
/// let health = Health::builder().cache("github", &cache).build()?;
/// let report = health.check();
/// assert_eq!(report.status, Status::Healthy, "{:?}", report.reasons);
/// assert_eq!(report.http_status(), 200);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("rules", &self.inner.rules)
            .finish_non_exhaustive()
    }
}

/// What a [`Health`] check looks at, and its thresholds.
pub struct HealthBuilder {
    rules: Rules,
    #[cfg(feature = "temp")]
    temp: bool,
    #[cfg(feature = "mem")]
    memory: bool,
    #[cfg(feature = "mem")]
    level: Option<tokio::sync::watch::Receiver<mem_watch::Level>>,
    #[cfg(all(feature = "proc", target_os = "linux"))]
    reapers: Vec<proc_reaper::Reaper>,
    caches: Vec<CacheProbe>,
    #[cfg(feature = "gate")]
    gates: Vec<(String, rate_gate::Gate)>,
    pools: Vec<PoolProbe>,
    shutdown: Option<crate::Shutdown>,
}

/// A registered pool, and since when the checks have seen callers waiting on it.
struct PoolProbe {
    name: String,
    pool: Box<dyn PoolStatus>,
    wait_threshold: std::time::Duration,
    waiting_since: Mutex<Option<tokio::time::Instant>>,
}

impl std::fmt::Debug for HealthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthBuilder")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Health {
    /// A check of live temp entries, memory and descriptors (those whose features are
    /// on); register children, caches, gates and a shutdown on the builder.
    pub fn builder() -> HealthBuilder {
        HealthBuilder {
            rules: Rules {
                max_children: 100,
                max_temp_entries: 1000,
                fd_slack: 256,
                memory_degraded: 80.0,
                memory_unhealthy: 95.0,
                pressure_degraded: 10.0,
            },
            #[cfg(feature = "temp")]
            temp: true,
            #[cfg(feature = "mem")]
            memory: true,
            #[cfg(feature = "mem")]
            level: None,
            #[cfg(all(feature = "proc", target_os = "linux"))]
            reapers: Vec::new(),
            caches: Vec::new(),
            #[cfg(feature = "gate")]
            gates: Vec::new(),
            pools: Vec::new(),
            shutdown: None,
        }
    }

    /// Reads every source now and grades the result.
    pub fn check(&self) -> HealthReport {
        let inner = &*self.inner;
        let mut report = HealthReport {
            status: Status::Healthy,
            reasons: Vec::new(),
            temp_entries: None,
            children: None,
            memory: None,
            fds: None,
            caches: inner.caches.iter().map(|probe| probe()).collect(),
            gates: Vec::new(),
            pools: Vec::new(),
            in_flight: None,
            shutting_down: false,
        };
        for probe in &inner.pools {
            report
                .pools
                .push(probe.check(&mut report.status, &mut report.reasons));
        }
        if let Some(shutdown) = &inner.shutdown {
            report.in_flight = Some(shutdown.in_flight_count());
            report.shutting_down = shutdown.is_shutting_down();
            if report.shutting_down {
                report.grade(Status::Unhealthy, "shutting down".to_string());
            }
        }
        #[cfg(feature = "temp")]
        if inner.temp {
            let live = scoped_temp::live_count();
            report.temp_entries = Some(live);
            if live > inner.rules.max_temp_entries {
                report.grade(
                    Status::Degraded,
                    format!(
                        "{live} live temp entries (over {})",
                        inner.rules.max_temp_entries
                    ),
                );
            }
        }
        #[cfg(all(feature = "proc", target_os = "linux"))]
        if !inner.reapers.is_empty() {
            let live: usize = inner.reapers.iter().map(|r| r.live_count()).sum();
            report.children = Some(live);
            if live > inner.rules.max_children {
                report.grade(
                    Status::Degraded,
                    format!(
                        "{live} live child processes (over {})",
                        inner.rules.max_children
                    ),
                );
            }
        }
        #[cfg(feature = "mem")]
        self.check_memory(&mut report);
        #[cfg(feature = "gate")]
        for (name, gate) in &inner.gates {
            let stats = gate.stats();
            let paused_for_ms = stats.paused_for.map(|d| d.as_millis() as u64);
            if let Some(ms) = paused_for_ms {
                report.grade(
                    Status::Degraded,
                    format!("gate `{name}` paused by the server for {ms} ms more"),
                );
            }
            report.gates.push(GateHealth {
                name: name.clone(),
                granted: stats.granted,
                waited: stats.waited,
                mean_wait_ms: if stats.waited == 0 {
                    0.0
                } else {
                    stats.total_wait.as_secs_f64() * 1000.0 / stats.waited as f64
                },
                in_flight: stats.in_flight,
                paused_for_ms,
            });
        }
        report
    }

    #[cfg(feature = "mem")]
    fn check_memory(&self, report: &mut HealthReport) {
        let inner = &*self.inner;
        let rules = &inner.rules;
        let level = inner.level.as_ref().map(|rx| *rx.borrow());
        let Some(probe) = &inner.probe else {
            return;
        };
        let snapshot = probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot();
        let rss = snapshot.sample.rss;
        let limit = snapshot.effective_limit();
        let percent = limit
            .filter(|l| *l > 0)
            .map(|l| rss as f64 * 100.0 / l as f64);
        if let Some(p) = percent {
            if p >= rules.memory_unhealthy {
                report.grade(Status::Unhealthy, format!("memory at {p:.1}% of its limit"));
            } else if p >= rules.memory_degraded {
                report.grade(Status::Degraded, format!("memory at {p:.1}% of its limit"));
            }
        }
        match level {
            Some(mem_watch::Level::Critical) => report.grade(
                Status::Unhealthy,
                "memory over its critical threshold".into(),
            ),
            Some(mem_watch::Level::Warning) => {
                report.grade(Status::Degraded, "memory over its warning threshold".into())
            }
            _ => {}
        }
        if let Some(pressure) = snapshot.pressure_some
            && pressure >= rules.pressure_degraded
        {
            report.grade(
                Status::Degraded,
                format!("memory pressure: tasks stalled {pressure:.1}% of the last 10 s"),
            );
        }
        report.memory = Some(MemoryHealth {
            rss,
            limit,
            percent_of_limit: percent,
            level: level.map(|l| format!("{l:?}").to_lowercase()),
            pressure_some: snapshot.pressure_some,
        });
        if let (Some(open), Some(baseline)) = (snapshot.sample.fds, inner.fd_baseline) {
            let limit = fd_limit();
            if let Some(limit) = limit.filter(|l| open * 10 >= l * 9) {
                report.grade(
                    Status::Unhealthy,
                    format!("{open} descriptors open, limit {limit}"),
                );
            } else if open > baseline + rules.fd_slack {
                report.grade(
                    Status::Degraded,
                    format!(
                        "{open} descriptors open, {} over the baseline of {baseline}",
                        open - baseline
                    ),
                );
            }
            report.fds = Some(FdHealth {
                open,
                baseline,
                limit,
            });
        }
    }
}

#[cfg(feature = "mem")]
fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

impl HealthBuilder {
    /// Degraded above this many live child processes (default 100).
    pub fn max_children(mut self, max: usize) -> Self {
        self.rules.max_children = max;
        self
    }

    /// Degraded above this many live temp entries (default 1000).
    pub fn max_temp_entries(mut self, max: usize) -> Self {
        self.rules.max_temp_entries = max;
        self
    }

    /// Degraded when more than this many descriptors are open beyond the baseline taken
    /// at [`build`](Self::build) (default 256). Unhealthy at 90% of `RLIMIT_NOFILE`.
    pub fn fd_slack(mut self, slack: u64) -> Self {
        self.rules.fd_slack = slack;
        self
    }

    /// Degraded and Unhealthy at these percentages of the memory limit (default 80 and
    /// 95); Degraded too when PSI memory pressure (`some avg10`) reaches
    /// `pressure_percent` (default 10).
    pub fn memory_percent(mut self, degraded: f64, unhealthy: f64, pressure_percent: f64) -> Self {
        self.rules.memory_degraded = degraded;
        self.rules.memory_unhealthy = unhealthy;
        self.rules.pressure_degraded = pressure_percent;
        self
    }

    /// Leaves live temp entries out.
    #[cfg(feature = "temp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "temp")))]
    pub fn without_temp(mut self) -> Self {
        self.temp = false;
        self
    }

    /// Leaves memory and descriptors out.
    #[cfg(feature = "mem")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mem")))]
    pub fn without_memory(mut self) -> Self {
        self.memory = false;
        self
    }

    /// Grades on a `mem-watch` watcher's level too: Warning is Degraded, Critical is
    /// Unhealthy.
    #[cfg(feature = "mem")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mem")))]
    pub fn watcher(mut self, watcher: &mem_watch::Watcher) -> Self {
        self.level = Some(watcher.levels());
        self
    }

    /// Counts the live children of `reaper`.
    #[cfg(all(feature = "proc", target_os = "linux"))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "proc", target_os = "linux"))))]
    pub fn reaper(mut self, reaper: &proc_reaper::Reaper) -> Self {
        self.reapers.push(reaper.clone());
        self
    }

    /// Reports `cache`'s size and hit rate under `name`.
    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    pub fn cache<K, V>(mut self, name: &str, cache: &ttl_cache::Cache<K, V>) -> Self
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let (name, cache) = (name.to_string(), cache.clone());
        self.caches.push(Box::new(move || {
            let stats = cache.stats();
            CacheHealth {
                name: name.clone(),
                entries: cache.len(),
                hits: stats.hits,
                misses: stats.misses,
                hit_rate: stats.hit_rate(),
            }
        }));
        self
    }

    /// Reports `gate`'s waits and in-flight permits under `name`; Degraded while the
    /// server has it paused.
    #[cfg(feature = "gate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "gate")))]
    pub fn gate(mut self, name: &str, gate: &rate_gate::Gate) -> Self {
        self.gates.push((name.to_string(), gate.clone()));
        self
    }

    /// Reports a connection pool under `name`: its size, idle connections and waiting
    /// callers; Degraded when callers have been waiting longer than `wait_threshold`
    /// (every check since the first that saw someone waiting saw someone waiting: the
    /// pool knows how many wait, not for how long, so checks made more often measure
    /// it more closely).
    pub fn pool(
        mut self,
        name: &str,
        pool: impl PoolStatus + 'static,
        wait_threshold: std::time::Duration,
    ) -> Self {
        self.pools.push(PoolProbe {
            name: name.to_string(),
            pool: Box::new(pool),
            wait_threshold,
            waiting_since: Mutex::new(None),
        });
        self
    }

    /// Reports the work in flight; Unhealthy once the shutdown has begun (so a load
    /// balancer stops sending traffic).
    pub fn shutdown(mut self, shutdown: &crate::Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// The check; takes the descriptor baseline now.
    pub fn build(self) -> Result<Health> {
        #[cfg(feature = "mem")]
        let (probe, fd_baseline) = if self.memory {
            let mut probe = mem_watch::Probe::new()?;
            let baseline = probe.sample().fds;
            (Some(Mutex::new(probe)), baseline)
        } else {
            (None, None)
        };
        Ok(Health {
            inner: Arc::new(Inner {
                rules: self.rules,
                #[cfg(feature = "temp")]
                temp: self.temp,
                #[cfg(feature = "mem")]
                probe,
                #[cfg(feature = "mem")]
                level: self.level,
                #[cfg(feature = "mem")]
                fd_baseline,
                #[cfg(all(feature = "proc", target_os = "linux"))]
                reapers: self.reapers,
                caches: self.caches,
                #[cfg(feature = "gate")]
                gates: self.gates,
                pools: self.pools,
                shutdown: self.shutdown,
            }),
        })
    }
}
