//! S4 across real processes: this test binary re-executed as a helper service with work
//! in flight (a cooperative operation, a stubborn one holding a temp dir and a child, a
//! task that never ends, a `spawn_blocking` closure that never returns). The test sends
//! signals (or SIGKILL) and checks from outside what is left.

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const MODE: &str = "LEAKPROOF_SIGNAL_TEST";

/// Not a test: the body of the helper. It does nothing unless `LEAKPROOF_SIGNAL_TEST` is
/// set by `start`.
#[test]
#[ignore = "helper process, run by the other tests in this file"]
fn helper() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    if mode == "supervised" {
        // The helper becomes the supervisor; its re-executed copy goes on from here.
        leakproof::supervise().unwrap();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(service(mode));
}

async fn service(mode: String) {
    if mode == "supervised" {
        // Entries beyond the first run directory: a second root, a run directory set up
        // after `remove_all`, an uncommitted atomic write. Held until the SIGKILL.
        let tmp = std::env::temp_dir();
        let second_root = tmp.join("second-root");
        let targets = tmp.join("targets");
        std::fs::create_dir_all(&second_root).unwrap();
        std::fs::create_dir_all(&targets).unwrap();
        let first = leakproof::temp::TempDir::new().unwrap();
        drop(first);
        leakproof::temp::remove_all();
        let again = leakproof::temp::TempDir::new().unwrap();
        let other = leakproof::temp::Builder::new()
            .root(&second_root)
            .tempdir()
            .unwrap();
        let mut atomic = leakproof::temp::AtomicFile::new(targets.join("data.txt")).unwrap();
        atomic.write_bytes(b"never committed").unwrap();
        std::mem::forget((again, other, atomic));
    }
    let deadline = if mode == "second" { 60 } else { 2 };
    let shutdown = leakproof::Shutdown::builder()
        .deadline(Duration::from_secs(deadline))
        .child_grace(Duration::from_millis(100))
        .build();
    shutdown.install_signals().unwrap();
    let reaper = leakproof::proc::Reaper::new().unwrap();
    shutdown.add_reaper(&reaper);

    // A cooperative operation: ends when told to.
    // (which operation, what it holds): they get there in either order.
    let (tx, mut ready) = tokio::sync::mpsc::unbounded_channel::<(u8, String)>();
    let (s, token, sent) = (shutdown.clone(), shutdown.token(), tx.clone());
    tokio::spawn(async move {
        let done = s
            .run("cooperative", |scope| async move {
                let dir = scope.temp_dir()?;
                sent.send((0, dir.display().to_string())).unwrap();
                token.cancelled().await;
                Ok::<_, leakproof::Error>(())
            })
            .await;
        if done.is_ok() {
            println!("@@cooperative-done");
        }
    });
    // A stubborn one: a temp dir and a child, and it never looks at the token.
    let (s, sent, r) = (shutdown.clone(), tx.clone(), reaper.clone());
    tokio::spawn(async move {
        s.run("stubborn", |scope| async move {
            let dir = scope.temp_dir()?;
            let mut sleep = std::process::Command::new("sleep");
            sleep.arg("1000");
            let child = scope.spawn_child(&r, sleep)?;
            sent.send((1, format!("{} {}", dir.display(), child.pid())))
                .unwrap();
            std::future::pending::<()>().await;
            Ok::<_, leakproof::Error>(())
        })
        .await
    });
    // A task that never ends, and a blocking closure that never returns.
    shutdown
        .spawn("forever", std::future::pending::<()>())
        .unwrap();
    shutdown
        .spawn_blocking("blocking", || {
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    let mut held = [ready.recv().await.unwrap(), ready.recv().await.unwrap()];
    held.sort();
    let [(_, cooperative), (_, stubborn)] = held;
    println!("@@ready {cooperative} {stubborn}");
    let report = shutdown.wait().await;
    println!("@@report {}", serde_json::to_string(&report).unwrap());
    report.exit();
}

struct Started {
    helper: Child,
    lines: Lines<BufReader<ChildStdout>>,
    cooperative_dir: PathBuf,
    stubborn_dir: PathBuf,
    child: u32,
}

async fn next_marker(lines: &mut Lines<BufReader<ChildStdout>>, marker: &str) -> String {
    loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the helper ended before {marker}"));
        // libtest prints "test helper ... " without a newline before our output.
        if let Some(at) = line.find(marker) {
            return line[at + marker.len()..].trim().to_string();
        }
    }
}

async fn start(mode: &str) -> Started {
    start_in(mode, &std::env::temp_dir()).await
}

/// [`start`] with `tmp` as the helper's temp dir (`TMPDIR`).
async fn start_in(mode: &str, tmp: &Path) -> Started {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, mode)
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    let ready = next_marker(&mut lines, "@@ready").await;
    let f: Vec<&str> = ready.split_ascii_whitespace().collect();
    Started {
        helper,
        lines,
        cooperative_dir: PathBuf::from(f[0]),
        stubborn_dir: PathBuf::from(f[1]),
        child: f[2].parse().unwrap(),
    }
}

fn signal(pid: u32, signal: Signal) {
    kill_process(Pid::from_raw(pid as i32).unwrap(), signal).unwrap();
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// The helper's report, and its exit code; fails the test if it does not exit within
/// `limit` (a guard against a hang, far above what a pass takes).
async fn finish(s: &mut Started, limit: Duration) -> (serde_json::Value, i32) {
    let report = next_marker(&mut s.lines, "@@report").await;
    let status = tokio::time::timeout(limit, s.helper.wait())
        .await
        .expect("the helper did not exit")
        .unwrap();
    (
        serde_json::from_str(&report).unwrap(),
        status.code().unwrap(),
    )
}

fn forced_names(report: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = report["forced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn assert_nothing_left(s: &Started) {
    assert!(
        !s.cooperative_dir.exists(),
        "{}",
        s.cooperative_dir.display()
    );
    assert!(!s.stubborn_dir.exists(), "{}", s.stubborn_dir.display());
    assert!(gone(s.child), "child {} still there", s.child);
}

#[tokio::test]
async fn sigterm_drains_what_it_can_and_forces_the_rest_at_the_deadline() {
    let mut s = start("deadline").await;
    assert!(s.stubborn_dir.exists() && !gone(s.child));
    signal(s.helper.id().unwrap(), Signal::TERM);
    let (report, code) = finish(&mut s, Duration::from_secs(30)).await;
    assert_eq!(code, 1, "forced, so not clean: {report}");
    assert_eq!(report["cause"], "sigterm");
    assert_eq!(report["forced_by"], "deadline");
    assert_eq!(report["finished"], serde_json::json!(["cooperative"]));
    assert_eq!(forced_names(&report), ["blocking", "forever", "stubborn"]);
    // Waited for the deadline (2 s) and not much longer, though a blocking closure
    // never returns: the helper's own clock.
    let took = report["took"]["secs"].as_u64().unwrap();
    assert!((2..5).contains(&took), "took {took} s: {report}");
    assert_nothing_left(&s);
}

#[tokio::test]
async fn a_second_signal_forces_at_once() {
    let mut s = start("second").await;
    let pid = s.helper.id().unwrap();
    signal(pid, Signal::TERM);
    // Once the shutdown has begun and the cooperative operation has finished with it
    // (so it counts as finished, not forced).
    next_marker(&mut s.lines, "@@cooperative-done").await;
    signal(pid, Signal::INT);
    let (report, code) = finish(&mut s, Duration::from_secs(30)).await;
    assert_eq!(code, 1);
    assert_eq!(report["forced_by"], "second_signal");
    assert_eq!(forced_names(&report), ["blocking", "forever", "stubborn"]);
    // The deadline was 60 s; the second signal did not wait for it.
    let took = report["took"]["secs"].as_u64().unwrap();
    assert!(took < 10, "took {took} s: {report}");
    assert_nothing_left(&s);
}

#[tokio::test]
async fn under_supervise_even_sigkill_leaves_nothing() {
    // A temp dir of its own: everything below it after the run is this run's.
    let tmp = tempfile::tempdir().unwrap();
    let mut s = start_in("supervised", tmp.path()).await;
    // `@@ready` came from the supervised program; the helper is its supervisor.
    let supervisor = s.helper.id().unwrap();
    // Its one child, started from whichever thread ran the helper.
    let program = std::fs::read_dir(format!("/proc/{supervisor}/task"))
        .unwrap()
        .map(|task| {
            std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default()
        })
        .collect::<String>();
    let program: u32 = program
        .split_ascii_whitespace()
        .next()
        .expect("the supervised program")
        .parse()
        .unwrap();
    signal(program, Signal::KILL);
    let status = tokio::time::timeout(Duration::from_secs(30), s.helper.wait())
        .await
        .expect("the supervisor did not exit")
        .unwrap();
    assert_eq!(status.code(), Some(128 + 9), "the program's fate");
    assert!(gone(program));
    assert_nothing_left(&s);
    // Every root the program used, every run directory it set up, its atomic write:
    // no scoped-temp or supervisor name is left anywhere below its temp dir.
    let mut left = Vec::new();
    let mut stack = vec![tmp.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains("scoped-temp") || name.contains("proc-reaper") {
                left.push(entry.path());
            } else if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
        }
    }
    assert!(left.is_empty(), "left after the supervisor: {left:?}");
}
