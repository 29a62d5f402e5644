//! The command torture: run a program to completion, SIGTERM it and SIGKILL it at
//! random points, and after each round find what it left behind.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proc_reaper::Reaper;
use rustix::process::Signal;

use crate::Result;
use crate::launch::{Launch, Target, human, judge_temp, make_dir};
use crate::report::{Case, Report};

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
/// and `TEMPDIR`) and an environment marker ([`MARKER_VAR`](crate::MARKER_VAR)), in a process group of its
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
    target: Target,
    runs: usize,
    terms: usize,
    kills: usize,
    deadline: Duration,
    timeout: Duration,
    settle: Duration,
    window: Option<Duration>,
    seed: u64,
    reclaim_run: bool,
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
            target: Target::new(program, args),
            runs: 3,
            terms: 3,
            kills: 3,
            deadline: Duration::from_secs(10),
            timeout: Duration::from_secs(600),
            settle: Duration::from_secs(2),
            window: None,
            seed: 0x5EED,
            reclaim_run: false,
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
        self.deadline = d.min(crate::LONGEST_LIMIT);
        self
    }

    /// How long a completed run may take before it counts as hung and is ended
    /// (default 600 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d.min(crate::LONGEST_LIMIT);
        self
    }

    /// How long, after the command's own process exits, what it started has to go
    /// before it counts as left behind (default 2 s). The judging stops waiting as
    /// soon as nothing is left.
    pub fn settle(mut self, d: Duration) -> Self {
        self.settle = d.min(crate::LONGEST_LIMIT);
        self
    }

    /// The span the random signal points are drawn from (default: the median time of
    /// the completed runs; 1 s without any).
    pub fn window(mut self, d: Duration) -> Self {
        self.window = Some(d.min(crate::LONGEST_LIMIT));
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
        self.target.cgroups = on;
        self
    }

    /// Where the private temp directories go (default: a new directory in the system
    /// temp directory, removed at the end).
    pub fn temp_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.target.temp_root = Some(dir.into());
        self
    }

    /// The command as one line, for reports.
    pub fn command_line(&self) -> String {
        self.target.command_line()
    }

    /// Runs every round and returns the report. Needs a tokio runtime with IO and time
    /// enabled. Errors only when the torture itself cannot proceed (no temp root, the
    /// program cannot be started): what the command does wrong is in the report.
    pub async fn run(&self) -> Result<Report> {
        let started = Instant::now();
        let reaper = self.target.reaper()?;
        let root = self.target.root();
        make_dir(&root)?;
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
        self.target.remove_root(&root);
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
        make_dir(&temp)?;
        let marker = format!("{}-{}-{}", std::process::id(), kind.name(), index + 1);
        let mut run = self.start(reaper, &temp, &marker)?;
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
                let name = if kind == Round::Term {
                    "SIGTERM"
                } else {
                    "SIGKILL"
                };
                case.note(format!("{name} at {}", human(at)));
                let early = tokio::time::timeout(at, run.exited()).await.is_ok();
                if early {
                    case.note("the command finished before the signal");
                } else if kind == Round::Kill {
                    run.signal(Signal::KILL);
                    run.exited().await;
                } else {
                    run.terminate(&mut case, self.deadline).await;
                }
                started.elapsed()
            }
        };
        let outcome = run.judge(&mut case, self.settle, kind == Round::Run).await;
        if kind == Round::Kill && self.reclaim_run {
            let mut again = self.start(reaper, &temp, &marker)?;
            let _ = tokio::time::timeout(self.timeout, again.exited()).await;
            again.end().await;
            case.note("ran once more in the same TMPDIR to reclaim the killed run's leftovers");
        }
        judge_temp(&mut case, &temp, outcome.as_ref());
        case.took = started.elapsed();
        Ok((case, ran))
    }

    fn start(&self, reaper: &Reaper, temp: &Path, marker: &str) -> Result<Launch> {
        self.target.start(reaper, temp, marker, &[])
    }
}

/// A reproducible, evenly spread draw from `seed` and `i` (splitmix64's finalizer of
/// their sum): for picking signal points, faults and delays.
pub fn spread(seed: u64, i: u64) -> u64 {
    let mut x = seed.wrapping_add(i).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
