//! The in-process engine's self-tests: a clean scenario with faults passes; a leaking
//! operation, a leaking child, a hang, a gauge off its value and an unexpected error
//! each fail it with the right message. One test at a time, each on a runtime of its
//! own that is gone before the next starts: every test counts this process's
//! descriptors and children.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::future::Future;
use std::sync::{Mutex, PoisonError};

use leakproof_stress::{Case, Fault, Op, Operations};

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `test` alone, on a runtime (multi-threaded or with a paused clock) dropped
/// before the next test may start.
fn alone<F: Future>(runtime: tokio::runtime::Builder, test: F) -> F::Output {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let mut runtime = runtime;
    let runtime = runtime.enable_all().build().unwrap();
    let out = runtime.block_on(test);
    drop(runtime);
    out
}

fn current() -> tokio::runtime::Builder {
    tokio::runtime::Builder::new_current_thread()
}

fn failed(case: &Case) -> Vec<String> {
    case.checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.what, c.observed))
        .collect()
}

/// An operation that borrows a temp dir and a child, and gives both back however it
/// ends: by returning, failing, panicking or being cancelled.
async fn tidy(root: std::path::PathBuf, op: Op) -> Result<(), String> {
    let dir = tempfile::tempdir_in(&root).map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("data"), [1u8; 4096]).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new("sleep")
        .arg("0.01")
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    tokio::task::yield_now().await;
    match op.fault {
        Some(Fault::Error) => return Err("injected error".into()),
        Some(Fault::Panic) => panic!("injected panic in operation {}", op.index),
        _ => {}
    }
    child.wait().await.map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn a_clean_scenario_with_faults_passes() {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.worker_threads(2);
    alone(runtime, a_clean_scenario_with_faults_passes_on_2_threads());
}

async fn a_clean_scenario_with_faults_passes_on_2_threads() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    let case = Operations::new("tidy", 60)
        .concurrency(8)
        .faults(30)
        .temp_root(&path)
        .run(|op| tidy(path.clone(), op))
        .await;
    assert!(case.passed(), "{:?}", failed(&case));
    let faulted: usize = case
        .figures
        .iter()
        .find(|(k, _)| k == "faulted")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    assert!(faulted > 5, "faults were injected: {:?}", case.figures);
}

#[test]
fn a_leaking_operation_fails_the_scenario_and_its_leak_is_removed() {
    alone(current(), async {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().to_path_buf();
        let case = Operations::new("leaky", 5)
            .temp_root(&path)
            .settle(Duration::from_millis(100))
            .run(|op| {
                let path = path.clone();
                async move {
                    let dir = tempfile::tempdir_in(&path).map_err(|e| e.to_string())?;
                    if !op.warmup && op.index == 2 {
                        let _ = dir.keep();
                    }
                    Ok::<(), String>(())
                }
            })
            .await;
        assert_eq!(
            failed(&case),
            ["temp entries back to baseline: 1 over baseline (0 -> 1)"]
        );
        assert_eq!(
            std::fs::read_dir(&path).unwrap().count(),
            0,
            "the leak was removed"
        );
    });
}

#[test]
fn a_leaking_child_fails_the_scenario_and_is_ended() {
    alone(current(), async {
        let root = tempfile::tempdir().unwrap();
        let case = Operations::new("leaky child", 3)
            .temp_root(root.path())
            .settle(Duration::from_millis(100))
            .run(|op| async move {
                if !op.warmup && op.index == 1 {
                    // Never waited for, never killed.
                    let child = std::process::Command::new("sleep").arg("30").spawn();
                    std::mem::forget(child.map_err(|e| e.to_string())?);
                }
                Ok::<(), String>(())
            })
            .await;
        assert_eq!(
            failed(&case),
            ["child processes back to baseline: 1 over baseline (0 -> 1)"]
        );
        let after = leakproof_stress::Counts::read(root.path());
        assert!(
            after.children.is_empty(),
            "ended and reaped: {:?}",
            after.children
        );
    });
}

#[test]
fn a_hang_is_stopped_by_the_watchdog_and_named() {
    let mut paused = current();
    paused.start_paused(true);
    alone(paused, async {
        let root = tempfile::tempdir().unwrap();
        let case = Operations::new("hang", 4)
            .temp_root(root.path())
            .time_limit(Duration::from_secs(30))
            .run(|op| async move {
                if !op.warmup && op.index == 3 {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<(), String>(())
            })
            .await;
        assert_eq!(
            failed(&case),
            [
                "finishes within the time limit: hung: 3 of 4 operations done after 30.00 s; the rest cancelled"
            ]
        );
    });
}

#[test]
fn a_gauge_off_its_value_and_an_unexpected_error_are_named() {
    alone(current(), async {
        let root = tempfile::tempdir().unwrap();
        let checked_out = Arc::new(AtomicU64::new(0));
        let gauge = checked_out.clone();
        let case = Operations::new("pool", 4)
            .temp_root(root.path())
            .gauge("connections checked out", 0, move || {
                gauge.load(Ordering::SeqCst)
            })
            .run(|op| {
                let checked_out = checked_out.clone();
                async move {
                    checked_out.fetch_add(1, Ordering::SeqCst);
                    if !op.warmup && op.index == 0 {
                        return Err("connection refused".to_string()); // and never returned
                    }
                    checked_out.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }
            })
            .await;
        assert_eq!(
            failed(&case),
            [
                "operations without a fault succeed: 1 failed: connection refused",
                "connections checked out back to 0: 1",
            ]
        );
    });
}

/// `Duration::MAX` for "as long as it takes" is taken as the settle time and the time
/// limit (added to the clock's reading it once panicked): a clean scenario passes.
#[test]
fn duration_max_settle_and_time_limit_are_taken() {
    alone(current(), async {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().to_path_buf();
        let case = Operations::new("tidy", 5)
            .settle(Duration::MAX)
            .time_limit(Duration::MAX)
            .temp_root(&path)
            .run(|op| tidy(path.clone(), op))
            .await;
        assert!(case.passed(), "{:?}", failed(&case));
    });
}
