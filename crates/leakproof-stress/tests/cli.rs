//! The `leakproof-stress` binary against scripts that leak and one that does not,
//! judged from outside: its exit status, its report, and the machine afterwards (the
//! leaked process gone, no temp directory of its own left).

mod common;

use std::path::Path;
use std::process::Output;

use common::{stress_command, text};
use serde_json::Value;

/// Runs the binary with `args`, its `TMPDIR` and working directory in `dir`.
fn torture(dir: &Path, args: &[&str]) -> Output {
    stress_command(dir).args(args).output().unwrap()
}

fn report(dir: &Path) -> Value {
    let json = std::fs::read_to_string(dir.join("leakproof-stress-report/report.json")).unwrap();
    serde_json::from_str(&json).unwrap()
}

/// The torture's own temp root is gone: nothing under the `TMPDIR` it was given.
fn assert_tmp_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left under the torture's TMPDIR: {left:?}");
}

/// The PIDs a failed check named ("1 left: 4242 sleep 300; ...").
fn pids_named(report: &Value, what: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for case in report["cases"].as_array().unwrap() {
        for check in case["checks"].as_array().unwrap() {
            if check["what"] == what && check["ok"] == false {
                let observed = check["observed"].as_str().unwrap();
                let list = observed.split_once(": ").unwrap().1;
                for item in list.split("; ") {
                    pids.push(item.split(' ').next().unwrap().parse().unwrap());
                }
            }
        }
    }
    pids
}

/// `true` while `pid` exists and runs its `comm` (a reused PID runs something else).
fn running(pid: u32, comm: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
}

#[test]
fn a_clean_script_passes_every_round() {
    let dir = tempfile::tempdir().unwrap();
    // Its child outlives a signal by at most 0.3 s: within the settle time, not a leak.
    let out = torture(
        dir.path(),
        &[
            "run",
            "--runs",
            "2",
            "--terms",
            "2",
            "--kills",
            "2",
            "--",
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 0.3 & wait",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report = report(dir.path());
    assert_eq!(report["passed"], true);
    assert_eq!(report["cases"].as_array().unwrap().len(), 6);
    assert!(
        dir.path()
            .join("leakproof-stress-report/junit.xml")
            .exists()
    );
    assert_tmp_empty(dir.path());
}

#[test]
fn a_temp_dir_left_behind_fails_the_run_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let out = torture(
        dir.path(),
        &[
            "run",
            "--runs",
            "1",
            "--terms",
            "0",
            "--kills",
            "0",
            "--",
            "sh",
            "-c",
            "mktemp -d >/dev/null",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("LEAK  run 1: leaves no entry in its TMPDIR: 1 left: tmp."),
        "{}",
        text(&out)
    );
    let junit = std::fs::read_to_string(dir.path().join("leakproof-stress-report/junit.xml"));
    assert!(junit.unwrap().contains("failures=\"1\""));
    assert_tmp_empty(dir.path());
}

/// A `setsid` daemon, with its environment kept or cleared, found with a cgroup per run
/// (where this host allows one) and without: reported by PID, then ended.
#[test]
fn a_setsid_daemon_is_caught_and_ended_on_every_path() {
    for (script, cgroup) in [
        ("setsid sleep 300 &", true),
        ("setsid sleep 300 &", false),
        ("setsid env -i sleep 300 &", true),
        ("setsid env -i sleep 300 &", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["run", "--runs", "1", "--terms", "1", "--kills", "1"];
        if !cgroup {
            args.push("--no-cgroup");
        }
        // Rounds of 0.2 s, so the signals land after the fork.
        let script = format!("{script} sleep 0.2");
        args.extend([
            "--window", "0.1", "--settle", "0.5", "--", "sh", "-c", &script,
        ]);
        let out = torture(dir.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{script}: {}", text(&out));
        let report = report(dir.path());
        let pids = pids_named(&report, "no process outlives the run");
        assert_eq!(
            pids.len(),
            3,
            "{script} (cgroup {cgroup}): one per round: {report:#}"
        );
        for pid in pids {
            assert!(!running(pid, "sleep"), "{script}: daemon {pid} still runs");
        }
        assert_tmp_empty(dir.path());
    }
}

#[test]
fn a_survivor_that_never_reaps_its_child_leaves_a_zombie_that_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    // The daemon forks a short child, then becomes `sleep`, which never waits for it.
    let out = torture(
        dir.path(),
        &[
            "run",
            "--runs",
            "1",
            "--terms",
            "0",
            "--kills",
            "0",
            "--settle",
            "0.5",
            "--",
            "sh",
            "-c",
            "setsid sh -c 'true & exec sleep 300' &",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = report(dir.path());
    assert_eq!(
        pids_named(&report, "no zombie is left unreaped").len(),
        1,
        "{report:#}"
    );
    assert_eq!(pids_named(&report, "no process outlives the run").len(), 1);
}

#[test]
fn a_program_that_ignores_sigterm_misses_its_deadline_and_is_ended() {
    let dir = tempfile::tempdir().unwrap();
    let out = torture(
        dir.path(),
        &[
            "run",
            "--runs",
            "0",
            "--terms",
            "1",
            "--kills",
            "0",
            "--window",
            "0.05",
            "--deadline",
            "0.3",
            "--",
            "sh",
            "-c",
            "trap '' TERM; sleep 30",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("exits within the deadline after SIGTERM: still running"),
        "{}",
        text(&out)
    );
    assert_tmp_empty(dir.path());
}

#[test]
fn the_summary_is_appended_for_github_actions() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let out = stress_command(dir.path())
        .args([
            "run", "--runs", "1", "--terms", "0", "--kills", "0", "--", "true",
        ])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(&summary).unwrap();
    assert!(
        written.starts_with("earlier step\n### leakproof-stress: `true` passed"),
        "{written}"
    );
}

#[test]
fn bad_usage_exits_2_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["run", "true"][..], "no command: put it after `--`"),
        (
            &["run", "--runs", "x", "--", "true"][..],
            "--runs takes a whole number",
        ),
        (
            &["run", "--", "/nonexistent/program"][..],
            "could not spawn",
        ),
        (&["soak", "--", "true"][..], "soak needs --load"),
        (
            &["soak", "--load", "true", "--rounds", "2", "--", "true"][..],
            "--rounds takes at least 3 (a trend) without --interval",
        ),
        (
            &["soak", "--runs", "2", "--load", "true", "--", "true"][..],
            "unknown option \"--runs\" for `soak`",
        ),
    ] {
        let out = torture(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
}

/// A reader that went away (`| head`) changes nothing: the leak still exits 1 and the
/// reports are still written.
#[test]
fn a_closed_stdout_keeps_the_verdict_and_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = stress_command(dir.path())
        .args(["run", "--runs", "1", "--terms", "0", "--kills", "0", "--"])
        .args(["sh", "-c", "mktemp -d >/dev/null"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
    assert_eq!(report(dir.path())["failed"], 1);
    assert_tmp_empty(dir.path());
}
