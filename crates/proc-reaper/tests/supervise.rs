//! `supervise()` across real processes: this test binary re-executed as a helper that
//! calls `supervise()`, so the helper process is the supervisor and its re-executed copy
//! the program. The program starts children (one a `setsid` escapee), registers a
//! directory, and reports; the test SIGKILLs the program (or the supervisor) and checks
//! from outside what is left.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal, kill_process, pidfd_open};

/// Not a test: the body of the helper. It does nothing unless `SUPERVISE_TEST_ROOT` is
/// set by `start`.
#[test]
#[ignore = "helper process, run by the other tests in this file"]
fn helper() {
    let Some(root) = std::env::var_os("SUPERVISE_TEST_ROOT") else {
        return;
    };
    // In the helper this never returns: the helper becomes the supervisor.
    let supervisor = proc_reaper::supervise().unwrap();
    let dir = PathBuf::from(root).join("registered");
    std::fs::create_dir_all(dir.join("inner")).unwrap();
    std::fs::write(dir.join("inner/file"), b"data").unwrap();
    supervisor.remove_on_exit(&dir).unwrap();
    // A child with a plain background sleep, and a setsid escapee whose parent exits.
    let mut tree = Command::new("sh")
        .args([
            "-c",
            "sleep 60 & echo $!; (setsid sleep 60 & echo $!); wait",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tree.stdout.take().unwrap()).lines();
    let sleeper = lines.next().unwrap().unwrap();
    let escapee = lines.next().unwrap().unwrap();
    println!(
        "@@ready {} {} {} {} {}",
        std::process::id(),
        supervisor.pid(),
        sleeper,
        escapee,
        dir.display()
    );
    // Wait to be killed (the test's doing); `sh` waits for its sleep first.
    let _ = tree.wait();
}

/// Every test here starts processes whose first reaper or supervisor sweeps the dead
/// owners of the machine: one test at a time, so no sweep takes another test's.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Started {
    supervisor: Child,
    program: u32,
    sleeper: u32,
    escapee: u32,
    dir: PathBuf,
}

fn start(root: &Path) -> Started {
    let mut supervisor = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SUPERVISE_TEST_ROOT", root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = supervisor.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = loop {
        let line = lines
            .next()
            .expect("the helper ended before it was ready")
            .unwrap();
        // libtest prints "test helper ... " without a newline before our output.
        if let Some(at) = line.find("@@ready") {
            break line[at..].to_string();
        }
    };
    // Keep reading in the background so the program never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let f: Vec<&str> = ready.split_ascii_whitespace().collect();
    let started = Started {
        program: f[1].parse().unwrap(),
        sleeper: f[3].parse().unwrap(),
        escapee: f[4].parse().unwrap(),
        dir: PathBuf::from(f[5]),
        supervisor,
    };
    assert_eq!(f[2].parse::<u32>().unwrap(), started.supervisor.id());
    started
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn sigkill(pid: u32) {
    kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();
}

#[test]
fn a_sigkilled_program_leaves_no_descendant_and_no_registered_dir() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut s = start(root.path());
    assert!(s.dir.join("inner/file").exists());
    assert!(!gone(s.sleeper) && !gone(s.escapee));
    sigkill(s.program);
    // The supervisor exits once it has cleaned up: that is the synchronisation point.
    let status = s.supervisor.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "the program's fate, as an exit code"
    );
    assert!(gone(s.program), "program");
    assert!(gone(s.sleeper), "the program's child");
    assert!(gone(s.escapee), "the setsid escapee");
    assert!(!s.dir.exists(), "the registered directory");
}

#[test]
fn a_sigkilled_supervisor_takes_the_program_with_it() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut s = start(root.path());
    let program = pidfd_open(
        Pid::from_raw(s.program as i32).unwrap(),
        PidfdFlags::empty(),
    )
    .unwrap();
    sigkill(s.supervisor.id());
    s.supervisor.wait().unwrap();
    // The program gets SIGKILL from the kernel (PR_SET_PDEATHSIG): wait for its pidfd.
    let mut fds = [PollFd::new(&program, PollFlags::IN)];
    let minute = Timespec {
        tv_sec: 60,
        tv_nsec: 0,
    };
    assert_eq!(
        poll(&mut fds, Some(&minute)).unwrap(),
        1,
        "the program died"
    );
    // Its children outlived it, re-parented away from the dead supervisor; so did the
    // supervisor's directory. The next sweep on the machine (any reaper's or supervisor's
    // first, or this call) knows them by the dead supervisor's marker and cgroup.
    assert!(
        !dead(s.sleeper) && !dead(s.escapee),
        "they outlive the kill itself"
    );
    let supervisor_dir = supervisor_dir_of(s.supervisor.id());
    assert!(
        supervisor_dir.is_some(),
        "the dead supervisor's directory is there"
    );
    let report = proc_reaper::sweep_dead_owners();
    assert!(report.killed >= 2, "{report:?}");
    assert!(dead(s.sleeper), "the program's child");
    assert!(dead(s.escapee), "the setsid escapee");
    assert!(!s.dir.exists(), "the path the program registered");
    assert!(
        supervisor_dir.is_some_and(|d| !d.exists()),
        "the supervisor's directory"
    );
    assert!(report.supervisor_dirs >= 1, "{report:?}");
}

/// A reaper's owner SIGKILLed (no supervisor): the trees it spawned live on until the
/// next sweep, which knows them by the owner's cgroup, where there is one.
#[test]
fn a_sigkilled_reapers_trees_are_ended_by_the_next_sweep() {
    sigkilled_owner_then_sweep("reaper");
}

/// The same without a cgroup: only the trees' markers name the dead owner.
#[test]
fn without_a_cgroup_the_markers_name_the_dead_owner() {
    sigkilled_owner_then_sweep("subreaper");
}

fn sigkilled_owner_then_sweep(kind: &str) {
    let _serial = serial();
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "reaper_owner",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("REAPER_OWNER_TEST", kind)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(owner.stdout.take().unwrap()).lines();
    let ready = loop {
        let line = lines.next().expect("the owner ended early").unwrap();
        if let Some(at) = line.find("@@ready") {
            break line[at..].to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let pids: Vec<u32> = ready
        .split_ascii_whitespace()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "{ready}");
    sigkill(owner.id());
    owner.wait().unwrap();
    assert!(
        pids.iter().all(|p| !dead(*p)),
        "the tree outlives its owner's kill"
    );
    let report = proc_reaper::sweep_dead_owners();
    for pid in &pids {
        assert!(dead(*pid), "pid {pid} of the dead owner's tree: {report:?}");
    }
    assert!(report.killed >= 3, "{report:?}");
}

/// Not a test: the owner for the test above. A reaper, a tree with a plain child and a
/// `setsid` escapee; reports, then waits to be SIGKILLed.
#[test]
#[ignore = "helper process, run by the other tests in this file"]
fn reaper_owner() {
    let Some(kind) = std::env::var_os("REAPER_OWNER_TEST") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let reaper = if kind == "subreaper" {
            proc_reaper::Reaper::subreaper_only().unwrap()
        } else {
            proc_reaper::Reaper::new().unwrap()
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo $$; sleep 60 & echo $!; (setsid sleep 60 & echo $!); wait",
        ]);
        let _child = reaper
            .command(cmd)
            .on_line(32, move |_, line| {
                let _ = tx.send(String::from_utf8_lossy(line).into_owned());
            })
            .spawn()
            .unwrap();
        let mut pids = Vec::new();
        while pids.len() < 3 {
            pids.push(rx.recv().await.unwrap());
        }
        println!("@@ready {}", pids.join(" "));
        std::future::pending::<()>().await;
    });
}

/// `true` once `pid` has exited (gone, or a zombie waiting for a parent to reap it).
fn dead(pid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return true;
    };
    stat.rsplit(|b| *b == b')')
        .next()
        .is_some_and(|s| s.trim_ascii_start().starts_with(b"Z"))
}

/// The temp-dir directory of the supervisor with this PID, if it is there.
fn supervisor_dir_of(pid: u32) -> Option<PathBuf> {
    let prefix = format!("proc-reaper-supervisor-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
}
