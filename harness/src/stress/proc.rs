//! `proc-reaper` scenarios: many short spawns, and trees with escapees killed on
//! timeout. Survivors are counted from outside: any process on the machine still
//! carrying one of this run's tree markers.
//!
//! Creating a reaper makes this process a child subreaper for the rest of its life, so
//! these scenarios run last.

use std::process::Command;
use std::time::{Duration, Instant};

use proc_reaper::{MARKER_VAR, Reaper, Stream};
use tokio::sync::mpsc;

use super::{Profile, Scenario, open_fds};
use crate::Result;

pub async fn scenarios(profile: Profile) -> Result<Vec<Scenario>> {
    let reaper = Reaper::new()?;
    Ok(vec![
        short_spawns(&reaper, profile).await?,
        trees_on_timeout(&reaper, profile).await?,
    ])
}

/// Live processes anywhere that carry a marker of a tree this process spawned.
fn survivors() -> Vec<u32> {
    let prefix = format!("{MARKER_VAR}={}-", std::process::id());
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|e| e.starts_with(prefix.as_bytes()))
        {
            out.push(pid);
        }
    }
    out
}

/// Zombie children of this process.
fn zombies() -> usize {
    let mut n = 0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for task in tasks.flatten() {
        let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in kids.split_ascii_whitespace() {
            let stat = pid.parse().ok().and_then(super::report::stat_fields);
            if stat.is_some_and(|s| s.trim_start().starts_with('Z')) {
                n += 1;
            }
        }
    }
    n
}

async fn short_spawns(reaper: &Reaper, profile: Profile) -> Result<Scenario> {
    let total = profile.pick(10_000, 1_000);
    let concurrent = 100;
    let fds_before = open_fds();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut failed = 0usize;
    let mut peak_live = 0usize;
    for _ in 0..total {
        let child = reaper.spawn(Command::new("true"))?;
        tasks.spawn(async move { child.wait().await.map(|o| o.success()) });
        peak_live = peak_live.max(reaper.live_count());
        if tasks.len() >= concurrent
            && let Some(done) = tasks.join_next().await
        {
            failed += usize::from(!matches!(done, Ok(Ok(true))));
        }
    }
    while let Some(done) = tasks.join_next().await {
        failed += usize::from(!matches!(done, Ok(Ok(true))));
    }
    reaper.settle().await;
    let elapsed = started.elapsed();
    let fds_after = open_fds();
    let zombies = zombies();

    let mut s = Scenario::new(format!(
        "proc-reaper: {total} short spawns (`true`), {concurrent} at a time"
    ));
    s.note(format!(
        "{:.0} spawns/s; peak live {peak_live}",
        total as f64 / elapsed.as_secs_f64()
    ));
    s.check(
        "every run succeeded",
        failed == 0,
        format!("{failed} failed"),
    );
    s.check("zombies: 0", zombies == 0, zombies.to_string());
    s.check(
        "live children: 0",
        reaper.live_count() == 0,
        reaper.live_count().to_string(),
    );
    s.check(
        "open fds back to baseline",
        fds_after <= fds_before,
        format!("{fds_before} -> {fds_after}"),
    );
    Ok(s)
}

/// A tree of 10: the shell, 5 sleeps, a `setsid` escapee that ignores SIGTERM, and a
/// double-forked shell with 2 sleeps (re-parented here when its parent exits).
const TREE: &str = r#"for i in 1 2 3 4 5; do sleep 60 & done
(setsid sh -c 'trap "" TERM; exec sleep 60' &)
(sh -c 'sleep 60 & sleep 60 & wait' &)
echo ready; wait"#;

async fn trees_on_timeout(reaper: &Reaper, profile: Profile) -> Result<Scenario> {
    let trees = profile.pick(100, 20);
    let in_flight = 5;
    let grace = Duration::from_millis(20);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut reports = Vec::new();
    let mut failed = 0;
    let mut record = |done: Option<
        std::result::Result<proc_reaper::Result<proc_reaper::Outcome>, _>,
    >| {
        match done {
            Some(Ok(Ok(outcome))) if outcome.timed_out => reports.push(outcome.tree),
            Some(_) => failed += 1,
            None => {}
        }
    };
    for _ in 0..trees {
        if tasks.len() >= in_flight {
            record(tasks.join_next().await);
        }
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", TREE]);
        let child = reaper
            .command(cmd)
            .name("tree")
            .grace(grace)
            .on_line(64, move |stream, line| {
                if stream == Stream::Stdout && line == b"ready" {
                    let _ = ready_tx.send(());
                }
            })
            .spawn()?;
        tasks.spawn(async move {
            // Once the tree is up, its time runs out.
            let _ = ready.recv().await;
            child.wait_timeout(Duration::ZERO).await
        });
    }
    while !tasks.is_empty() {
        record(tasks.join_next().await);
    }
    reaper.settle().await;
    let elapsed = started.elapsed();
    let survivors = survivors();
    let zombies = zombies();
    let mut took: Vec<Duration> = reports.iter().map(|r| r.took).collect();
    took.sort();
    let members: usize = reports.iter().map(|r| r.members).sum();
    let escapees: usize = reports.iter().map(|r| r.escapees).sum();
    let killed: usize = reports.iter().map(|r| r.killed).sum();
    let slowest = took.last().copied().unwrap_or_default();
    let median = took.get(took.len() / 2).copied().unwrap_or_default();

    let mut s = Scenario::new(format!(
        "proc-reaper: {trees} trees of 10 (with a setsid escapee ignoring SIGTERM) ended on timeout, {in_flight} at a time"
    ));
    s.note(format!(
        "{members} processes found ({escapees} as escapees), {killed} needed SIGKILL after a {} ms grace; {:.1} s in all",
        grace.as_millis(),
        elapsed.as_secs_f64()
    ));
    s.note(format!(
        "kill to last process gone, per tree: median {:.1} ms, slowest {:.1} ms (grace included)",
        median.as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3
    ));
    s.check(
        "every tree timed out and was ended",
        failed == 0,
        format!("{failed} failed"),
    );
    s.check(
        "survivors: 0",
        survivors.is_empty(),
        format!("{survivors:?}"),
    );
    s.check("zombies: 0", zombies == 0, zombies.to_string());
    // Leaks are judged exactly; latency robustly. One tree slowed by a busy machine (a
    // parallel build, page-cache misses) must not fail the main job, so the check is on
    // the median, and the slowest stays a figure in the report. Hard latency targets live
    // in the benchmarks (`kill_tree_100`).
    s.check(
        "kill to last gone: median < 100 ms per tree",
        median < Duration::from_millis(100),
        format!(
            "median {:.1} ms (slowest {:.1} ms, not judged)",
            median.as_secs_f64() * 1e3,
            slowest.as_secs_f64() * 1e3
        ),
    );
    Ok(s)
}
