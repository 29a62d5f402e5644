//! The Redis backend against a real `redis-server` started on loopback by each test (a
//! free port, no persistence, stopped at the end): OS processes sharing a quota, a
//! pause shared between gates, and Redis killed and restarted mid-run.
//!
//! Without `redis-server` on the PATH these tests say so and pass, unless
//! `LEAKPROOF_REQUIRE_REDIS` is set (as `.ci/run` does), when they fail.

#![cfg(feature = "redis")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rate_gate::{Error, Feedback, Gate, OnRedisError, Quota, RedisQuota};

struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// A server on `port` (a free one if `None`), or `None` when `redis-server` is not
    /// installed and not required.
    fn start(port: Option<u16>) -> Option<RedisServer> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("LEAKPROOF_REQUIRE_REDIS").is_none(),
                "redis-server is required (LEAKPROOF_REQUIRE_REDIS) but not on the PATH"
            );
            eprintln!("redis-server not on the PATH: skipped");
            return None;
        }
        let port = port.unwrap_or_else(|| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        });
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        server.wait_ready();
        Some(server)
    }

    /// Until it answers PING (it starts in milliseconds; 10 s is a hang).
    fn wait_ready(&self) {
        for _ in 0..1000 {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.write_all(b"PING\r\n");
                let mut reply = [0u8; 7];
                if stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server on port {} never answered", self.port);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// The most grants in any window of `window_us` (grant times sorted).
fn most_in_window(times: &[u64], window_us: u64) -> usize {
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window_us {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

const QUOTA: u32 = 50; // per second
const BURST: u32 = 5;

fn quota() -> Quota {
    Quota::per_second(QUOTA).burst(BURST).unwrap()
}

/// Not a test: one worker process, run by `processes_sharing_a_quota_never_exceed_it`.
/// Acquires for as long as it is told, printing each grant's time.
#[test]
#[ignore = "helper process"]
fn worker() {
    let (Ok(url), Ok(millis), Ok(batch)) = (
        std::env::var("RATE_GATE_REDIS_URL"),
        std::env::var("RATE_GATE_RUN_MS"),
        std::env::var("RATE_GATE_BATCH"),
    ) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // These tests are about sharing a quota, not about a slow Redis: a cold, busy CI
        // machine once took over the default 200 ms for a first round trip (connect and
        // script load), and fail-closed then refused the worker's only acquire.
        let shared = RedisQuota::new(&url, "shared")
            .unwrap()
            .timeout(Duration::from_secs(5))
            .batch(batch.parse().unwrap());
        let gate = Gate::builder().quota(quota()).redis(shared).build();
        let until = tokio::time::Instant::now() + Duration::from_millis(millis.parse().unwrap());
        let mut out = std::io::stdout().lock();
        loop {
            match tokio::time::timeout_at(until, gate.acquire()).await {
                Ok(Ok(permit)) => {
                    writeln!(out, "@@grant {}", epoch_us()).unwrap();
                    drop(permit);
                }
                Ok(Err(error)) => {
                    writeln!(out, "@@error {error}").unwrap();
                    break;
                }
                Err(_) => break,
            }
        }
        writeln!(out, "@@done").unwrap();
    });
}

fn run_workers(server: &RedisServer, workers: usize, millis: u64, batch: u32) -> Vec<Vec<u64>> {
    let children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "worker", "--ignored", "--nocapture"])
                .env("RATE_GATE_REDIS_URL", server.url())
                .env("RATE_GATE_RUN_MS", millis.to_string())
                .env("RATE_GATE_BATCH", batch.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|mut child| {
            let lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut grants = Vec::new();
            let mut done = false;
            for line in lines {
                let line = line.unwrap();
                if let Some(at) = line.find("@@grant ") {
                    grants.push(line[at + 8..].trim().parse().unwrap());
                }
                if let Some(at) = line.find("@@error ") {
                    panic!("a worker's acquire failed: {}", &line[at + 8..]);
                }
                done |= line.contains("@@done");
            }
            assert!(child.wait().unwrap().success() && done, "a worker failed");
            grants
        })
        .collect()
}

fn check_shared_quota(per_worker: &[Vec<u64>], millis: u64) {
    let mut all: Vec<u64> = per_worker.iter().flatten().copied().collect();
    all.sort_unstable();
    // GCRA: at most the burst plus one per interval in any second, with one of slack
    // for the time between Redis's decision and the worker's clock read.
    let most = most_in_window(&all, 1_000_000);
    assert!(
        most <= (QUOTA + BURST + 1) as usize,
        "{most} grants in one second, quota {QUOTA}/s burst {BURST}"
    );
    // And the quota is used: the run allows BURST + QUOTA * seconds.
    let allowed = BURST as f64 + QUOTA as f64 * millis as f64 / 1000.0;
    assert!(
        all.len() as f64 >= 0.9 * allowed,
        "only {} of {allowed} used",
        all.len()
    );
    assert!(
        per_worker.iter().all(|g| !g.is_empty()),
        "every worker got some"
    );
}

#[test]
fn processes_sharing_a_quota_never_exceed_it() {
    let Some(server) = RedisServer::start(None) else {
        return;
    };
    let per_worker = run_workers(&server, 4, 2_000, 1);
    check_shared_quota(&per_worker, 2_000);
}

#[test]
fn batching_processes_never_exceed_it_either() {
    let Some(server) = RedisServer::start(None) else {
        return;
    };
    let per_worker = run_workers(&server, 4, 2_000, 4);
    check_shared_quota(&per_worker, 2_000);
}

#[tokio::test]
async fn a_pause_learned_by_one_gate_holds_every_gate_on_the_key() {
    let Some(server) = RedisServer::start(None) else {
        return;
    };
    let shared = || RedisQuota::new(&server.url(), "paused").unwrap();
    let here = Gate::builder().quota(quota()).redis(shared()).build();
    let there = Gate::builder().quota(quota()).redis(shared()).build();
    drop(there.acquire().await.unwrap());
    here.observe(Feedback::new().retry_after(Duration::from_secs(3)));
    // The pause reaches Redis in the background: wait until `there` is refused.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::time::timeout(Duration::from_millis(50), there.acquire())
            .await
            .is_err()
        {
            refused = true;
            break;
        }
    }
    assert!(refused, "the other gate never saw the pause");
    // It ends: the other gate gets its permit again (the pause is 3 s; 20 s is a hang).
    tokio::time::timeout(Duration::from_secs(20), there.acquire())
        .await
        .expect("still paused")
        .unwrap();
}

#[tokio::test]
async fn fail_closed_refuses_while_redis_is_down_and_recovers_on_its_own() {
    let Some(server) = RedisServer::start(None) else {
        return;
    };
    let shared = RedisQuota::new(&server.url(), "closed")
        .unwrap()
        .timeout(Duration::from_millis(200))
        .retry_every(Duration::from_millis(100));
    let gate = Gate::builder().quota(quota()).redis(shared.clone()).build();
    drop(gate.acquire().await.unwrap());
    let port = server.stop();
    for _ in 0..3 {
        match gate.acquire().await {
            Err(Error::Backend { key, .. }) => assert_eq!(key, "closed"),
            other => panic!("expected Error::Backend, got {other:?}"),
        }
    }
    let stats = gate.stats().redis.unwrap();
    assert!(stats.failures >= 1 && stats.fallback == 0, "{stats:?}");
    // Back on the same port: the gate reconnects by itself.
    let _server = RedisServer::start(Some(port)).unwrap();
    let mut recovered = false;
    for _ in 0..100 {
        if gate.acquire().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "never reconnected");
}

/// Redis keeps the ledger in whole microseconds of its own clock. An interval that is
/// not a whole number of them (10,000 per 10.00999 s: 1,000.999 us each) has to be
/// rounded up there as it is locally: rounded down to 1,000 us, a quota's worth of
/// permits would be earned back 9.99 ms before the period ends, and the sustained rate
/// would exceed the quota.
#[tokio::test]
async fn the_shared_ledger_charges_a_full_period_for_a_quotas_worth() {
    let Some(server) = RedisServer::start(None) else {
        return;
    };
    let count = 10_000;
    let period = Duration::from_nanos(u64::from(count) * 1_000_999);
    let quota = Quota::new(count, period).unwrap().burst(count).unwrap();
    let shared = RedisQuota::new(&server.url(), "rounding")
        .unwrap()
        .timeout(Duration::from_secs(5));
    let gate = Gate::builder().quota(quota).redis(shared).build();
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let before = secs * 1_000_000 + micros;
    drop(gate.acquire_n(count).await.unwrap());
    // The ledger: the server's time (microseconds) at which everything taken so far has
    // been earned back.
    let earned_back: u64 = redis::cmd("GET")
        .arg("rate-gate:rounding:tat")
        .query_async(&mut conn)
        .await
        .unwrap();
    let period_us = period.as_micros() as u64;
    let after = earned_back.saturating_sub(before);
    assert!(
        after >= period_us,
        "{count} permits earned back {after} us after they were taken, within the period of {period_us} us"
    );
}

/// Grant times (epoch microseconds) of acquiring in a loop for `millis`.
async fn take_for(gate: &Gate, millis: u64) -> Vec<u64> {
    let until = std::time::Instant::now() + Duration::from_millis(millis);
    let mut times = Vec::new();
    while std::time::Instant::now() < until {
        let permit = gate.acquire().await.expect("the fallback never refuses");
        times.push(epoch_us());
        drop(permit);
    }
    times
}

#[tokio::test]
async fn local_fallback_keeps_going_and_nothing_over_grants_after_recovery() {
    let Some(server) = RedisServer::start(None) else {
        return;
    };
    // A large burst, so that a ledger rebuilt from nothing after the restart (a second
    // burst within the same second) would show.
    let burst = 25;
    let quota = Quota::per_second(QUOTA).burst(burst).unwrap();
    let shared = RedisQuota::new(&server.url(), "fallback")
        .unwrap()
        .on_error(OnRedisError::Local { share: 1.0 })
        .timeout(Duration::from_millis(200))
        .retry_every(Duration::from_millis(50));
    let gate = Gate::builder().quota(quota).redis(shared).build();
    let mut grants = take_for(&gate, 1_000).await;
    let port = server.stop();
    // A short outage: the local gate goes on alone.
    let down = take_for(&gate, 300).await;
    let stats = gate.stats().redis.unwrap();
    assert!(stats.fallback > 0 && stats.failures > 0, "{stats:?}");
    grants.extend(down);
    // Redis is back, empty: the ledger is rebuilt from what this gate last saw, charged
    // with what it granted alone.
    let _server = RedisServer::start(Some(port)).unwrap();
    grants.extend(take_for(&gate, 1_500).await);
    grants.sort_unstable();
    // Once the first second has spent the burst, the rate alone (give or take a few
    // for clock reads): a second burst (a local gate starting fresh, or a ledger
    // rebuilt from nothing) would add up to 25 here.
    let spent = grants[0] + 1_000_000;
    let later: Vec<u64> = grants.iter().copied().filter(|&t| t >= spent).collect();
    let most = most_in_window(&later, 1_000_000);
    assert!(
        most <= (QUOTA + 5) as usize,
        "{most} grants in one second across the outage (quota {QUOTA}/s, burst {burst})"
    );
    let after = gate.stats().redis.unwrap();
    assert!(
        after.round_trips > stats.round_trips,
        "back on Redis: {after:?}"
    );
}
