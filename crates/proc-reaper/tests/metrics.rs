//! The `metrics` feature, read from a recorder: children spawned, live, and ended by
//! how. One test: the counters are process-wide.

#![cfg(all(target_os = "linux", feature = "metrics"))]

use std::future::Future;
use std::process::Command;
use std::time::Duration;

use leakproof_test_support::metrics::{recorder, value};
use proc_reaper::{Reaper, metrics};

fn sh(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    command
}

#[tokio::test]
async fn children_are_counted_from_spawn_to_end() {
    recorder();
    let count = |name: &str, labels: &[(&str, &str)]| value(name, labels).unwrap_or(0.0);
    let spawned = count(metrics::SPAWNED, &[]);
    let ended = |how| count(metrics::ENDED, &[("how", how)]);
    let (exited, timed_out, dropped) = (ended("exited"), ended("timed_out"), ended("dropped"));
    let reaper = Reaper::subreaper_only().unwrap();

    let quick = reaper.spawn(sh("exit 0")).unwrap();
    let slow = reaper.spawn(sh("sleep 60")).unwrap();
    let dropped_child = reaper.spawn(sh("sleep 60")).unwrap();
    metrics::publish();
    assert_eq!(count(metrics::SPAWNED, &[]) - spawned, 3.0);
    assert_eq!(count(metrics::CHILDREN_LIVE, &[]), 3.0);

    assert!(quick.wait().await.unwrap().success());
    let outcome = slow.wait_timeout(Duration::from_millis(50)).await.unwrap();
    assert!(outcome.timed_out);
    drop(dropped_child);
    reaper.settle().await;
    metrics::publish();
    assert_eq!(ended("exited") - exited, 1.0);
    assert_eq!(ended("timed_out") - timed_out, 1.0);
    assert_eq!(ended("dropped") - dropped, 1.0);
    assert_eq!(count(metrics::CHILDREN_LIVE, &[]), 0.0);
    assert!(count(&format!("{}_count", metrics::CHILD_SECONDS), &[]) >= 2.0);

    // A kill dropped while the tree is being ended (its leader ignores SIGTERM, so the
    // end waits out the grace on the blocking pool): the end runs on alone and the
    // child is forgotten, in `live` and in the gauge.
    let ignoring = reaper
        .command(sh("trap '' TERM; exec sleep 60"))
        .grace(Duration::from_millis(200))
        .spawn()
        .unwrap();
    let pid = ignoring.pid();
    // The trap is set before `sleep` is exec'ed (an ignored signal stays ignored
    // across exec): wait until it is `sleep`.
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() != "sleep") {
        tokio::task::yield_now().await;
    }
    let mut kill = Box::pin(ignoring.kill());
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(kill.as_mut().poll(cx))).await;
    assert!(
        first.is_pending(),
        "the end must still be running after one poll"
    );
    drop(kill);
    reaper.settle().await;
    metrics::publish();
    assert_eq!(reaper.live_count(), 0);
    assert_eq!(count(metrics::CHILDREN_LIVE, &[]), 0.0);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "{pid} reaped"
    );
}
