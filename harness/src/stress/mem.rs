//! `mem-watch` scenarios: the users' large operation (about 1 GiB touched across jobs,
//! then freed: resident memory back near its baseline) and a leak check over many rounds
//! of a clean operation.

use std::time::{Duration, Instant};

use mem_watch::{JobReport, LeakCheck, Probe, Threshold, WatchConfig, Watcher};

use super::{Profile, Scenario};
use crate::Result;

const MIB: u64 = 1 << 20;

pub async fn scenarios(profile: Profile) -> Result<Vec<Scenario>> {
    Ok(vec![
        large_operation(profile).await?,
        leak_check(profile).await?,
    ])
}

async fn large_operation(profile: Profile) -> Result<Scenario> {
    let jobs = profile.pick(16, 4);
    let per_job = 64 * MIB;
    let mut probe = Probe::new()?;
    // A warm-up round of the same jobs at 1 MiB each, before the baseline: the first
    // round sets up what stays for the process's life (the watcher's and the blocking
    // pool's threads, a malloc arena per thread), about 1.3 MiB. In a full run earlier
    // groups have paid for it; with `--only mem` it was 15% of a 7 MiB baseline.
    let warmup = Watcher::start(WatchConfig::new(Duration::from_millis(5)))?;
    run_jobs(&warmup, jobs, MIB).await?;
    warmup.stop().await;
    let baseline = probe.sample();
    let watcher = Watcher::start(
        WatchConfig::new(Duration::from_millis(5))
            .warning(Threshold::Bytes(baseline.rss + jobs as u64 * per_job / 2)),
    )?;
    let levels = watcher.levels();
    let started = Instant::now();
    let reports = run_jobs(&watcher, jobs, per_job).await?;
    let elapsed = started.elapsed();
    let warned = *levels.borrow() != mem_watch::Level::Normal
        || watcher
            .history()
            .iter()
            .any(|s| s.rss >= baseline.rss + per_job);
    let watched_peak = watcher.history().iter().map(|s| s.rss).max().unwrap_or(0);
    watcher.stop().await;
    let after = probe.sample();
    let delta = after.rss as f64 / baseline.rss.max(1) as f64 - 1.0;
    let job_peak = reports.iter().map(|r| r.rss.peak).max().unwrap_or(0);

    let mut s = Scenario::new(format!(
        "mem-watch: {} MiB touched across {jobs} jobs, then freed",
        jobs as u64 * per_job / MIB
    ));
    s.note(format!(
        "RSS baseline {:.1} MiB (after a warm-up round at 1 MiB a job), peak seen by the watcher {:.1} MiB, highest job peak {:.1} MiB, after {:.1} MiB; {:.2} s",
        baseline.rss as f64 / MIB as f64,
        watched_peak as f64 / MIB as f64,
        job_peak as f64 / MIB as f64,
        after.rss as f64 / MIB as f64,
        elapsed.as_secs_f64()
    ));
    s.check(
        "every job reported start/peak/end",
        reports.len() == jobs && reports.iter().all(|r| r.rss.peak >= r.rss.start),
        format!("{} reports", reports.len()),
    );
    s.check(
        "the watcher saw the load",
        warned,
        format!("peak {:.0} MiB", watched_peak as f64 / MIB as f64),
    );
    s.check(
        "RSS back within 10% of the baseline",
        delta <= 0.10,
        format!("{:+.1}%", delta * 100.0),
    );
    Ok(s)
}

/// Runs `jobs` blocking jobs under `watcher`, each allocating and touching `bytes`,
/// holding them briefly so the watcher sees them, then freeing them.
async fn run_jobs(watcher: &Watcher, jobs: usize, bytes: u64) -> Result<Vec<JobReport>> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..jobs {
        let job = watcher.job(format!("index-chunk-{i}"))?;
        tasks.spawn_blocking(move || {
            let buf = vec![i as u8 + 1; bytes as usize];
            std::thread::sleep(Duration::from_millis(30));
            drop(std::hint::black_box(buf));
            job.finish()
        });
    }
    let mut reports = Vec::new();
    while let Some(report) = tasks.join_next().await {
        reports.push(report?);
    }
    Ok(reports)
}

async fn leak_check(profile: Profile) -> Result<Scenario> {
    let rounds = profile.pick(1000, 200);
    let root = tempfile::tempdir()?;
    let path = root.path().to_path_buf();
    let started = Instant::now();
    // A clean operation: a 1 MiB buffer, a temp dir with a file, a file opened and
    // closed; everything released each round.
    let report = tokio::task::block_in_place(|| {
        LeakCheck::new(rounds).warmup(20).run(|| {
            let buf = vec![7u8; MIB as usize];
            if let Ok(dir) = scoped_temp::TempDir::new_in(&path) {
                let _ = std::fs::write(dir.path().join("data"), &buf[..4096]);
            }
            drop(std::fs::File::open("/proc/self/statm"));
            drop(std::hint::black_box(buf));
        })
    })?;
    let _ = scoped_temp::remove_all();
    let mut s = Scenario::new(format!(
        "mem-watch: leak check over {rounds} rounds of a clean operation"
    ));
    s.note(format!(
        "RSS slope {:.1} B/round ({:.1} -> {:.1} MiB), fd slope {:.3}/round ({} -> {}); {:.2} s",
        report.rss_slope,
        report.rss.0 as f64 / MIB as f64,
        report.rss.1 as f64 / MIB as f64,
        report.fd_slope,
        report.fds.0,
        report.fds.1,
        started.elapsed().as_secs_f64()
    ));
    s.check(
        "verdict: clean (memory)",
        !report.leaks_memory,
        format!("{:.1} B/round", report.rss_slope),
    );
    s.check(
        "verdict: clean (descriptors)",
        !report.leaks_fds,
        format!("{:.3}/round", report.fd_slope),
    );
    Ok(s)
}
