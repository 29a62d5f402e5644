//! `Scope` releases what an operation acquired on every path, in reverse order.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leakproof::{Ended, scope};

type Log = Arc<Mutex<Vec<&'static str>>>;

type Cleanup = std::future::Ready<Result<(), leakproof::BoxError>>;

fn logging(log: &Log, name: &'static str) -> impl FnOnce() -> Cleanup + Send + 'static {
    let log = log.clone();
    move || {
        log.lock().unwrap().push(name);
        std::future::ready(Ok(()))
    }
}

#[tokio::test]
async fn on_ok_everything_is_released_last_acquired_first() {
    let log: Log = Arc::default();
    let (outcome, report) = scope("op", |s| {
        let log = log.clone();
        async move {
            let dir = s.temp_dir().unwrap();
            s.defer("first", logging(&log, "first"));
            let task = s.spawn("forever", std::future::pending::<()>());
            s.defer("second", logging(&log, "second"));
            Ok::<_, ()>((dir, task))
        }
    })
    .await;
    let (dir, task) = outcome.unwrap();
    assert_eq!(report.ended, Ended::Ok);
    assert!(!dir.exists(), "the temp dir is gone");
    assert!(
        task.await.unwrap_err().is_cancelled(),
        "the task was aborted"
    );
    assert_eq!(*log.lock().unwrap(), ["second", "first"]);
    let order: Vec<&str> = report.released.iter().map(|r| r.what.as_str()).collect();
    assert_eq!(order[..3], ["second", "task forever", "first"]);
    assert!(order[3].starts_with("temp dir "));
    assert_eq!(report.failures().count(), 0);
}

#[tokio::test]
async fn on_error_everything_is_released_and_reported() {
    let (outcome, report) = scope("op", |s| async move {
        let dir = s.temp_dir().unwrap();
        Err::<(), _>(dir)
    })
    .await;
    let dir = outcome.unwrap_err();
    assert_eq!(report.ended, Ended::Err);
    assert!(!dir.exists());
}

#[tokio::test]
async fn on_panic_everything_is_released_then_the_panic_goes_on() {
    let seen: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let keep = seen.clone();
    let joined = tokio::spawn(async move {
        let _ = scope("op", |s| async move {
            *keep.lock().unwrap() = Some(s.temp_dir().unwrap());
            if keep.lock().is_ok() {
                panic!("bug in the operation");
            }
            Ok::<_, ()>(())
        })
        .await;
    })
    .await;
    assert!(joined.unwrap_err().is_panic(), "the panic is not swallowed");
    let dir = seen.lock().unwrap().clone().unwrap();
    assert!(!dir.exists(), "released before the panic resumed");
}

#[tokio::test]
async fn a_dropped_scope_releases_what_it_holds() {
    let seen: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let deferred = Arc::new(AtomicBool::new(false));
    let (keep, flag) = (seen.clone(), deferred.clone());
    let mut op = Box::pin(scope("op", move |s| async move {
        *keep.lock().unwrap() = Some(s.temp_dir().unwrap());
        s.defer("flag", move || async move {
            flag.store(true, Ordering::SeqCst);
            Ok(())
        });
        std::future::pending::<()>().await;
        Ok::<_, ()>(())
    }));
    // Polled once: the operation holds its temp dir and waits forever.
    assert!(tokio::time::timeout(Duration::ZERO, &mut op).await.is_err());
    let dir = seen.lock().unwrap().clone().unwrap();
    assert!(dir.exists());
    drop(op); // cancelled
    assert!(!dir.exists(), "removed at once");
    tokio::task::yield_now().await; // The deferred cleanup was spawned; let it run.
    assert!(deferred.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_failing_release_is_reported_and_the_rest_still_run() {
    let log: Log = Arc::default();
    let (_, report) = scope("op", |s| {
        let log = log.clone();
        async move {
            s.defer("a", logging(&log, "a"));
            s.defer("broken", || async { Err("disk gone".into()) });
            s.defer("panicking", || async { panic!("cleanup bug") });
            s.defer("c", logging(&log, "c"));
            Ok::<_, ()>(())
        }
    })
    .await;
    assert_eq!(*log.lock().unwrap(), ["c", "a"]);
    let failed: Vec<(&str, &str)> = report
        .failures()
        .map(|r| (r.what.as_str(), r.error.as_deref().unwrap()))
        .collect();
    assert_eq!(
        failed,
        [
            ("panicking", "the cleanup panicked"),
            ("broken", "disk gone")
        ]
    );
}

#[tokio::test]
async fn a_nested_scope_releases_at_its_own_end() {
    let (outcome, report) = scope("outer", |s| async move {
        let inner_dir = s
            .nested(
                "inner",
                |inner| async move { inner.temp_dir().map_err(|_| ()) },
            )
            .await?;
        assert!(!inner_dir.exists(), "released when the nested scope ended");
        let outer_dir = s.temp_dir().unwrap();
        Ok::<_, ()>(outer_dir)
    })
    .await;
    assert!(!outcome.unwrap().exists());
    assert_eq!(report.nested.len(), 1);
    assert_eq!(report.nested[0].name, "inner");
    assert_eq!(report.nested[0].released.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_scopes_each_release_their_own() {
    let permits = Arc::new(tokio::sync::Semaphore::new(100));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u64 {
        let permits = permits.clone();
        tasks.spawn(async move {
            scope("op", |s| async move {
                let permit = permits.acquire_owned().await.unwrap();
                s.defer("permit", move || async move {
                    drop(permit);
                    Ok(())
                });
                let dir = s.temp_dir().unwrap();
                // Finish in a scrambled order.
                tokio::time::sleep(Duration::from_micros((i * 7919) % 1000)).await;
                Ok::<_, ()>(dir)
            })
            .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (outcome, report) = done.unwrap();
        assert!(!outcome.unwrap().exists());
        assert_eq!(report.failures().count(), 0);
    }
    assert_eq!(permits.available_permits(), 100, "every permit is back");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_child_left_running_is_ended_with_its_scope_and_a_waited_one_is_not_touched() {
    let reaper = leakproof::proc::Reaper::subreaper_only().unwrap();
    let (pids, report) = scope("op", |s| {
        let reaper = reaper.clone();
        async move {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("60");
            let left = s.spawn_child(&reaper, cmd).unwrap();
            let done = s
                .spawn_child(&reaper, std::process::Command::new("true"))
                .unwrap();
            assert!(done.wait().await.unwrap().unwrap().success());
            Ok::<_, ()>(left.pid())
        }
    })
    .await;
    let left = pids.unwrap();
    let gone = !std::path::Path::new(&format!("/proc/{left}")).exists();
    assert!(gone, "killed and reaped");
    assert_eq!(report.released.len(), 2);
    assert_eq!(reaper.live_count(), 0);
}

/// A task writing into the scope's temp dir in a tight loop, on another worker thread:
/// the scope stops it (abort, then waits for it) before it removes the dir, so no write
/// lands in a dir being removed and the dir stays gone. A thousand times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_stopped_before_the_dir_it_writes_into_is_removed() {
    use std::sync::atomic::AtomicUsize;
    let failed_writes = Arc::new(AtomicUsize::new(0));
    for round in 0..1000 {
        let failed = failed_writes.clone();
        let (outcome, report) = leakproof::scope("writer", |scope| async move {
            let dir = scope.temp_dir().map_err(|e| e.to_string())?;
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let target = dir.clone();
            scope.spawn("write", async move {
                let mut started = Some(started_tx);
                for i in 0u64.. {
                    // A long poll: many writes between two awaits, so an abort usually
                    // finds the task in the middle of one.
                    for j in 0..16 {
                        if std::fs::write(target.join(format!("f{}-{j}", i % 2)), b"x").is_err() {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    if let Some(tx) = started.take() {
                        let _ = tx.send(());
                    }
                    tokio::task::yield_now().await;
                }
            });
            // The writer is running (on either worker) when the scope ends.
            started_rx.await.map_err(|e| e.to_string())?;
            Ok::<_, String>(dir)
        })
        .await;
        let dir = outcome.unwrap();
        assert!(
            report.failures().next().is_none(),
            "round {round}: {report:?}"
        );
        assert!(!dir.exists(), "round {round}: the dir is gone");
        tokio::task::yield_now().await;
        assert!(!dir.exists(), "round {round}: and stays gone");
    }
    assert_eq!(
        failed_writes.load(Ordering::SeqCst),
        0,
        "no write met a removed dir"
    );
}
