//! S1: descriptors back to their baseline after an operation that opened 50 files.
//! Counting this process's descriptors needs the test binary to itself.

#![cfg(target_os = "linux")]

use std::fs::File;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "current_thread")]
async fn fds_are_back_to_baseline_after_50_opened_files_on_ok_and_on_err() {
    // Warm up what opens descriptors once (the runtime, the temp registry's lock file).
    let _ = leakproof::scope("warm-up", |scope| async move {
        scope.temp_dir()?;
        Ok::<_, leakproof::Error>(())
    })
    .await;
    let baseline = open_fds();
    for fail in [false, true] {
        let (outcome, report) = leakproof::scope("open-50", |scope| async move {
            let dir = scope.temp_dir()?;
            for i in 0..50 {
                let file = File::create(dir.join(format!("f{i}")))?;
                scope.hold(&format!("file f{i}"), file);
            }
            assert_eq!(
                open_fds(),
                baseline + 50,
                "all 50 open while the operation runs"
            );
            if fail {
                return Err("injected".into());
            }
            Ok::<_, leakproof::BoxError>(dir)
        })
        .await;
        assert_eq!(outcome.is_err(), fail);
        assert_eq!(report.released.len(), 51, "50 files and the dir");
        assert_eq!(report.failures().count(), 0);
        assert_eq!(
            open_fds(),
            baseline,
            "back to the baseline (failed: {fail})"
        );
    }
    assert_eq!(leakproof::temp::live_count(), 0);
}
