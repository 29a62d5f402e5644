//! `Health`: the report's figures and grades, and its JSON. The process-wide figures
//! (children, descriptors, temp entries) make the tests here take turns.

use std::time::Duration;

use leakproof::gate::{Feedback, Gate};
use leakproof::{Health, Shutdown, Status};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "current_thread")]
async fn a_quiet_process_is_healthy_and_says_so_in_json() {
    let _serial = SERIAL.lock().await;
    let cache: leakproof::cache::Cache<String, u32> =
        leakproof::cache::Cache::builder().max_entries(10).build();
    cache.insert("a".into(), 1);
    assert_eq!(cache.get(&"a".to_string()), Some(1));
    assert_eq!(cache.get(&"b".to_string()), None);
    let gate = Gate::builder().concurrency(4).build();
    let health = Health::builder()
        .cache("github", &cache)
        .gate("github", &gate)
        .build()
        .unwrap();
    let report = health.check();
    assert_eq!(report.status, Status::Healthy, "{:?}", report.reasons);
    assert_eq!(report.http_status(), 200);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["status"], "healthy");
    assert_eq!(json["caches"][0]["name"], "github");
    assert_eq!(json["caches"][0]["hit_rate"], 0.5);
    assert_eq!(json["gates"][0]["in_flight"], 0);
    assert!(json["memory"]["rss"].as_u64().unwrap() > 0);
    assert!(json["fds"]["open"].as_u64().unwrap() > 0);
    assert_eq!(json["temp_entries"], 0);
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "current_thread")]
async fn over_100_live_children_is_degraded_with_the_reason() {
    let _serial = SERIAL.lock().await;
    let reaper = leakproof::proc::Reaper::subreaper_only().unwrap();
    let health = Health::builder().reaper(&reaper).build().unwrap();
    let mut children = Vec::new();
    for _ in 0..101 {
        let mut sleep = std::process::Command::new("sleep");
        sleep.arg("1000");
        children.push(reaper.command(sleep).no_capture().spawn().unwrap());
    }
    let report = health.check();
    assert_eq!(report.children, Some(101));
    assert_eq!(report.status, Status::Degraded);
    assert!(
        report
            .reasons
            .iter()
            .any(|r| r == "101 live child processes (over 100)"),
        "{:?}",
        report.reasons
    );
    // One fewer: healthy again (on children; descriptors rose with the pidfds).
    children.pop().unwrap().kill().await.unwrap();
    let report = health.check();
    assert_eq!(report.children, Some(100));
    assert!(
        !report.reasons.iter().any(|r| r.contains("child")),
        "{:?}",
        report.reasons
    );
    reaper.shutdown(Duration::from_millis(10)).await;
    for child in children {
        child.wait().await.unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn descriptors_over_the_baseline_degrade() {
    let _serial = SERIAL.lock().await;
    let health = Health::builder().fd_slack(20).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<std::fs::File> = (0..30)
        .map(|i| std::fs::File::create(dir.path().join(i.to_string())).unwrap())
        .collect();
    // Other grades may speak too on a busy host (memory pressure): only the
    // descriptors' reason is this test's.
    let about_fds = |reasons: &[String]| reasons.iter().any(|r| r.contains("over the baseline"));
    let report = health.check();
    assert!(report.status >= Status::Degraded, "{:?}", report.reasons);
    let fds = report.fds.clone().unwrap();
    assert!(fds.open >= fds.baseline + 30, "{fds:?}");
    assert!(about_fds(&report.reasons), "{:?}", report.reasons);
    drop(files);
    let after = health.check();
    assert!(!about_fds(&after.reasons), "{:?}", after.reasons);
    assert!(after.fds.unwrap().open < fds.open);
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_server_pause_degrades_and_a_shutdown_is_unhealthy() {
    let _serial = SERIAL.lock().await;
    let gate = Gate::builder().build();
    let shutdown = Shutdown::new();
    let health = Health::builder()
        .gate("github", &gate)
        .shutdown(&shutdown)
        .build()
        .unwrap();
    gate.observe(Feedback::new().retry_after(Duration::from_secs(30)));
    let report = health.check();
    assert_eq!(report.status, Status::Degraded);
    assert_eq!(report.gates[0].paused_for_ms, Some(30_000));
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(health.check().status, Status::Healthy);
    shutdown.trigger();
    let report = health.check();
    assert_eq!(report.status, Status::Unhealthy);
    assert_eq!(report.http_status(), 503);
    assert!(report.shutting_down);
    assert_eq!(report.reasons, ["shutting down"]);
}

#[tokio::test(flavor = "current_thread")]
async fn many_live_temp_entries_degrade() {
    let _serial = SERIAL.lock().await;
    let health = Health::builder().max_temp_entries(3).build().unwrap();
    let dirs: Vec<_> = (0..4)
        .map(|_| leakproof::temp::TempDir::new().unwrap())
        .collect();
    let report = health.check();
    assert_eq!(report.temp_entries, Some(4));
    assert_eq!(report.status, Status::Degraded, "{:?}", report.reasons);
    drop(dirs);
    assert_eq!(health.check().temp_entries, Some(0));
}

/// A deadpool pool of three connections (plain numbers here): held all, a caller
/// waiting, Degraded once it has waited past the threshold; healthy again when one is
/// given back; every connection back and idle at the end.
#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_pool_whose_callers_wait_past_the_threshold_degrades() {
    struct Numbers;
    impl deadpool::managed::Manager for Numbers {
        type Type = u32;
        type Error = std::convert::Infallible;
        async fn create(&self) -> Result<u32, Self::Error> {
            Ok(7)
        }
        async fn recycle(
            &self,
            _: &mut u32,
            _: &deadpool::managed::Metrics,
        ) -> deadpool::managed::RecycleResult<Self::Error> {
            Ok(())
        }
    }
    let pool = deadpool::managed::Pool::<Numbers>::builder(Numbers)
        .max_size(3)
        .build()
        .unwrap();
    let health = Health::builder()
        .without_temp()
        .without_memory()
        .pool("db", pool.clone(), Duration::from_secs(2))
        .build()
        .unwrap();
    let held: Vec<_> = futures_util::future::join_all((0..3).map(|_| pool.get()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let report = health.check();
    assert_eq!(report.status, Status::Healthy, "{:?}", report.reasons);
    let state = report.pools[0].state;
    assert_eq!(
        (state.size, state.max_size, state.idle, state.waiting),
        (3, 3, 0, 0)
    );
    // A fourth caller waits.
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|_| ()) }
    });
    tokio::task::yield_now().await;
    let report = health.check();
    assert_eq!(report.pools[0].state.waiting, 1);
    assert_eq!(report.pools[0].waiting_for_ms, Some(0));
    assert_eq!(report.status, Status::Healthy, "not waited long yet");
    tokio::time::advance(Duration::from_secs(3)).await;
    let report = health.check();
    assert_eq!(report.status, Status::Degraded);
    assert!(
        report.reasons[0].contains("pool `db`: 1 caller(s) waiting"),
        "{:?}",
        report.reasons
    );
    assert_eq!(report.pools[0].waiting_for_ms, Some(3000));
    drop(held);
    waiter.await.unwrap().unwrap();
    let report = health.check();
    assert_eq!(report.status, Status::Healthy, "{:?}", report.reasons);
    let state = report.pools[0].state;
    assert_eq!(
        (state.size, state.idle, state.waiting),
        (3, 3, 0),
        "all back, idle"
    );
    assert_eq!(report.pools[0].waiting_for_ms, None);
}
