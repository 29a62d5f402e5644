//! The command torture: run a program to completion, SIGTERM it and SIGKILL it at
//! random points, and after each round find what it left behind.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proc_reaper::Reaper;
use rustix::process::Signal;

use crate::report::{Case, Report};
use crate::scan::{self, Process};
use crate::{Error, MARKER_VAR, Result};

/// How a round ends the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// Runs it to completion.
    Run,
    /// SIGTERM at a random point; it must exit within the deadline.
    Term,
    /// SIGKILL at a random point.
    Kill,
}

impl Round {
    fn name(self) -> &'static str {
        match self {
            Round::Run => "run",
            Round::Term => "sigterm",
            Round::Kill => "sigkill",
        }
    }
}

/// Runs one command many ways and judges each run from outside.
///
/// Each round starts the command with a private, empty `TMPDIR` (also `TMP`, `TEMP`
/// and `TEMPDIR`) and an environment marker ([`MARKER_VAR`]), in a process group of its
/// own, through a [`proc_reaper::Reaper`] (so this process is a child subreaper: an
/// orphan of the command is re-parented here, not to init). Once the command's own
/// process has exited, the round waits up to the [settle](Torture::settle) time for
/// the rest to go, then judges:
///
/// - **survivors**: live processes carrying the marker, re-parented to this process,
///   or left in the command's cgroup (where the host gives it a cgroup v2 of its own);
/// - **zombies**: exited children a survivor never reaped;
/// - **temp entries**: anything left in the private `TMPDIR`;
/// - for a completed run, exit status 0 within the [timeout](Torture::timeout); for a
///   SIGTERM round, an exit within the [deadline](Torture::deadline).
///
/// Then it ends and removes what it found (the reaper ends the tree; anything it could
/// not attribute is killed by PID-file descriptor; entries are removed), so a torture
/// run leaves the machine as it found it.
#[derive(Debug, Clone)]
pub struct Torture {
    program: OsString,
    args: Vec<OsString>,
    runs: usize,
    terms: usize,
    kills: usize,
    deadline: Duration,
    timeout: Duration,
    settle: Duration,
    window: Option<Duration>,
    seed: u64,
    reclaim_run: bool,
    cgroups: bool,
    temp_root: Option<PathBuf>,
}

impl Torture {
    /// Torture for `program` with `args`: by default 3 completed runs, 3 SIGTERMs, 3
    /// SIGKILLs, a 10 s SIGTERM deadline, a 600 s timeout, 2 s to settle.
    pub fn new<I, S>(program: impl Into<OsString>, args: I) -> Torture
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Torture {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            runs: 3,
            terms: 3,
            kills: 3,
            deadline: Duration::from_secs(10),
            timeout: Duration::from_secs(600),
            settle: Duration::from_secs(2),
            window: None,
            seed: 0x5EED,
            reclaim_run: false,
            cgroups: true,
            temp_root: None,
        }
    }

    /// Completed runs (first, and their median time is the random points' window).
    pub fn runs(mut self, n: usize) -> Self {
        self.runs = n;
        self
    }

    /// Rounds ended by SIGTERM at a random point.
    pub fn terms(mut self, n: usize) -> Self {
        self.terms = n;
        self
    }

    /// Rounds ended by SIGKILL at a random point.
    pub fn kills(mut self, n: usize) -> Self {
        self.kills = n;
        self
    }

    /// How long the command has to exit after SIGTERM (default 10 s).
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }

    /// How long a completed run may take before it counts as hung and is ended
    /// (default 600 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// How long, after the command's own process exits, what it started has to go
    /// before it counts as left behind (default 2 s). The judging stops waiting as
    /// soon as nothing is left.
    pub fn settle(mut self, d: Duration) -> Self {
        self.settle = d;
        self
    }

    /// The span the random signal points are drawn from (default: the median time of
    /// the completed runs; 1 s without any).
    pub fn window(mut self, d: Duration) -> Self {
        self.window = Some(d);
        self
    }

    /// The seed of the random points: the same seed and window give the same points.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// After each SIGKILL, run the command once more to completion in the same
    /// `TMPDIR` before judging its entries: for programs that reclaim a killed run's
    /// leftovers when they start again (scoped-temp does, for run directories whose
    /// owner died). Off by default: the entries are judged right after the kill.
    pub fn reclaim_run(mut self, on: bool) -> Self {
        self.reclaim_run = on;
        self
    }

    /// Whether the command gets a cgroup v2 of its own where the host allows one
    /// (default `true`). `false` finds survivors by marker and parentage only, as on a
    /// host without a writable cgroup v2: to check that a program is judged the same
    /// there.
    pub fn cgroups(mut self, on: bool) -> Self {
        self.cgroups = on;
        self
    }

    /// Where the private temp directories go (default: a new directory in the system
    /// temp directory, removed at the end).
    pub fn temp_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_root = Some(dir.into());
        self
    }

    /// The command as one line, for reports.
    pub fn command_line(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs every round and returns the report. Needs a tokio runtime with IO and time
    /// enabled. Errors only when the torture itself cannot proceed (no temp root, the
    /// program cannot be started): what the command does wrong is in the report.
    pub async fn run(&self) -> Result<Report> {
        let started = Instant::now();
        let reaper = if self.cgroups {
            Reaper::new()?
        } else {
            Reaper::subreaper_only()?
        };
        let me = std::process::id();
        let root = match &self.temp_root {
            Some(dir) => dir.clone(),
            None => std::env::temp_dir().join(format!("leakproof-stress-{me}")),
        };
        std::fs::create_dir_all(&root).map_err(|source| Error::TempRoot {
            path: root.clone(),
            source,
        })?;
        let mut report = Report {
            suite: self.command_line(),
            ..Report::default()
        };
        report.note(format!("seed {}", self.seed));
        report.note(format!(
            "cgroup per run: {}",
            if reaper.uses_cgroups() {
                "yes (cgroup v2)"
            } else {
                "no (found by marker and parentage)"
            }
        ));
        let mut took = Vec::new();
        let mut outcome = Ok(());
        for i in 0..self.runs {
            match self.round(&reaper, &root, Round::Run, i, None).await {
                Ok((case, elapsed)) => {
                    took.push(elapsed);
                    report.cases.push(case);
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        took.sort_unstable();
        let window = self
            .window
            .or_else(|| took.get(took.len() / 2).copied())
            .unwrap_or(Duration::from_secs(1));
        report.note(format!(
            "signals at random points within {:.3} s",
            window.as_secs_f64()
        ));
        let signalled = (0..self.terms)
            .map(|i| (Round::Term, i))
            .chain((0..self.kills).map(|i| (Round::Kill, i)));
        for (kind, i) in signalled {
            if outcome.is_err() {
                break;
            }
            let draw = spread(self.seed ^ ((kind as u64) << 32), i as u64);
            let at = window.mul_f64(draw as f64 / u64::MAX as f64);
            match self.round(&reaper, &root, kind, i, Some(at)).await {
                Ok((case, _)) => report.cases.push(case),
                Err(e) => outcome = Err(e),
            }
        }
        reaper.shutdown(Duration::ZERO).await;
        if self.temp_root.is_none() {
            let _ = std::fs::remove_dir_all(&root);
        }
        outcome?;
        report.took = started.elapsed();
        Ok(report)
    }

    /// One round: start, end as `kind` says, judge, clean up. Returns the case and
    /// the time the command ran.
    async fn round(
        &self,
        reaper: &Reaper,
        root: &Path,
        kind: Round,
        index: usize,
        at: Option<Duration>,
    ) -> Result<(Case, Duration)> {
        let started = Instant::now();
        let mut case = Case::new(format!("{} {}", kind.name(), index + 1));
        let temp = root.join(format!("{}-{}", kind.name(), index + 1));
        std::fs::create_dir_all(&temp).map_err(|source| Error::TempRoot {
            path: temp.clone(),
            source,
        })?;
        let marker = format!("{}-{}-{}", std::process::id(), kind.name(), index + 1);
        let mut run = self.start(reaper, &temp, &marker)?;
        let leader = run.pid();
        let cgroup = own_cgroup(leader);
        let ran = match kind {
            Round::Run => {
                let done = tokio::time::timeout(self.timeout, run.exited()).await;
                let elapsed = started.elapsed();
                case.check(
                    "finishes within the timeout",
                    done.is_ok(),
                    if done.is_ok() {
                        format!("finished in {}", human(elapsed))
                    } else {
                        format!("still running after {:.1} s", elapsed.as_secs_f64())
                    },
                );
                elapsed
            }
            Round::Term | Round::Kill => {
                let at = at.unwrap_or_default();
                case.note(format!(
                    "{} at {}",
                    if kind == Round::Term {
                        "SIGTERM"
                    } else {
                        "SIGKILL"
                    },
                    human(at)
                ));
                let early = tokio::time::timeout(at, run.exited()).await.is_ok();
                if early {
                    case.note("the command finished before the signal");
                } else if kind == Round::Kill {
                    signal(leader, Signal::KILL);
                    run.exited().await;
                } else {
                    signal(leader, Signal::TERM);
                    let sent = Instant::now();
                    let done = tokio::time::timeout(self.deadline, run.exited()).await;
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
                                self.deadline.as_secs_f64()
                            )
                        },
                    );
                    case.figure("exit after SIGTERM", human(waited));
                }
                started.elapsed()
            }
        };
        // A run that hung or ignored its deadline: its tree is ended first, survivors
        // of it included; what it leaves besides is still judged.
        let hung = proc_reaper_alive(leader);
        let left = if hung {
            Left::default()
        } else {
            self.left_after(leader, &marker, cgroup.as_deref()).await
        };
        let outcome = if hung {
            run.kill().await
        } else {
            run.wait().await
        };
        let code = match &outcome {
            Ok(o) => describe_status(o.status),
            Err(e) => format!("not reaped: {e}"),
        };
        case.figure("exit", code.clone());
        if kind == Round::Run && !hung {
            let ok = outcome.as_ref().is_ok_and(|o| o.success());
            case.check("exits with status 0", ok, code);
        }
        case.check(
            "no process outlives the run",
            left.survivors.is_empty(),
            left.describe(&left.survivors, "left"),
        );
        case.check(
            "no zombie is left unreaped",
            left.zombies.is_empty(),
            left.describe(&left.zombies, "zombie"),
        );
        // What the reaper could not attribute (an escapee with no marker, outside any
        // cgroup, not re-parented here) is ended here.
        end_all(&left.survivors);
        if kind == Round::Kill && self.reclaim_run {
            let mut again = self.start(reaper, &temp, &marker)?;
            let finished = tokio::time::timeout(self.timeout, again.exited()).await;
            let _ = if finished.is_ok() {
                again.wait().await
            } else {
                again.kill().await
            };
            case.note("ran once more in the same TMPDIR to reclaim the killed run's leftovers");
        }
        let entries = scan::entry_names(&temp);
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
        case.figure("processes left", left.survivors.len().to_string());
        if !case.passed()
            && let Ok(o) = &outcome
        {
            for (name, captured) in [("stderr", &o.stderr), ("stdout", &o.stdout)] {
                let text = captured.text();
                let tail: Vec<&str> = text.lines().rev().take(10).collect();
                for line in tail.into_iter().rev() {
                    case.note(format!("{name}: {line}"));
                }
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&temp) {
            tracing::warn!(path = %temp.display(), error = %e, "leakproof-stress: could not remove a round's TMPDIR");
        }
        case.took = started.elapsed();
        Ok((case, ran))
    }

    fn start(&self, reaper: &Reaper, temp: &Path, marker: &str) -> Result<proc_reaper::Child> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env(MARKER_VAR, marker)
            .stdin(Stdio::null());
        for var in ["TMPDIR", "TMP", "TEMP", "TEMPDIR"] {
            command.env(var, temp);
        }
        Ok(reaper
            .command(command)
            .tail(16 << 10)
            .grace(Duration::from_millis(500))
            .spawn()?)
    }

    /// Looks until nothing the command started is left, or the settle time is over.
    async fn left_after(&self, leader: u32, marker: &str, cgroup: Option<&str>) -> Left {
        let until = Instant::now() + self.settle;
        loop {
            let left = Left::look(leader, &format!("{MARKER_VAR}={marker}"), cgroup);
            if left.is_clean() || Instant::now() >= until {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What a round left behind.
#[derive(Debug, Default)]
struct Left {
    /// Live processes, with their command lines.
    survivors: Vec<(u32, String)>,
    /// Zombies whose parent is not this process (which reaps its own).
    zombies: Vec<(u32, String)>,
}

impl Left {
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

    fn describe(&self, list: &[(u32, String)], what: &str) -> String {
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
}

/// The leader's cgroup v2 when it is not this process's own: the cgroup the reaper
/// gave its tree.
fn own_cgroup(leader: u32) -> Option<String> {
    let theirs = scan::cgroup_of(leader)?;
    (scan::cgroup_of(std::process::id()).as_deref() != Some(theirs.as_str())).then_some(theirs)
}

/// `true` while the leader runs (not yet exited).
fn proc_reaper_alive(pid: u32) -> bool {
    Process::read(pid).is_some_and(|p| !p.is_zombie())
}

/// Sends `signal` through a pidfd (a reused PID is never hit).
fn signal(pid: u32, signal: Signal) {
    use rustix::process::{Pid, PidfdFlags, pidfd_open, pidfd_send_signal};
    if let Some(pid) = Pid::from_raw(pid as i32)
        && let Ok(fd) = pidfd_open(pid, PidfdFlags::empty())
    {
        let _ = pidfd_send_signal(&fd, signal);
    }
}

/// SIGKILL to every process in `list` still alive, then reaps those that are this
/// process's children (waits for each: SIGKILL cannot be caught).
fn end_all(list: &[(u32, String)]) {
    use rustix::process::{Pid, WaitOptions, waitpid};
    let me = std::process::id();
    for (pid, _) in list {
        signal(*pid, Signal::KILL);
    }
    for (pid, _) in list {
        if Process::read(*pid).is_some_and(|p| p.ppid == me)
            && let Some(pid) = Pid::from_raw(*pid as i32)
        {
            let _ = waitpid(Some(pid), WaitOptions::empty());
        }
    }
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
fn human(d: Duration) -> String {
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

/// A reproducible, evenly spread draw from `seed` and `i` (splitmix64's finalizer of
/// their sum): for picking signal points, faults and delays.
pub fn spread(seed: u64, i: u64) -> u64 {
    let mut x = seed.wrapping_add(i).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
