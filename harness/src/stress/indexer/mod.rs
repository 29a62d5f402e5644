//! The main job: a repository indexer (see [`work`]) run against loopback servers (see
//! [`server`]) through the users' scenarios, each judged from the outside (`/proc`,
//! the temp directory, the index on disk) against a baseline taken before it.
//!
//! - S1: operations in a row (on `leakproof_stress::Operations`); fds, temp entries
//!   and child processes back to baseline.
//! - S2: faults in 20% of operations (errors, panics, cancellations, a full disk, fd
//!   exhaustion), each one's cleanup confirmed right after it.
//! - S3: concurrent operations finishing in any order (on `Operations`, 10% faulted);
//!   permits and connections back,
//!   the database pool's connections all idle (as `Health` reports them), and an
//!   exhausted pool a typed timeout.
//! - inputs: hostile downloads, each refused with its typed error, nothing lost.
//! - S5: a 10,000-file repository twice; resident memory back near the baseline.
//! - S4: SIGTERM to a harness child mid-run: out within its deadline, the index whole;
//!   then with a deadline too short, an operation forced in its transaction rolls back.
//! - S4b: SIGKILL to a harness child at a random point, repeated: nothing survives.

mod children;
mod db;
mod faults;
mod inproc;
mod server;
pub mod work;

pub use self::children::{child, s5_child};
use self::children::{s4, s4b, s5};
use self::inproc::{inputs, s1, s2, s3};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use leakproof_stress::Counts;
use proc_reaper::Reaper;
use tokio::io::AsyncBufReadExt;

use self::db::{Db, DbCheck};
use self::server::{Repo, Servers};
use self::work::{Fault, IndexError, Indexer};
use super::report::{Recorder, descendants, with_marker};
use super::{CHILD_COMMAND, Profile, Scenario, sigkill, spread};
use crate::Result;

/// The scenario names, for `--only`.
pub const SCENARIOS: &[&str] = &["s1", "s2", "s3", "inputs", "s5", "s4", "s4b"];

/// The environment variable every harness child and its descendants carry, so a
/// survivor is found wherever it was re-parented.
const RUN_MARKER: &str = leakproof_stress::MARKER_VAR;

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Operations for S1 and S2 (default: 1,000 full, 150 quick).
    pub ops: Option<usize>,
    /// Operations in flight in S3 (default 100).
    pub concurrency: Option<usize>,
    /// One scenario only.
    pub only: Option<String>,
    /// The harness's own test: S1's middle operation leaks.
    pub inject_leak: bool,
    /// The watchdog's test: S1's first operation leaks, then never finishes.
    pub inject_hang: bool,
    /// The leak alarm's test: each of S1's operations keeps 256 KiB for good.
    pub inject_slow_leak: bool,
    /// Where the report, the chart and the scenarios' files go.
    pub out: PathBuf,
}

/// What the scenarios share.
struct Ctx<'a> {
    profile: Profile,
    options: &'a Options,
    recorder: &'a Recorder,
    reaper: Reaper,
    corpus: Arc<HashMap<String, Repo>>,
    /// This process's scoped-temp run directory: where every scope's temp dir lives.
    temp: PathBuf,
}

impl Ctx<'_> {
    /// Counts once the reaper has settled and `want` holds, or after 10 s.
    async fn settle(&self, want: impl Fn(&Counts) -> bool) -> Counts {
        self.reaper.settle().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The sampler is paused while the counts are read.
            let counts = Counts::read(&self.temp);
            if want(&counts) || Instant::now() >= deadline {
                return counts;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Servers and an indexer writing to `<out>/<name>.sqlite` (a new one).
    async fn env(&self, name: &str, concurrency: u32) -> Result<(Servers, Indexer, PathBuf)> {
        let servers = Servers::start(self.corpus.clone()).await?;
        let db_path = self.options.out.join(format!("{name}.sqlite"));
        remove_db(&db_path);
        let indexer = Indexer::new(
            &servers.api_base(),
            &servers.codeload_base(),
            concurrency,
            Db::open(&db_path).await?,
            self.reaper.clone(),
            None,
        )?;
        Ok((servers, indexer, db_path))
    }
}

fn remove_db(path: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// [`sigkill`], then reap it if it is this process's child (or was adopted by it).
fn kill_and_reap(pid: u32) {
    use rustix::process::{Pid, WaitOptions, waitpid};
    sigkill(pid);
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = waitpid(Some(pid), WaitOptions::empty());
    }
}

/// Runs the wanted scenarios. Makes this process a child subreaper (the reaper).
pub fn scenarios(
    profile: Profile,
    options: &Options,
    recorder: &Recorder,
) -> Result<Vec<Scenario>> {
    let wanted = |name: &str| options.only.as_deref().is_none_or(|o| o == name);
    super::quiet_panics(work::INJECTED_PANIC);
    std::fs::create_dir_all(&options.out)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // A full disk raises SIGXFSZ, whose default action kills the process: with a
        // handler installed, the write fails with EFBIG instead.
        let _xfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(
            rustix::process::Signal::XFSZ.as_raw(),
        ))?;
        let ctx = Ctx {
            profile,
            options,
            recorder,
            reaper: Reaper::new()?,
            corpus: Arc::new(server::corpus(wanted("s5"))),
            temp: scoped_temp::run_dir(std::env::temp_dir())?,
        };
        recorder.watch_temp_dir(&ctx.temp);
        let mut out = Vec::new();
        if wanted("s1") {
            recorder.mark("S1");
            out.push(s1(&ctx).await?);
        }
        if wanted("s2") {
            recorder.mark("S2");
            out.push(s2(&ctx).await?);
        }
        if wanted("s3") {
            recorder.mark("S3");
            out.push(s3(&ctx).await?);
        }
        if wanted("inputs") {
            recorder.mark("inputs");
            out.push(inputs(&ctx).await?);
        }
        if wanted("s5") {
            recorder.mark("S5");
            out.push(s5(&ctx).await?);
        }
        if wanted("s4") {
            recorder.mark("S4");
            out.push(s4(&ctx).await?);
        }
        if wanted("s4b") {
            recorder.mark("S4b");
            out.push(s4b(&ctx).await?);
        }
        Ok(out)
    })
}
