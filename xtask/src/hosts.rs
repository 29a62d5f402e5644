//! `cargo xtask hosts`: the test binaries `cargo test --workspace` built, run again on
//! two hosts unlike a root CI machine with a writable cgroup v2 hierarchy:
//!
//! - **unprivileged**: as the user `nobody`, each binary in a copy of its package that
//!   the user can write (tests may write to their working directory);
//! - **no cgroup v2**: in a private mount namespace (`unshare -m`) with an empty tmpfs
//!   over the cgroup v2 mount, so every crate takes its path without cgroups.
//!
//! It reuses the built binaries (no rebuild) and needs root to switch user and mount;
//! without root, or without `runuser`/`unshare`, it says so and does not fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{Result, workspace_root};

/// The unprivileged user the first run switches to.
const USER: &str = "nobody";

/// A test binary holds the gate at most this long.
const LIMIT: Duration = Duration::from_secs(600);

struct TestBinary {
    name: String,
    package_dir: PathBuf,
    exe: PathBuf,
}

#[derive(Clone, Copy)]
enum Host {
    Unprivileged,
    NoCgroup,
}

impl Host {
    fn label(self) -> &'static str {
        match self {
            Host::Unprivileged => "unprivileged",
            Host::NoCgroup => "no cgroup v2",
        }
    }
}

pub fn main() -> Result<bool> {
    if !rustix::process::geteuid().is_root() {
        println!("hosts: skipped: switching user and mounting need root (CI runs as root)");
        return Ok(true);
    }
    for tool in ["runuser", "unshare", "chown"] {
        if !on_path(tool) {
            println!("hosts: skipped: `{tool}` is not installed");
            return Ok(true);
        }
    }
    let root = workspace_root();
    let binaries = test_binaries(&root)?;
    if !readable_by_user(&root) {
        println!(
            "hosts: skipped: {} is not readable by `{USER}` (its test binaries cannot run as that user)",
            root.display()
        );
        return Ok(true);
    }
    let copy = writable_copy(&root)?;
    let v2 = cgroup_v2_mount();
    match &v2 {
        Some(mount) => println!("hosts: cgroup v2 at {} (hidden in the second run)", mount),
        None => println!("hosts: no cgroup v2 mounted here: the second run is this host's own"),
    }
    let mut failed = Vec::new();
    for host in [Host::Unprivileged, Host::NoCgroup] {
        println!("==> the test binaries, {}", host.label());
        for binary in &binaries {
            if matches!(host, Host::NoCgroup) && cgroup_free(binary) {
                println!(
                    "  {:<7} {:<24} its crate reads no cgroup",
                    "same", binary.name
                );
                continue;
            }
            let (ok, summary) = run(binary, host, &root, copy.path(), v2.as_deref())?;
            println!(
                "  {:<7} {:<24} {summary}",
                if ok { "ok" } else { "FAILED" },
                binary.name
            );
            if !ok {
                failed.push(format!("{} ({})", binary.name, host.label()));
            }
        }
    }
    if failed.is_empty() {
        println!("hosts: every test binary passed on both hosts");
        Ok(true)
    } else {
        println!("hosts: failed: {}", failed.join(", "));
        Ok(false)
    }
}

/// Crates that never read a cgroup (checked by tidy: `cgroup` appears nowhere in their
/// sources or tests), whose tests hiding cgroup v2 cannot change: the second run skips
/// them, to keep CI within its time.
pub(crate) const CGROUP_FREE: &[&str] =
    &["scoped-temp", "bounded-stream", "rate-gate", "ttl-cache"];

fn cgroup_free(binary: &TestBinary) -> bool {
    binary
        .package_dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| CGROUP_FREE.contains(&n))
}

/// The test executables of the workspace, from `cargo test --no-run`'s JSON messages.
fn test_binaries(root: &Path) -> Result<Vec<TestBinary>> {
    let output = crate::cargo()
        .args(["test", "--workspace", "--no-run", "--message-format=json"])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err("cargo test --no-run failed".into());
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(exe), Some(manifest), Some(name), Some(true)) = (
            message["executable"].as_str(),
            message["manifest_path"].as_str(),
            message["target"]["name"].as_str(),
            message["profile"]["test"].as_bool(),
        ) else {
            continue;
        };
        binaries.push(TestBinary {
            name: name.to_string(),
            package_dir: Path::new(manifest).parent().unwrap_or(root).to_path_buf(),
            exe: PathBuf::from(exe),
        });
    }
    Ok(binaries)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// `true` when the user can read the workspace (every directory above it searchable).
fn readable_by_user(root: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", USER, "--", "test", "-r"])
        .arg(root.join("Cargo.toml"))
        .status()
        .is_ok_and(|s| s.success())
}

/// The workspace's sources (not `target/`), copied where the user can write.
fn writable_copy(root: &Path) -> Result<tempfile::TempDir> {
    let copy = tempfile::Builder::new()
        .prefix("leakproof-hosts-")
        .tempdir()?;
    copy_tree(root, copy.path())?;
    let status = Command::new("chown")
        .args(["-R", USER])
        .arg(copy.path())
        .status()?;
    if !status.success() {
        return Err(format!("chown -R {USER} {} failed", copy.path().display()).into());
    }
    Ok(copy)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(&name))?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

/// Where cgroup v2 is mounted, from `/proc/self/mountinfo` (pure or hybrid layouts).
fn cgroup_v2_mount() -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_ascii_whitespace().next()? == "cgroup2")
            .then(|| left.split_ascii_whitespace().nth(4).map(str::to_string))
            .flatten()
    })
}

/// Read by leakproof's shutdown-deadline test (`tests/signal.rs`): the main test run
/// measures the deadline 20 times, each host here 5 times, to keep CI within its time.
const DEADLINE_RUNS: &str = "LEAKPROOF_DEADLINE_RUNS";

/// Runs one binary on one host; returns whether it passed and libtest's summary line.
fn run(
    binary: &TestBinary,
    host: Host,
    root: &Path,
    copy: &Path,
    v2: Option<&str>,
) -> Result<(bool, String)> {
    let mut command = match host {
        Host::Unprivileged => {
            let relative = binary
                .package_dir
                .strip_prefix(root)
                .unwrap_or(Path::new(""));
            let mut c = Command::new("runuser");
            c.args(["-u", USER, "--", "env"])
                .arg(format!("HOME={}", copy.display()))
                .arg(format!("{DEADLINE_RUNS}=5"))
                .arg(&binary.exe)
                .current_dir(copy.join(relative));
            c
        }
        Host::NoCgroup => {
            let mut c = Command::new("unshare");
            c.arg("-m");
            match v2 {
                Some(mount) => {
                    c.args([
                        "sh",
                        "-c",
                        r#"mount -t tmpfs none "$0" && exec "$@""#,
                        mount,
                    ]);
                }
                None => {
                    c.arg("--");
                }
            }
            c.arg(&binary.exe)
                .current_dir(&binary.package_dir)
                .env(DEADLINE_RUNS, "5");
            c
        }
    };
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(LIMIT) {
        Ok(output) => output?,
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            return Ok((
                false,
                format!("still running after {} s: killed", LIMIT.as_secs()),
            ));
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .rfind(|l| l.starts_with("test result:"))
        .unwrap_or("no summary")
        .to_string();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in failure_lines(stdout.lines().chain(stderr.lines())) {
            println!("      {line}");
        }
    }
    Ok((output.status.success(), summary))
}

/// What failed, for the log: libtest's failure lines, and each panic with its message
/// (the lines after "panicked at", up to the backtrace note or a blank line), at most
/// 60 lines in all. A failure seen only on another host is otherwise hard to chase.
fn failure_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut in_panic = false;
    for line in lines {
        if line.contains("panicked at") {
            in_panic = true;
        } else if in_panic
            && (line.trim().is_empty()
                || line.starts_with("note:")
                || line.starts_with("stack backtrace:"))
        {
            in_panic = false;
        }
        if in_panic || line.contains("FAILED") {
            out.push(line);
        }
        if out.len() == 60 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::failure_lines;

    #[test]
    fn a_failure_keeps_each_panic_message() {
        let log = [
            "running 2 tests",
            "test a ... FAILED",
            "thread 'a' (7) panicked at tests/x.rs:9:5:",
            "2 of 300 forked processes left as zombies: [41, 42]",
            "stack backtrace:",
            "   0: frame",
            "thread 'b' (8) panicked at tests/x.rs:12:5:",
            "zombies: [43]",
            "",
            "test result: FAILED. 0 passed; 2 failed",
        ];
        assert_eq!(
            failure_lines(log.into_iter()),
            [
                "test a ... FAILED",
                "thread 'a' (7) panicked at tests/x.rs:9:5:",
                "2 of 300 forked processes left as zombies: [41, 42]",
                "thread 'b' (8) panicked at tests/x.rs:12:5:",
                "zombies: [43]",
                "test result: FAILED. 0 passed; 2 failed",
            ]
        );
    }
}
