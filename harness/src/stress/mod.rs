//! `cargo xtask stress`: the project's main job. A repository indexer runs the users'
//! scenarios end to end against loopback servers ([`indexer`]), after each crate's own
//! scenarios; every scenario is judged from the outside against a baseline.
//!
//! A scenario is a function returning a [`Scenario`]: what it did, its key figures, and
//! checks that compare what it observed with what must hold ("temp entries back to
//! baseline: 1 over baseline (0 -> 1)"). The run fails if any check fails. At the end:
//! a summary table, a JSON report and an SVG chart ([`report`]).

mod cache;
mod indexer;
mod mem;
mod proc;
mod rate;
mod redis;
mod report;
mod scrape;
mod stream;
mod temp;

use std::path::PathBuf;
use std::sync::{Mutex, Once, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::Result;

/// The hidden subcommand the harness re-executes itself with, to get a second process
/// it can SIGKILL.
pub const CHILD_COMMAND: &str = "stress-child";

/// The scenario groups, in the order they run (`--only <group>`): one per crate, then
/// the indexer (last: its reaper makes this process a child subreaper for good, as
/// `proc`'s does).
const GROUPS: &[&str] = &[
    "temp", "stream", "mem", "rate", "cache", "redis", "proc", "indexer",
];

pub const USAGE: &str = "\
  stress [--quick] [--only GROUP|SCENARIO] [--ops N] [--concurrency N] [--out DIR]
                     run the scenarios and print the report (non-zero exit on a leak);
                     groups: temp stream mem rate cache redis proc indexer;
                     indexer scenarios: s1 s2 s3 inputs s5 s4 s4b;
                     --ops: S1/S2 operations (1000; quick 150), --concurrency: S3 (100);
                     --out: where report.json, chart.svg and the indexes go
                     (target/stress); --inject-leak: S1 leaks on purpose (self-test);
                     --inject-slow-leak: each S1 operation keeps 256 KiB (the leak
                     alarm's self-test); --inject-hang: S1's first operation never
                     ends (the watchdog's self-test); --phase-limit SECS: the
                     watchdog's limit per phase (300; full profile 1200)";

/// How much work each scenario does.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// `--quick`: the CI profile, a fraction of the full counts.
    pub quick: bool,
}

impl Profile {
    /// `full` normally, `quick` under `--quick`.
    pub fn pick(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }
}

/// One scenario's outcome: what it did, its key figures, and its checks (the
/// library's case, which also gives the JUnit XML report).
pub use leakproof_stress::Case as Scenario;

/// Prints a scenario's notes and checks.
fn print(s: &Scenario) {
    println!("== {}", s.name);
    for note in &s.notes {
        println!("   {note}");
    }
    for c in &s.checks {
        println!(
            "   {}  {:<50} {}",
            if c.ok { "PASS" } else { "FAIL" },
            c.what,
            c.observed
        );
    }
    println!();
}

pub fn main(args: &[String]) -> Result<bool> {
    let mut profile = Profile { quick: false };
    let mut only: Option<String> = None;
    let mut options = indexer::Options {
        out: crate::workspace_root().join("target").join("stress"),
        ..indexer::Options::default()
    };
    let mut phase_limit = None;
    let mut args = args.iter();
    let number = |flag: &str, value: Option<&String>| -> Result<usize> {
        value
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("stress: {flag} takes a positive number, got {value:?}").into())
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("usage: cargo xtask stress [options]\n\n{USAGE}");
                return Ok(true);
            }
            "--quick" => profile.quick = true,
            "--only" => match args.next() {
                Some(name)
                    if GROUPS.contains(&name.as_str())
                        || indexer::SCENARIOS.contains(&name.as_str()) =>
                {
                    only = Some(name.clone())
                }
                other => {
                    return Err(format!(
                        "stress: --only takes one of {GROUPS:?} or {:?}, got {other:?}",
                        indexer::SCENARIOS
                    )
                    .into());
                }
            },
            "--ops" => options.ops = Some(number("--ops", args.next())?),
            "--concurrency" => options.concurrency = Some(number("--concurrency", args.next())?),
            "--out" => match args.next() {
                Some(dir) => options.out = PathBuf::from(dir),
                None => return Err("stress: --out takes a directory".into()),
            },
            "--inject-leak" => options.inject_leak = true,
            "--inject-hang" => options.inject_hang = true,
            "--inject-slow-leak" => options.inject_slow_leak = true,
            "--phase-limit" => {
                phase_limit = Some(Duration::from_secs(
                    number("--phase-limit", args.next())? as u64
                ))
            }
            other => return Err(format!("stress: unknown argument {other:?}").into()),
        }
    }
    if let Some(name) = &only
        && indexer::SCENARIOS.contains(&name.as_str())
    {
        options.only = Some(name.clone());
        only = Some("indexer".into());
    }
    let wanted = |group: &str| only.as_deref().is_none_or(|o| o == group);
    let started = Instant::now();
    let profile_name = if profile.quick { "quick" } else { "full" };
    println!("leakproof stress ({profile_name} profile)\n");
    // A scenario that hangs (a deadlock, a leak that keeps every settle waiting) must
    // not hang the CI job: past this, the watchdog stops the run and fails it.
    let phase_limit =
        phase_limit.unwrap_or(Duration::from_secs(if profile.quick { 300 } else { 1200 }));
    let recorder = report::Recorder::start(phase_limit);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut scenarios = Vec::new();
    if wanted("temp") {
        recorder.mark("temp");
        scenarios.extend(runtime.block_on(temp::scenarios(profile))?);
    }
    if wanted("stream") {
        recorder.mark("stream");
        scenarios.extend(runtime.block_on(stream::scenarios(profile))?);
    }
    if wanted("mem") {
        recorder.mark("mem");
        scenarios.extend(runtime.block_on(mem::scenarios(profile))?);
    }
    drop(runtime);
    if wanted("rate") {
        // Its own runtime: one thread on a paused clock, to simulate hours of quota.
        recorder.mark("rate");
        scenarios.extend(rate::scenarios(profile)?);
    }
    if wanted("cache") {
        // Also on a paused clock: TTLs of minutes, simulated.
        recorder.mark("cache");
        scenarios.extend(cache::scenarios(profile)?);
    }
    if wanted("redis") {
        // Worker processes sharing one quota through a loopback redis-server.
        recorder.mark("redis");
        scenarios.extend(redis::scenarios(profile)?);
    }
    if wanted("proc") {
        // A reaper makes this process a child subreaper for good.
        recorder.mark("proc");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        scenarios.extend(runtime.block_on(proc::scenarios(profile))?);
    }
    if wanted("indexer") {
        scenarios.extend(indexer::scenarios(profile, &options, &recorder)?);
    }

    // The run directories this process set up (the scopes removed their entries).
    let removed = scoped_temp::remove_all();
    if !removed.is_clean() {
        println!(
            "could not remove this run's temp directories: {:?}",
            removed.errors
        );
    }
    println!();
    for s in &scenarios {
        print(s);
    }
    let files = report::finish(recorder, &scenarios, profile_name, &options.out)?;
    let checks: usize = scenarios.iter().map(|s| s.checks.len()).sum();
    let failed: Vec<String> = scenarios
        .iter()
        .flat_map(|s| {
            s.checks
                .iter()
                .filter(|c| !c.ok)
                .map(move |c| format!("{}: {}: {}", s.name, c.what, c.observed))
        })
        .collect();
    println!("report: {}", files.json.display());
    println!("chart:  {}", files.svg.display());
    println!("junit:  {}", files.junit.display());
    for failure in &failed {
        println!("FAILED  {failure}");
    }
    println!(
        "result: {} passed, {} failed ({} scenarios, {:.1} s)",
        checks - failed.len(),
        failed.len(),
        scenarios.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(failed.is_empty())
}

/// SIGKILL through a pidfd (no reused PID is ever hit).
pub fn sigkill(pid: u32) {
    use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
    if let Some(pid) = Pid::from_raw(pid as i32)
        && let Ok(fd) = pidfd_open(pid, PidfdFlags::empty())
    {
        let _ = pidfd_send_signal(&fd, Signal::KILL);
    }
}

/// Whether the workload may still start processes: read-held around each spawn of the
/// indexer's, write-taken by the watchdog, which then knows no child starts after its
/// last look.
static SPAWNS: RwLock<bool> = RwLock::new(true);

/// A guard to hold while spawning, or `None` once the watchdog is ending the run.
pub fn may_spawn() -> Option<RwLockReadGuard<'static, bool>> {
    let guard = SPAWNS.read().unwrap_or_else(PoisonError::into_inner);
    (*guard).then_some(guard)
}

/// From now on, [`may_spawn`] says no; returns once no spawn is in progress.
pub fn stop_spawns() {
    *SPAWNS.write().unwrap_or_else(PoisonError::into_inner) = false;
}

/// A reproducible spread for picking faults and delays, in `0..n`.
pub fn spread(i: u64, n: u64) -> u64 {
    leakproof_stress::spread(0, i) % n.max(1)
}

/// Silences panics whose message is `message` (injected on purpose) so the report stays
/// readable; every other panic still prints.
pub fn quiet_panics(message: &'static str) {
    static QUIET: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    static HOOK: Once = Once::new();
    QUIET
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(message);
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            let quiet = text.is_some_and(|t| {
                QUIET
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains(&t)
            });
            if !quiet {
                default(info);
            }
        }));
    });
}

/// Entry point of the re-executed child: `harness stress-child <scenario> <args...>`.
pub fn child_main(args: &[String]) -> Result<bool> {
    match args.first().map(String::as_str) {
        Some("temp") => temp::child(&args[1..]),
        Some("redis") => redis::child(&args[1..]),
        Some("indexer") => indexer::child(&args[1..]),
        Some("s5") => indexer::s5_child(&args[1..]),
        other => Err(format!("stress-child: unknown scenario {other:?}").into()),
    }
}

/// Resident size and peak resident size now, in KiB (from `mem-watch`).
pub fn rss_kib() -> (u64, u64) {
    match mem_watch::Probe::new() {
        Ok(mut probe) => {
            let snapshot = probe.snapshot();
            (
                snapshot.sample.rss / 1024,
                snapshot.peak_rss.unwrap_or(0) / 1024,
            )
        }
        Err(_) => (0, 0),
    }
}

/// Resets the peak resident size (`VmHWM`) to the current one, where the kernel allows
/// it (Linux 4.0+).
pub fn reset_peak_rss() -> bool {
    mem_watch::Probe::new().is_ok_and(|probe| probe.reset_peak())
}

/// Open file descriptors of this process (from `mem-watch`, its own probe's left out).
pub fn open_fds() -> usize {
    // Not while the sampler has its own files open.
    let _quiet = report::pause_sampler();
    count_fds()
}

/// [`open_fds`] for the sampler, which holds the pause itself.
fn count_fds() -> usize {
    mem_watch::Probe::new()
        .ok()
        .and_then(|mut p| p.sample().fds)
        .unwrap_or(0) as usize
}
