//! The main job: a repository indexer (see [`work`]) run against loopback servers (see
//! [`server`]) through the users' scenarios, each judged from the outside (`/proc`,
//! the temp directory, the index on disk) against a baseline taken before it.
//!
//! - S1: operations in a row; fds, temp entries and child processes back to baseline.
//! - S2: faults in 20% of operations (errors, panics, cancellations, a full disk, fd
//!   exhaustion), each one's cleanup confirmed right after it.
//! - S3: concurrent operations finishing in any order; permits and connections back,
//!   the database pool's connections all idle (as `Health` reports them), and an
//!   exhausted pool a typed timeout.
//! - inputs: hostile downloads, each refused with its typed error, nothing lost.
//! - S5: a 10,000-file repository twice; resident memory back near the baseline.
//! - S4: SIGTERM to a harness child mid-run: out within its deadline, the index whole;
//!   then with a deadline too short, an operation forced in its transaction rolls back.
//! - S4b: SIGKILL to a harness child at a random point, repeated: nothing survives.

mod server;
pub mod work;

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

use self::server::{Repo, Servers};
use self::work::{Db, DbCheck, Fault, IndexError, Indexer};
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
            let counts = {
                let _quiet = super::report::pause_sampler();
                Counts::read(&self.temp)
            };
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

/// S2's faults: 4% each of errors, panics, cancellations, full disks, fd exhaustion.
fn fault_for(i: u64) -> Fault {
    match spread(i, 100) {
        0..4 => Fault::Error,
        4..8 => Fault::Panic,
        8..12 => Fault::Cancel,
        12..16 => Fault::FullDisk,
        16..20 => Fault::NoFiles,
        _ => Fault::None,
    }
}

/// How one spawned operation ended.
enum Ended {
    Ok(work::Indexed),
    Err(IndexError),
    Panicked,
    Cancelled,
}

/// Runs operation `op` as a task; a [`Fault::Cancel`] aborts it after a random delay.
async fn run_op(indexer: &Indexer, op: u64, repo: String, fault: Fault) -> Ended {
    let ix = indexer.clone();
    let task = tokio::spawn(async move { ix.index(op, &repo, fault).await });
    if fault == Fault::Cancel {
        tokio::time::sleep(Duration::from_millis(1 + spread(op ^ 0xCA, 60))).await;
        task.abort();
    }
    match task.await {
        Ok(Ok(done)) => Ended::Ok(done),
        Ok(Err(error)) => Ended::Err(error),
        Err(e) if e.is_panic() => Ended::Panicked,
        Err(_) => Ended::Cancelled,
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

async fn s1(ctx: &Ctx<'_>) -> Result<Scenario> {
    let ops = ctx.options.ops.unwrap_or(ctx.profile.pick(1000, 150)) as u64;
    let mut s = Scenario::new(format!("S1 indexer: {ops} operations in a row"));
    let before = ctx.settle(|_| true).await;
    let (servers, indexer, db_path) = ctx.env("s1", 8).await?;
    let started = Instant::now();
    let mut progress = ctx.recorder.progress("S1", ops);
    let (mut ok, mut first_error, mut runs, mut timeouts, mut log_lines) = (0u64, None, 0, 0, 0);
    for op in 0..ops {
        let fault = if ctx.options.inject_hang && op == 0 {
            Fault::Hang
        } else if ctx.options.inject_leak && op == ops / 2 {
            Fault::Leak
        } else {
            Fault::None
        };
        match run_op(&indexer, op, server::ordinary(op as usize * 7), fault).await {
            Ended::Ok(done) => {
                ok += 1;
                runs += done.tool_runs;
                timeouts += done.tool_timeouts;
                log_lines += done.log_lines;
            }
            Ended::Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
            Ended::Panicked | Ended::Cancelled => {
                first_error.get_or_insert_with(|| "panicked or cancelled".into());
            }
        }
        progress.step(op + 1 - ok);
    }
    drop(progress);
    let took = started.elapsed();
    let db = DbCheck::read(&db_path)?;
    let api = indexer.api.stats();
    let secondary = servers.seen.secondary_limits.load(Ordering::Relaxed);
    drop((indexer, servers));
    let after = ctx.settle(|c| *c == before).await;
    s.note(format!(
        "{ok} of {ops} indexed in {:.1} s; {log_lines} log lines scanned; {runs} tool runs \
         ({timeouts} timed out and were ended); metadata: {} from the cache, {} revalidated (304), {} secondary limits waited out",
        took.as_secs_f64(),
        api.cache_hits,
        api.revalidated,
        secondary
    ));
    s.check(
        "every operation indexed its repository",
        ok == ops,
        format!(
            "{ok} of {ops}{}",
            first_error
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        ),
    );
    s.check(
        "index: one whole transaction per operation",
        db.whole() && db.ops == ok,
        format!(
            "{} ops, {} file rows, integrity {}, partial {}",
            db.ops, db.files, db.integrity, db.partial_ops
        ),
    );
    after.check_back(&mut s, &before);
    s.figure("ops", format!("{ok}/{ops} ok"));
    s.figure("tool runs", format!("{runs} ({timeouts} timed out)"));
    s.figure("leaked", leak_figure(&before, &after));
    after.clean_leftovers(&before, &ctx.temp);
    Ok(s)
}

fn leak_figure(before: &Counts, after: &Counts) -> String {
    let drift = after.drift(before, true);
    if drift.is_empty() {
        "nothing".into()
    } else {
        drift.join("; ")
    }
}

async fn s2(ctx: &Ctx<'_>) -> Result<Scenario> {
    let ops = ctx.options.ops.unwrap_or(ctx.profile.pick(1000, 150)) as u64;
    let mut s = Scenario::new(format!("S2 indexer: faults in 20% of {ops} operations"));
    let before = ctx.settle(|_| true).await;
    let (servers, indexer, db_path) = ctx.env("s2", 8).await?;
    let base = ctx.settle(|_| true).await;
    let mut progress = ctx.recorder.progress("S2", ops);
    // Per fault: injected, failed as expected, cleanup confirmed.
    let mut tally: Vec<(Fault, u64, u64, u64)> = [
        Fault::Error,
        Fault::Panic,
        Fault::Cancel,
        Fault::FullDisk,
        Fault::NoFiles,
    ]
    .into_iter()
    .map(|f| (f, 0, 0, 0))
    .collect();
    let (mut ok, mut unexpected, mut leaks) = (0u64, Vec::new(), Vec::new());
    let mut finished_first = 0;
    for op in 0..ops {
        let fault = fault_for(op);
        let repo = if fault == Fault::FullDisk {
            server::BIG_FILE.to_string()
        } else {
            server::ordinary(op as usize * 7)
        };
        let ended = run_op(&indexer, op, repo, fault).await;
        ok += u64::from(matches!(ended, Ended::Ok(_)));
        let expected = match (&ended, fault) {
            (Ended::Ok(_), Fault::None) => true,
            // Done before its cancel came: nothing to cancel.
            (Ended::Ok(_), Fault::Cancel) => {
                finished_first += 1;
                true
            }
            (Ended::Err(IndexError::Injected { .. }), Fault::Error)
            | (Ended::Panicked, Fault::Panic)
            | (Ended::Cancelled, Fault::Cancel) => true,
            // EFBIG: the write past RLIMIT_FSIZE.
            (Ended::Err(IndexError::Unpack { source, .. }), Fault::FullDisk) => {
                source.raw_os_error() == Some(27)
            }
            // EMFILE, wherever the next fd was wanted.
            (Ended::Err(e), Fault::NoFiles) => format!("{e:?}").contains("Os { code: 24"),
            _ => false,
        };
        if !expected {
            let what = match &ended {
                Ended::Ok(_) => "succeeded".to_string(),
                Ended::Err(e) => e.to_string(),
                Ended::Panicked => "panicked".into(),
                Ended::Cancelled => "cancelled".into(),
            };
            unexpected.push(format!("op {op} ({fault:?}): {what}"));
        }
        if let Some(row) = tally.iter_mut().find(|t| t.0 == fault) {
            row.1 += 1;
            row.2 += u64::from(expected);
            // Right after the fault: what the operation held is given back.
            let now = ctx.settle(|c| c.same_but_sockets(&base)).await;
            if now.same_but_sockets(&base) {
                row.3 += 1;
            } else {
                leaks.push(format!(
                    "op {op} ({fault:?}): {}",
                    now.drift(&base, false).join(", ")
                ));
            }
        }
        progress.step(op + 1 - ok);
    }
    drop(progress);
    let db = DbCheck::read(&db_path)?;
    drop((indexer, servers));
    let after = ctx.settle(|c| *c == before).await;
    let injected: u64 = tally.iter().map(|t| t.1).sum();
    let confirmed: u64 = tally.iter().map(|t| t.3).sum();
    s.note(format!(
        "{finished_first} operation(s) finished before their cancel arrived"
    ));
    for (fault, n, failed, cleaned) in &tally {
        s.note(format!(
            "{fault:?}: {n} injected, {failed} failed as expected, {cleaned} cleanups confirmed"
        ));
    }
    s.check(
        "each fault failed its operation as expected, the rest succeeded",
        unexpected.is_empty(),
        if unexpected.is_empty() {
            format!("{injected} faults, {ok} ok")
        } else {
            unexpected.join("; ")
        },
    );
    s.check(
        "each cleanup confirmed right after its fault",
        confirmed == injected,
        if leaks.is_empty() {
            format!("{confirmed} of {injected}")
        } else {
            leaks.join("; ")
        },
    );
    s.check(
        "index: only the successful operations, each whole",
        db.whole() && db.ops == ok,
        format!(
            "{} ops of {ok} ok, partial {}, integrity {}",
            db.ops, db.partial_ops, db.integrity
        ),
    );
    after.check_back(&mut s, &before);
    s.figure(
        "faults",
        format!("{injected} injected, {confirmed} cleanups confirmed"),
    );
    s.figure("leaked", leak_figure(&before, &after));
    after.clean_leftovers(&before, &ctx.temp);
    Ok(s)
}

async fn s3(ctx: &Ctx<'_>) -> Result<Scenario> {
    let concurrency = ctx.options.concurrency.unwrap_or(100);
    let waves = ctx.profile.pick(5, 2);
    let total = (concurrency * waves) as u64;
    let mut s = Scenario::new(format!(
        "S3 indexer: {concurrency} concurrent operations, {waves} waves"
    ));
    let before = ctx.settle(|_| true).await;
    let (servers, indexer, db_path) = ctx.env("s3", concurrency as u32).await?;
    let mut progress = ctx.recorder.progress("S3", total);
    let (mut ok, mut failed, mut out_of_order) = (0u64, 0u64, 0u64);
    let mut peak_in_flight = 0;
    for wave in 0..waves as u64 {
        // 10% fail on purpose (errors, panics, cancellations), so releases interleave.
        let mut running: futures_util::stream::FuturesUnordered<_> = (0..concurrency as u64)
            .map(|i| {
                let op = wave * concurrency as u64 + i;
                let fault = match spread(op ^ 0x53, 30) {
                    0 => Fault::Error,
                    1 => Fault::Panic,
                    2 => Fault::Cancel,
                    _ => Fault::None,
                };
                let indexer = &indexer;
                async move {
                    // Each starts after its own delay, and so finishes in its own order.
                    tokio::time::sleep(Duration::from_millis(spread(op, 50))).await;
                    (
                        i,
                        run_op(indexer, op, server::ordinary(op as usize), fault).await,
                    )
                }
            })
            .collect();
        let mut last = 0;
        while let Some((i, ended)) = running.next().await {
            peak_in_flight = peak_in_flight.max(
                indexer
                    .api
                    .gate()
                    .stats()
                    .in_flight
                    .max(indexer.codeload.gate().stats().in_flight),
            );
            out_of_order += u64::from(i < last);
            last = i;
            match ended {
                Ended::Ok(_) => ok += 1,
                _ => failed += 1,
            }
            progress.step(failed);
        }
    }
    drop(progress);
    let gates = (
        indexer.api.gate().stats().in_flight,
        indexer.codeload.gate().stats().in_flight,
    );
    let tools = indexer.tools.available_permits();
    // The index's connection pool, as `Health` reports it: every connection back, idle.
    let pool = indexer.db.pool.clone();
    let health = leakproof::Health::builder()
        .without_temp()
        .without_memory()
        .pool("index", pool.clone(), Duration::from_secs(1))
        .build()?
        .check();
    let pool_state = health.pools[0].state;
    // Exhausted: every connection held, one more asked for: a typed timeout, not a hang.
    let held: Vec<_> = futures_util::future::join_all((0..pool_state.max_size).map(|_| pool.get()))
        .await
        .into_iter()
        .collect::<std::result::Result<_, _>>()?;
    let asked = Instant::now();
    let extra = pool
        .timeout_get(&deadpool::managed::Timeouts {
            wait: Some(Duration::from_millis(200)),
            ..Default::default()
        })
        .await;
    let waited = asked.elapsed();
    // Closed with the pool (its connections are descriptors the baseline does not have).
    drop((held, pool));
    let db = DbCheck::read(&db_path)?;
    let peak_connections = servers.seen.peak_connections.load(Ordering::SeqCst);
    let seen = servers.seen.clone();
    drop(indexer);
    // The clients are gone: every pooled connection must close (the server sees it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.open_connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let open = seen.open_connections.load(Ordering::SeqCst);
    drop(servers);
    let after = ctx.settle(|c| *c == before).await;
    s.note(format!(
        "{ok} ok, {failed} failed on purpose; {out_of_order} finished before one started earlier; \
         peak {peak_in_flight} requests in flight per host, {peak_connections} connections open at once"
    ));
    s.check(
        "operations finished in random order",
        out_of_order > 0,
        format!("{out_of_order} out of order"),
    );
    s.check(
        "gate permits all returned (both hosts)",
        gates == (0, 0),
        format!("in flight: {} + {}", gates.0, gates.1),
    );
    s.check(
        "tool slots all returned",
        tools == work::Caps::default().tools,
        format!("{tools} of {} free", work::Caps::default().tools),
    );
    s.check(
        "pooled connections all closed once the clients dropped",
        open == 0,
        format!("{open} open (peak {peak_connections})"),
    );
    s.check(
        "database connections all back in the pool, idle, nobody waiting",
        pool_state.idle == pool_state.size && pool_state.waiting == 0 && health.reasons.is_empty(),
        format!(
            "{} of {} idle ({} max), {} waiting",
            pool_state.idle, pool_state.size, pool_state.max_size, pool_state.waiting
        ),
    );
    s.check(
        "an exhausted pool gives a typed timeout, not a hang",
        matches!(
            extra,
            Err(deadpool::managed::PoolError::Timeout(
                deadpool::managed::TimeoutType::Wait
            ))
        ) && waited < Duration::from_secs(2),
        format!(
            "{} after {:.0} ms",
            match &extra {
                Ok(_) => "a connection".to_string(),
                Err(e) => format!("{e:?}"),
            },
            waited.as_secs_f64() * 1000.0
        ),
    );
    s.check(
        "index: only the successful operations, each whole",
        db.whole() && db.ops == ok,
        format!("{} ops of {ok} ok, partial {}", db.ops, db.partial_ops),
    );
    after.check_back(&mut s, &before);
    s.figure("ops", format!("{ok} ok + {failed} failed on purpose"));
    s.figure("peak connections", peak_connections.to_string());
    s.figure("leaked", leak_figure(&before, &after));
    after.clean_leftovers(&before, &ctx.temp);
    Ok(s)
}

async fn inputs(ctx: &Ctx<'_>) -> Result<Scenario> {
    let mut s = Scenario::new("Bad inputs: hostile downloads refused with typed errors");
    let before = ctx.settle(|_| true).await;
    let (servers, indexer, db_path) = ctx.env("inputs", 8).await?;
    // A first good operation: the pool is warm, the index has a row.
    let mut op = 0;
    let mut good = u64::from(matches!(
        run_op(&indexer, op, server::ordinary(0), Fault::None).await,
        Ended::Ok(_)
    ));
    let base = ctx.settle(|_| true).await;
    let base_rss = super::rss_kib().0;
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            server::BOMB,
            "decompression bomb (1 GiB of zeros)",
            &["Download/TooLarge", "Download/ExpansionRatio"],
        ),
        (
            server::ONE_LINE_LOG,
            "1 GiB log on one line",
            &["LineTooLong"],
        ),
        (
            server::LONGER,
            "body longer than its Content-Length",
            &["Download/Decode"],
        ),
        (
            server::SHORTER,
            "body shorter than its Content-Length",
            &["Download/ContentLengthMismatch", "Download/Source"],
        ),
        (
            server::DRIP,
            "slow drip (16 bytes per 200 ms)",
            &["Download/TooSlow"],
        ),
        (server::CORRUPT, "not gzip at all", &["Download/Decode"]),
    ];
    let mut peak_growth = 0u64;
    for (repo, what, expected) in cases {
        op += 1;
        super::reset_peak_rss();
        let ended = run_op(&indexer, op, repo.to_string(), Fault::None).await;
        let growth = super::rss_kib().1.saturating_sub(base_rss);
        peak_growth = peak_growth.max(growth);
        // Nothing lost: the next ordinary operation works, through the same clients.
        op += 1;
        let next = run_op(&indexer, op, server::ordinary(op as usize), Fault::None).await;
        good += u64::from(matches!(next, Ended::Ok(_)));
        let now = ctx.settle(|c| c.same_but_sockets(&base)).await;
        let (kind, text) = match &ended {
            Ended::Err(e) => (e.kind(), e.to_string()),
            Ended::Ok(_) => ("accepted".into(), String::new()),
            Ended::Panicked => ("panicked".into(), String::new()),
            Ended::Cancelled => ("cancelled".into(), String::new()),
        };
        let refused = expected.contains(&kind.as_str());
        let clean = now.same_but_sockets(&base) && matches!(next, Ended::Ok(_));
        s.check(
            &format!("{what}: {}", expected.join(" or ")),
            refused && clean,
            format!(
                "{kind}: {text}; peak RSS +{:.1} MiB{}",
                growth as f64 / 1024.0,
                if clean {
                    String::new()
                } else {
                    format!("; left: {}", now.drift(&base, false).join(", "))
                }
            ),
        );
    }
    let db = DbCheck::read(&db_path)?;
    drop((indexer, servers));
    let after = ctx.settle(|c| *c == before).await;
    s.check(
        "index: the good operations only, each whole",
        db.whole() && db.ops == good,
        format!("{} ops of {good} good, partial {}", db.ops, db.partial_ops),
    );
    s.check(
        "memory bounded by the caps, not the inputs",
        peak_growth < 96 << 10,
        format!(
            "peak RSS at most +{:.1} MiB over {:.1} MiB",
            peak_growth as f64 / 1024.0,
            base_rss as f64 / 1024.0
        ),
    );
    after.check_back(&mut s, &before);
    s.figure(
        "refused",
        format!(
            "{} of 6 typed",
            s.checks.iter().take(6).filter(|c| c.ok).count()
        ),
    );
    s.figure(
        "peak RSS growth",
        format!("{:.1} MiB", peak_growth as f64 / 1024.0),
    );
    after.clean_leftovers(&before, &ctx.temp);
    Ok(s)
}

/// glibc's allocator keeps freed memory in one arena per thread that allocated, so a
/// multi-threaded process's resident size creeps up with no leak at all (measured here:
/// +0.8 MiB per 10,000-file run with the default, flat with one arena). S5 is about what
/// the program holds, so its child runs with one arena; the README says what to do in a
/// service.
const ARENAS: (&str, &str) = ("MALLOC_ARENA_MAX", "1");

async fn s5(ctx: &Ctx<'_>) -> Result<Scenario> {
    let mut s = Scenario::new("S5 indexer: a 10,000-file repository, twice");
    let before = ctx.settle(|_| true).await;
    let servers = Servers::start(ctx.corpus.clone()).await?;
    let tmp = ctx.options.out.join("s5-tmp");
    fresh_dir(&tmp)?;
    ctx.recorder.watch_temp_dir(&tmp);
    let db_path = ctx.options.out.join("s5.sqlite");
    remove_db(&db_path);
    let tag = format!("s5-{}", std::process::id());
    let mut child = harness_child("s5", &servers, &db_path, &tmp, &tag)?
        .env(ARENAS.0, ARENAS.1)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let mut progress = ctx.recorder.progress("S5", 2);
    let (mut cold, mut base, mut runs) = (0u64, 0u64, Vec::new());
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await
    {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["@@cold", rss] => cold = rss.parse()?,
            ["@@rss", rss] => base = rss.parse()?,
            ["@@run", files, rss, peak, millis, error @ ..] => {
                runs.push((
                    files.parse::<usize>()?,
                    rss.parse::<u64>()?,
                    peak.parse::<u64>()?,
                    millis.parse::<u64>()?,
                    error.join(" "),
                ));
                progress.step(0);
            }
            _ => {}
        }
    }
    drop(progress);
    drop(lines);
    let status = child.wait().await?;
    let left = survivors(&format!("{RUN_MARKER}={tag}")).await;
    let temp_left = entries_deep(&tmp);
    let db = DbCheck::read(&db_path)?;
    drop(servers);
    let after = ctx.settle(|c| *c == before).await;
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (i, (files, rss, peak, millis, error)) in runs.iter().enumerate() {
        s.note(format!(
            "run {}: {files} files in {:.1} s; peak RSS {:.1} MiB, after {:.1} MiB (baseline {:.1} MiB){}",
            i + 1,
            *millis as f64 / 1000.0,
            mib(*peak),
            mib(*rss),
            mib(base),
            if error.is_empty() { String::new() } else { format!("; {error}") }
        ));
    }
    s.note(format!(
        "in a harness child ({status}) with {}={} (see ARENAS in the source); baseline taken \
         after an ordinary repository and another 10,000-file one (after the ordinary one \
         alone: {:.1} MiB)",
        ARENAS.0,
        ARENAS.1,
        mib(cold)
    ));
    // A missing run reads as 0 and fails the first check, not these.
    let rss = |i: usize| runs.get(i).map_or(0, |r| r.1);
    let (rss1, rss2) = (rss(0), rss(1));
    s.check(
        "both runs indexed 10,000 files",
        runs.len() == 2 && runs.iter().all(|r| r.0 == 10_000) && db.whole() && db.files >= 20_000,
        format!(
            "{:?} files; {} rows, integrity {}",
            runs.iter().map(|r| r.0).collect::<Vec<_>>(),
            db.files,
            db.integrity
        ),
    );
    s.check(
        "resident memory within 10% of the baseline after the first run",
        rss1 * 10 <= base * 11,
        format!(
            "{:.1} MiB vs {:.1} MiB ({:+.1}%)",
            mib(rss1),
            mib(base),
            percent(rss1, base)
        ),
    );
    s.check(
        "a second run does not raise it (by more than 512 KiB of heap jitter)",
        rss2 <= rss1 + 512,
        format!(
            "{:.1} MiB after the second, {:.1} MiB after the first ({:+.1}%)",
            mib(rss2),
            mib(rss1),
            percent(rss2, rss1)
        ),
    );
    s.check(
        "the child left no process and no temp entry",
        left.is_empty() && temp_left == 0,
        format!("{} processes, {temp_left} temp entries", left.len()),
    );
    after.check_back(&mut s, &before);
    s.figure(
        "RSS",
        format!(
            "{:.1} -> {:.1} -> {:.1} MiB",
            mib(base),
            mib(rss1),
            mib(rss2)
        ),
    );
    s.figure(
        "peak",
        format!(
            "{:.1} MiB",
            mib(runs.iter().map(|r| r.2).max().unwrap_or(0))
        ),
    );
    for pid in left {
        kill_and_reap(pid);
    }
    after.clean_leftovers(&before, &ctx.temp);
    Ok(s)
}

/// S5's child: `xtask stress-child s5 <api> <codeload> <db>`. Its resident size after
/// an ordinary repository (`@@cold KiB`), then after another 10,000-file repository,
/// the baseline (`@@rss KiB`), then the 10,000-file repository twice
/// (`@@run files rss-KiB peak-KiB millis [error]`).
pub fn s5_child(args: &[String]) -> Result<bool> {
    let [api, codeload, db] = args else {
        return Err(format!("stress-child s5: bad arguments {args:?}").into());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let reaper = Reaper::new()?;
        let indexer = Indexer::new(
            api,
            codeload,
            8,
            Db::open(Path::new(db)).await?,
            reaper.clone(),
            None,
        )?;
        // Warm-up, one operation of each size the service sees (another 10,000-file
        // repository): buffers, pools and the heap at their working size. The
        // baseline is taken after it; the cold figure is reported too.
        let _ = run_op(&indexer, 0, server::ordinary(0), Fault::None).await;
        reaper.settle().await;
        println!("@@cold {}", super::rss_kib().0);
        let _ = run_op(&indexer, 100, server::WORKSPACE.to_string(), Fault::None).await;
        reaper.settle().await;
        println!("@@rss {}", super::rss_kib().0);
        for op in 1..=2 {
            super::reset_peak_rss();
            let started = Instant::now();
            let ended = run_op(&indexer, op, server::MONOREPO.to_string(), Fault::None).await;
            reaper.settle().await;
            let (rss, peak) = super::rss_kib();
            let (files, error) = match ended {
                Ended::Ok(done) => (done.files, String::new()),
                Ended::Err(e) => (0, e.to_string()),
                Ended::Panicked => (0, "panicked".into()),
                Ended::Cancelled => (0, "cancelled".into()),
            };
            println!(
                "@@run {files} {rss} {peak} {} {error}",
                started.elapsed().as_millis()
            );
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    drop(runtime);
    scoped_temp::remove_all();
    Ok(true)
}

fn percent(now: u64, then: u64) -> f64 {
    (now as f64 - then as f64) * 100.0 / then.max(1) as f64
}

/// `xtask stress-child <kind> <api> <codeload> <db>`, its temp dir under `tmp` and every
/// descendant marked with `tag`; stdout piped for its `@@` lines. The caller adds the
/// rest and spawns.
fn harness_child(
    kind: &str,
    servers: &Servers,
    db: &Path,
    tmp: &Path,
    tag: &str,
) -> Result<tokio::process::Command> {
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command
        .args([CHILD_COMMAND, kind])
        .arg(servers.api_base())
        .arg(servers.codeload_base())
        .arg(db)
        .env("TMPDIR", tmp)
        .env(RUN_MARKER, tag)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    Ok(command)
}

/// A harness child running the indexer under `leakproof::supervise()` and a
/// `Shutdown`, against this process's servers.
struct ChildRun {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    marker: String,
    program_pid: u32,
    committed: u64,
    /// Transactions it rolled back (forced in the middle), from its last line.
    rollbacks: Option<u64>,
}

impl ChildRun {
    async fn start(
        servers: &Servers,
        db: &Path,
        tmp: &Path,
        first_op: u64,
        deadline: Duration,
        tag: &str,
        slow_commits: bool,
    ) -> Result<ChildRun> {
        let marker = format!("{RUN_MARKER}={tag}");
        let mut command = harness_child("indexer", servers, db, tmp, tag)?;
        if slow_commits {
            command.env(work::SLOW_COMMITS, "1");
        }
        let mut child = command
            .arg(first_op.to_string())
            .arg(deadline.as_millis().to_string())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut run = ChildRun {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
            marker,
            program_pid: 0,
            committed: 0,
            rollbacks: None,
        };
        // `@@pid` then `@@ready`.
        while let Some(line) = run.next_line(Duration::from_secs(30)).await? {
            if let Some(pid) = line.strip_prefix("@@pid ") {
                run.program_pid = pid.trim().parse()?;
            }
            if line == "@@ready" {
                return Ok(run);
            }
        }
        Err("the harness child ended before it was ready".into())
    }

    async fn next_line(&mut self, limit: Duration) -> Result<Option<String>> {
        match tokio::time::timeout(limit, self.lines.next_line()).await {
            Ok(line) => {
                let line = line?;
                if let Some(n) = line.as_deref().and_then(|l| l.strip_prefix("@@committed ")) {
                    self.committed = n.trim().parse()?;
                }
                if let Some(n) = line.as_deref().and_then(|l| l.strip_prefix("@@rollbacks ")) {
                    self.rollbacks = Some(n.trim().parse()?);
                }
                Ok(line)
            }
            Err(_) => Err("the harness child said nothing for too long".into()),
        }
    }

    /// Sends `signal` to the child, if it is still running.
    fn signal(&self, signal: rustix::process::Signal) -> Result<()> {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            rustix::process::kill_process(pid, signal)?;
        }
        Ok(())
    }

    /// Reads until it has committed `n` operations.
    async fn until_committed(&mut self, n: u64) -> Result<()> {
        while self.committed < n {
            if self.next_line(Duration::from_secs(30)).await?.is_none() {
                return Err("the harness child ended early".into());
            }
        }
        Ok(())
    }

    /// Reads the rest of its output; returns its `@@report` line, if any.
    async fn drain(&mut self) -> Result<Option<String>> {
        let mut report = None;
        while let Some(line) = self.next_line(Duration::from_secs(60)).await? {
            if let Some(json) = line.strip_prefix("@@report ") {
                report = Some(json.to_string());
            }
        }
        Ok(report)
    }
}

/// The processes still carrying the run's marker, after a moment for the last ones to
/// be reaped.
async fn survivors(marker: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = with_marker(marker);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every entry under `dir`, recursively (the run dirs and what is in them).
fn entries_deep(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .map(|e| {
                1 + if e.path().is_dir() {
                    entries_deep(&e.path())
                } else {
                    0
                }
            })
            .sum()
    })
}

fn fresh_dir(dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// What S4's short-deadline run saw: (rollbacks, committed, the index after).
struct ForcedRun {
    rollbacks: u64,
    committed: u64,
    check: DbCheck,
    forced: usize,
    left: Vec<u32>,
}

/// A harness child with a deadline too short for its operations (200 ms) and slow
/// commits (a pause after each insert), SIGTERMed as a transaction begins after two
/// commits: the operation forced is caught in its transaction, which rolls back, so the
/// index holds exactly the committed ones.
async fn s4_forced_mid_transaction(
    servers: &Servers,
    ctx: &Ctx<'_>,
    tmp: &Path,
    tag: &str,
) -> Result<ForcedRun> {
    let db = ctx.options.out.join("s4-forced.sqlite");
    remove_db(&db);
    let tag = format!("{tag}-forced");
    let mut run =
        ChildRun::start(servers, &db, tmp, 0, Duration::from_millis(200), &tag, true).await?;
    run.until_committed(2).await?;
    // Then the next transaction that begins: it takes 100 ms a row, longer than the
    // 180 ms before the operations are forced.
    while let Some(line) = run.next_line(Duration::from_secs(30)).await? {
        if line.starts_with("@@in-transaction ") {
            break;
        }
    }
    run.signal(rustix::process::Signal::TERM)?;
    let report = run.drain().await?;
    run.child.wait().await?;
    let report: serde_json::Value = report
        .as_deref()
        .map(serde_json::from_str)
        .transpose()?
        .unwrap_or_default();
    Ok(ForcedRun {
        rollbacks: run.rollbacks.unwrap_or(0),
        committed: run.committed,
        check: DbCheck::read(&db)?,
        forced: count(&report["forced"]),
        left: survivors(&run.marker).await,
    })
}

async fn s4(ctx: &Ctx<'_>) -> Result<Scenario> {
    let deadline = Duration::from_secs(5);
    let mut s = Scenario::new("S4 indexer: SIGTERM to a harness child mid-run");
    let servers = Servers::start(ctx.corpus.clone()).await?;
    let tmp = ctx.options.out.join("s4-tmp");
    fresh_dir(&tmp)?;
    ctx.recorder.watch_temp_dir(&tmp);
    let db = ctx.options.out.join("s4.sqlite");
    remove_db(&db);
    let tag = format!("s4-{}", std::process::id());
    let mut run = ChildRun::start(&servers, &db, &tmp, 0, deadline, &tag, false).await?;
    run.until_committed(ctx.profile.pick(40, 15) as u64).await?;
    let at_signal = run.committed;
    let in_flight_children = descendants(run.child.id().unwrap_or(0)).len();
    let sent = Instant::now();
    run.signal(rustix::process::Signal::TERM)?;
    let report = run.drain().await?;
    let status = run.child.wait().await?;
    let took = sent.elapsed();
    let left = survivors(&run.marker).await;
    let check = DbCheck::read(&db)?;
    let forced = s4_forced_mid_transaction(&servers, ctx, &tmp, &tag).await?;
    drop(servers);
    let report: serde_json::Value = report
        .as_deref()
        .map(serde_json::from_str)
        .transpose()?
        .unwrap_or_default();
    s.note(format!(
        "signalled after {at_signal} commits with {in_flight_children} processes under it; report: forced_by {}, {} finished, {} forced, {} child trees ended, {} temp entries removed",
        report["forced_by"], count(&report["finished"]), count(&report["forced"]), report["children_ended"], report["temp_removed"]
    ));
    s.check(
        "exited within its deadline (+1 s to exit)",
        took <= deadline + Duration::from_secs(1),
        format!(
            "{:.2} s (deadline {} s)",
            took.as_secs_f64(),
            deadline.as_secs()
        ),
    );
    s.check(
        "exited by its own shutdown, not the signal",
        matches!(status.code(), Some(0 | 1)),
        format!("{status}"),
    );
    s.check(
        "index: only committed transactions, each whole",
        check.whole() && check.ops == run.committed,
        format!(
            "{} ops (the child reported {} committed), partial {}, integrity {}",
            check.ops, run.committed, check.partial_ops, check.integrity
        ),
    );
    s.check(
        "short deadline: operations forced mid-transaction rolled back; index whole",
        forced.rollbacks >= 1
            && forced.check.whole()
            && forced.check.ops == forced.committed
            && forced.left.is_empty(),
        format!(
            "{} forced, {} rolled back, {} ops (the child reported {} committed), partial {}, {} processes left",
            forced.forced,
            forced.rollbacks,
            forced.check.ops,
            forced.committed,
            forced.check.partial_ops,
            forced.left.len()
        ),
    );
    s.check(
        "no surviving descendants",
        left.is_empty(),
        format!("{left:?}"),
    );
    let temp_left = entries_deep(&tmp);
    s.check(
        "no temp entries left",
        temp_left == 0,
        temp_left.to_string(),
    );
    s.figure(
        "exit",
        format!("{:.2} s after SIGTERM, {status}", took.as_secs_f64()),
    );
    s.figure("committed", run.committed.to_string());
    s.figure(
        "left",
        format!("{} processes, {temp_left} temp entries", left.len()),
    );
    for pid in left {
        kill_and_reap(pid);
    }
    Ok(s)
}

fn count(value: &serde_json::Value) -> usize {
    value.as_array().map_or(0, Vec::len)
}

async fn s4b(ctx: &Ctx<'_>) -> Result<Scenario> {
    let kills = ctx.profile.pick(100, 10) as u64;
    let mut s = Scenario::new(format!(
        "S4b indexer: SIGKILL at a random point, {kills} times"
    ));
    let servers = Servers::start(ctx.corpus.clone()).await?;
    let tmp = ctx.options.out.join("s4b-tmp");
    fresh_dir(&tmp)?;
    ctx.recorder.watch_temp_dir(&tmp);
    let db = ctx.options.out.join("s4b.sqlite");
    remove_db(&db);
    let mut progress = ctx.recorder.progress("S4b", kills);
    let (mut survived, mut temp_left, mut not_whole, mut statuses) =
        (Vec::new(), 0, Vec::new(), HashMap::new());
    let mut slowest = Duration::ZERO;
    let mut held = 0;
    let mut committed = 0;
    for k in 0..kills {
        let tag = format!("s4b-{}-{k}", std::process::id());
        let mut run = ChildRun::start(
            &servers,
            &db,
            &tmp,
            k * 1_000_000,
            Duration::from_secs(5),
            &tag,
            false,
        )
        .await?;
        // A random point: 0 to 1.5 s into the run.
        let wait = Duration::from_millis(spread(k ^ 0x4B, 1500));
        let _ = tokio::time::timeout(wait, async {
            loop {
                if run
                    .next_line(Duration::from_secs(30))
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        held = held.max(descendants(run.program_pid).len());
        let killed = Instant::now();
        // The program, not its supervisor, which reaps it and cleans up.
        sigkill(run.program_pid);
        let status = tokio::time::timeout(Duration::from_secs(20), run.child.wait()).await;
        slowest = slowest.max(killed.elapsed());
        let status = match status {
            Ok(Ok(status)) => status.to_string(),
            _ => "did not exit".into(),
        };
        *statuses.entry(status).or_insert(0) += 1;
        let left = survivors(&run.marker).await;
        if !left.is_empty() {
            survived.push(format!("kill {k}: {left:?}"));
            for pid in left {
                kill_and_reap(pid);
            }
        }
        temp_left += entries_deep(&tmp);
        let _ = std::fs::remove_dir_all(&tmp).and_then(|()| std::fs::create_dir_all(&tmp));
        match DbCheck::read(&db) {
            Ok(check) if check.whole() => {
                committed = check.ops;
            }
            Ok(check) => not_whole.push(format!(
                "kill {k}: partial {}, integrity {}",
                check.partial_ops, check.integrity
            )),
            Err(e) => not_whole.push(format!("kill {k}: {e}")),
        }
        progress.step(survived.len() as u64);
    }
    drop(progress);
    drop(servers);
    s.note(format!(
        "up to {held} processes under the program when killed; supervisor exits: {statuses:?}; \
         slowest cleanup {:.0} ms; {} operations committed across the runs",
        slowest.as_secs_f64() * 1000.0,
        committed
    ));
    s.check(
        "zero surviving descendants after each kill",
        survived.is_empty(),
        if survived.is_empty() {
            format!("0 in {kills} kills")
        } else {
            survived.join("; ")
        },
    );
    s.check(
        "zero temp entries after each kill",
        temp_left == 0,
        format!("{temp_left} in {kills} kills"),
    );
    s.check(
        "index whole after each kill (journal rolled back)",
        not_whole.is_empty(),
        if not_whole.is_empty() {
            format!("{kills} of {kills}")
        } else {
            not_whole.join("; ")
        },
    );
    s.figure("kills", kills.to_string());
    s.figure("survivors", survived.len().to_string());
    s.figure("temp entries left", temp_left.to_string());
    Ok(s)
}

/// The harness child: `xtask stress-child indexer <api> <codeload> <db> <first-op>
/// <deadline-ms>`. Runs under `leakproof::supervise()`; indexes until SIGTERM, then
/// shuts down within the deadline and prints its report.
pub fn child(args: &[String]) -> Result<bool> {
    let _supervisor = leakproof::supervise()?;
    let [api, codeload, db, first_op, deadline_ms] = args else {
        return Err(format!("stress-child indexer: bad arguments {args:?}").into());
    };
    let first_op: u64 = first_op.parse()?;
    let deadline = Duration::from_millis(deadline_ms.parse()?);
    println!("@@pid {}", std::process::id());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let code = runtime.block_on(async move {
        let shutdown = leakproof::Shutdown::builder()
            .deadline(deadline)
            .child_grace(Duration::from_millis(100))
            .build();
        shutdown.install_signals()?;
        let reaper = Reaper::new()?;
        shutdown.add_reaper(&reaper);
        let db = Db::open(Path::new(db)).await?;
        let indexer = Indexer::new(api, codeload, 8, db.clone(), reaper, Some(&shutdown))?;
        println!("@@ready");
        let mut running = futures_util::stream::FuturesUnordered::new();
        let mut op = first_op;
        let token = shutdown.token();
        loop {
            while running.len() < 8 && !shutdown.is_shutting_down() {
                let ix = indexer.clone();
                let repo = server::ordinary(op as usize);
                match shutdown.spawn(&format!("index #{op}"), async move {
                    ix.index(op, &repo, Fault::None).await
                }) {
                    Ok(handle) => running.push(handle),
                    Err(_) => break,
                }
                op += 1;
            }
            tokio::select! {
                Some(done) = running.next() => {
                    if matches!(done, Ok(Ok(_))) {
                        println!("@@committed {}", db.committed().await?);
                    }
                }
                () = token.cancelled() => break,
            }
        }
        drop(running);
        let report = shutdown.wait().await;
        println!("@@report {}", serde_json::to_string(&report)?);
        println!("@@committed {}", db.committed().await?);
        println!(
            "@@rollbacks {}",
            work::ROLLBACKS.load(std::sync::atomic::Ordering::SeqCst)
        );
        Ok::<_, Box<dyn std::error::Error>>(report.exit_code())
    })?;
    // Exit with the runtime still up: the report is out, and everything the shutdown
    // had to release is released. Dropping the runtime would shut its timer down while
    // a worker may still be polling a forced task's last sleep, which tokio answers with
    // a "being shutdown" panic (harmless, but noise on every S4 run).
    std::process::exit(code);
}
