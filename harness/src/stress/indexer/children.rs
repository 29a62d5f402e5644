//! The scenarios run in harness children (`harness stress-child ...`): S5 (a big
//! repository, in a child with one malloc arena), S4 (SIGTERM mid-run, and a deadline
//! too short) and S4b (SIGKILL at random points), and the children's own entry points.

use super::faults::{Ended, run_op};
use super::*;

/// glibc's allocator keeps freed memory in one arena per thread that allocated, so a
/// multi-threaded process's resident size creeps up with no leak at all (measured here:
/// +0.8 MiB per 10,000-file run with the default, flat with one arena). S5 is about what
/// the program holds, so its child runs with one arena; the README says what to do in a
/// service.
pub(super) const ARENAS: (&str, &str) = ("MALLOC_ARENA_MAX", "1");

pub(super) async fn s5(ctx: &Ctx<'_>) -> Result<Scenario> {
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
    let mut alarm: Option<(usize, usize, f64, f64)> = None;
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await
    {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["@@cold", rss] => cold = rss.parse()?,
            ["@@rss", rss] => base = rss.parse()?,
            ["@@alarm", raised, windows, slope, confidence] => {
                alarm = Some((
                    raised.parse()?,
                    windows.parse()?,
                    slope.parse()?,
                    confidence.parse()?,
                ))
            }
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
    let (raised, windows, slope, confidence) = alarm.unwrap_or((0, 0, 0.0, 0.0));
    s.check(
        "no leak alarm (mem-watch's LeakAlarm, a 5 s window of 100 ms ticks, 128 KiB/s)",
        alarm.is_some() && windows > 0 && raised == 0,
        format!(
            "{raised} raised over {windows} full windows; steepest memory trend {:+.1} KiB/s \
             (confidence {confidence:.2})",
            slope / ALARM_TICK.as_secs_f64() / 1024.0
        ),
    );
    s.figure(
        "leak alarm",
        if raised == 0 {
            "none".to_string()
        } else {
            format!("{raised} raised")
        },
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

/// S5's child: `harness stress-child s5 <api> <codeload> <db>`. Its resident size after
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
        println!("@@cold {}", crate::stress::rss_kib().0);
        let _ = run_op(&indexer, 100, server::WORKSPACE.to_string(), Fault::None).await;
        reaper.settle().await;
        println!("@@rss {}", crate::stress::rss_kib().0);
        // The production leak alarm, per tick, over both runs.
        let alarm = Arc::new(std::sync::Mutex::new(TickAlarm::default()));
        let sampler = tokio::spawn(tick_alarm(alarm.clone()));
        for op in 1..=2 {
            crate::stress::reset_peak_rss();
            let started = Instant::now();
            let ended = run_op(&indexer, op, server::MONOREPO.to_string(), Fault::None).await;
            reaper.settle().await;
            let (rss, peak) = crate::stress::rss_kib();
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
        // Runs faster than a window: keep sampling (memory flat now) until at least one
        // full window has been judged, so the check below judges something.
        while alarm
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .windows
            == 0
            && !sampler.is_finished()
        {
            tokio::time::sleep(ALARM_TICK).await;
        }
        sampler.abort();
        let alarm = alarm
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        println!(
            "@@alarm {} {} {:.0} {:.4}",
            alarm.raised, alarm.windows, alarm.steepest.0, alarm.steepest.1
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    drop(runtime);
    scoped_temp::remove_all();
    Ok(true)
}

/// S5's leak alarm: a sample every [`ALARM_TICK`], a window of 5 s, a leak being a
/// sustained 128 KiB a second (12.8 KiB a tick). A run's working set ramps up by about
/// 0.3 MiB while it runs: measured, the steepest 5 s trend over both runs was 27 to 54
/// KiB/s in three runs here (a 2 s window saw 180 to 220 KiB/s and raised the alarm),
/// and a faster machine compresses the ramp into less time. So the tolerance leaves
/// twice that; a window much longer than an operation (minutes, in production) can
/// take a far lower one.
const ALARM_TICK: Duration = Duration::from_millis(100);
const ALARM_WINDOW: usize = 50;
const ALARM_RSS_PER_TICK: f64 = 12.8 * 1024.0;

/// What S5's alarm saw: suspicions raised, full windows judged, and the steepest memory
/// trend among them (bytes per tick, confidence).
#[derive(Default)]
struct TickAlarm {
    raised: usize,
    windows: usize,
    steepest: (f64, f64),
}

/// Samples this process every [`ALARM_TICK`] into a leak alarm until aborted.
async fn tick_alarm(seen: Arc<std::sync::Mutex<TickAlarm>>) {
    let Ok(mut probe) = mem_watch::Probe::new() else {
        return;
    };
    let mut alarm = mem_watch::LeakAlarm::new(ALARM_WINDOW).rss_tolerance(ALARM_RSS_PER_TICK);
    let mut ticks = tokio::time::interval(ALARM_TICK);
    for pushed in 1usize.. {
        ticks.tick().await;
        let raised = alarm.push(probe.sample()).len();
        let mut seen = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.raised += raised;
        if pushed >= ALARM_WINDOW {
            seen.windows += 1;
            if let Some(trend) = alarm.trend(mem_watch::Resource::Memory)
                && trend.slope > seen.steepest.0
            {
                seen.steepest = (trend.slope, trend.confidence);
            }
        }
    }
}

pub(super) fn percent(now: u64, then: u64) -> f64 {
    (now as f64 - then as f64) * 100.0 / then.max(1) as f64
}

/// `harness stress-child <kind> <api> <codeload> <db>`, its temp dir under `tmp` and every
/// descendant marked with `tag`; stdout piped for its `@@` lines. The caller adds the
/// rest and spawns.
pub(super) fn harness_child(
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
pub(super) struct ChildRun {
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
            command.env(db::SLOW_COMMITS, "1");
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
pub(super) async fn survivors(marker: &str) -> Vec<u32> {
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
pub(super) fn entries_deep(dir: &Path) -> usize {
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

pub(super) fn fresh_dir(dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// What S4's short-deadline run saw: (rollbacks, committed, the index after).
pub(super) struct ForcedRun {
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
pub(super) async fn s4_forced_mid_transaction(
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

pub(super) async fn s4(ctx: &Ctx<'_>) -> Result<Scenario> {
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

pub(super) fn count(value: &serde_json::Value) -> usize {
    value.as_array().map_or(0, Vec::len)
}

pub(super) async fn s4b(ctx: &Ctx<'_>) -> Result<Scenario> {
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

/// The harness child: `harness stress-child indexer <api> <codeload> <db> <first-op>
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
            db::ROLLBACKS.load(std::sync::atomic::Ordering::SeqCst)
        );
        Ok::<_, Box<dyn std::error::Error>>(report.exit_code())
    })?;
    // Exit with the runtime still up: the report is out, and everything the shutdown
    // had to release is released. Dropping the runtime would shut its timer down while
    // a worker may still be polling a forced task's last sleep, which tokio answers with
    // a "being shutdown" panic (harmless, but noise on every S4 run).
    std::process::exit(code);
}
