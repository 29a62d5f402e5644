//! The users' scenarios S2 and S3 at the library level (S1 is `s1_fds.rs`, S4
//! `signal.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use leakproof::gate::{Gate, Quota};
use leakproof::{BoxError, Ended};

/// S2: an error mid-operation releases the open files, the temp dirs and the child, and
/// the report confirms each.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn s2_an_error_mid_operation_releases_everything_and_reports_each() {
    let reaper = leakproof::proc::Reaper::new().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<(PathBuf, PathBuf, u32)>();
    let (outcome, report) = leakproof::scope("transcode", |scope| {
        let reaper = reaper.clone();
        async move {
            let input = scope.temp_dir()?;
            let output = scope.temp_dir()?;
            let file = std::fs::File::create(input.join("frame.raw"))?;
            scope.hold("file frame.raw", file);
            let mut ffmpeg = std::process::Command::new("sleep");
            ffmpeg.arg("1000");
            let child = scope.spawn_child(&reaper, ffmpeg)?;
            tx.send((input, output, child.pid())).unwrap();
            // The failure, mid-operation, with everything still held.
            Err::<(), BoxError>("codec error".into())
        }
    })
    .await;
    let (input, output, pid) = rx.recv().unwrap();
    assert_eq!(outcome.unwrap_err().to_string(), "codec error");
    assert_eq!(report.ended, Ended::Err);
    assert!(!input.exists() && !output.exists(), "temp dirs gone");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "child {pid} gone and reaped"
    );
    assert_eq!(reaper.live_count(), 0);
    let released: Vec<&str> = report.released.iter().map(|r| r.what.as_str()).collect();
    assert_eq!(released.len(), 4, "{released:?}");
    assert_eq!(released[0], format!("child sleep (pid {pid})"));
    assert_eq!(released[1], "file frame.raw");
    assert_eq!(released[2], format!("temp dir {}", output.display()));
    assert_eq!(released[3], format!("temp dir {}", input.display()));
    assert!(
        report.released.iter().all(|r| r.error.is_none()),
        "{report:?}"
    );
}

/// S3: 100 concurrent scopes, each holding a gate permit and a semaphore permit,
/// finishing in random order (some failing, some panicking, some cancelled): every
/// permit comes back.
#[tokio::test(start_paused = true)]
async fn s3_100_concurrent_scopes_in_random_order_return_every_permit() {
    let gate = Gate::builder()
        .quota(Quota::per_second(50))
        .concurrency(20)
        .build();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(10));
    let mut tasks = tokio::task::JoinSet::new();
    let mut doomed = Vec::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..100u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (gate, semaphore, delay) = (gate.clone(), semaphore.clone(), seed % 5_000);
        let handle = tasks.spawn(async move {
            leakproof::scope(&format!("op{i}"), |scope| async move {
                let permit = gate.acquire_owned().await?;
                scope.hold("gate permit", permit);
                let slot = semaphore.acquire_owned().await?;
                scope.hold("semaphore permit", slot);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                match i % 10 {
                    7 => Err::<u64, BoxError>("failed".into()),
                    9 => panic!("op{i} panicked"),
                    _ => Ok(i),
                }
            })
            .await
        });
        if i % 20 == 3 {
            doomed.push(handle);
        }
    }
    // Cancel five mid-flight (waiting for the gate or holding permits): their scopes
    // release on drop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for handle in doomed {
        handle.abort();
    }
    let (mut ok, mut failed, mut panicked, mut cancelled) = (0, 0, 0, 0);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((Ok(_), report)) => {
                assert_eq!(report.released.len(), 2);
                ok += 1;
            }
            Ok((Err(_), report)) => {
                assert_eq!(report.released.len(), 2);
                failed += 1;
            }
            Err(e) if e.is_panic() => panicked += 1,
            Err(_) => cancelled += 1,
        }
    }
    assert_eq!(ok + failed + panicked + cancelled, 100);
    assert_eq!((ok, failed, panicked, cancelled), (75, 10, 10, 5));
    assert_eq!(gate.stats().in_flight, 0, "every gate permit back");
    assert_eq!(
        semaphore.available_permits(),
        10,
        "every semaphore permit back"
    );
}
