//! `Shutdown` in one process, on tokio's paused clock: drain within the deadline, force
//! after it, refuse new work, and the final sweep. The sweep removes every live temp
//! entry of the process, so the tests here take turns.

use std::time::Duration;

use leakproof::{Cause, Error, ForcedBy, Kind, Shutdown};
use tokio::time::Instant;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn shutdown(deadline_secs: u64) -> Shutdown {
    Shutdown::builder()
        .deadline(Duration::from_secs(deadline_secs))
        .build()
}

#[tokio::test(start_paused = true)]
async fn work_that_ends_in_time_is_waited_for_and_the_report_is_clean() {
    let _serial = SERIAL.lock().await;
    let shutdown = shutdown(10);
    let mut ops = Vec::new();
    for (i, secs) in [1u64, 3, 7].into_iter().enumerate() {
        let (s, token) = (shutdown.clone(), shutdown.token());
        ops.push(tokio::spawn(async move {
            s.run(&format!("op{i}"), |scope| async move {
                let dir = scope.temp_dir()?;
                token.cancelled().await;
                // Winding down takes a while, within the deadline.
                tokio::time::sleep(Duration::from_secs(secs)).await;
                Ok::<_, Error>(dir)
            })
            .await
        }));
    }
    tokio::task::yield_now().await;
    assert_eq!(shutdown.in_flight_count(), 3);
    let began = Instant::now();
    shutdown.trigger();
    let report = shutdown.wait().await;
    assert_eq!(
        began.elapsed(),
        Duration::from_secs(7),
        "waited for the slowest"
    );
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.cause, Cause::Requested);
    assert_eq!(report.finished, ["op0", "op1", "op2"]);
    for op in ops {
        let (result, scope_report) = op.await.unwrap().unwrap();
        assert!(!result.unwrap().exists(), "released by its scope");
        assert_eq!(scope_report.released.len(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn after_the_deadline_work_is_forced_and_what_it_held_released() {
    let _serial = SERIAL.lock().await;
    let shutdown = shutdown(5);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let s = shutdown.clone();
    let stubborn = tokio::spawn(async move {
        s.run("stubborn", |scope| async move {
            tx.send(scope.temp_dir()?).unwrap();
            std::future::pending::<()>().await;
            Ok::<_, Error>(())
        })
        .await
    });
    let task = shutdown
        .spawn("forever", std::future::pending::<()>())
        .unwrap();
    let dir = rx.await.unwrap();
    // A temp dir nobody scoped: the final sweep removes it.
    let unscoped = leakproof::temp::TempDir::new().unwrap();
    let began = Instant::now();
    shutdown.trigger();
    let report = shutdown.wait().await;
    assert_eq!(
        began.elapsed(),
        Duration::from_millis(4500),
        "forced at the deadline less its reserve (a tenth), so released by the deadline"
    );
    assert_eq!(report.forced_by, Some(ForcedBy::Deadline));
    assert_eq!(report.exit_code(), 1);
    let mut forced: Vec<(&str, Kind)> = report
        .forced
        .iter()
        .map(|w| (w.name.as_str(), w.kind))
        .collect();
    forced.sort();
    assert_eq!(forced, [("forever", Kind::Task), ("stubborn", Kind::Scope)]);
    assert!(
        report
            .forced
            .iter()
            .all(|w| w.ran >= Duration::from_millis(4500))
    );
    assert!(!dir.exists(), "released when its operation was dropped");
    assert!(!unscoped.path().exists(), "removed by the sweep");
    assert_eq!(report.temp_removed, 1);
    assert!(matches!(
        stubborn.await.unwrap(),
        Err(Error::Forced { ref name, .. }) if name == "stubborn"
    ));
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(shutdown.in_flight_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn new_work_is_refused_once_the_shutdown_has_begun() {
    let _serial = SERIAL.lock().await;
    let shutdown = shutdown(5);
    shutdown.trigger();
    assert!(shutdown.token().is_cancelled());
    let refused = shutdown.run("late", |_| async { Ok::<_, Error>(()) }).await;
    assert!(matches!(refused, Err(Error::ShuttingDown { ref name }) if name == "late"));
    assert!(matches!(
        shutdown.spawn("late task", async {}),
        Err(Error::ShuttingDown { .. })
    ));
    assert!(matches!(
        shutdown.spawn_blocking("late blocking", || ()),
        Err(Error::ShuttingDown { .. })
    ));
    let report = shutdown.wait().await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn force_does_not_wait_for_the_deadline() {
    let _serial = SERIAL.lock().await;
    let shutdown = shutdown(60);
    let s = shutdown.clone();
    let op = tokio::spawn(async move {
        s.run("slow", |_| std::future::pending::<Result<(), Error>>())
            .await
    });
    tokio::task::yield_now().await;
    let began = Instant::now();
    shutdown.trigger();
    let forcer = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        forcer.force();
    });
    let report = shutdown.wait().await;
    assert_eq!(began.elapsed(), Duration::from_secs(2));
    assert_eq!(report.forced_by, Some(ForcedBy::Requested));
    assert_eq!(report.forced.len(), 1);
    assert!(matches!(op.await.unwrap(), Err(Error::Forced { .. })));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_sweep_ends_child_trees_nobody_waited_for() {
    let _serial = SERIAL.lock().await;
    let shutdown = Shutdown::builder()
        .deadline(Duration::from_secs(5))
        .child_grace(Duration::from_millis(50))
        .build();
    let reaper = leakproof::proc::Reaper::new().unwrap();
    shutdown.add_reaper(&reaper);
    let mut sleep = std::process::Command::new("sleep");
    sleep.arg("1000");
    let child = reaper.spawn(sleep).unwrap();
    let pid = child.pid();
    shutdown.trigger();
    let report = shutdown.wait().await;
    assert_eq!(report.children_ended, 1);
    assert_eq!(report.children_killed, 0, "it ended on SIGTERM");
    assert!(
        report.is_clean(),
        "a child ending on SIGTERM is a normal end"
    );
    // The handle reaps its leader: at once, since the tree is gone.
    let outcome = child.wait().await.unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        outcome.status.signal(),
        Some(15),
        "ended by SIGTERM: {outcome:?}"
    );
    assert_eq!(reaper.live_count(), 0);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still there"
    );
}

/// `Duration::MAX` for "no deadline" is taken as a shutdown's deadline and child grace
/// (it once panicked when the shutdown began): work in flight is waited for.
#[tokio::test(start_paused = true)]
async fn a_deadline_of_duration_max_waits_for_the_work() {
    let _serial = SERIAL.lock().await;
    let shutdown = Shutdown::builder()
        .deadline(Duration::MAX)
        .child_grace(Duration::MAX)
        .build();
    let (s, token) = (shutdown.clone(), shutdown.token());
    let op = tokio::spawn(async move {
        s.run("op", |_scope| async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Error>(())
        })
        .await
    });
    tokio::task::yield_now().await;
    shutdown.trigger();
    let report = shutdown.wait().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.finished, ["op"]);
    op.await.unwrap().unwrap().0.unwrap();
}
