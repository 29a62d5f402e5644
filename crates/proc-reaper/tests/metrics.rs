//! The `metrics` feature, read from a recorder: children spawned, live, and ended by
//! how. One test: the counters are process-wide.

#![cfg(all(target_os = "linux", feature = "metrics"))]

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
    let count = |name, labels: &[(&str, &str)]| value(name, labels).unwrap_or(0.0);
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
}
