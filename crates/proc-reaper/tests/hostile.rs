//! Children that fight back: an escapee forked before the leader's first line could be
//! moved anywhere, a holder of the output pipe outside the tree, a fork storm that
//! ignores SIGTERM. Each guarantee is observed from `/proc`, on the path this host gives.

use std::io::Write;
use std::time::Duration;

use proc_reaper::{Reaper, Stream};
use tokio::sync::mpsc;

mod common;
use common::*;

/// `true` while `pid` is a zombie child of this process.
fn zombie_of_ours(pid: u32) -> bool {
    let stat = stat_line(pid);
    let mut fields = stat.split_ascii_whitespace();
    fields.next() == Some("Z") && fields.next() == Some(&std::process::id().to_string())
}

/// `/proc/<pid>/stat` from the state on (state, parent, group, session, ...); empty
/// once the process is gone.
fn stat_line(pid: u32) -> String {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
    let close = stat.iter().rposition(|b| *b == b')').map_or(0, |i| i + 1);
    String::from_utf8_lossy(&stat[close..]).trim().to_owned()
}

/// Item: an escapee that leaves at once (`setsid env -i`, the leader's first command)
/// is still in the tree's cgroup, so it still dies with its tree. On the subreaper path
/// this case is a documented limit (no marker, no group, no cgroup): there the test
/// checks that the call still returns and the rest of the tree is gone.
#[tokio::test]
async fn an_escapee_forked_at_once_is_born_in_the_cgroup() {
    let _serial = SERIAL.lock().await;
    let reaper = Reaper::new().unwrap();
    // No `read`, no delay: the very first thing the leader does is fork the escapee.
    let script = r#"(setsid env -i sh -c 'echo $$; exec sleep 60' &); echo $$; exec sleep 60"#;
    let (child, mut rx) = reporting(&reaper, script);
    let leader = child.pid();
    let pids = next_pids(&mut rx, 2).await;
    let escapee = *pids.iter().find(|p| **p != leader).unwrap();
    let outcome = child.kill().await.unwrap();
    if !reaper.uses_cgroups() {
        eprintln!("no writable cgroup v2 here: the env-less early escapee is a documented limit");
        assert!(gone(leader));
        kill_and_reap(escapee);
        return;
    }
    assert!(outcome.tree.cgroup, "the leader ran inside its cgroup");
    assert!(
        !std::path::Path::new(&format!("/proc/{escapee}")).exists() || zombie_of_ours(escapee),
        "pid {escapee}, forked before spawn returned, outlived its tree: {outcome:?}"
    );
    assert!(gone(escapee), "the escapee was reaped");
    assert_eq!(in_tree_cgroups(), 0, "the tree's cgroup is empty");
    assert!(zombies().is_empty(), "zombies: {:?}", zombies());
}

/// Item: a time limit holds while a process outside the tree holds the output pipe
/// (here, this test, which opened it through `/proc`, as a process can). Past the grace
/// the reading stops, our end is closed, and the outcome says the output was cut.
/// The clock is paused: a wait that never ends runs into the hour-long guard at once.
#[tokio::test(start_paused = true)]
async fn wait_timeout_returns_while_an_outsider_holds_the_output() {
    let _serial = SERIAL.lock().await;
    let reaper = Reaper::new().unwrap();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    let mut cmd = sh("echo ready; exec sleep 60");
    cmd.stdin(std::process::Stdio::null());
    let child = reaper
        .command(cmd)
        .grace(Duration::from_millis(100))
        .on_line(64, move |stream, line| {
            if stream == Stream::Stdout && line == b"ready" {
                let _ = ready_tx.send(());
            }
        })
        .spawn()
        .unwrap();
    let leader = child.pid();
    ready.recv().await.unwrap();
    let mut holder = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{leader}/fd/1"))
        .expect("the pipe can be opened through /proc");
    let waited = tokio::time::timeout(
        Duration::from_secs(3600),
        child.wait_timeout(Duration::from_millis(300)),
    )
    .await;
    let outcome = waited
        .expect("wait_timeout returned while the pipe was held")
        .unwrap();
    assert!(outcome.timed_out);
    assert!(outcome.stdout.cut, "the output says it was cut");
    assert!(
        !outcome.stderr.cut,
        "stderr was not held: it ended normally"
    );
    assert_eq!(outcome.stdout.text(), "ready\n");
    assert!(gone(leader));
    let err = holder
        .write_all(b"late\n")
        .expect_err("our read end is closed");
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
}

/// Item: a fork storm that ignores SIGTERM, ended on timeout, leaves no zombie. On the
/// cgroup path `cgroup.kill` kills members no scan ever saw, and their zombies, adopted
/// here as their parents die, are known by the cgroup they died in.
#[tokio::test]
async fn a_fork_storm_ended_on_timeout_leaves_no_zombie() {
    let _serial = SERIAL.lock().await;
    let reaper = Reaper::new().unwrap();
    let (started, mut rx) = reporting_graced(&reaper, sh(STORM), Duration::from_millis(50));
    // Let it fork a few hundred, then run out of time while it is still forking.
    let mut forked = next_pids(&mut rx, 300).await;
    let outcome = started.wait_timeout(Duration::ZERO).await.unwrap();
    while let Ok(pid) = rx.try_recv() {
        forked.push(pid);
    }
    assert!(outcome.timed_out);
    assert_eq!(outcome.tree.cgroup, reaper.uses_cgroups());
    assert_storm_gone(&forked, &outcome.tree);
}

/// A shell loop forking `setsid` sleepers that ignore SIGTERM, printing each one's PID.
const STORM: &str = r#"trap '' TERM; while :; do setsid sleep 60 & echo $!; done"#;

/// Every process of a storm is gone: none alive, none a zombie of ours, no zombie at
/// all here, no tree cgroup left.
fn assert_storm_gone(forked: &[u32], tree: &proc_reaper::TreeReport) {
    let left: Vec<u32> = forked
        .iter()
        .copied()
        .filter(|pid| zombie_of_ours(*pid))
        .collect();
    assert!(
        left.is_empty(),
        "{} of {} forked processes left as zombies: {left:?} ({tree:?}); their stat: {:?}",
        left.len(),
        forked.len(),
        left.iter().map(|pid| stat_line(*pid)).collect::<Vec<_>>(),
    );
    let alive: Vec<u32> = forked
        .iter()
        .copied()
        .filter(|pid| !gone(*pid) && !zombie_of_ours(*pid))
        .collect();
    assert!(
        alive.is_empty(),
        "{} of {} forked processes outlived their tree: {:?}",
        alive.len(),
        forked.len(),
        &alive[..alive.len().min(10)]
    );
    assert!(zombies().is_empty(), "zombies: {:?}", zombies());
    assert_eq!(in_tree_cgroups(), 0);
}

/// Item: a shutdown with a time bound returns at the bound even while a fork storm that
/// ignores SIGTERM is still being killed (here the bound is already past: no grace, one
/// SIGKILL round); what it could not see die is counted in `left` (a CI run reported 570
/// of a storm that had 256 pinned), and ending the tree afterwards without a bound still
/// leaves nothing, zombies included.
#[tokio::test]
async fn a_bounded_shutdown_returns_at_its_bound_during_a_fork_storm() {
    let _serial = SERIAL.lock().await;
    let reaper = Reaper::new().unwrap();
    let (started, mut rx) = reporting_graced(&reaper, sh(STORM), Duration::from_secs(5));
    let mut forked = next_pids(&mut rx, 200).await;
    let reports = reaper
        .shutdown_by(Duration::from_secs(5), std::time::Instant::now())
        .await;
    assert_eq!(reports.len(), 1);
    let report = reports[0];
    assert!(
        report.killed > 0,
        "no grace was left, so SIGKILL: {report:?}"
    );
    // The rest, without a bound.
    let outcome = started.wait_timeout(Duration::ZERO).await.unwrap();
    while let Ok(pid) = rx.try_recv() {
        forked.push(pid);
    }
    assert!(outcome.timed_out || outcome.tree.members > 0);
    assert_storm_gone(&forked, &outcome.tree);
}

/// `Join::AfterSpawn` trades the first instants for `posix_spawn`'s constant cost: an
/// escapee that leaves after the move (here, once told to on stdin) is still held by the
/// cgroup, environment or not.
#[tokio::test]
async fn after_spawn_joining_still_holds_a_later_escapee() {
    let _serial = SERIAL.lock().await;
    let reaper = Reaper::new().unwrap();
    let script =
        r#"read go; (setsid env -i sh -c 'echo $$; exec sleep 60' &); echo $$; exec sleep 60"#;
    let mut cmd = sh(script);
    cmd.stdin(std::process::Stdio::piped());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut child = reaper
        .command(cmd)
        .join(proc_reaper::Join::AfterSpawn)
        .grace(Duration::from_millis(100))
        .on_line(32, move |_, line| {
            if let Some(pid) = std::str::from_utf8(line).ok().and_then(|l| l.parse().ok()) {
                let _ = tx.send(pid);
            }
        })
        .spawn()
        .unwrap();
    child.stdin().unwrap().write_all(b"go\n").unwrap();
    let pids = next_pids(&mut rx, 2).await;
    let escapee = *pids.iter().find(|p| **p != child.pid()).unwrap();
    let outcome = child.kill().await.unwrap();
    assert_eq!(outcome.tree.cgroup, reaper.uses_cgroups());
    if reaper.uses_cgroups() {
        assert!(gone(escapee), "the env-less escapee outlived its tree");
    } else {
        eprintln!("no writable cgroup v2 here: the env-less escapee is a documented limit");
        kill_and_reap(escapee);
    }
    assert!(zombies().is_empty(), "zombies: {:?}", zombies());
}
