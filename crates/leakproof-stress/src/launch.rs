//! One start of the command under test, and the judging of what it left once its own
//! process exited: shared by the torture's rounds and the soak.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proc_reaper::{Outcome, Reaper};
use rustix::process::Signal;

use crate::kill;
use crate::report::Case;
use crate::scan::{self, Process};
use crate::{Error, MARKER_VAR, Result};

/// What the torture and the soak start, and where: the command, whether it gets a
/// cgroup, the root of the private temp directories.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) cgroups: bool,
    pub(crate) temp_root: Option<std::path::PathBuf>,
}

impl Target {
    pub(crate) fn new<I, S>(program: impl Into<OsString>, args: I) -> Target
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Target {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            cgroups: true,
            temp_root: None,
        }
    }

    /// The command as one line, for reports.
    pub(crate) fn command_line(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A reaper, with cgroups where allowed unless they are turned off.
    pub(crate) fn reaper(&self) -> Result<Reaper> {
        Ok(if self.cgroups {
            Reaper::new()?
        } else {
            Reaper::subreaper_only()?
        })
    }

    /// The root of the private temp directories: the one given, or a new one in the
    /// system temp directory.
    pub(crate) fn root(&self) -> std::path::PathBuf {
        self.temp_root.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("leakproof-stress-{}", std::process::id()))
        })
    }

    /// Removes the root, unless it was given.
    pub(crate) fn remove_root(&self, root: &Path) {
        if self.temp_root.is_none() {
            let _ = std::fs::remove_dir_all(root);
        }
    }

    /// Starts the command (see [`Launch::start`]).
    pub(crate) fn start(
        &self,
        reaper: &Reaper,
        temp: &Path,
        marker: &str,
        env: &[(&str, String)],
    ) -> Result<Launch> {
        Launch::start(reaper, &self.program, &self.args, temp, marker, env)
    }
}

/// Creates `dir` and its parents.
pub(crate) fn make_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::TempRoot {
        path: dir.to_owned(),
        source,
    })
}

/// The command, started with a private `TMPDIR` and the marker.
pub(crate) struct Launch {
    child: proc_reaper::Child,
    leader: u32,
    /// The cgroup v2 the reaper gave its tree, if any.
    cgroup: Option<String>,
    /// `MARKER_VAR=value`, as it appears in `/proc/<pid>/environ`.
    marker: String,
}

impl Launch {
    /// Starts `program` with `args` in a process group of its own through `reaper`,
    /// with `TMPDIR` (and `TMP`, `TEMP`, `TEMPDIR`) set to `temp`, the marker set to
    /// `marker`, stdin from `/dev/null`, the last 16 KiB of output kept.
    pub(crate) fn start(
        reaper: &Reaper,
        program: &OsStr,
        args: &[OsString],
        temp: &Path,
        marker: &str,
        env: &[(&str, String)],
    ) -> Result<Launch> {
        let mut command = Command::new(program);
        command
            .args(args)
            .env(MARKER_VAR, marker)
            .stdin(Stdio::null());
        for var in ["TMPDIR", "TMP", "TEMP", "TEMPDIR"] {
            command.env(var, temp);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let child = reaper
            .command(command)
            .tail(16 << 10)
            .grace(Duration::from_millis(500))
            .spawn()?;
        let leader = child.pid();
        Ok(Launch {
            child,
            leader,
            cgroup: own_cgroup(leader),
            marker: format!("{MARKER_VAR}={marker}"),
        })
    }

    /// The command's own PID.
    pub(crate) fn pid(&self) -> u32 {
        self.leader
    }

    /// Resolves once the command's own process has exited (the rest left as it is).
    pub(crate) async fn exited(&mut self) {
        self.child.exited().await;
    }

    /// Sends `signal` to the command's own process.
    pub(crate) fn signal(&self, signal: Signal) {
        kill::send(self.leader, signal);
    }

    /// SIGTERM, then up to `deadline` for an exit: checked in `case`.
    pub(crate) async fn terminate(&mut self, case: &mut Case, deadline: Duration) {
        self.signal(Signal::TERM);
        let sent = Instant::now();
        let done = tokio::time::timeout(deadline, self.exited()).await;
        let waited = sent.elapsed();
        case.check(
            "exits within the deadline after SIGTERM",
            done.is_ok(),
            if done.is_ok() {
                format!("exited {} after SIGTERM", human(waited))
            } else {
                format!(
                    "still running {:.1} s after SIGTERM (deadline {:.1} s)",
                    waited.as_secs_f64(),
                    deadline.as_secs_f64()
                )
            },
        );
        case.figure("exit after SIGTERM", human(waited));
    }

    /// Once the command's own process has exited (or hung, and is ended here): looks
    /// for up to `settle` at what it left, checks it in `case` (and, if `want_success`,
    /// its exit status 0), then ends the tree and anything the reaper could not
    /// attribute. Returns the reaper's outcome (output tails), if it could reap.
    pub(crate) async fn judge(
        self,
        case: &mut Case,
        settle: Duration,
        want_success: bool,
    ) -> Option<Outcome> {
        // A run that hung or ignored its deadline: its tree is ended first; nothing of
        // it is counted as left behind, it failed its own check already.
        let hung = Process::read(self.leader).is_some_and(|p| !p.is_zombie());
        let left = if hung {
            Left::default()
        } else {
            Left::settle(self.leader, &self.marker, self.cgroup.as_deref(), settle).await
        };
        let outcome = if hung {
            self.child.kill().await
        } else {
            self.child.wait().await
        };
        let code = match &outcome {
            Ok(o) => describe_status(o.status),
            Err(e) => format!("not reaped: {e}"),
        };
        case.figure("exit", code.clone());
        if want_success && !hung {
            let ok = outcome.as_ref().is_ok_and(|o| o.success());
            case.check("exits with status 0", ok, code);
        }
        case.check(
            "no process outlives the run",
            left.survivors.is_empty(),
            describe(&left.survivors, "left"),
        );
        case.check(
            "no zombie is left unreaped",
            left.zombies.is_empty(),
            describe(&left.zombies, "zombie"),
        );
        case.figure("processes left", left.survivors.len().to_string());
        // What the reaper could not attribute (an escapee with no marker, outside any
        // cgroup, not re-parented here) is ended here.
        let pids: Vec<u32> = left.survivors.iter().map(|(pid, _)| *pid).collect();
        kill::kill_and_reap(&pids);
        outcome.ok()
    }

    /// Ends the tree without judging it (a helper run).
    pub(crate) async fn end(self) {
        let _ = self.child.kill().await;
    }

    /// Ends what is left of the tree (the grace first) without judging it; `true` for
    /// an exit status 0 (a helper run that finished).
    pub(crate) async fn success(self) -> bool {
        self.child.wait().await.is_ok_and(|o| o.success())
    }
}

/// Checks `temp` is empty in `case`, adds the command's output tails to a failed case,
/// then removes `temp`.
pub(crate) fn judge_temp(case: &mut Case, temp: &Path, outcome: Option<&Outcome>) {
    let entries = scan::entry_names(temp);
    case.check(
        "leaves no entry in its TMPDIR",
        entries.is_empty(),
        if entries.is_empty() {
            "none".to_owned()
        } else {
            format!("{} left: {}", entries.len(), first_few(&entries))
        },
    );
    case.figure("temp entries left", entries.len().to_string());
    if !case.passed()
        && let Some(o) = outcome
    {
        for (name, captured) in [("stderr", &o.stderr), ("stdout", &o.stdout)] {
            let text = captured.text();
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            for line in tail.into_iter().rev() {
                case.note(format!("{name}: {line}"));
            }
        }
    }
    if let Err(e) = std::fs::remove_dir_all(temp) {
        tracing::warn!(path = %temp.display(), error = %e, "leakproof-stress: could not remove a round's TMPDIR");
    }
}

/// What a run left behind.
#[derive(Debug, Default)]
struct Left {
    /// Live processes, with their command lines.
    survivors: Vec<(u32, String)>,
    /// Zombies whose parent is not this process (which reaps its own).
    zombies: Vec<(u32, String)>,
}

impl Left {
    /// Looks until nothing the command started is left, or `settle` is over.
    async fn settle(leader: u32, marker: &str, cgroup: Option<&str>, settle: Duration) -> Left {
        let until = Instant::now() + settle;
        loop {
            let left = Left::look(leader, marker, cgroup);
            if left.is_clean() || Instant::now() >= until {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn look(leader: u32, marker: &str, cgroup: Option<&str>) -> Left {
        let me = std::process::id();
        let all = scan::processes();
        let mut found: BTreeSet<u32> = scan::with_marker(marker).into_iter().collect();
        if let Some(path) = cgroup {
            found.extend(scan::cgroup_procs(path));
        }
        found.extend(scan::descendants_in(&all, me).iter().map(|p| p.pid));
        found.remove(&leader);
        // Their own children, wherever the marker or the cgroup found them.
        for pid in found.clone() {
            found.extend(scan::descendants_in(&all, pid).iter().map(|p| p.pid));
        }
        let mut left = Left::default();
        for pid in found {
            let Some(p) = Process::read(pid) else {
                continue;
            };
            if !p.is_zombie() {
                left.survivors.push((pid, scan::command_line(pid)));
            } else if p.ppid != me {
                left.zombies.push((pid, scan::command_line(pid)));
            }
        }
        left
    }

    fn is_clean(&self) -> bool {
        self.survivors.is_empty() && self.zombies.is_empty()
    }
}

/// `"2 left: 4242 sleep 600; 4243 sh -c ..."`, or `"none"`.
fn describe(list: &[(u32, String)], what: &str) -> String {
    if list.is_empty() {
        return "none".to_owned();
    }
    let shown: Vec<String> = list
        .iter()
        .take(5)
        .map(|(pid, cmd)| format!("{pid} {cmd}"))
        .collect();
    let more = list.len().saturating_sub(5);
    format!(
        "{} {what}: {}{}",
        list.len(),
        shown.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}

/// The leader's cgroup v2 when it is not this process's own: the cgroup the reaper
/// gave its tree.
fn own_cgroup(leader: u32) -> Option<String> {
    let theirs = scan::cgroup_of(leader)?;
    (scan::cgroup_of(std::process::id()).as_deref() != Some(theirs.as_str())).then_some(theirs)
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code.to_string(),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
}

/// `0.4 ms`, `312.0 ms`, `2.41 s`.
pub(crate) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn first_few(names: &[String]) -> String {
    let mut shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        shown.push_str(&format!(", and {} more", names.len() - 5));
    }
    shown
}
