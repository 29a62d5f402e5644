//! A process that used scoped-temp and returned from `main` leaves its temp root as it
//! found it: no run directory, no lock, nothing. This file has its own `main` (no test
//! harness), re-executed as the child in each mode:
//!
//! - `main`: everything on the main thread;
//! - `threads`: entries made only on other threads, which end before `main` returns;
//! - `tokio`: entries made in tasks on a multi-thread runtime, dropped at its end;
//! - `exit`: like `main`, then `std::process::exit(0)` instead of returning.
//!
//! Each child creates and closes temp dirs, temp files and atomic writes (targets kept
//! outside the root), then exits; the parent checks the root is empty and the targets
//! hold what was committed.

use std::path::{Path, PathBuf};
use std::process::Command;

use scoped_temp::{AtomicFile, Builder, NamedTempFile, TempDir};

const MODE: &str = "SCOPED_TEMP_EXIT_MODE";
const ROOT: &str = "SCOPED_TEMP_EXIT_ROOT";
const TARGETS: &str = "SCOPED_TEMP_EXIT_TARGETS";

fn main() {
    match std::env::var(MODE) {
        Ok(mode) => child(&mode),
        Err(_) => parent(),
    }
}

/// Creates and closes a dir, a file and an atomic write, `tag` naming the target.
fn work(root: &Path, targets: &Path, tag: &str) {
    let dir = TempDir::new_in(root).unwrap();
    std::fs::write(dir.path().join("data"), tag).unwrap();
    let file = NamedTempFile::new_in(root).unwrap();
    std::fs::write(file.path(), tag).unwrap();
    let named = Builder::new().root(root).prefix("job-").tempdir().unwrap();
    drop(named);
    file.close_blocking().unwrap();
    dir.close_blocking().unwrap();
    let mut atomic = AtomicFile::new(targets.join(tag)).unwrap();
    atomic.write_bytes(tag.as_bytes()).unwrap();
    atomic.commit().unwrap();
}

fn child(mode: &str) {
    let root = PathBuf::from(std::env::var(ROOT).unwrap());
    let targets = PathBuf::from(std::env::var(TARGETS).unwrap());
    match mode {
        "main" | "exit" => {
            for i in 0..3 {
                work(&root, &targets, &format!("main-{i}"));
            }
        }
        "threads" => {
            let threads: Vec<_> = (0..4)
                .map(|i| {
                    let (root, targets) = (root.clone(), targets.clone());
                    std::thread::spawn(move || work(&root, &targets, &format!("thread-{i}")))
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
        }
        "tokio" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
            runtime.block_on(async {
                let tasks: Vec<_> = (0..8)
                    .map(|i| {
                        let (root, targets) = (root.clone(), targets.clone());
                        tokio::spawn(async move {
                            let dir = TempDir::new_in(&root).unwrap();
                            std::fs::write(dir.path().join("data"), b"x").unwrap();
                            dir.close().await.unwrap();
                            scoped_temp::write_atomic(targets.join(format!("task-{i}")), b"x")
                                .await
                                .unwrap();
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            });
        }
        other => panic!("unknown mode {other}"),
    }
    if mode == "exit" {
        std::process::exit(0);
    }
}

fn parent() {
    let mut failed = 0;
    for mode in ["main", "threads", "tokio", "exit"] {
        let root = tempfile::tempdir().unwrap();
        let targets = tempfile::tempdir().unwrap();
        let status = Command::new(std::env::current_exe().unwrap())
            .env(MODE, mode)
            .env(ROOT, root.path())
            .env(TARGETS, targets.path())
            .status()
            .unwrap();
        let left: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let committed = std::fs::read_dir(targets.path()).unwrap().count();
        let ok = status.success() && left.is_empty() && committed > 0;
        println!(
            "test normal_exit::{mode} ... {} (exit {status}, left in root: {left:?}, targets: {committed})",
            if ok { "ok" } else { "FAILED" }
        );
        failed += usize::from(!ok);
    }
    assert_eq!(failed, 0, "a child left entries in its temp root");
}
