//! The harness's own checks can fail: S1 with a deliberately leaking operation (a temp
//! dir forgotten outside any scope, a child left running) must name both leaks, with
//! how much, write a failing report, and exit non-zero; and clean up after itself. A
//! scenario that runs past its time limit is stopped by the watchdog, which fails the
//! run and cleans up too.

use std::process::{Command, Output};

/// One `harness stress` run (what `cargo xtask stress` runs) with its own report dir and TMPDIR, every process it starts
/// carrying a marker in its environment.
struct Run {
    out: tempfile::TempDir,
    tmp: tempfile::TempDir,
    marker: String,
    output: Output,
}

impl Run {
    fn new(args: &[&str]) -> Run {
        let out = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let marker = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
        let output = Command::new(env!("CARGO_BIN_EXE_harness"))
            .arg("stress")
            .args(args)
            .arg("--out")
            .arg(out.path())
            // Its scoped temp dirs, and anything leaked there, land here.
            .env("TMPDIR", tmp.path())
            // Inherited by everything it starts, a leaked child included.
            .env("LEAKPROOF_LEAK_TEST", &marker)
            .output()
            .unwrap();
        // Its own threads never panic (the injected panics are silenced).
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        Run {
            out,
            tmp,
            marker,
            output,
        }
    }
}

#[test]
fn a_leaking_operation_fails_the_run_and_says_what_leaked() {
    let run = Run::new(&["--only", "s1", "--ops", "4", "--inject-leak"]);
    let (out, output) = (run.out.path(), &run.output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for failed in [
        "FAILED  S1 indexer: 4 operations in a row: operations: temp entries back to baseline: 1 over baseline (0 -> 1)",
        "FAILED  S1 indexer: 4 operations in a row: operations: child processes back to baseline: 1 over baseline (0 -> 1)",
    ] {
        assert!(stdout.contains(failed), "missing {failed:?} in:\n{stdout}");
    }
    // The operations themselves succeeded: only the leak fails the run.
    assert!(
        stdout.contains("PASS  every operation indexed its repository"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    assert!(out.join("chart.svg").exists());
    // The harness removed what leaked once it had counted it.
    assert_nothing_left(run.tmp.path(), &run.marker);
}

#[test]
fn a_slow_leak_raises_the_leak_alarm_and_fails_the_run() {
    // Each operation keeps 256 KiB for good: no count drifts, only the trend.
    let run = Run::new(&["--only", "s1", "--ops", "30", "--inject-slow-leak"]);
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    assert_eq!(run.output.status.code(), Some(1), "{stdout}");
    let failed = "FAILED  S1 indexer: 30 operations in a row: no leak alarm (mem-watch's LeakAlarm, per operation, 32 KiB): leak suspected: memory +";
    assert!(stdout.contains(failed), "missing {failed:?} in:\n{stdout}");
    // Only the alarm: every count is back.
    assert_eq!(stdout.matches("FAILED  ").count(), 1, "{stdout}");
    assert_nothing_left(run.tmp.path(), &run.marker);
}

/// Nothing in `tmp` (the run's TMPDIR), and no process carrying `marker`.
fn assert_nothing_left(tmp: &std::path::Path, marker: &str) {
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    let needle = format!("LEAKPROOF_LEAK_TEST={marker}");
    let alive: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(alive.is_empty(), "still running: {alive:?}");
}

#[test]
fn a_scenario_past_its_time_limit_is_stopped_and_fails_the_run() {
    // S1's first operation leaves a child and a temp dir, then never finishes.
    let run = Run::new(&[
        "--only",
        "s1",
        "--ops",
        "4",
        "--inject-hang",
        "--phase-limit",
        "3",
    ]);
    let (out, output) = (run.out.path(), &run.output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED  watchdog: S1 still running after"),
        "{stdout}"
    );
    // It did not end: no report claims it passed.
    assert!(!out.join("report.json").exists());
    assert_nothing_left(run.tmp.path(), &run.marker);
}
