//! The README's worked example: `leakproof-stress` against `examples/service.rs` built
//! on `leakproof`, and against its deliberately leaky variant (`--leak`). The clean one
//! passes every round (SIGKILL included, with `--reclaim-run`) and its soak; the leaky
//! one is caught on each count, and no process it started outlives the torture.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::{stress_command, text};

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
    let child = stress_command(dir)
        .args(args)
        // One malloc arena: the soak judges a resident-memory trend (see `Soak`).
        .env("MALLOC_ARENA_MAX", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let marker = format!("LEAKPROOF_STRESS_RUN={}-", child.id());
    let out = child.wait_with_output().unwrap();
    let text = text(&out);
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

/// Soaks the clean service, then the leaky one, under the load `load` makes from the
/// service's path and its port file, with `options` before the load; returns the two
/// outputs after checking the clean one passed and the leaky one failed.
fn soak_both(options: &[&str], load: impl Fn(&str, &str) -> String) -> (String, String) {
    let service = service();
    let service = service.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = dir.path().join("port");
    let port = port.to_str().unwrap();
    let load = load(service, port);
    let mut texts = Vec::new();
    for leak in [false, true] {
        let _ = std::fs::remove_file(port);
        let mut args = vec!["soak"];
        args.extend(options);
        args.extend(["--load", &load, "--", service, "--serve", port]);
        if leak {
            args.push("--leak");
        }
        let (out, text) = torture(dir.path(), &args);
        assert_eq!(out.status.code(), Some(i32::from(leak)), "{text}");
        texts.push(text);
    }
    let leaky = texts.pop().unwrap_or_default();
    (texts.pop().unwrap_or_default(), leaky)
}

#[test]
fn the_soak_passes_the_service_and_catches_the_leaky_ones_trend() {
    let (_, leaky) = soak_both(&["--rounds", "10"], |service, port| {
        format!("{service} --request {port}")
    });
    for leak in [
        "LEAK  under load: resident memory does not trend upward: +",
        "LEAK  under load: open descriptors do not trend upward: +",
        "LEAK  stop: no process outlives the run: 13 left: ",
        "LEAK  stop: leaves no entry in its TMPDIR: 1 left: job-",
    ] {
        assert!(leaky.contains(leak), "{leak}\n{leaky}");
    }
}

#[test]
fn the_soak_samples_one_long_load_run_on_an_interval() {
    // One round: 30 requests in a row, the service sampled every 50 ms meanwhile.
    let options = ["--rounds", "1", "--warmup", "0", "--interval", "0.05"];
    let (clean, leaky) = soak_both(&options, |service, port| {
        format!("for i in $(seq 30); do {service} --request {port}; done")
    });
    assert!(clean.contains("/sample, load runs 1/1 ok"), "{clean}");
    assert!(
        leaky.contains("LEAK  under load: open descriptors do not trend upward: +"),
        "{leaky}"
    );
}
