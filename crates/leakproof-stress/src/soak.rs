//! The soak: a long-running service started once, a load command run against it round
//! after round, the service's resident memory and descriptors sampled at each round's
//! end and judged by their trend; then SIGTERM, and what it left.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mem_watch::{LeakCheck, Sample};
use proc_reaper::Reaper;

use crate::Result;
use crate::launch::{Launch, Target, human, judge_temp, make_dir};
use crate::report::{Case, Report};
use crate::scan;

/// The environment variable the load command gets: the service's PID.
pub const SERVICE_PID_VAR: &str = "LEAKPROOF_STRESS_SERVICE_PID";

/// Runs a service under a load command and judges its memory and descriptor trend,
/// then its stop.
///
/// The service starts like a [`Torture`](crate::Torture) round (private `TMPDIR`,
/// marker, its own process group and, where allowed, cgroup). After the
/// [ready](Soak::ready) time, the load command runs through `sh -c` to completion,
/// [`warmup`](Soak::warmup) + [`rounds`](Soak::rounds) times, with
/// [`SERVICE_PID_VAR`] set; after each, the service's resident memory and open
/// descriptors are summed over its process tree. The rounds after the warm-up are
/// judged by their Theil-Sen slope (robust to a few outliers: a GC, a cache filling):
/// a leak is a slope above the [tolerance](Soak::rss_tolerance) per round. With an
/// [interval](Soak::interval), the service is also sampled on it while the load runs,
/// and those samples are judged instead (one long load run is then enough). Then the
/// service gets SIGTERM and must exit within the deadline, leaving no process, zombie
/// or `TMPDIR` entry.
///
/// On glibc, a multi-threaded service's resident size creeps up without any leak
/// while its per-thread malloc arenas fill; give the service `MALLOC_ARENA_MAX=2` (or
/// 1) in its environment to judge its memory trend, or raise the tolerance.
#[derive(Debug, Clone)]
pub struct Soak {
    target: Target,
    load: String,
    rounds: usize,
    warmup: usize,
    ready: Duration,
    load_timeout: Duration,
    deadline: Duration,
    settle: Duration,
    rss_tolerance: f64,
    fd_tolerance: f64,
    interval: Option<Duration>,
}

impl Soak {
    /// A soak of `program` with `args` under `load` (a shell command): by default 20
    /// measured rounds after 3 warm-up rounds, 1 s to get ready, 60 s per load run, a
    /// 10 s SIGTERM deadline, 2 s to settle; a leak is over 64 KiB of resident memory or
    /// 0.5 descriptors per round.
    pub fn new<I, S>(program: impl Into<OsString>, args: I, load: impl Into<String>) -> Soak
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Soak {
            target: Target::new(program, args),
            load: load.into(),
            rounds: 20,
            warmup: 3,
            ready: Duration::from_secs(1),
            load_timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(10),
            settle: Duration::from_secs(2),
            rss_tolerance: 64.0 * 1024.0,
            fd_tolerance: 0.5,
            interval: None,
        }
    }

    /// The load: a shell command, run with `sh -c`.
    pub fn load(mut self, command: impl Into<String>) -> Self {
        self.load = command.into();
        self
    }

    /// Also sample the service every `every` while the load runs, and judge the trend
    /// over those samples rather than one per round: for a load that runs long (one
    /// round of a long load test). The tolerances are then per sample.
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = Some(every.clamp(Duration::from_millis(1), crate::LONGEST_LIMIT));
        self
    }

    /// Rounds measured and judged (at least 3, or 1 with an [interval](Soak::interval)).
    pub fn rounds(mut self, n: usize) -> Self {
        self.rounds = n;
        self
    }

    /// Rounds run first and not judged (pools, caches and lazy statics filling).
    pub fn warmup(mut self, n: usize) -> Self {
        self.warmup = n;
        self
    }

    /// Time between the service's start and the first load run (default 1 s).
    pub fn ready(mut self, d: Duration) -> Self {
        self.ready = d.min(crate::LONGEST_LIMIT);
        self
    }

    /// Time one load run may take before it is ended and counted as failed.
    pub fn load_timeout(mut self, d: Duration) -> Self {
        self.load_timeout = d.min(crate::LONGEST_LIMIT);
        self
    }

    /// Time the service has to exit after SIGTERM (default 10 s).
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d.min(crate::LONGEST_LIMIT);
        self
    }

    /// Time what the service started has to go once it exited (default 2 s).
    pub fn settle(mut self, d: Duration) -> Self {
        self.settle = d.min(crate::LONGEST_LIMIT);
        self
    }

    /// The resident memory trend, bytes per round, above which it is a leak.
    pub fn rss_tolerance(mut self, bytes_per_round: f64) -> Self {
        self.rss_tolerance = bytes_per_round;
        self
    }

    /// The descriptor trend, per round, above which it is a leak.
    pub fn fd_tolerance(mut self, per_round: f64) -> Self {
        self.fd_tolerance = per_round;
        self
    }

    /// Whether the service gets a cgroup v2 of its own where allowed (default `true`).
    pub fn cgroups(mut self, on: bool) -> Self {
        self.target.cgroups = on;
        self
    }

    /// Where the private temp directories go (default: a new directory in the system
    /// temp directory, removed at the end).
    pub fn temp_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.target.temp_root = Some(dir.into());
        self
    }

    /// The service's command as one line.
    pub fn command_line(&self) -> String {
        self.target.command_line()
    }

    /// Runs the soak; two cases: the service under load, and its stop. Needs a tokio
    /// runtime with IO and time enabled. Errors when the soak itself cannot proceed.
    pub async fn run(&self) -> Result<Report> {
        let started = Instant::now();
        let reaper = self.target.reaper()?;
        let root = self.target.root();
        let (service_tmp, load_tmp) = (root.join("service"), root.join("load"));
        make_dir(&service_tmp)?;
        make_dir(&load_tmp)?;
        let mut report = Report {
            suite: self.command_line(),
            ..Report::default()
        };
        report.note(format!("load: sh -c {:?}", self.load));
        let outcome = self
            .soak(&reaper, &service_tmp, &load_tmp, &mut report)
            .await;
        reaper.shutdown(Duration::ZERO).await;
        self.target.remove_root(&root);
        outcome?;
        report.took = started.elapsed();
        Ok(report)
    }

    async fn soak(
        &self,
        reaper: &Reaper,
        service_tmp: &std::path::Path,
        load_tmp: &std::path::Path,
        report: &mut Report,
    ) -> Result<()> {
        let me = std::process::id();
        let started = Instant::now();
        let mut load_case = Case::new("under load");
        let mut service =
            self.target
                .start(reaper, service_tmp, &format!("{me}-soak-service"), &[])?;
        let pid = service.pid();
        let died_early = tokio::time::timeout(self.ready, service.exited())
            .await
            .is_ok();
        let mut samples = Vec::new();
        let (mut load_ok, mut load_runs) = (0usize, 0usize);
        let mut died = died_early;
        if !died_early {
            for round in 0..self.warmup + self.rounds {
                let mut load = Launch::start(
                    reaper,
                    "sh".as_ref(),
                    &["-c".into(), self.load.clone().into()],
                    load_tmp,
                    &format!("{me}-soak-load-{round}"),
                    &[(crate::soak::SERVICE_PID_VAR, pid.to_string())],
                )?;
                load_runs += 1;
                let measured = round >= self.warmup;
                let timeout = tokio::time::sleep(self.load_timeout);
                tokio::pin!(timeout);
                let mut tick = self.interval.map(tokio::time::interval);
                let finished = loop {
                    tokio::select! {
                        () = load.exited() => break true,
                        () = &mut timeout => break false,
                        _ = async {
                            match tick.as_mut() {
                                Some(tick) => tick.tick().await,
                                None => std::future::pending().await,
                            }
                        } => {
                            // While the load runs: a sample per interval.
                            match sample(pid) {
                                Some(s) if measured => samples.push(s),
                                Some(_) => {}
                                None => break false,
                            }
                        }
                    }
                };
                if finished && load.success().await {
                    load_ok += 1;
                } else if !finished {
                    tracing::warn!(
                        round,
                        "leakproof-stress: a load run timed out (or the service died)"
                    );
                }
                let Some(at_end) = sample(pid) else {
                    died = true;
                    break;
                };
                if measured && self.interval.is_none() {
                    samples.push(at_end);
                }
            }
        }
        load_case.check(
            "the service stays up under load",
            !died,
            if died {
                format!("exited after {} load runs", load_runs)
            } else {
                format!("up through {} load runs", load_runs)
            },
        );
        load_case.check(
            "every load run exits 0",
            load_ok == load_runs,
            format!("{load_ok} of {load_runs}"),
        );
        let unit = if self.interval.is_some() {
            "sample"
        } else {
            "round"
        };
        if samples.len() >= 3 {
            let verdict = LeakCheck::new(samples.len())
                .rss_tolerance(self.rss_tolerance)
                .fd_tolerance(self.fd_tolerance)
                .verdict(&samples);
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            load_case.check(
                "resident memory does not trend upward",
                !verdict.leaks_memory,
                format!(
                    "{:+.1} KiB per {unit} (tolerance {:.1}), {:.1} -> {:.1} MiB over {} {unit}s",
                    verdict.rss_slope / 1024.0,
                    self.rss_tolerance / 1024.0,
                    mib(verdict.rss.0),
                    mib(verdict.rss.1),
                    verdict.rounds
                ),
            );
            load_case.check(
                "open descriptors do not trend upward",
                !verdict.leaks_fds,
                format!(
                    "{:+.2} per {unit} (tolerance {}), {} -> {} over {} {unit}s",
                    verdict.fd_slope,
                    self.fd_tolerance,
                    verdict.fds.0,
                    verdict.fds.1,
                    verdict.rounds
                ),
            );
            load_case.figure(
                "RSS slope",
                format!("{:+.1} KiB/{unit}", verdict.rss_slope / 1024.0),
            );
            load_case.figure("fd slope", format!("{:+.2}/{unit}", verdict.fd_slope));
            let kib: Vec<String> = samples.iter().map(|s| (s.rss / 1024).to_string()).collect();
            let fds: Vec<String> = samples
                .iter()
                .map(|s| s.fds.unwrap_or(0).to_string())
                .collect();
            load_case.note(format!("RSS KiB per {unit}: {}", kib.join(" ")));
            load_case.note(format!("open fds per {unit}: {}", fds.join(" ")));
        } else if !died {
            load_case.check(
                "at least 3 rounds measured",
                false,
                samples.len().to_string(),
            );
        }
        load_case.figure("load runs", format!("{load_ok}/{load_runs} ok"));
        load_case.took = started.elapsed();
        report.cases.push(load_case);

        let stopped = Instant::now();
        let mut stop = Case::new("stop");
        if !died {
            service.terminate(&mut stop, self.deadline).await;
        }
        let outcome = service.judge(&mut stop, self.settle, false).await;
        judge_temp(&mut stop, service_tmp, outcome.as_ref());
        stop.note(format!(
            "stopped after {} under load",
            human(started.elapsed())
        ));
        stop.took = stopped.elapsed();
        report.cases.push(stop);
        Ok(())
    }
}

/// The service tree's resident memory and open descriptors now (summed over the
/// service and its descendants); `None` once the service has exited.
fn sample(pid: u32) -> Option<Sample> {
    if scan::Process::read(pid).is_none_or(|p| p.is_zombie()) {
        return None;
    }
    let tree: Vec<u32> = std::iter::once(pid).chain(scan::descendants(pid)).collect();
    let rss = tree.iter().filter_map(|p| scan::rss_bytes(*p)).sum();
    let fds = tree.iter().filter_map(|p| scan::fd_count(*p)).sum();
    Some(Sample::new(std::time::Instant::now(), rss, Some(fds)))
}
