//! `cargo xtask stress`: each crate's scenarios, run end to end, with a report.
//!
//! A scenario is a function returning a [`Scenario`]: what it did, and checks that
//! compare what it observed with what must hold ("entries left: 0"). The run fails if
//! any check fails. Later crates add their scenarios as modules here.

mod cache;
mod mem;
mod proc;
mod rate;
mod redis;
mod stream;
mod temp;

use std::time::Instant;

use crate::Result;

/// The hidden subcommand the harness re-executes itself with, to get a second process
/// it can SIGKILL.
pub const CHILD_COMMAND: &str = "stress-child";

/// The scenario groups, one per crate, in the order they run (`--only <group>`).
const GROUPS: &[&str] = &["temp", "stream", "mem", "rate", "cache", "redis", "proc"];

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

/// One scenario's outcome.
#[derive(Debug)]
pub struct Scenario {
    title: String,
    notes: Vec<String>,
    checks: Vec<(String, bool, String)>,
}

impl Scenario {
    pub fn new(title: impl Into<String>) -> Self {
        Scenario {
            title: title.into(),
            notes: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// A line of context for the report.
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// A requirement: `what` must hold; `observed` says what was seen.
    pub fn check(&mut self, what: &str, ok: bool, observed: impl Into<String>) {
        self.checks.push((what.to_string(), ok, observed.into()));
    }

    fn passed(&self) -> bool {
        self.checks.iter().all(|(_, ok, _)| *ok)
    }

    fn print(&self) {
        println!("== {}", self.title);
        for note in &self.notes {
            println!("   {note}");
        }
        for (what, ok, observed) in &self.checks {
            println!(
                "   {}  {what:<50} {observed}",
                if *ok { "PASS" } else { "FAIL" }
            );
        }
        println!();
    }
}

pub fn main(args: &[String]) -> Result<bool> {
    let mut profile = Profile { quick: false };
    let mut only: Option<String> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => profile.quick = true,
            "--only" => match args.next() {
                Some(group) if GROUPS.contains(&group.as_str()) => only = Some(group.clone()),
                other => {
                    return Err(
                        format!("stress: --only takes one of {GROUPS:?}, got {other:?}").into(),
                    );
                }
            },
            other => return Err(format!("stress: unknown argument {other:?}").into()),
        }
    }
    let wanted = |group: &str| only.as_deref().is_none_or(|o| o == group);
    let started = Instant::now();
    println!(
        "leakproof stress ({} profile)\n",
        if profile.quick { "quick" } else { "full" }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut scenarios = Vec::new();
    if wanted("temp") {
        scenarios.extend(runtime.block_on(temp::scenarios(profile))?);
    }
    if wanted("stream") {
        scenarios.extend(runtime.block_on(stream::scenarios(profile))?);
    }
    if wanted("mem") {
        scenarios.extend(runtime.block_on(mem::scenarios(profile))?);
    }
    drop(runtime);
    if wanted("rate") {
        // Its own runtime: one thread on a paused clock, to simulate hours of quota.
        scenarios.extend(rate::scenarios(profile)?);
    }
    if wanted("cache") {
        // Also on a paused clock: TTLs of minutes, simulated.
        scenarios.extend(cache::scenarios(profile)?);
    }
    if wanted("redis") {
        // Worker processes sharing one quota through a loopback redis-server.
        scenarios.extend(redis::scenarios(profile)?);
    }
    if wanted("proc") {
        // Last: a reaper makes this process a child subreaper for good.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        scenarios.extend(runtime.block_on(proc::scenarios(profile))?);
    }

    let checks: usize = scenarios.iter().map(|s| s.checks.len()).sum();
    let failed: Vec<&Scenario> = scenarios.iter().filter(|s| !s.passed()).collect();
    for s in &scenarios {
        s.print();
    }
    let failed_checks: usize = scenarios
        .iter()
        .flat_map(|s| &s.checks)
        .filter(|(_, ok, _)| !ok)
        .count();
    println!(
        "result: {} passed, {} failed ({} scenarios, {:.1} s)",
        checks - failed_checks,
        failed_checks,
        scenarios.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(failed.is_empty())
}

/// Entry point of the re-executed child: `xtask stress-child <scenario> <args...>`.
pub fn child_main(args: &[String]) -> Result<bool> {
    match args.first().map(String::as_str) {
        Some("temp") => temp::child(&args[1..]),
        Some("redis") => redis::child(&args[1..]),
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
    mem_watch::Probe::new()
        .ok()
        .and_then(|mut p| p.sample().fds)
        .unwrap_or(0) as usize
}
