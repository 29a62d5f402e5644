//! `proc-reaper` against plain `tokio::process::Command`, in the same run:
//!
//! - `spawn_wait_true`: spawn `/bin/true` and wait, output captured (ours by default,
//!   tokio's `output()`). Target: at most 1.10x tokio's time. On the cgroup path the
//!   child joins its cgroup between `fork` and `exec`, so std forks instead of using
//!   `posix_spawn`.
//! - `spawn_wait_true_after_spawn`: the same with `Join::AfterSpawn` (`posix_spawn`,
//!   the cgroup joined after `spawn` returns).
//! - `spawn_wait_true_no_cgroup`: the same, on `Reaper::subreaper_only()`.
//! - `spawn_wait_true_inherit`: the same with output inherited (ours `no_capture`,
//!   tokio's `status()`).
//! - `kill_tree_100`: end a shell with 100 `sleep` children; ours ends the tree through
//!   pidfds (SIGKILL, no grace), the peer kills the process group with one `killpg` (what
//!   `process-wrap` does; it would miss a `setsid` escapee). Only the kill and the
//!   reaping are timed, not building the tree.
//!
//! Where the time goes in `spawn_wait_true`: without the cgroup (`_no_cgroup`) ours
//! takes about 1.10x tokio's time; the rest is the child joining its cgroup between `fork`
//! and `exec`, which also costs `posix_spawn`'s fast path. Placing the child in the
//! cgroup at creation (`clone3` with `CLONE_INTO_CGROUP`) would need `unsafe`, which
//! the workspace denies.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use proc_reaper::{Join, Reaper, Stream};
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, kill_process_group, waitid};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `/bin/true` through `reaper`, output captured, against tokio's `output()`.
fn spawn_wait_captured(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    group: &str,
    reaper: &Reaper,
    join: Join,
) {
    let mut g = c.benchmark_group(group);
    g.bench_function("ours", |b| {
        b.iter(|| {
            rt.block_on(async {
                let child = reaper
                    .command(Command::new("/bin/true"))
                    .join(join)
                    .spawn()
                    .unwrap();
                assert!(child.wait().await.unwrap().success());
            })
        })
    });
    g.bench_function("tokio", |b| {
        b.iter(|| {
            rt.block_on(async {
                let out = tokio::process::Command::new("/bin/true")
                    .output()
                    .await
                    .unwrap();
                assert!(out.status.success());
            })
        })
    });
    g.finish();
}

fn spawn_wait(c: &mut Criterion) {
    let rt = runtime();
    let reaper = rt.block_on(async { Reaper::new().unwrap() });
    spawn_wait_captured(
        c,
        &rt,
        "proc-reaper/spawn_wait_true",
        &reaper,
        Join::BeforeExec,
    );
    spawn_wait_captured(
        c,
        &rt,
        "proc-reaper/spawn_wait_true_after_spawn",
        &reaper,
        Join::AfterSpawn,
    );
    // Without the cgroup fast path (moving a process into a cgroup is a slow write).
    let plain = rt.block_on(async { Reaper::subreaper_only().unwrap() });
    spawn_wait_captured(
        c,
        &rt,
        "proc-reaper/spawn_wait_true_no_cgroup",
        &plain,
        Join::BeforeExec,
    );

    let mut g = c.benchmark_group("proc-reaper/spawn_wait_true_inherit");
    g.bench_function("ours", |b| {
        b.iter(|| {
            rt.block_on(async {
                let child = reaper
                    .command(Command::new("/bin/true"))
                    .no_capture()
                    .spawn()
                    .unwrap();
                assert!(child.wait().await.unwrap().success());
            })
        })
    });
    g.bench_function("tokio", |b| {
        b.iter(|| {
            rt.block_on(async {
                let status = tokio::process::Command::new("/bin/true")
                    .stdout(Stdio::null())
                    .status()
                    .await
                    .unwrap();
                assert!(status.success());
            })
        })
    });
    g.finish();
}

const TREE: &str = "for i in $(seq 100); do sleep 60 & done; echo ready; wait";

fn kill_tree(c: &mut Criterion) {
    let rt = runtime();
    let reaper = rt.block_on(async { Reaper::new().unwrap() });
    let mut g = c.benchmark_group("proc-reaper/kill_tree_100");
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let (tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
                    let mut cmd = Command::new("sh");
                    cmd.args(["-c", TREE]);
                    let child = reaper
                        .command(cmd)
                        .grace(Duration::ZERO)
                        .on_line(16, move |s, l| {
                            if s == Stream::Stdout && l == b"ready" {
                                let _ = tx.send(());
                            }
                        })
                        .spawn()
                        .unwrap();
                    ready.recv().await.unwrap();
                    let start = Instant::now();
                    let outcome = child.kill().await.unwrap();
                    timed += start.elapsed();
                    assert!(outcome.tree.members >= 101, "{:?}", outcome.tree);
                }
                timed
            })
        })
    });
    g.bench_function("killpg", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let mut child = tokio::process::Command::new("sh")
                        .args(["-c", TREE])
                        .process_group(0)
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap();
                    let mut out = child.stdout.take().unwrap();
                    let mut buf = [0u8; 6];
                    tokio::io::AsyncReadExt::read_exact(&mut out, &mut buf)
                        .await
                        .unwrap();
                    let group = Pid::from_raw(child.id().unwrap() as i32).unwrap();
                    let start = Instant::now();
                    kill_process_group(group, Signal::KILL).unwrap();
                    child.wait().await.unwrap();
                    // The sleeps were re-parented to this process (a subreaper): reap the
                    // group, as a caller must.
                    while let Ok(Some(_)) = waitid(WaitId::Pgid(Some(group)), WaitIdOptions::EXITED)
                    {
                    }
                    timed += start.elapsed();
                }
                timed
            })
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = spawn_wait, kill_tree }
criterion_main!(benches);
