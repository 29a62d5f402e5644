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

/// One helper at a time: each test times its helper from outside, and a neighbour's
/// helper starting 30 processes and 1,000 temp dirs beside it is noise, not the deadline.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    if mode.starts_with("edges") {
        return edges(mode == "edges-clean").await;
    }
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
    spawn_never_returning(&shutdown);
    let mut held = [ready.recv().await.unwrap(), ready.recv().await.unwrap()];
    held.sort();
    let [(_, cooperative), (_, stubborn)] = held;
    println!("@@ready {cooperative} {stubborn}");
    let report = shutdown.wait().await;
    println!("@@report {}", serde_json::to_string(&report).unwrap());
    report.exit();
}

/// A blocking closure that never returns, tracked by `shutdown` as `blocking`.
fn spawn_never_returning(shutdown: &leakproof::Shutdown) {
    shutdown
        .spawn_blocking("blocking", || {
            loop {
                std::thread::park();
            }
        })
        .unwrap();
}

/// The deadline of the stubborn `edges` helper, and its release reserve.
const EDGES_DEADLINE: Duration = Duration::from_millis(800);
const EDGES_RESERVE: Duration = Duration::from_millis(550);

/// A service at the shutdown's edges: 3 reapers with 10 trees each (`sh` and its
/// `sleep`); 1,000 live temp dirs held by a task; a blocking closure that never returns.
/// Stubborn (`clean == false`): the trees ignore SIGTERM, the task and the closure never
/// end. Clean: the trees end on SIGTERM, and nothing else is in flight.
async fn edges(clean: bool) {
    let shutdown = leakproof::Shutdown::builder()
        .deadline(if clean {
            Duration::from_secs(3)
        } else {
            EDGES_DEADLINE
        })
        .child_grace(Duration::from_secs(1))
        .release_reserve(EDGES_RESERVE)
        .build();
    shutdown.install_signals().unwrap();
    let script = if clean {
        "sleep 1000 & wait"
    } else {
        // An ignored signal stays ignored across exec: the sleep ignores it too.
        "trap '' TERM; sleep 1000 & wait; sleep 1000"
    };
    let mut pids = Vec::new();
    let mut children = Vec::new();
    for _ in 0..3 {
        let reaper = leakproof::proc::Reaper::new().unwrap();
        shutdown.add_reaper(&reaper);
        for _ in 0..10 {
            let mut sh = std::process::Command::new("sh");
            sh.args(["-c", script]);
            let child = reaper.spawn(sh).unwrap();
            pids.push(child.pid().to_string());
            children.push(child);
        }
    }
    let root = std::env::temp_dir();
    if !clean {
        let dirs: Vec<_> = (0..1000)
            .map(|_| leakproof::temp::TempDir::new().unwrap())
            .collect();
        shutdown
            .spawn("holder", async move {
                let _dirs = dirs;
                std::future::pending::<()>().await
            })
            .unwrap();
        spawn_never_returning(&shutdown);
    }
    println!("@@ready {} {}", root.display(), pids.join(" "));
    let report = shutdown.wait().await;
    println!("@@report {}", serde_json::to_string(&report).unwrap());
    // The handles reap their leaders (the sweep ended the trees), side by side.
    let waits: Vec<_> = children
        .into_iter()
        .map(|child| tokio::spawn(child.wait()))
        .collect();
    for wait in waits {
        let _ = wait.await;
    }
    report.exit();
}

/// Runs an `edges` helper in a temp dir of its own, sends SIGTERM once it is ready,
/// and returns (how long after the signal it exited, its exit code, its report, the
/// tree pids, its temp dir).
async fn run_edges(
    mode: &str,
) -> (
    Duration,
    i32,
    serde_json::Value,
    Vec<u32>,
    tempfile::TempDir,
) {
    let tmp = tempfile::tempdir().unwrap();
    let (mut helper, mut lines) = spawn_helper(mode, tmp.path());
    let ready = next_marker(&mut lines, "@@ready").await;
    let pids: Vec<u32> = ready
        .split_ascii_whitespace()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    let sent = std::time::Instant::now();
    signal(helper.id().unwrap(), Signal::TERM);
    let report = next_marker(&mut lines, "@@report").await;
    let reported = sent.elapsed();
    let status = tokio::time::timeout(Duration::from_secs(30), helper.wait())
        .await
        .expect("the helper did not exit")
        .unwrap();
    let exited = sent.elapsed();
    println!("{mode}: reported {reported:?} after SIGTERM, exited {exited:?} after it");
    (
        exited,
        status.code().unwrap(),
        serde_json::from_str(&report).unwrap(),
        pids,
        tmp,
    )
}

/// Left below a helper's temp dir: anything scoped-temp made.
fn temp_left(tmp: &Path) -> usize {
    std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|run| {
            let path = run.path();
            if path.is_dir() {
                // Run directories hold the entries (and their owner lock).
                std::fs::read_dir(&path)
                    .map(|d| {
                        d.flatten()
                            .filter(|e| e.file_name() != ".owner.lock")
                            .count()
                    })
                    .unwrap_or(0)
            } else {
                1
            }
        })
        .sum()
}

/// The deadline as one instant: 30 SIGTERM-ignoring trees in 3 reapers, 1,000 temp
/// dirs, a blocking closure that never returns; SIGTERM, 20 times. The process exits
/// within `PAST_DEADLINE` (100 ms) of the deadline every time, measured from outside,
/// and leaves no process and no temp dir.
#[tokio::test]
async fn the_deadline_is_kept_with_stubborn_trees_temp_dirs_and_blocking_work() {
    let _serial = SERIAL.lock().await;
    // 20 runs; `cargo xtask hosts` asks for fewer on each of its hosts.
    let runs: usize = std::env::var("LEAKPROOF_DEADLINE_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let mut overshoots = Vec::new();
    for run in 0..runs {
        let (exited, code, report, pids, tmp) = run_edges("edges").await;
        assert_eq!(code, 1, "run {run}: forced, so not clean: {report}");
        assert_eq!(report["children_killed"], 30, "run {run}: {report}");
        let overshoot = exited.saturating_sub(EDGES_DEADLINE);
        overshoots.push(overshoot);
        for pid in &pids {
            assert!(
                gone(*pid),
                "run {run}: tree {pid} left: {}",
                std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
            );
        }
        assert_eq!(temp_left(tmp.path()), 0, "run {run}: temp entries left");
        assert!(
            exited >= EDGES_DEADLINE - EDGES_RESERVE,
            "run {run}: exited at {exited:?}, before the work was forced"
        );
    }
    let largest = overshoots.iter().max().unwrap();
    println!("largest overshoot past the deadline in {runs} runs: {largest:?} ({overshoots:?})");
    assert!(
        *largest <= leakproof::PAST_DEADLINE,
        "exited {largest:?} after the deadline: {overshoots:?}"
    );
}

/// Work that all ends in time, and children that end on SIGTERM: exit 0, well before
/// the deadline, though three reapers each have trees to end with a 1 s grace.
#[tokio::test]
async fn a_shutdown_with_nothing_to_force_exits_0_before_its_deadline() {
    let _serial = SERIAL.lock().await;
    let (exited, code, report, pids, tmp) = run_edges("edges-clean").await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["children_ended"], 30, "{report}");
    assert_eq!(report["children_killed"], 0, "{report}");
    assert!(
        exited < Duration::from_secs(2),
        "exited {exited:?} after SIGTERM"
    );
    for pid in &pids {
        assert!(gone(*pid), "tree {pid} left");
    }
    assert_eq!(temp_left(tmp.path()), 0);
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

/// This test binary re-executed as the helper in `mode`, with `tmp` as its temp dir
/// (`TMPDIR`), and its output's lines.
fn spawn_helper(mode: &str, tmp: &Path) -> (Child, Lines<BufReader<ChildStdout>>) {
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
    let lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    (helper, lines)
}

/// [`start`] with `tmp` as the helper's temp dir (`TMPDIR`).
async fn start_in(mode: &str, tmp: &Path) -> Started {
    let (helper, mut lines) = spawn_helper(mode, tmp);
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
    let _serial = SERIAL.lock().await;
    let mut s = start("deadline").await;
    assert!(s.stubborn_dir.exists() && !gone(s.child));
    signal(s.helper.id().unwrap(), Signal::TERM);
    let (report, code) = finish(&mut s, Duration::from_secs(30)).await;
    assert_eq!(code, 1, "forced, so not clean: {report}");
    assert_eq!(report["cause"], "sigterm");
    assert_eq!(report["forced_by"], "deadline");
    assert_eq!(report["finished"], serde_json::json!(["cooperative"]));
    assert_eq!(forced_names(&report), ["blocking", "forever", "stubborn"]);
    // Forced at the deadline (2 s) less its reserve (200 ms), done by the deadline and
    // at most 50 ms past it (half of `PAST_DEADLINE`; the other half is the exit's),
    // though a blocking closure never returns: the helper's own clock.
    let took =
        report["took"]["secs"].as_f64().unwrap() + report["took"]["nanos"].as_f64().unwrap() / 1e9;
    assert!((1.8..=2.05).contains(&took), "took {took} s: {report}");
    assert_nothing_left(&s);
}

#[tokio::test]
async fn a_second_signal_forces_at_once() {
    let _serial = SERIAL.lock().await;
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
    let _serial = SERIAL.lock().await;
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
