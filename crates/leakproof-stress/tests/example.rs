//! The README's worked example: `leakproof-stress` against `examples/service.rs` built
//! on `leakproof`, and against its deliberately leaky variant (`--leak`). The clean one
//! passes every round (SIGKILL included, with `--reclaim-run`) and its soak; the leaky
//! one is caught on each count, and no process it started outlives the torture.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The example binary `cargo test` built next to this test's own.
fn service() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join("service");
    assert!(path.exists(), "{} not built", path.display());
    path
}

/// Runs the binary; also checks that no process it marked outlives it.
fn torture(dir: &Path, args: &[&str]) -> (Output, String) {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_leakproof-stress"))
        .args(args)
        .current_dir(dir)
        .env("TMPDIR", &tmp)
        // One malloc arena: the soak judges a resident-memory trend (see `Soak`).
        .env("MALLOC_ARENA_MAX", "1")
        .env_remove("GITHUB_STEP_SUMMARY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let marker = format!("LEAKPROOF_STRESS_RUN={}-", child.id());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let outlived: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|var| var.starts_with(marker.as_bytes()))
            })
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        outlived.is_empty(),
        "outlived the torture: {outlived:?}\n{text}"
    );
    (out, text)
}

#[test]
fn the_service_on_leakproof_passes_the_torture_and_its_leaky_variant_fails() {
    let service = service();
    let service = service.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rounds = [
        "run",
        "--runs",
        "2",
        "--terms",
        "2",
        "--kills",
        "2",
        "--reclaim-run",
        "--",
    ];
    let clean: Vec<&str> = rounds.iter().copied().chain([service, "--once"]).collect();
    let (out, text) = torture(dir.path(), &clean);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("result: 24 checks, 0 failed"), "{text}");

    let leaky: Vec<&str> = rounds
        .iter()
        .copied()
        .chain([service, "--once", "--leak"])
        .collect();
    let (out, text) = torture(dir.path(), &leaky);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("LEAK  run 1: no process outlives the run: 1 left: "),
        "{text}"
    );
    assert!(text.contains(" sleep 600"), "{text}");
    assert!(
        text.contains("LEAK  run 1: leaves no entry in its TMPDIR: 1 left: job-"),
        "{text}"
    );
}

#[test]
fn the_soak_passes_the_service_and_catches_the_leaky_ones_trend() {
    let service = service();
    let service = service.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = dir.path().join("port");
    let load = format!("{service} --request {}", port.display());
    let port = port.to_str().unwrap();
    let soak = ["soak", "--rounds", "10", "--load", &load, "--"];
    let clean: Vec<&str> = soak
        .iter()
        .copied()
        .chain([service, "--serve", port])
        .collect();
    let (out, text) = torture(dir.path(), &clean);
    assert!(out.status.success(), "{text}");

    std::fs::remove_file(dir.path().join("port")).unwrap();
    let leaky: Vec<&str> = soak
        .iter()
        .copied()
        .chain([service, "--serve", port, "--leak"])
        .collect();
    let (out, text) = torture(dir.path(), &leaky);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for leak in [
        "LEAK  under load: resident memory does not trend upward: +",
        "LEAK  under load: open descriptors do not trend upward: +",
        "LEAK  stop: no process outlives the run: 13 left: ",
        "LEAK  stop: leaves no entry in its TMPDIR: 1 left: job-",
    ] {
        assert!(text.contains(leak), "{leak}\n{text}");
    }
}
