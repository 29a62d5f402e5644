//! The scenarios run in this process: S1 (operations in a row), S2 (faults), S3
//! (concurrency) and the hostile inputs, each judged against a baseline of this
//! process's counts.

use super::faults::{Ended, fault_for, run_op};
use super::*;

pub(super) async fn s1(ctx: &Ctx<'_>) -> Result<Scenario> {
    let ops = ctx.options.ops.unwrap_or(ctx.profile.pick(1000, 150));
    let mut s = Scenario::new(format!("S1 indexer: {ops} operations in a row"));
    let before = ctx.settle(|_| true).await;
    let (servers, indexer, db_path) = ctx.env("s1", 8).await?;
    let started = Instant::now();
    #[derive(Default)]
    struct Seen {
        ok: u64,
        warm_ok: u64,
        first_error: Option<String>,
        runs: usize,
        timeouts: usize,
        log_lines: u64,
        /// The production leak alarm, fed a sample after each judged operation.
        alarm: Option<(mem_watch::LeakAlarm, mem_watch::Probe)>,
        suspicions: Vec<mem_watch::Suspicion>,
    }
    let seen = Arc::new(std::sync::Mutex::new(Seen {
        alarm: Some((
            mem_watch::LeakAlarm::new(ALARM_WINDOW.min(ops)).rss_tolerance(ALARM_RSS_PER_OP),
            mem_watch::Probe::new()?,
        )),
        ..Seen::default()
    }));
    let progress = Arc::new(std::sync::Mutex::new(
        ctx.recorder.progress("S1", ops as u64),
    ));
    let (inject_hang, inject_leak) = (ctx.options.inject_hang, ctx.options.inject_leak);
    let slow_leak = ctx.options.inject_slow_leak;
    // The library's runner, one at a time after a warm-up operation: each judged one
    // indexes a repository; then the counts back to the baseline, exactly.
    let case = leakproof_stress::Operations::new("operations", ops)
        .temp_root(&ctx.temp)
        // The HTTP clients keep their pooled connections (checked at the end).
        .pooled_sockets(true)
        .run(|op| {
            let (indexer, seen, progress) = (indexer.clone(), seen.clone(), progress.clone());
            let id = if op.warmup { ops + op.index } else { op.index };
            let fault = if op.warmup {
                Fault::None
            } else if inject_hang && op.index == 0 {
                Fault::Hang
            } else if inject_leak && op.index == ops / 2 {
                Fault::Leak
            } else {
                Fault::None
            };
            async move {
                let ended = indexer
                    .index(id as u64, &server::ordinary(id * 7), fault)
                    .await;
                let mut seen = lock(&seen);
                match &ended {
                    Ok(_) if op.warmup => seen.warm_ok += 1,
                    Ok(done) => {
                        seen.ok += 1;
                        seen.runs += done.tool_runs;
                        seen.timeouts += done.tool_timeouts;
                        seen.log_lines += done.log_lines;
                    }
                    Err(e) => {
                        seen.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                if !op.warmup {
                    if slow_leak {
                        // The alarm's self-test: 256 KiB resident and never freed, per
                        // operation (written, so the pages are really taken).
                        std::mem::forget(vec![1u8; 256 << 10]);
                    }
                    let seen = &mut *seen;
                    if let Some((alarm, probe)) = seen.alarm.as_mut() {
                        seen.suspicions.extend(alarm.push(probe.sample()));
                    }
                    let failed = (op.index as u64 + 1).saturating_sub(seen.ok);
                    lock(&progress).step(failed);
                }
                ended
            }
        })
        .await;
    drop(progress);
    let took = started.elapsed();
    let mut seen = take(seen);
    let (ok, ops) = (seen.ok, ops as u64);
    let (runs, timeouts, log_lines) = (seen.runs, seen.timeouts, seen.log_lines);
    add_checks(&mut s, case);
    // The probe's descriptors go before the end's counts.
    let alarm = seen.alarm.take().map(|(alarm, _probe)| alarm);
    alarm_check(&mut s, alarm.as_ref(), &seen.suspicions, "operation");
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
            seen.first_error
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        ),
    );
    s.check(
        "index: one whole transaction per operation",
        db.whole() && db.ops == ok + seen.warm_ok,
        format!(
            "{} ops (a warm-up's included), {} file rows, integrity {}, partial {}",
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

pub(super) fn leak_figure(before: &Counts, after: &Counts) -> String {
    let drift = after.drift(before, true);
    if drift.is_empty() {
        "nothing".into()
    } else {
        drift.join("; ")
    }
}

pub(super) async fn s2(ctx: &Ctx<'_>) -> Result<Scenario> {
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

pub(super) async fn s3(ctx: &Ctx<'_>) -> Result<Scenario> {
    let concurrency = ctx.options.concurrency.unwrap_or(100);
    let waves = ctx.profile.pick(5, 2);
    let total = concurrency * waves;
    let mut s = Scenario::new(format!(
        "S3 indexer: {concurrency} concurrent operations, {waves} waves"
    ));
    let before = ctx.settle(|_| true).await;
    let (servers, indexer, db_path) = ctx.env("s3", concurrency as u32).await?;
    let progress = Arc::new(std::sync::Mutex::new(
        ctx.recorder.progress("S3", total as u64),
    ));
    // What the library's runner does not see: which operations indexed (a cancelled
    // one may finish first), the order they finished in, the busiest gate.
    #[derive(Default)]
    struct Seen {
        indexed: u64,
        warm_indexed: u64,
        failed: u64,
        last: usize,
        out_of_order: u64,
        peak_in_flight: u64,
    }
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let caps = work::Caps::default();
    let in_flight = {
        let ix = indexer.clone();
        move || {
            let (api, codeload) = (ix.api.gate().stats(), ix.codeload.gate().stats());
            api.in_flight + codeload.in_flight
        }
    };
    let tools_free = {
        let ix = indexer.clone();
        move || ix.tools.available_permits() as u64
    };
    // Its own health and metrics endpoint, scraped over HTTP while the operations run.
    let health = leakproof::Health::builder()
        .gate("api", indexer.api.gate())
        .gate("codeload", indexer.codeload.gate())
        .build()?;
    let granted = || indexer.api.gate().stats().granted + indexer.codeload.gate().stats().granted;
    let granted_before = granted();
    let every = Duration::from_millis(ctx.profile.pick(500, 200) as u64);
    let scraper =
        super::super::scrape::Scraper::start("S3", health, ctx.recorder.elapsed_secs(), every)
            .await?;
    // The library's runner: `concurrency` operations in flight, 10% faulted (errors,
    // panics, and cancellations after a few polls, so releases interleave), then the
    // counts back to the baseline taken after its warm-up, exactly, and the gauges.
    let operations = leakproof_stress::Operations::new("operations", total)
        .concurrency(concurrency)
        .faults(10)
        .seed(0x53)
        .temp_root(&ctx.temp)
        // The HTTP clients keep their pooled connections until dropped (checked below).
        .pooled_sockets(true)
        .gauge("gate permits in flight (both hosts)", 0, in_flight)
        .gauge("tool slots free", caps.tools as u64, tools_free);
    let case = operations
        .run(|op| {
            let (indexer, seen, progress) = (indexer.clone(), seen.clone(), progress.clone());
            // The warm-up operation's index row comes after the judged ones'.
            let id = if op.warmup {
                total + op.index
            } else {
                op.index
            } as u64;
            let fault = match op.fault {
                Some(leakproof_stress::Fault::Error) => Fault::Error,
                Some(leakproof_stress::Fault::Panic) => Fault::Panic,
                // The runner drops the future itself.
                _ => Fault::None,
            };
            async move {
                // Each starts after its own delay, and so finishes in its own order.
                tokio::time::sleep(Duration::from_millis(spread(id, 50))).await;
                let ended = indexer
                    .index(id, &server::ordinary(id as usize), fault)
                    .await;
                let mut seen = lock(&seen);
                if op.warmup {
                    seen.warm_indexed += u64::from(ended.is_ok());
                } else {
                    seen.indexed += u64::from(ended.is_ok());
                    seen.failed += u64::from(ended.is_err());
                    seen.out_of_order += u64::from(op.index < seen.last);
                    seen.last = op.index;
                    seen.peak_in_flight = seen.peak_in_flight.max(
                        indexer
                            .api
                            .gate()
                            .stats()
                            .in_flight
                            .max(indexer.codeload.gate().stats().in_flight),
                    );
                    lock(&progress).step(seen.failed);
                }
                ended
            }
        })
        .await;
    drop(operations);
    drop(progress);
    let seen = take(seen);
    let (ok, warm) = (seen.indexed, seen.warm_indexed);
    let failed = total as u64 - ok;
    let out_of_order = seen.out_of_order;
    let peak_in_flight = seen.peak_in_flight;
    add_checks(&mut s, case);
    // Dropped children are reaped on the blocking pool: settled first, the last scrape
    // must show none.
    ctx.reaper.settle().await;
    let scrapes = scraper.finish().await?;
    scrape_checks(
        &mut s,
        &scrapes,
        granted() - granted_before,
        concurrency as f64,
    );
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
        db.whole() && db.ops == ok + warm,
        format!(
            "{} ops of {ok} ok + {warm} warm-up, partial {}",
            db.ops, db.partial_ops
        ),
    );
    after.check_back(&mut s, &before);
    s.figure("ops", format!("{ok} ok + {failed} failed on purpose"));
    s.figure("peak connections", peak_connections.to_string());
    s.figure("leaked", leak_figure(&before, &after));
    after.clean_leftovers(&before, &ctx.temp);
    Ok(s)
}

pub(super) async fn inputs(ctx: &Ctx<'_>) -> Result<Scenario> {
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
    let base_rss = crate::stress::rss_kib().0;
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
        crate::stress::reset_peak_rss();
        let ended = run_op(&indexer, op, repo.to_string(), Fault::None).await;
        let growth = crate::stress::rss_kib().1.saturating_sub(base_rss);
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

/// The leak alarm's window in S1: the last 100 operations (fewer if fewer are run).
const ALARM_WINDOW: usize = 100;

/// The alarm's memory tolerance in S1, per operation: 32 KiB. A fresh process running
/// S1 grows about 10 KiB an operation over its first hundred (the caches and the
/// index's connections warming), which the default 4 KiB would call a leak.
const ALARM_RSS_PER_OP: f64 = 32.0 * 1024.0;

/// The production leak alarm's verdict as a check: nothing suspected over the run,
/// with the last window's trends (per `step`: an operation, a tick) as the evidence.
fn alarm_check(
    s: &mut Scenario,
    alarm: Option<&mem_watch::LeakAlarm>,
    suspicions: &[mem_watch::Suspicion],
    step: &str,
) {
    use mem_watch::Resource;
    // Memory in KiB, descriptors as they are.
    let per_step = |resource: Resource, slope: f64| match resource {
        Resource::Fds => format!("{slope:+.2} fds per {step}"),
        _ => format!("{:+.1} KiB per {step}", slope / 1024.0),
    };
    let trends = alarm.map_or_else(String::new, |alarm| {
        let show = |resource| {
            alarm.trend(resource).map_or_else(String::new, |t| {
                format!(
                    "{} (confidence {:.2})",
                    per_step(resource, t.slope),
                    t.confidence
                )
            })
        };
        format!(
            "last {} {step}s: memory {}, fds {}",
            alarm.window(),
            show(Resource::Memory),
            show(Resource::Fds)
        )
    });
    let observed = if suspicions.is_empty() {
        format!("none; {trends}")
    } else {
        let raised: Vec<String> = suspicions
            .iter()
            .map(|x| {
                format!(
                    "leak suspected: {} {} (confidence {:.3}, {} -> {} over {} {step}s)",
                    if x.resource == Resource::Fds {
                        "fds"
                    } else {
                        "memory"
                    },
                    per_step(x.resource, x.trend.slope),
                    x.trend.confidence,
                    x.from,
                    x.to,
                    x.window
                )
            })
            .collect();
        raised.join("; ")
    };
    s.check(
        &format!(
            "no leak alarm (mem-watch's LeakAlarm, per {step}, {:.0} KiB)",
            ALARM_RSS_PER_OP / 1024.0
        ),
        suspicions.is_empty(),
        observed,
    );
    s.figure(
        "leak alarm",
        if suspicions.is_empty() {
            "none".to_string()
        } else {
            format!("{} raised", suspicions.len())
        },
    );
}

/// Locks `m`, a panic while it was held notwithstanding.
/// S3's own endpoint, as its scraper saw it: every scrape answered; the grants
/// `/metrics` shows over the run are the gates' own count; the permits in flight stay
/// within the gates' limit and end at 0.
fn scrape_checks(
    s: &mut Scenario,
    scrapes: &[super::super::scrape::Scrape],
    granted: u64,
    concurrency: f64,
) {
    let (first, last) = (&scrapes[0], &scrapes[scrapes.len() - 1]);
    let answered = scrapes
        .iter()
        .filter(|x| x.metrics_status == 200 && x.healthz == 200)
        .count();
    s.check(
        "own /metrics and /healthz scraped over HTTP during the run, every scrape answered 200",
        scrapes.len() >= 3 && answered == scrapes.len(),
        format!("{answered} of {} scrapes", scrapes.len()),
    );
    let shown = last.gate_granted - first.gate_granted;
    s.check(
        "grants in /metrics over the run = the gates' own count",
        shown == granted as f64,
        format!("{shown} in /metrics, {granted} counted by the gates"),
    );
    let peak = scrapes.iter().map(|x| x.gate_in_flight).fold(0.0, f64::max);
    s.check(
        "permits in flight per /metrics within both gates' limit, 0 at the end",
        peak <= 2.0 * concurrency && last.gate_in_flight == 0.0,
        format!("peak {peak}, last {}", last.gate_in_flight),
    );
    s.check(
        "temp entries and children live per /metrics back to the first scrape's",
        last.temp_live == first.temp_live && last.children_live == first.children_live,
        format!(
            "temp {} -> {}, children {} -> {}",
            first.temp_live, last.temp_live, first.children_live, last.children_live
        ),
    );
    let grades = |g: &str| scrapes.iter().filter(|x| x.grade == g).count();
    s.figure(
        "scrapes",
        format!(
            "{} of /metrics ({:.0} KiB) and /healthz: {} healthy, {} degraded; peak {peak} permits in flight",
            scrapes.len(),
            last.metrics_bytes as f64 / 1024.0,
            grades("healthy"),
            grades("degraded"),
        ),
    );
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the operations shared, once they are all gone.
fn take<T: Default>(shared: Arc<std::sync::Mutex<T>>) -> T {
    Arc::try_unwrap(shared)
        .ok()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
        .unwrap_or_default()
}

/// The library runner's checks, as the scenario's, each named after the runner's case.
fn add_checks(s: &mut Scenario, case: leakproof_stress::Case) {
    for check in case.checks {
        s.check(
            &format!("{}: {}", case.name, check.what),
            check.ok,
            check.observed,
        );
    }
}
