//! Decision latency of `rate-gate`'s Redis backend on loopback, against the in-process
//! gate, in the same run: `rate-gate/redis_decision` times one `acquire` on a quota that
//! never makes it wait.
//!
//! - `ours`: the Redis backend, one round trip (one Lua script) per decision.
//! - `batch16`: the Redis backend taking 16 permits per round trip.
//! - `in_process`: the in-process gate.
//!
//! Starts its own `redis-server` (a free port, no persistence); skipped when it is not
//! on the PATH.

use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rate_gate::{Gate, Quota, RedisQuota};

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server() -> Option<(Server, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = Server(child);
    for _ in 0..1000 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((server, format!("redis://127.0.0.1:{port}/")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn decisions(c: &mut Criterion) {
    let Some((_server, url)) = server() else {
        eprintln!("rate-gate/redis_decision: redis-server not on the PATH, skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let plenty = Quota::per_second(1_000_000_000)
        .burst(1_000_000_000)
        .unwrap();
    let redis = |key: &str, batch: u32| {
        let shared = RedisQuota::new(&url, key).unwrap().batch(batch);
        Gate::builder().quota(plenty).redis(shared).build()
    };
    let (one, sixteen) = (redis("bench-1", 1), redis("bench-16", 16));
    let local = Gate::builder().quota(plenty).build();
    let mut g = c.benchmark_group("rate-gate/redis_decision");
    g.bench_function("ours", |b| {
        b.iter(|| rt.block_on(async { drop(one.acquire().await.unwrap()) }))
    });
    g.bench_function("batch16", |b| {
        b.iter(|| rt.block_on(async { drop(sixteen.acquire().await.unwrap()) }))
    });
    g.bench_function("in_process", |b| {
        b.iter(|| rt.block_on(async { drop(local.acquire().await.unwrap()) }))
    });
    g.finish();
    let stats = one.stats().redis.unwrap();
    assert_eq!(stats.failures, 0, "{stats:?}");
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = decisions }
criterion_main!(benches);
