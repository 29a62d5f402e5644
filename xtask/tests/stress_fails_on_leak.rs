//! The harness's own checks can fail: S1 with a deliberately leaking operation (a temp
//! dir forgotten outside any scope, a child left running) must name both leaks, with
//! how much, write a failing report, and exit non-zero; and clean up after itself.

use std::process::Command;

#[test]
fn a_leaking_operation_fails_the_run_and_says_what_leaked() {
    let out = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let marker = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "stress",
            "--only",
            "s1",
            "--ops",
            "4",
            "--inject-leak",
            "--out",
        ])
        .arg(out.path())
        // Its scoped temp dirs, and the leaked one, land here.
        .env("TMPDIR", tmp.path())
        // Inherited by everything it starts, the leaked child included.
        .env("LEAKPROOF_LEAK_TEST", &marker)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for failed in [
        "FAILED  S1 indexer: 4 operations in a row: temp entries back to baseline: 1 over baseline (0 -> 1)",
        "FAILED  S1 indexer: 4 operations in a row: child processes back to baseline: 1 over baseline (0 -> 1)",
    ] {
        assert!(stdout.contains(failed), "missing {failed:?} in:\n{stdout}");
    }
    // The operations themselves succeeded: only the leak fails the run.
    assert!(
        stdout.contains("PASS  every operation indexed its repository"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    assert!(out.path().join("chart.svg").exists());
    // The harness removed what leaked once it had counted it.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
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
