//! rate-gate on Redis: eight worker processes (this binary, re-executed) share one
//! quota through a `redis-server` started on loopback: 5,000 per window shortened from
//! an hour to 50 s (quick: 1,000 per 10 s; the same 10 ms between requests). Skipped,
//! with a note, when `redis-server` is not on the PATH.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rate_gate::{Gate, Quota, RedisQuota};

use super::{CHILD_COMMAND, Profile, Scenario};
use crate::Result;

const WORKERS: usize = 8;

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Result<Option<Server>> {
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        return Ok(None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = Server {
        child,
        port,
        _dir: dir,
    };
    // It answers within milliseconds; 10 s means it never will.
    for _ in 0..1000 {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let mut reply = [0u8; 7];
            if stream.write_all(b"PING\r\n").is_ok()
                && std::io::Read::read_exact(&mut stream, &mut reply).is_ok()
                && &reply == b"+PONG\r\n"
            {
                return Ok(Some(server));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("redis-server never answered".into())
}

fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// The GCRA quota whose bound over one window is exactly `quota`: with a burst of `b`,
/// a window holds at most `count + b - 1` grants.
fn gcra(quota: u32, window: Duration, burst: u32) -> Result<Quota> {
    Ok(Quota::new(quota - (burst - 1), window)?.burst(burst)?)
}

pub fn scenarios(profile: Profile) -> Result<Vec<Scenario>> {
    let Some(server) = start_server()? else {
        let mut s = Scenario::new("rate-gate on Redis: skipped");
        s.note("redis-server is not on the PATH (apt-get install -y redis-server)");
        return Ok(vec![s]);
    };
    let quota = profile.pick(5_000, 1_000) as u32;
    let window = Duration::from_secs(profile.pick(50, 10) as u64);
    let url = format!("redis://127.0.0.1:{}/", server.port);
    let mut out = Vec::new();
    for (key, batch) in [("plain", 1u32), ("batched", 8)] {
        out.push(shared_quota(&url, key, quota, window, batch)?);
    }
    Ok(out)
}

fn shared_quota(
    url: &str,
    key: &str,
    quota: u32,
    window: Duration,
    batch: u32,
) -> Result<Scenario> {
    let mut s = Scenario::new(format!(
        "rate-gate on Redis: {WORKERS} processes share {quota} per {} s (batch {batch})",
        window.as_secs()
    ));
    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let children: Vec<Child> = (0..WORKERS)
        .map(|_| {
            Command::new(&exe)
                .args([CHILD_COMMAND, "redis", url, key])
                .arg(quota.to_string())
                .arg(window.as_millis().to_string())
                .arg(batch.to_string())
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    let mut grants: Vec<u64> = Vec::new();
    // The earliest time a worker began to acquire: no grant was decided before it.
    let mut began = u64::MAX;
    let mut per_worker = Vec::new();
    let mut latencies: Vec<u64> = Vec::new();
    for mut child in children {
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut mine = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            let mut fields = line.split_ascii_whitespace();
            match fields.next() {
                Some("began") => {
                    began = began.min(fields.next().ok_or("began without time")?.parse()?);
                }
                Some("grant") => {
                    grants.push(fields.next().ok_or("grant without time")?.parse()?);
                    mine += 1;
                }
                Some("latency") => latencies.extend(
                    fields
                        .map(str::parse::<u64>)
                        .collect::<std::result::Result<Vec<_>, _>>()?,
                ),
                _ => {}
            }
        }
        if !child.wait()?.success() {
            return Err("a Redis worker failed".into());
        }
        per_worker.push(mine);
    }
    grants.sort_unstable();
    latencies.sort_unstable();
    // A grant is timed after Redis decided it, late by a varying amount. The ledger
    // allows the grant after a full window less than a millisecond past the window's
    // end, so a window starting at the first grant's time would take that one in
    // whenever the first grant was timed later than it. The window counted starts
    // instead when the first worker began to acquire, before any decision: each grant
    // timed within it was certainly decided within a window of the first decision.
    let end = began.saturating_add(window.as_micros() as u64);
    let in_window = grants.iter().filter(|&&t| t < end).count();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    s.note(format!("grants per worker: {per_worker:?}"));
    s.note(format!(
        "decision latency (own phase, never waiting): p50 {} us, p99 {} us over {} decisions",
        pct(0.50),
        pct(0.99),
        latencies.len()
    ));
    s.note(format!(
        "window counted from the first worker's start, {:.1} ms before the first grant was timed",
        grants.first().map_or(0, |&t| t.saturating_sub(began)) as f64 / 1000.0
    ));
    s.note(format!("took {:.1} s", started.elapsed().as_secs_f64()));
    // Redis charges a batch when it hands it out; its permits are used (and timed here)
    // up to their lease later, so a window of use may hold up to a batch more.
    let most = quota as usize + if batch > 1 { batch as usize } else { 0 };
    s.check(
        if batch == 1 {
            "at most the quota in the window"
        } else {
            "at most the quota (+ one batch in use) in the window"
        },
        in_window <= most,
        format!("{in_window} of {quota}"),
    );
    s.check(
        "at least 99% of the quota used",
        in_window as f64 >= 0.99 * f64::from(quota),
        format!("{:.2}%", in_window as f64 * 100.0 / f64::from(quota)),
    );
    s.check(
        "every worker got a share",
        per_worker.iter().all(|&n| n > 0),
        format!("{} workers", per_worker.len()),
    );
    Ok(s)
}

/// The worker: `stress-child redis <url> <key> <quota> <window_ms> <batch>`. Acquires
/// for a window and a little more, printing each grant's time; then measures decision
/// latency on a quota it never exhausts.
pub fn child(args: &[String]) -> Result<bool> {
    let [url, key, quota, window_ms, batch] = args else {
        return Err("usage: stress-child redis <url> <key> <quota> <window_ms> <batch>".into());
    };
    let quota: u32 = quota.parse()?;
    let window = Duration::from_millis(window_ms.parse()?);
    let batch: u32 = batch.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let interval = window / quota;
        // A batch is usable for as long as the ledger takes to earn it.
        let shared = RedisQuota::new(url, key)?
            .batch(batch)
            .lease(interval * batch);
        let gate = Gate::builder()
            // A burst of at least 2: with 1, a worker waking a millisecond late (tokio's
            // timer granularity) would lose that slot for good.
            .quota(gcra(quota, window, batch.max(2))?)
            .redis(shared)
            .build();
        let mut out = std::io::stdout().lock();
        writeln!(out, "began {}", epoch_us())?;
        let until = tokio::time::Instant::now() + window + window / 5;
        while let Ok(permit) = tokio::time::timeout_at(until, gate.acquire()).await {
            drop(permit?);
            writeln!(out, "grant {}", epoch_us())?;
        }
        // Decision latency, on a key of its own with a quota it never reaches.
        let shared =
            RedisQuota::new(url, &format!("{key}-latency-{}", std::process::id()))?.batch(batch);
        let gate = Gate::builder()
            .quota(Quota::per_second(1_000_000).burst(1_000_000)?)
            .redis(shared)
            .build();
        let mut line = String::from("latency");
        for _ in 0..1000 {
            let started = Instant::now();
            drop(gate.acquire().await?);
            line.push_str(&format!(" {}", started.elapsed().as_micros()));
        }
        writeln!(out, "{line}")?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(true)
}
